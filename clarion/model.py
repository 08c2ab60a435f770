"""The campaign file format: pydantic models whose key names are the user-facing contract.

Add keys; never rename them. Channel sections are defined by the adapters in channels/ and joined here
into one union keyed by `provider`, so a new provider needs no change in this module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

import channels
from channels.base import ChannelConfig

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SLUG_HINT = "use lowercase letters, digits, '-' and '_', starting with a letter or digit (at most 63)"
HOLDOUT = "holdout"

if TYPE_CHECKING:
    AnyChannelConfig = ChannelConfig
else:
    AnyChannelConfig = Annotated[
        Union[tuple(a.config_model for a in channels.adapters())],  # noqa: UP007
        Field(discriminator="provider"),
    ]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _slug(value: str, what: str) -> str:
    if not re.match(SLUG, value):
        raise ValueError(f"{value!r} is not a valid {what}: {SLUG_HINT}")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://donate.example.org/appeal)")
    return value


class Cta(_Strict):
    """The call to action: the page every message links to."""

    url: str = Field(description="Landing page of the call to action; UTM parameters are added to it.")

    _check_url = field_validator("url")(lambda cls, v: _http_url(v))


class Audience(_Strict):
    contacts: str = Field(
        description="CSV file relative to the campaign file: id,email,phone,first_name,timezone + any others."
    )


class Variant(_Strict):
    id: str
    weight: float = Field(default=1, ge=0, description="Relative share of the non-holdout contacts.")
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Values templates see as `variant.<name>`."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        _slug(value, "variant id")
        if value == HOLDOUT:
            raise ValueError(f"{HOLDOUT!r} is reserved for the control group; name the variant otherwise")
        return value

    @field_validator("vars")
    @classmethod
    def _no_id_var(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "id" in value:
            raise ValueError("`id` is reserved (templates see it as variant.id); rename that var")
        return value


def _default_variants() -> list[Variant]:
    return [Variant(id="default")]


class Experiment(_Strict):
    holdout: float = Field(
        default=0, ge=0, lt=1, description="Share of contacts that get nothing: the control group."
    )
    variants: list[Variant] = Field(default_factory=_default_variants, min_length=1)

    @model_validator(mode="after")
    def _arms(self) -> Experiment:
        seen: set[str] = set()
        for index, variant in enumerate(self.variants):
            if variant.id in seen:
                raise PydanticCustomError(
                    "duplicate_variant",
                    "variant id '{id}' is used twice; variant ids must be unique",
                    {"id": variant.id, "at": ("variants", index, "id")},
                )
            seen.add(variant.id)
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("every variant has weight 0; give at least one a positive weight")
        return self


class Tracking(_Strict):
    """Where the tracking service answers; without it, links go straight to the CTA page."""

    base_url: str | None = Field(
        default=None, description="Public URL of `clarion serve`, e.g. https://go.example.org."
    )

    _check_url = field_validator("base_url")(lambda cls, v: v if v is None else _http_url(v).rstrip("/"))


class Campaign(_Strict):
    """One campaign file."""

    name: str = Field(description="Campaign name; also its utm_campaign and the seed of variant assignment.")
    description: str = ""
    cta: Cta
    audience: Audience
    experiment: Experiment = Field(default_factory=Experiment)
    tracking: Tracking = Field(default_factory=Tracking)
    channels: dict[str, AnyChannelConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _slug(value, "campaign name")

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        for key in value:
            _slug(key, "channel id")
        return value


def json_schema() -> dict[str, Any]:
    """The format's JSON Schema, for editor completion."""
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Clarion campaign"
    return schema
