"""The campaign file format: pydantic models whose key names are the user-facing contract.

Add keys; never rename them. Channel sections are defined by the adapters in channels/ and joined here
into one union keyed by `provider`, so a new provider needs no change in this module.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clarion import channels
from clarion.base.identifiers import check_identifier, check_name
from clarion.base.timing import parse_duration, zone
from clarion.campaign.measurement import Attribution, AutomatedClicks, Expected
from clarion.channels.base import ChannelConfig

HOLDOUT = "holdout"
REST = "rest"  # with a rollout: the contacts who wait for the winner (or, Thompson, for their wave)

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
    return check_name(value, what)  # the one identifier pattern: clarion/base/identifiers.py


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://donate.example.org/appeal)")
    return value


class Cta(_Strict):
    """The call to action: the page every message links to."""

    url: str = Field(description="Landing page of the call to action; UTM parameters are added to it.")
    refcode_keep_as: str = Field(
        default="refcode2",
        pattern=r"^refcode[A-Za-z0-9_]*$",
        description="On an ActBlue page the token takes `refcode`; the page's own refcode moves here.",
    )

    _check_url = field_validator("url")(lambda cls, v: _http_url(v))


class AudienceQuery(_Strict):
    """Contacts read from a database through SQLAlchemy, streamed (clarion.campaign.query)."""

    url: str = Field(
        description="SQLAlchemy URL, e.g. postgresql+psycopg://crm@db/crm, or ${ENV_VAR} naming one; a "
        "relative sqlite:/// path is relative to the campaign file."
    )
    sql: str = Field(
        min_length=1, description="A SELECT whose columns are the contact fields (id, email...)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if ENV_REF.fullmatch(value.strip()):
            return value.strip()
        if "://" not in value:
            raise ValueError(
                "not a database URL: give a SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db) or "
                "${ENV_VAR} naming the variable that holds it"
            )
        return value.strip()

    @field_validator("sql")
    @classmethod
    def _select(cls, value: str) -> str:
        text = value.strip().rstrip(";").strip()
        if not re.match(r"(?is)^(select|with)\b", text) or ";" in text:
            raise ValueError(
                "must be one SELECT (or WITH ... SELECT) statement, without a trailing second one"
            )
        return text


class Audience(_Strict):
    contacts: str | None = Field(
        default=None,
        description="CSV file relative to the campaign file: id,email,phone,first_name,timezone + others.",
    )
    query: AudienceQuery | None = Field(default=None, description="Or: contacts read from a database.")

    @model_validator(mode="after")
    def _one(self) -> Audience:
        if (self.contacts is None) == (self.query is None):
            raise _problem(
                "give the audience as exactly one of `contacts:` (a CSV file) or `query: {url, sql}`",
                ("audience",),
            )
        return self


ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
OutEvent = Literal["sent", "delivered", "clicked", "converted", "unsubscribed", "suppressed"]
OUT_EVENTS: tuple[OutEvent, ...] = ("sent", "delivered", "clicked", "converted", "unsubscribed", "suppressed")


class WebhookOut(_Strict):
    """An endpoint Clarion posts the run's events to, signed (clarion.tracking.outbound)."""

    url: str = Field(description="Where events are POSTed (https in production).")
    events: list[OutEvent] = Field(default_factory=lambda: list(OUT_EVENTS), min_length=1)
    secret: str = Field(
        description="${ENV_VAR} naming the environment variable that holds the signing secret (never the "
        "secret itself: campaign files are shared and copied)."
    )

    _check_url = field_validator("url")(lambda cls, v: _http_url(v))

    @field_validator("secret")
    @classmethod
    def _secret_ref(cls, value: str) -> str:
        if not ENV_REF.fullmatch(value.strip()):
            raise ValueError(
                "give the name of an environment variable that holds the secret, as ${CRM_WEBHOOK_SECRET}; "
                "a secret written in the campaign file would travel with it"
            )
        return value.strip()

    @property
    def secret_env(self) -> str:
        found = ENV_REF.fullmatch(self.secret)
        assert found is not None
        return found.group(1)


