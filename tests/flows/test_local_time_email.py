"""Email at each contact's local time (`send_at_local`): handed to SendGrid at launch with a per-recipient
`send_at` (one request per zone and content), under a batch id kept in the ledger, so that
`clarion email cancel` takes back what is not delivered yet."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from clarion.cli.main import app
from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

ZONES = ("UTC", "Asia/Dhaka")


def email_only(at_local: str) -> str:
    text = CAMPAIGN.split("  x:\n")[0]  # name, cta, tracking, audience, experiment, `channels:`
    email = CAMPAIGN.split("  email:\n")[1].split("  sms:\n")[0]
    return f'{text}  email:\n{email}    send_at_local: "{at_local}"\n'


def expected(at_local: str, zone: str, now: datetime) -> datetime:
    hour, minute = (int(x) for x in at_local.split(":"))
    local = now.astimezone(ZoneInfo(zone))
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


def test_local_time_email_is_scheduled_per_zone_at_launch_and_can_be_cancelled(
    tmp_path: Path, providers: Sandbox
) -> None:
    now = datetime.now(UTC)
    at_local = f"{(now + timedelta(hours=2)):%H:%M}"
    path = write_campaign(tmp_path, 40, email_only(at_local))
    lines = path.with_name("contacts.csv").read_text().splitlines()
    tz = lines[0].split(",").index("timezone")
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        row[tz] = ZONES[i % 2]
    path.with_name("contacts.csv").write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    result = launch(str(path), "local-email")

    assert result.status == "completed"  # nothing waits in Clarion: SendGrid holds each email
    emails = providers.messages("sendgrid")
    assert emails
    by_request: dict[str, set[int]] = defaultdict(set)
    for message in emails:
        by_request[message["x_message_id"]].add(message["send_at"])
        assert message["batch_id"]
    assert all(len(times) == 1 for times in by_request.values())  # one zone's instant per request
    instants = {next(iter(t)) for t in by_request.values()}
    wanted = {int(expected(at_local, zone, now).timestamp()) for zone in ZONES}
    assert instants == wanted
    # one request per zone: both variants are one skeleton, their words travel as substitutions
    assert len(by_request) == 2
    store = Ledger.open()
    sent = [r for r in store.sends("local-email", "email") if r.state.value == "sent"]
    assert len(sent) == len(emails)
    assert {int(r.not_before.timestamp()) for r in sent if r.not_before} == wanted

    status = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["status", "local-email"])
    assert status.exit_code == 0, status.output
    assert f"email: {len(emails):,} scheduled at the provider for delivery from" in status.output
    assert "clarion email cancel local-email" in status.output

    cancelled = CliRunner().invoke(app, ["email", "cancel", "local-email"])
    assert cancelled.exit_code == 0, cancelled.output
    assert f"{len(emails):,} scheduled email(s) cancelled" in cancelled.output
    emulator = providers.state.emulators["sendgrid"]
    assert set(emulator.batches.values()) == {"cancel"}  # type: ignore[attr-defined]
    rows_after = store.sends("local-email", "email")
    assert {r.reason for r in rows_after if r.state.value == "failed"} == {"cancelled"}
    again = CliRunner().invoke(app, ["email", "cancel", "local-email"])
    assert again.exit_code == 0 and "no scheduled email left" in again.output
