"""The approval gate's contents and its remote control.

Before the gate: pre-flight checks (each channel's credentials are present and accepted by the provider,
its sender is configured, the account can take the planned volume) and a preview of every channel x
variant. From any shell:
`clarion approve RUN_ID` / `clarion reject RUN_ID --reason ...` answer it (clarion.flows.approval.answer).
"""

from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from clarion import channels
from clarion.base.errors import ClarionError
from clarion.base.timing import format_duration
from clarion.channels.base import ChannelKind, Message
from clarion.engine.context import RunContext
from clarion.ledger import SendState
from clarion.messages.validate import preview

APPROVAL = "approval"  # decision key in the ledger


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def default_approver() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (some containers)
        return ""


def preflight(run: RunContext) -> list[Check]:
    """What must hold before anyone is asked to approve: for each channel, its credentials are present and
    the provider accepts them, its sender is configured, and the account can take the planned volume
    (SendGrid credits, Twilio account status and balance, X's free-tier allowance). Share kits' channels
    are checked for credentials and sender (their volume is known when they are planned)."""
    loaded, store, run_id = run.loaded, run.ledger, run.run_id
    kits = list(run.kits.values())
    planned: dict[str, int] = {}
    for row in store.summary(run_id):
        if row.state is SendState.PLANNED:
            planned[row.channel] = planned.get(row.channel, 0) + row.count
    checks = []
    rendered = _rendered_posts(run)
    for campaign, label in [(loaded, ""), *((kit, f"kit {kit.campaign.name}: ") for kit in kits)]:
        for cid, config in campaign.campaign.channels.items():
            adapter = channels.get(config.provider)
            try:
                adapter.settings_model.load(cid)
            except Exception as exc:  # the settings loader names the missing variable, never a value
                checks.append(Check(f"{label}{cid} credentials", False, str(exc).splitlines()[0][:300]))
                continue
            sender = getattr(config, "from_", None) or getattr(config, "messaging_service_sid", None)
            if adapter.kind is not ChannelKind.SOCIAL:
                checks.append(
                    Check(f"{label}{cid} sender", bool(sender), str(sender or "no sender configured"))
                )
            if label:
                continue
            volume = planned.get(cid, 0)
            live = run.adapter(run_id, cid)
            for answer in [*live.verify(volume), *live.verify_content(rendered.get(cid, []))]:
                checks.append(Check(f"{cid} {answer.what}", answer.ok, answer.detail))
            rate = getattr(config.pacing, "messages_per_second", None)
            if adapter.kind is not ChannelKind.SOCIAL and rate:
                checks.append(
                    Check(
                        f"{cid} duration",
                        True,
                        f"{volume:,} messages, about {volume / rate / 60:.0f} min at {rate}/s",
                    )
                )
    return checks


def _rendered_posts(run: RunContext) -> dict[str, list[Message]]:
    """Each social channel's posts (one per variant), rendered, for checks only the provider can make."""
    social = [
        cid
        for cid, config in run.loaded.campaign.channels.items()
        if channels.get(config.provider).kind is ChannelKind.SOCIAL
    ]
    found: dict[str, list[Message]] = {}
    if not social:
        return found
    try:
        messages = preview(run.loaded)
    except ClarionError:  # nothing to render (an empty audience): validation has said so already
        return found
    for message in messages:
        if message.channel in social:
            found.setdefault(message.channel, []).append(message)
    return found


def approval_request(run: RunContext, checks: list[Check], asked_at: datetime) -> dict[str, Any]:
    """What the approvers are asked, as data: kept with the run in the ledger (the console shows it) and
    written as the `approval-<run>` Markdown artifact (`preview_markdown`)."""
    loaded, store, run_id = run.loaded, run.ledger, run.run_id
    gate = loaded.campaign.approval
    skipped: dict[str, dict[str, int]] = {}
    planned: dict[str, int] = {}
    for row in store.summary(run_id):
        if row.state is SendState.SKIPPED:
            reasons = skipped.setdefault(row.channel, {})
            reasons[row.reason or "?"] = reasons.get(row.reason or "?", 0) + row.count
        elif row.state is SendState.PLANNED:
            planned[row.channel] = planned.get(row.channel, 0) + row.count
    return {
        "run_id": run_id,
        "campaign": loaded.campaign.name,
        "asked_at": asked_at.isoformat(),
        "approvers": list(gate.approvers) if gate else [],
        "timeout_seconds": int(gate.timeout.total_seconds()) if gate else None,
        "checks": [asdict(c) for c in checks],
        "arms": dict(sorted(store.arm_counts(run_id).items())),
        "planned": dict(sorted(planned.items())),
        "skipped": {cid: dict(sorted(r.items())) for cid, r in sorted(skipped.items())},
        "messages": [
            {
                "channel": m.channel,
                "variant": m.variant,
                "subject": m.subject,
                "text": m.text[:2000],
            }
            for m in preview(loaded)
        ],
        "kits": [
            {"name": kit.name, "campaign": kit.campaign, "after": format_duration(kit.after or timedelta())}
            for kit in loaded.campaign.share_kits or []
        ],
        "power": _power(run),
    }


def _power(run: RunContext) -> list[dict[str, Any]]:
    """The planned comparisons' power with the audience as assigned (clarion.analysis.design)."""
    from clarion.analysis.design import campaign_power  # scipy: only when a run asks for approval

    experiment = run.loaded.campaign.experiment
    if experiment.expected is None:
        return []
    sizes = run.ledger.channel_group_sizes(run.run_id, list(experiment.channel_holdouts))
    return [c.as_dict() for c in campaign_power(run.ledger.arm_counts(run.run_id), sizes, experiment)]


def preview_markdown(request: dict[str, Any]) -> str:
    run_id = request["run_id"]
    lines = [f"# Approve run `{run_id}` of {request['campaign']}?", ""]
    lines += ["## Pre-flight", ""] + [
        f"- {'OK' if c['ok'] else 'FAILED'}: **{c['name']}**: {c['detail']}" for c in request["checks"]
    ]
    lines += ["", "## Audience", ""] + [f"- {arm}: {n:,} contacts" for arm, n in request["arms"].items()]
    if skipped := request["skipped"]:  # opted out, no consent, at the cap, no address: who gets nothing
        lines += ["", "## Not sent", ""] + [
            f"- {cid}: " + ", ".join(f"{n:,} {reason}" for reason, n in reasons.items())
            for cid, reasons in skipped.items()
        ]
    lines += ["", "## Messages (for the first contact)", ""]
    for message in request["messages"]:
        head = f"**{message['channel']}** / {message['variant']}"
        subject = f" - subject: {message['subject']}" if message["subject"] else ""
        text = message["text"].replace("\n", " ")[:500]
        lines.append(f"- {head}{subject}\n\n  > {text}\n")
    if request.get("power"):
        lines += ["", "## Power (80%, two-sided 5%)", ""] + [
            f"- {'**WARNING**: ' if p['enough'] is False else ''}{p['text']}" for p in request["power"]
        ]
    if request["kits"]:
        lines += ["", "## Share kits", ""] + [
            f"- **{kit['name']}** ({kit['campaign']}), at T+{kit['after']}: "
            "ambassadors get share links to post"
            for kit in request["kits"]
        ]
    lines += ["", f"Answer with `clarion approve {run_id}` or `clarion reject {run_id} --reason ...`."]
    return "\n".join(lines) + "\n"


__all__ = [
    "APPROVAL",
    "Check",
    "approval_request",
    "default_approver",
    "preflight",
    "preview_markdown",
]