class Variant(_Strict):
    id: str
    weight: float = Field(
        default=1, ge=0, allow_inf_nan=False, description="Relative share of the non-holdout contacts."
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Values templates see as `variant.<name>`."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        _slug(value, "variant id")
        if value == HOLDOUT:
            raise ValueError(f"{HOLDOUT!r} is reserved for the control group; name the variant otherwise")
        if value == REST:
            raise ValueError(f"{REST!r} is reserved for a rollout's later cell; name the variant otherwise")
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
    channel_holdouts: dict[str, float] = Field(
        default_factory=dict,
        description="Per channel id, the share of contacts that channel is withheld from, drawn "
        "independently of the variant arm: what identifies the channel's own effect.",
    )
    expected: Expected | None = Field(
        default=None, description="The baseline rate (and lift) hoped for: validation states the power."
    )

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
        for cid, share in self.channel_holdouts.items():
            if not 0 < share < 1:
                raise PydanticCustomError(
                    "channel_holdout",
                    "channel holdout of '{cid}' is {share}; give a share between 0 and 1 (e.g. 0.1)",
                    {"cid": cid, "share": share, "at": ("channel_holdouts", cid)},
                )
        return self


class Tracking(_Strict):
    """Where the tracking service answers; without it, links go straight to the CTA page."""

    base_url: str | None = Field(
        default=None, description="Public URL of `clarion serve`, e.g. https://go.example.org."
    )
    automated_clicks: AutomatedClicks = Field(default_factory=AutomatedClicks)

    _check_url = field_validator("base_url")(lambda cls, v: v if v is None else _http_url(v).rstrip("/"))


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Schedule(_Strict):
    """When a deployed campaign launches: at one moment, on a cron schedule, or when an event arrives."""

    at: AwareDatetime | None = Field(
        default=None, description="One launch, an ISO datetime with its offset: 2026-11-03T21:00:00-05:00."
    )
    cron: str | None = Field(default=None, description="A cron expression, e.g. '0 9 * * 1' (Mondays 09:00).")
    timezone: str = Field(default="UTC", description="IANA time zone the cron expression is read in.")
    on_event: str | None = Field(
        default=None, description="Launch the moment this event is emitted, e.g. debate.ended."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("on_event")
    @classmethod
    def _event(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, "event name (e.g. debate.ended)")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from prefect.client.schemas.schedules import CronSchedule  # Prefect's own parser decides

        try:
            CronSchedule(cron=value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a cron expression: five fields, minute hour day month weekday "
                "(e.g. '0 9 * * 1')"
            ) from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        given = [k for k in ("at", "cron", "on_event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `at:`, `cron:` or `on_event:`"
                + (f" (found {', '.join(given)})" if given else "")
            )
        if self.timezone != "UTC" and self.cron is None:
            raise ValueError("`timezone:` applies to `cron:` only (`at:` carries its own offset)")
        return self


Condition = Literal["not_clicked", "not_converted", "not_engaged"]


class Step(_Strict):
    """One wave of a staggered sequence: which channels send, how long after the launch, and to whom."""

    name: str
    after: Duration = Field(default=timedelta(0), description="Offset from the launch: 0s, 2m, 3h, 1d.")
    channels: list[str] = Field(min_length=1, description="Channel ids this step sends.")
    only_if: Condition | None = Field(
        default=None,
        description="Send only to contacts who have not clicked / converted / done either since the launch.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _slug(value, "step name")


class Approval(_Strict):
    """One gate before anything is sent: a named approver says go, or the run expires."""

    required: bool = True
    approvers: list[str] = Field(
        default_factory=list, description="Who may approve; empty means anyone with access to the server."
    )
    timeout: Duration = Field(default=timedelta(minutes=30), description="Unanswered for this long: expired.")

    def allows(self, who: str) -> bool:
        """Whether `who` may answer (anyone, when no approvers are named)."""
        return bool(who) and (not self.approvers or who in self.approvers)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=10) <= value <= timedelta(days=7):
            raise ValueError("must be between 10s and 7d")
        return value


class Rollout(_Strict):
    """Test the variants on a share of the audience, wait, then send the winner to everyone else; or
    (`strategy: thompson`) send everyone else in waves allocated by the posteriors (clarion.engine.bandit)."""

    test_share: float = Field(gt=0, lt=1, description="Share of the non-holdout contacts in the test cell.")
    wait: Duration = Field(description="How long to wait after the test sends before deciding.")
    metric: Literal["conversion_rate", "click_rate"] = "conversion_rate"
    min_confidence: float = Field(
        default=0.95, ge=0.5, lt=1, description="1 - the Holm-adjusted p-value a winner needs."
    )
    fallback: str = Field(
        default="baseline",
        description="What the rest gets when nothing wins: `baseline` (the first variant) or a variant id.",
    )
    decide: Literal["at_wait", "sequential"] = Field(
        default="at_wait",
        description="`at_wait`: one fixed-horizon test after `wait`; `sequential`: an always-valid test read "
        "every `check_every`, deciding as soon as it allows, at the latest after `max_wait`.",
    )
    check_every: Duration = Field(
        default=timedelta(minutes=10), description="How often a sequential rollout looks."
    )
    max_wait: Duration | None = Field(
        default=None, description="A sequential rollout's longest wait (default: `wait`); then the fallback."
    )
    strategy: Literal["fixed", "thompson"] = Field(
        default="fixed",
        description="`fixed`: the winner goes to the rest after `wait`; `thompson`: the rest goes in "
        "`waves`, each allocated by the arms' posterior probability of being best (clarion.engine.bandit).",
    )
    waves: int = Field(
        default=4,
        ge=2,
        le=48,
        description="A Thompson rollout's waves, the test cell first; wave i goes at i x wait / (waves - 1).",
    )
    uniform_share: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="The share of each later wave spread evenly over the arms: the unbiased comparison.",
    )

    @model_validator(mode="after")
    def _sequential(self) -> Rollout:
        if self.strategy == "thompson":
            self._thompson()
        else:
            for name in ("waves", "uniform_share"):
                if name in self.model_fields_set:
                    raise _problem(
                        "`{name}` applies to `strategy: thompson`; a fixed rollout sends the winner once",
                        (name,),
                        name=name,
                    )
        if self.decide == "at_wait" and self.max_wait is not None:
            raise ValueError("`max_wait` applies to `decide: sequential`; for a fixed test, set `wait` only")
        if not timedelta(seconds=1) <= self.check_every <= timedelta(days=1):
            raise ValueError("check_every must be between 1s and 1d (e.g. 10m)")
        if self.max_wait is not None and self.max_wait < self.wait:
            raise ValueError("max_wait is the longest wait: give at least `wait`")
        return self

    def _thompson(self) -> None:
        if self.decide != "at_wait":
            raise _problem(
                "`decide: {decide}` chooses one winner; a Thompson rollout names none (each wave is "
                "allocated by the posteriors): drop `decide`, or use `strategy: fixed`",
                ("decide",),
                decide=self.decide,
            )
        for name in ("min_confidence", "fallback", "check_every", "max_wait"):
            if name in self.model_fields_set:
                raise _problem(
                    "`{name}` belongs to a rollout that picks a winner; a Thompson rollout allocates each "
                    "wave by the posteriors: drop `{name}`, or use `strategy: fixed`",
                    (name,),
                    name=name,
                )
        if self.wait / (self.waves - 1) < timedelta(seconds=1):
            raise _problem(
                "{waves} waves over `wait` {wait:g}s leave under 1s between waves: give a longer `wait` or "
                "fewer `waves`",
                ("waves",),
                waves=self.waves,
                wait=self.wait.total_seconds(),
            )

    def wave_after(self, wave: int) -> timedelta:
        """When a Thompson rollout's wave goes, from the launch: the test cell (wave 0) at once, the last at
        `wait`, evenly between."""
        return self.wait * wave / (self.waves - 1)

    @property
    def latest(self) -> timedelta:
        """How long after the launch the rollout goes out at the latest."""
        return self.max_wait if self.decide == "sequential" and self.max_wait is not None else self.wait


class ShareKit(_Strict):
    """The ambassador pattern: at `after`, every ambassador receives (by email or SMS) pre-filled share
    links for their own accounts, each carrying the ambassador's own tracked link. The kit is a campaign
    file of its own (its audience is the ambassadors; its templates call share_x() / share_linkedin()),
    sent as a run of its own, `<run>-kit-<name>`. Clarion never posts from anyone else's account."""

    name: str
    campaign: str = Field(description="The kit's campaign file, relative to this one.")
    after: Duration = Field(default=timedelta(0), description="Offset from the launch: 0s, 10m, 2h.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _slug(value, "share kit name")


class Campaign(_Strict):
    """One campaign file."""

    name: str = Field(description="Campaign name; also its utm_campaign and the seed of variant assignment.")
    description: str = ""
    cta: Cta
    audience: Audience
    experiment: Experiment = Field(default_factory=Experiment)
    tracking: Tracking = Field(default_factory=Tracking)
    attribution: Attribution = Field(default_factory=Attribution)
    channels: dict[str, AnyChannelConfig] = Field(min_length=1)
    schedule: Schedule | None = Field(default=None, description="For `clarion deploy`: when it launches.")
    steps: list[Step] | None = Field(
        default=None, description="A staggered sequence; without it, every channel sends at launch."
    )
    approval: Approval | None = None
    rollout: Rollout | None = None
    share_kits: list[ShareKit] | None = Field(
        default=None, description="Ambassadors relay the CTA from their own accounts, at their own offsets."
    )
    webhooks_out: list[WebhookOut] | None = Field(
        default=None, description="Endpoints the run's events are posted to, signed (a CRM, ActionKit...)."
    )

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

    @model_validator(mode="after")
    def _sequence(self) -> Campaign:
        if self.steps is not None:
            _check_steps(self.steps, list(self.channels))
        if self.rollout is not None:
            _check_rollout(self.rollout, self)
        for cid in self.experiment.channel_holdouts:
            if cid not in self.channels:
                raise _problem(
                    "channel holdout names channel '{cid}', which `channels:` does not define ({known})",
                    ("experiment", "channel_holdouts", cid),
                    cid=cid,
                    known=", ".join(self.channels),
                )
            if channels.get(self.channels[cid].provider).kind.value == "social":
                raise _problem(
                    "channel '{cid}' is a public post, which cannot be withheld from some contacts; "
                    "channel holdouts apply to email and SMS",
                    ("experiment", "channel_holdouts", cid),
                    cid=cid,
                )
        seen: set[str] = set()
        for i, kit in enumerate(self.share_kits or []):
            if kit.name in seen:
                raise _problem(
                    "share kit '{name}' is named twice; give each kit its own name",
                    ("share_kits", i, "name"),
                    name=kit.name,
                )
            seen.add(kit.name)
        return self

    @property
    def test_share(self) -> float:
        """The share of non-holdout contacts the variants go to at launch (all, without a rollout)."""
        return self.rollout.test_share if self.rollout is not None else 1.0

    def step_plan(self) -> list[Step]:
        """The steps in launch order; a campaign without `steps:` is one step sending every channel."""
        if self.steps is None:
            return [Step(name="launch", channels=list(self.channels))]
        return sorted(self.steps, key=lambda s: s.after)


def _problem(message: str, at: tuple[str | int, ...], **context: Any) -> PydanticCustomError:
    return PydanticCustomError("campaign", message, {**context, "at": at})


def _check_steps(steps: list[Step], channel_ids: list[str]) -> None:
    seen: dict[str, str] = {}
    names: set[str] = set()
    for index, step in enumerate(steps):
        if step.name in names:
            raise _problem("step name '{name}' is used twice", ("steps", index, "name"), name=step.name)
        names.add(step.name)
        for j, cid in enumerate(step.channels):
            if cid not in channel_ids:
                raise _problem(
                    "step '{step}' names channel '{cid}', which `channels:` does not define ({known})",
                    ("steps", index, "channels", j),
                    step=step.name,
                    cid=cid,
                    known=", ".join(channel_ids),
                )
            if cid in seen:
                raise _problem(
                    "channel '{cid}' is in steps '{first}' and '{step}': a channel sends in one step "
                    "(for a reminder, add a second channel with its own id)",
                    ("steps", index, "channels", j),
                    cid=cid,
                    first=seen[cid],
                    step=step.name,
                )
            seen[cid] = step.name
    missing = [c for c in channel_ids if c not in seen]
    if missing:
        raise _problem(
            "channels {missing} are in no step: put every channel in one step, or drop `steps:`",
            ("steps",),
            missing=", ".join(missing),
        )


def _check_rollout(rollout: Rollout, campaign: Campaign) -> None:
    variants = [v.id for v in campaign.experiment.variants if v.weight > 0]
    if len(variants) < 2:
        raise _problem("a rollout compares variants: give `experiment.variants` at least two", ("rollout",))
    if rollout.fallback not in ("baseline", *variants):
        raise _problem(
            "fallback '{fallback}' is neither `baseline` nor a variant id ({known})",
            ("rollout", "fallback"),
            fallback=rollout.fallback,
            known=", ".join(variants),
        )
    if campaign.steps is not None:
        raise _problem(
            "`rollout:` and `steps:` cannot be combined yet: a rollout is its own two-step sequence",
            ("rollout",),
        )
    weights = {v.weight for v in campaign.experiment.variants if v.weight > 0}
    if rollout.strategy == "thompson" and len(weights) > 1:
        raise _problem(
            "a Thompson rollout's lift is read from arms sampled evenly in every wave: give the variants "
            "equal weights (or drop their `weight`)",
            ("rollout", "strategy"),
        )


def json_schema() -> dict[str, Any]:
    """The format's JSON Schema, for editor completion."""
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Clarion campaign"
    return schema
