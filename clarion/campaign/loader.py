"""From a campaign file to a validated `Campaign`, with every problem located at FILE:LINE:COL.

pydantic reports errors by location tuple; we map each back to the YAML node it came from (dropping the
union tag pydantic inserts under `channels.<id>`), reword the common cases for people who are not Python
programmers, and suggest the nearest key for a misspelt one.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from clarion import channels
from clarion.base.errors import CampaignInvalid, Problem, display_path
from clarion.campaign.contacts import ContactsError, ContactsFile, file_digest
from clarion.campaign.model import Campaign
from clarion.campaign.query import QueryContacts, resolve_url
from clarion.campaign.yamlsource import PathKey, SourceMap, load_yaml


@dataclass(frozen=True)
class LoadedCampaign:
    """A valid campaign together with where it came from."""

    campaign: Campaign
    path: Path
    source: SourceMap

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def contacts_path(self) -> Path:
        """The contacts CSV (for an audience from a query: the campaign file, which holds the query)."""
        if self.campaign.audience.contacts is None:
            return self.path
        return self.base_dir / self.campaign.audience.contacts

    def contacts(self) -> ContactsFile | QueryContacts:
        """The campaign's contacts (file or query), or CampaignInvalid pointing at `audience`."""
        if self.campaign.audience.query is not None:
            return self._query_contacts
        path = self.contacts_path
        if not path.is_file():
            raise CampaignInvalid(
                [
                    self.source.problem(
                        ("audience", "contacts"),
                        f"contacts file {self.campaign.audience.contacts!r} not found "
                        f"(looked for {display_path(path)}); the path is relative to the campaign file",
                    )
                ]
            )
        try:
            return ContactsFile(path, display_path(path))
        except ContactsError as exc:
            raise CampaignInvalid([exc.problem]) from None

    @functools.cached_property
    def _query_contacts(self) -> QueryContacts:
        """One per loaded campaign: its seek marks serve every batch a launch sends from it."""
        query = self.campaign.audience.query
        assert query is not None
        try:
            return QueryContacts(resolve_url(query.url, self.base_dir), query.sql)
        except ContactsError as exc:
            problem = self.source.problem(("audience", "query"), exc.problem.message)
            raise CampaignInvalid([problem]) from None


def load_campaign(path: Path | str) -> LoadedCampaign:
    """Read and validate one campaign file; raises CampaignInvalid listing every problem."""
    path = Path(path)
    data, source = load_yaml(path, str(path))
    if not isinstance(data, dict):
        raise CampaignInvalid(
            [source.problem((), "a campaign file is a mapping of keys (name:, cta:, audience:, channels:)")]
        )
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        raise CampaignInvalid([_problem(err, data, source) for err in exc.errors()]) from None
    return LoadedCampaign(campaign, path, source)


def _yaml_path(loc: tuple[int | str, ...], data: Any) -> tuple[PathKey, bool]:
    """Map a pydantic location onto the data; the flag says whether the whole path exists."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif len(path) == 2 and path[0] == "channels" and part in channels.providers():
            continue  # the discriminated-union tag pydantic adds under channels.<id>
        else:
            path.append(part)
            return tuple(path), False
        path.append(part)
    return tuple(path), True


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The model class whose fields are allowed at `path` (a mapping in the file)."""
    current: Any = Campaign
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list, already unwrapped
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                field = next((f for f in current.model_fields.values() if f.alias == part), None)
            if field is None:
                return None
            current = field.annotation
        current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return typing.get_args(annotation)[-1]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _allowed_keys(path: PathKey, data: Any) -> list[str]:
    if len(path) == 2 and path[0] == "channels":
        section = data.get("channels", {}).get(path[1], {})
        provider = section.get("provider") if isinstance(section, dict) else None
        if provider in channels.providers():
            fields = channels.get(provider).config_model.model_fields
            return [f.alias or name for name, f in fields.items()]
        return []
    model = _model_at(path)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


#: What a number means, for the bounds errors people hit on it.
HINTS = {
    "holdout": "holdout is the share of contacts who get nothing, from 0 up to (not including) 1: 0.05 = 5%",
    "weight": "weight is a variant's relative share, 0 or more (a weight of 0 pauses the variant)",
}


def _problem(err: ErrorDetails, data: Any, source: SourceMap) -> Problem:
    at = err.get("ctx", {}).get("at")
    loc = (*err["loc"], *at) if isinstance(at, tuple) else tuple(err["loc"])
    path, exists = _yaml_path(loc, data)
    kind = err["type"]
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "too_short" and path == ("channels",):
        return source.problem(path, "needs at least one channel (x, sendgrid or twilio)")
    if kind in ("less_than", "greater_than_equal", "less_than_equal", "greater_than") and path:
        hint = HINTS.get(str(path[-1]))
        if hint:
            return source.problem(path, f"{hint} (got {_shown(err.get('input'))})")
    if kind == "missing":
        return source.problem(path, f"required key {path[-1]!r} is missing")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1], data)
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        )
        return source.problem(path, f"unknown key {path[-1]!r}{hint}", key=True)
    if kind == "union_tag_invalid":
        got = err.get("ctx", {}).get("tag")
        known = ", ".join(channels.providers())
        return source.problem((*path, "provider"), f"unknown provider {got!r}; known providers: {known}")
    if kind == "union_tag_not_found":
        known = ", ".join(channels.providers())
        return source.problem(path, f"says no `provider:`; add one of: {known}")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return source.problem(path, f"should be a mapping of keys, not {_shown(err.get('input'))}")
    if kind in ("list_type",):
        return source.problem(
            path, f"should be a list (items starting with '- '), not {_shown(err.get('input'))}"
        )
    if exists and kind not in ("value_error", "assertion_error") and at is None:
        message = f"{message} (got {_shown(err.get('input'))})"
    return source.problem(path, message)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def campaign_digest(loaded: LoadedCampaign) -> str:
    """What a resume must find unchanged: the campaign file, its contacts, its template files."""
    paths = [loaded.path, loaded.contacts_path]
    for config in loaded.campaign.channels.values():
        for name in ("template", "text_template"):
            value = getattr(config, name, None)
            if value and (loaded.base_dir / value).is_file():
                paths.append(loaded.base_dir / value)
    digest = file_digest(*paths)
    contacts = loaded.contacts()
    if isinstance(contacts, QueryContacts):  # the query's result, row by row: what a resume must find again
        digest = hashlib.sha256(f"{digest}:{contacts.digest()}".encode()).hexdigest()
    return digest
