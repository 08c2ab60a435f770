"""Commands about responders: test a message against a responder file, poll X for DMs, erase old texts.

(`clarion validate`, `clarion schema --responder`, `clarion serve --responders` and `clarion report` take
responder files too: see campaign.py, services.py and results.py.)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import command_group, err, out, user_errors

responders_app = typer.Typer(help="Responders: answering people who text or DM you.", no_args_is_help=True)

_RESPONDER_KEYS = re.compile(r"^(rules|fallback)\s*:", re.M)


def is_responder_file(path: Path) -> bool:
    """A responder file has `rules:` or `fallback:` at its top level (a campaign has neither)."""
    try:
        return bool(_RESPONDER_KEYS.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


@responders_app.command("test")
@user_errors
def test_message(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Responder file (YAML).", show_default=False
        ),
    ],
    text: Annotated[str, typer.Option("--text", parser=params.TEXT, help="What the person writes.")],
    channel: Annotated[
        str, typer.Option(parser=params.CHANNEL, help="Channel id, or sms / dm for the provider's channel.")
    ] = "sms",
    sender: Annotated[
        str,
        typer.Option("--from", parser=params.ADDRESS, help="Who writes: a phone number, or an X user id."),
    ] = ("+14155550100"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Show which rule answers a message and the reply it gets; sends nothing, records nothing."""
    from clarion.responders.preview import preview

    result = preview(file, channel, sender, text)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        return
    rule = result["rule"] or "(no rule)"
    out.print(Text.assemble(("rule: ", "bold"), f"{rule} ({result['kind']})"), highlight=False)
    if result["groups"]:
        groups = ", ".join(f"{k}={v!r}" for k, v in result["groups"].items())
        out.print(Text.assemble(("groups: ", "bold"), groups), highlight=False)
    if result["reply"] is None:
        out.print(Text.assemble(("reply: ", "bold"), f"(none: {result['note']})"), highlight=False)
    else:
        out.print(Text.assemble(("reply: ", "bold"), result["reply"]), highlight=False, soft_wrap=True)
        out.print(Text(f"({result['size']})", style="dim"), highlight=False)


@responders_app.command("poll")
@user_errors
def poll(
    files: Annotated[list[Path], typer.Argument(help="Responder files with an X channel.")],
    every: Annotated[
        int,
        typer.Option(
            min=0, max=86_400, help="Seconds between polls, served as a Prefect deployment (0: poll once)."
        ),
    ] = 0,
) -> None:
    """Answer X direct messages by polling (GET /2/dm_events), for accounts without webhook access."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from clarion.responders.validation import validate_responder

    for file in files:  # each file's problems, with file and line, before Prefect starts
        validate_responder(file)
    from clarion.flows.dm_poll import poll_direct_messages, serve_polling

    names = [str(f.resolve()) for f in files]
    if every > 0:
        err.print(f"polling X direct messages every {every} s (Ctrl-C to stop)", markup=False)
        serve_polling(names, every)
        return
    counts = poll_direct_messages(names)
    out.print(
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no new direct messages", markup=False
    )


@responders_app.command("demo")
@user_errors
def demo(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Responder file (YAML).", show_default=False
        ),
    ],
    people: Annotated[int, typer.Option(min=1, max=1000, help="How many simulated people write in.")] = 12,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Seed of what they write.")] = 7,
) -> None:
    """Simulated people text and DM the responder through the sandbox and the tracking service; then its
    funnel. Nothing leaves this machine."""
    from clarion.sandbox.conversations import Exchange, run_demo

    def show(exchange: Exchange) -> None:
        who = f"{exchange.channel} {exchange.who}"
        out.print(Text.assemble((f"{who:>17} ", "dim"), ("> ", "bold"), exchange.wrote), highlight=False)
        answer = exchange.answer or "(no answer)"
        out.print(
            Text.assemble((" " * 18, ""), ("< ", "bold green"), answer), highlight=False, soft_wrap=True
        )

    name = run_demo(file, people, seed, show)
    out.print()
    responder_report(f"responder-{name}", as_json=False)


@responders_app.command("purge")
@user_errors
def purge(files: Annotated[list[Path], typer.Argument(help="Responder files.")]) -> None:
    """Erase message texts older than each responder's `retention` now (the service does it hourly)."""
    from datetime import UTC, datetime

    from clarion.ledger import Ledger
    from clarion.responders.loader import load_responder

    store = Ledger.open()
    for file in files:
        loaded = load_responder(file)
        erased = store.purge_texts(loaded.name, datetime.now(UTC) - loaded.responder.retention)
        out.print(f"{loaded.name}: {erased:,} message text(s) erased", markup=False)


def responder_report(file_or_name: str, *, as_json: bool) -> bool:
    """`clarion report` for a responder (its file, or its run id `responder-<name>`); False if not one."""
    from clarion.ledger import Ledger
    from clarion.responders.report import funnel, terminal

    path = Path(file_or_name)
    if path.is_file() and is_responder_file(path):
        from clarion.responders.loader import load_responder

        name = load_responder(path).name
    elif file_or_name.startswith("responder-"):
        name = file_or_name.removeprefix("responder-")
    else:
        return False
    store = Ledger.open()
    data: dict[str, Any] = funnel(store, name)
    if not data["inbound_people"] and store.get_run(data["run"]) is None:
        raise ClarionError(f"responder {name!r} has no conversations in this ledger yet")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        out.print(terminal(data))
    return True


commands = command_group()
commands.add_typer(responders_app, name="responders")
