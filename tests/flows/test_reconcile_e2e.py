"""Settling uncertain sends through the sandbox: a run whose providers stalled (some took the request before
stalling, some never got it) is reconciled by asking them, then `--retry-failed` sends exactly what never
arrived, and no one gets a message twice. SendGrid without the Email Activity add-on stays uncertain, and
says why."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from clarion.cli.main import app
from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendRow, SendState
from clarion.sandbox import FaultConfig, Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

PROVIDER = {"email": "sendgrid", "sms": "twilio", "x": "x"}
HEADLINES = {"post:a": "Chip in now.", "post:b": "Join the supporters."}
#: One retry only, and small email requests: more requests, so more of them stall.
TEXT = CAMPAIGN.replace('    body: "<p>', '    batch_size: 4\n    body: "<p>').replace(
    'Reply STOP to opt out"', 'Reply STOP to opt out"\n    retry: {max_attempts: 1}'
)


def _stall(seed: int, rate: float = 0.4) -> FaultConfig:
    return FaultConfig(timeout_rate=rate, stall_seconds=2, stall_accepted=0.5, seed=seed)


def _cli(*args: str) -> Result:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _rows(run_id: str) -> dict[tuple[str, str], SendRow]:
    return {(r.channel, r.recipient): r for r in Ledger.open().sends(run_id)}


def _at_sandbox(box: Sandbox) -> dict[tuple[str, str], list[str]]:
    """Provider ids the sandbox holds per (provider, address)."""
    found: dict[tuple[str, str], list[str]] = {}
    for m in box.messages():
        found.setdefault((m["provider"], m["to"]), []).append(m["provider_id"])
    return found


def _address(path: Path) -> dict[tuple[str, str], str]:
    """(channel, contact id) -> the address a message to them goes to, as the sandbox stores it."""
    import csv

    from clarion.base.addresses import phone
    from clarion.base.consent import consent_given

    found = {}
    with (path.parent / "contacts.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["email"]:
                found[("email", row["id"])] = row["email"]
            if row["phone"] and consent_given(row["sms_consent"]):
                found[("sms", row["id"])] = phone(row["phone"], "US")
    return found


def test_a_stalled_run_is_reconciled_and_only_what_never_arrived_is_sent_again(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", "1")
    # seeds whose first few stalls are of both kinds (taken, and never received): SendGrid makes ten or
    # fewer requests here, so a seed whose second kind comes late would leave email with one kind only
    for provider, seed in (("sendgrid", 1), ("twilio", 12)):
        providers.set_faults(provider, _stall(seed))
    providers.set_faults("x", _stall(5, rate=1.0))
    path = write_campaign(tmp_path, 40, TEXT)

    launch(str(path), "stalled")

    before = _rows("stalled")
    uncertain = {key for key, row in before.items() if row.state is SendState.UNCERTAIN}
    assert {c for c, _ in uncertain} == {"email", "sms", "x"}, "every provider stalled on something"
    for provider in ("sendgrid", "twilio", "x"):
        providers.set_faults(provider, None)
    held = _at_sandbox(providers)
    addresses = _address(path)
    posts = {m["text"].split(" https://", 1)[0]: m["provider_id"] for m in providers.messages("x")}

    result = _cli("reconcile", "stalled", "--grace", "0s", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    after = _rows("stalled")
    outcomes: Counter[str] = Counter()
    for channel, recipient in uncertain:
        row = after[(channel, recipient)]
        if channel == "x":
            ids = [posts[HEADLINES[recipient]]] if HEADLINES[recipient] in posts else []
        else:
            ids = held.get((PROVIDER[channel], addresses[(channel, recipient)]), [])
        if ids:
            assert row.state is SendState.SENT and row.provider_id == ids[0], (channel, recipient, row)
            assert row.reason == "reconciled" and row.settled_at is not None
            assert "was uncertain (timeout)" in (row.error or "")
        else:
            assert row.state is SendState.FAILED and row.reason == "not_received", row
        outcomes[f"{channel}:{row.state.value}"] += 1
    for channel in ("email", "sms"):  # the stalls were of both kinds
        assert outcomes[f"{channel}:sent"] > 0 and outcomes[f"{channel}:failed"] > 0, outcomes
    assert {c["channel"]: c["uncertain"] for c in report["channels"]} == {"email": 0, "sms": 0, "x": 0}
    assert sum(c["sent"] for c in report["channels"]) == sum(
        n for k, n in outcomes.items() if k.endswith(":sent")
    )

    launch(str(path), "stalled", retry_failed=True)

    final = _rows("stalled")
    assert not [r for r in final.values() if r.state in (SendState.FAILED, SendState.UNCERTAIN)]
    messages = providers.messages()
    for provider in ("sendgrid", "twilio", "x"):
        per = Counter(
            m["text"] if provider == "x" else m["to"] for m in messages if m["provider"] == provider
        )
        assert per and max(per.values()) == 1, f"{provider} got something twice"
    reachable = [r for r in final.values() if r.state is not SendState.SKIPPED]
    assert len(messages) == len(reachable)  # everyone got exactly one, nothing was dropped


def test_sendgrid_without_the_email_activity_add_on_stays_uncertain_and_says_why(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", "1")
    providers.set_faults("sendgrid", _stall(2, rate=1.0))
    path = write_campaign(tmp_path, 12, TEXT)
    launch(str(path), "no-add-on")
    uncertain = [r for r in _rows("no-add-on").values() if r.state is SendState.UNCERTAIN]
    assert uncertain and {r.channel for r in uncertain} == {"email"}
    providers.set_faults("sendgrid", None)
    providers.set_account("sendgrid", email_activity=False)

    result = _cli("reconcile", "no-add-on", "--grace", "0s")

    assert result.exit_code == 0, result.output
    assert "additional email activity history" in result.stderr and "add-on" in result.stderr
    assert f"{len(uncertain)} still uncertain" in result.stderr
    after = _rows("no-add-on")
    assert all(after[(r.channel, r.recipient)] == r for r in uncertain), "nothing may change"

    providers.set_account("sendgrid", email_activity=True, scopes=["mail.send"])
    result = _cli("reconcile", "no-add-on", "--grace", "0s")
    assert "403" in result.stderr and "Email Activity access" in result.stderr


def test_retry_failed_resends_provider_failures_never_rejections_or_uncertain_ones(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", "1")
    path = write_campaign(tmp_path, 40, TEXT)
    opted_out = sorted({a for (c, _), a in _address(path).items() if c == "sms"})[:5]
    providers.set_opted_out(opted_out)  # Twilio refuses these with 21610: a rejection
    providers.set_faults(
        "twilio", FaultConfig(failure_rate=0.3, timeout_rate=0.15, stall_seconds=2, seed=21)
    )  # 5xx with one attempt: retries exhausted; stalls that never arrived: uncertain

    launch(str(path), "flaky")

    rows = [r for r in _rows("flaky").values() if r.channel == "sms"]
    exhausted = {r.recipient for r in rows if r.reason == "retries_exhausted"}
    rejected = {r.recipient for r in rows if r.reason == "rejected"}
    unsure = [r for r in rows if r.state is SendState.UNCERTAIN]
    assert exhausted and rejected and unsure, Counter((r.state.value, r.reason) for r in rows)
    before, asked = len(providers.messages("twilio")), len(providers.requests("twilio"))
    providers.set_faults("twilio", None)

    launch(str(path), "flaky", retry_failed=True)

    again = providers.messages("twilio")[before:]
    addresses = _address(path)
    # a number that failed with a 5xx first and had replied STOP is refused (21610) when tried again
    stopped = {r for r in exhausted if addresses[("sms", r)] in opted_out}
    assert sorted(m["to"] for m in again) == sorted(addresses[("sms", r)] for r in exhausted - stopped)
    after = {r.recipient: r for r in _rows("flaky").values() if r.channel == "sms"}
    assert all(after[r].state is SendState.SENT for r in exhausted - stopped)
    assert {r for r, row in after.items() if row.reason == "rejected"} == rejected | stopped
    assert [r for r in after.values() if r.state is SendState.UNCERTAIN] == unsure, (
        "uncertain sends are never resent by --retry-failed"
    )
    retried = providers.requests("twilio")[asked:]
    assert len(retried) == len(exhausted), "only the failures the provider never took were tried again"
    assert max(Counter(m["to"] for m in providers.messages("twilio")).values()) == 1
