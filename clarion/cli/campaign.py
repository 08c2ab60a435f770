"""Commands about campaign files: validate, preview, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from clarion.base.errors import CampaignInvalid
from clarion.channels.base import Message
from clarion.cli import params
from clarion.cli.app import FileArg, checking, command_group, err, out, user_errors

commands = command_group()


@commands.command()
@user_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Campaign or responder files (YAML).")],
) -> None:
    """Check campaign files (templates, every contact) and responder files (rules, replies, examples);
    exit 1 listing every problem."""
    from clarion.campaign.loader import load_campaign
    from clarion.cli.responders import is_responder_file
    from clarion.messages.validated import validate_once

    failed = 0
    for path in files:
        if is_responder_file(path):
            failed += _validate_responder(path)
            continue
        try:
            loaded = load_campaign(path)
            with checking(loaded) as progress:
                report = validate_once(loaded, progress)
        except CampaignInvalid as exc:
            failed += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        arms = ", ".join(f"{arm} {n:,}" for arm, n in sorted(report.arms.items()))
        reach = ", ".join(
            f"{cid} {n:,}" + (f" ({report.consented[cid]:,} agreed to it)" if cid in report.consented else "")
            for cid, n in report.reachable.items()
        )
        plural = "contact" if report.contacts == 1 else "contacts"
        summary = f": {path}: {report.contacts:,} {plural} ({arms})" + (
            f"; reachable: {reach}" if reach else ""
        )
        out.print(Text.assemble(("valid", "green"), summary), highlight=False, soft_wrap=True)
        _print_power(report)
    if failed:
        err.print(f"{failed} of {len(files)} campaign file(s) invalid", markup=False)
        raise typer.Exit(1)


def _print_power(report: Any) -> None:
    """The smallest lift each planned comparison detects at 80% power; a warning where a holdout is too
    small for the lift the organiser hopes for (`experiment.expected`). Warnings do not fail validation."""
    from clarion.analysis.design import campaign_power, power_lines

    experiment = report.loaded.campaign.experiment
    groups = {
        cid: (report.reachable[cid] - report.withheld[cid], report.withheld[cid])
        for cid in experiment.channel_holdouts
    }
    checks = campaign_power(report.arms, groups, experiment)
    if not checks and (experiment.holdout or experiment.channel_holdouts):
        out.print(
            "  power: give experiment.expected (baseline: the rate without a message; lift: the one hoped "
            "for) to learn whether the holdouts can detect it",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for warning, text in power_lines(checks):
        if warning:
            err.print(
                Text.assemble(("warning", "yellow"), f": power: {text}"), highlight=False, soft_wrap=True
            )
        else:
            out.print(f"  power: {text}", markup=False, highlight=False, soft_wrap=True)


def _validate_responder(path: Path) -> int:
    """1 when the responder file is invalid (its problems printed), else 0 (a summary printed)."""
    from clarion.responders.validation import validate_responder

    try:
        report = validate_responder(path)
    except CampaignInvalid as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        return 1
    responder = report.loaded.responder
    summary = (
        f": {path}: responder {responder.name}, {len(responder.rules)} rule(s) on "
        f"{', '.join(responder.channels)}; {report.examples} example(s) answered as written, "
        f"{report.rendered} repl(ies) rendered within the channels' limits"
    )
    out.print(Text.assemble(("valid", "green"), summary), highlight=False, soft_wrap=True)
    return 0


def _message_row(message: Message) -> dict[str, Any]:
    row: dict[str, Any] = {
        "channel": message.channel,
        "provider": message.provider,
        "kind": message.kind.value,
        "variant": message.variant,
        "contact": message.contact_id,
        "to": message.to,
        "link": message.link,
        "text": message.text,
    }
    if message.subject is not None or message.html is not None:
        row["subject"] = message.subject
        row["html"] = message.html
    row.update(message.metrics)
    return row


@commands.command()
@user_errors
def preview(
    file: FileArg,
    contact: Annotated[
        str | None, typer.Option(parser=params.CONTACT, help="Contact id to render for (default: the first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Render every channel x variant of a campaign for one contact."""
    from clarion.campaign.loader import load_campaign
    from clarion.messages.validate import preview as render_preview

    messages = render_preview(load_campaign(file), contact)
    if as_json:
        sys.stdout.write(json.dumps([_message_row(m) for m in messages], indent=2, ensure_ascii=False) + "\n")
        return
    contact_id = next((m.contact_id for m in messages if m.contact_id is not None), None)
    table = Table(title=Text(f"{file} - preview for contact {contact_id or '(first)'}"), show_lines=True)
    for column in ("channel", "variant", "message", "size"):
        table.add_column(column, overflow="fold")
    for m in messages:
        body = Text()
        if m.subject is not None:
            body.append("Subject: ", style="bold").append(f"{m.subject}\n\n")
        body.append(m.text)
        size = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in m.metrics.items() if v is not None)
        table.add_row(Text(f"{m.channel}\n({m.provider})"), Text(m.variant), body, Text(size))
    out.print(table)


@commands.command()
def schema(
    responder: Annotated[
        bool, typer.Option("--responder", help="The responder file format's schema instead.")
    ] = False,
) -> None:
    """Print the campaign format's JSON Schema (or the responder format's), for editor completion."""
    if responder:
        from clarion.responders.model import json_schema as responder_schema

        sys.stdout.write(json.dumps(responder_schema(), indent=2) + "\n")
        return
    from clarion.campaign.model import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
