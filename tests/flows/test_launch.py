"""The launch flow under Prefect: every channel at once, each contact once, failures contained, pacing kept."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.campaign.model import HOLDOUT
from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendState
from clarion.messages.assign import Assigner
from clarion.sandbox import FaultConfig, Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")


def expected_recipients(path: Path) -> dict[str, dict[str, str]]:
    """Independently of the engine: who should get what, by channel (address -> arm)."""
    campaign = load_campaign(path).campaign
    assigner = Assigner(campaign.name, campaign.experiment)
    out: dict[str, dict[str, str]] = {"email": {}, "sms": {}}
    with (path.parent / "contacts.csv").open() as fh:
        for row in csv.DictReader(fh):
            arm = assigner.arm(row["id"])
            if arm == HOLDOUT:
                continue
            if row["email"]:
                out["email"][row["email"]] = arm
            if row["phone"] and row["sms_consent"] == "yes":  # texts only to those who agreed
                out["sms"][row["phone"]] = arm
    return out


def _received(message: dict) -> datetime:  # type: ignore[type-arg]
    return datetime.fromisoformat(message["received_at"])


def test_every_reachable_contact_gets_each_channel_once(tmp_path: Path, providers: Sandbox) -> None:
    path = write_campaign(tmp_path, 400)
    result = launch(str(path), "flow-test-once")
    expected = expected_recipients(path)

    emails = providers.messages("sendgrid")
    assert Counter(m["to"] for m in emails) == Counter(expected["email"].keys())
    for m in emails:
        assert m["custom_args"]["clarion_run"] == "flow-test-once"
        assert m["custom_args"]["clarion_variant"] == expected["email"][m["to"]]
        assert "-clarion." not in (m["html"] or "") + m["text"], "substitutions must be applied"
        # RFC 8058 one-click unsubscribe: the recipient's own link, in the headers and in the message
        unsubscribe = m["headers"]["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith("https://go.example.org/u/")
        assert m["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert unsubscribe in m["html"] and "Team, PO Box 1, Springfield" in m["html"]
    assert len({m["headers"]["List-Unsubscribe"] for m in emails}) == len(emails)
    sms = providers.messages("twilio")
    assert Counter(m["to"] for m in sms) == Counter(expected["sms"].keys())
    posts = providers.messages("x")
    assert sorted(m["text"].split(" http")[0] for m in posts) == ["Chip in now.", "Join the supporters."]

    table = {(r.channel, r.variant): r.as_dict() for r in result.results}
    assert result.status == "completed"
    for channel in ("email", "sms"):
        per_arm = Counter(expected[channel].values())
        for arm, n in per_arm.items():
            assert table[(channel, arm)]["sent"] == n
            assert table[(channel, arm)]["failed"] == table[(channel, arm)]["uncertain"] == 0
    assert table[("x", "a")]["sent"] == table[("x", "b")]["sent"] == 1


def test_channels_start_together(tmp_path: Path, providers: Sandbox) -> None:
    for provider in ("sendgrid", "twilio", "x"):
        providers.set_faults(provider, FaultConfig(latency_ms=150))
    path = write_campaign(
        tmp_path,
        600,
        CAMPAIGN.replace('Reply STOP to opt out"', 'Reply STOP to opt out"\n    batch_size: 50'),
    )
    launch(str(path), "flow-test-together")
    firsts = {p: min(_received(m) for m in providers.messages(p)) for p in ("sendgrid", "twilio", "x")}
    lasts = max(_received(m) for m in providers.messages())
    skew = (max(firsts.values()) - min(firsts.values())).total_seconds()
    total = (lasts - min(firsts.values())).total_seconds()
    # SMS alone, one at a time at 150 ms each, would take over a minute; the first of every channel
    # arrives together, well before the run ends.
    assert skew < 1.0, firsts
    assert total > 2 * skew


def test_a_failing_channel_does_not_stop_the_others(tmp_path: Path, providers: Sandbox) -> None:
    providers.set_faults("twilio", FaultConfig(failure_rate=1.0, seed=3))
    text = CAMPAIGN.replace(
        'Reply STOP to opt out"',
        'Reply STOP to opt out"\n    retry: {max_attempts: 3, base_delay: 0.01, max_delay: 0.05}',
    )
    path = write_campaign(tmp_path, 300, text)
    result = launch(str(path), "flow-test-failing")
    expected = expected_recipients(path)

    assert len(providers.messages("sendgrid")) == len(expected["email"])
    assert len(providers.messages("x")) == 2
    assert providers.messages("twilio") == []
    sms = [r.as_dict() for r in result.results if r.channel == "sms"]
    assert sum(r["sent"] for r in sms) == 0
    assert sum(r["failed"] for r in sms) >= 1
    assert sum(r["failed"] + r["pending"] for r in sms) == len(expected["sms"])
    assert any("retries_exhausted" in reason for r in sms for reason in r["reasons"])
    assert result.status == "failed" and "sms" in result.errors
    # the provider recovers: a resume sends what was left, and only that
    providers.set_faults("twilio", None)
    again = launch(str(path), "flow-test-failing")
    sms_sent = Counter(m["to"] for m in providers.messages("twilio"))
    assert max(sms_sent.values()) == 1
    assert sum(r.sent for r in again.results if r.channel == "sms") == sum(sms_sent.values())
    assert len(providers.messages("sendgrid")) == len(expected["email"])  # nothing resent


def test_pacing_is_respected(tmp_path: Path, providers: Sandbox) -> None:
    text = CAMPAIGN.replace(
        'Reply STOP to opt out"', 'Reply STOP to opt out"\n    pacing: {messages_per_second: 20}'
    )
    path = write_campaign(tmp_path, 60, text)
    launch(str(path), "flow-test-pacing")
    times = sorted(_received(m) for m in providers.messages("twilio"))
    assert len(times) == len(expected_recipients(path)["sms"]) >= 35
    span = (times[-1] - times[0]).total_seconds()
    assert span >= (len(times) - 21) / 20 * 0.9  # the first second's burst, then 20 a second


def test_a_paced_text_is_claimed_shortly_before_it_goes_out(tmp_path: Path, providers: Sandbox) -> None:
    """Claimed sends wait for their pacing slots, and a crash leaves every claimed one `uncertain`: a paced
    channel's claims hold what its pace lets a send thread make in a quarter second, not 25 texts (at
    10/s, the 25th text of such a claim went out 1.5 s after it was marked in flight)."""
    text = CAMPAIGN.replace(
        'Reply STOP to opt out"', 'Reply STOP to opt out"\n    pacing: {messages_per_second: 10}'
    )
    path = write_campaign(tmp_path, 60, text)
    launch(str(path), "flow-test-pacing-claims")
    arrived = {m["provider_id"]: _received(m) for m in providers.messages("twilio")}
    with Ledger(ClarionSettings().ledger_url()) as ledger:
        rows = [
            r for r in ledger.sends("flow-test-pacing-claims", state=SendState.SENT) if r.channel == "sms"
        ]
    assert len(rows) == len(arrived) >= 35
    waited = [(arrived[r.provider_id] - r.attempted_at).total_seconds() for r in rows if r.attempted_at]
    assert len(waited) == len(rows)
    assert max(waited) < 1.0  # at 10/s one text a claim: in flight only while it waits its turn and goes


def test_resume_of_a_finished_run_sends_nothing(tmp_path: Path, providers: Sandbox) -> None:
    path = write_campaign(tmp_path, 120)
    first = launch(str(path), "flow-test-resume")
    count = len(providers.messages())
    second = launch(str(path), "flow-test-resume")
    assert len(providers.messages()) == count
    assert first.results == second.results


def test_rate_limits_are_waited_out(tmp_path: Path, providers: Sandbox) -> None:
    providers.set_faults(
        "sendgrid", FaultConfig(rate_limit_every=1, rate_limit_burst=2, retry_after=1, seed=1)
    )
    text = CAMPAIGN.replace('    body: "<p>', '    retry: {base_delay: 0.01}\n    body: "<p>')
    path = write_campaign(tmp_path, 60, text)
    result = launch(str(path), "flow-test-429")
    assert all(r.failed == 0 for r in result.results)
    statuses = [r["status"] for r in providers.requests("sendgrid") if r["path"] == "/v3/mail/send"]
    assert 429 in statuses and statuses[-1] == 202


#: The flow tests' campaign with its email channel alone, in batches of 2,500 (SendGrid takes 1,000 a request)
EMAIL_ONLY = (
    CAMPAIGN[: CAMPAIGN.index("  x:\n")] + CAMPAIGN[CAMPAIGN.index("  email:\n") : CAMPAIGN.index("  sms:\n")]
).replace("    subject:", "    batch_size: 2500\n    subject:")


def test_a_requests_results_are_committed_with_the_next_claim_of_its_batch(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the launch and its helpers take turns at writing: each chunk's results are written in the
    transaction that claims the batch's next chunk, so a batch of N requests commits N + 1 times, not 2N;
    the last chunk's results are written on their own. Every email is still claimed before it is sent and
    settled after (all sent, each once)."""
    monkeypatch.setenv("CLARION_SEND_HELPERS", "0")  # every write in this process, where it is seen
    path = write_campaign(tmp_path, 3_000, EMAIL_ONLY)
    local = threading.local()
    commits: list[tuple[bool, bool]] = []  # (claims, settles) of each write transaction touching sends

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("BEGIN"):
            local.kinds = [False, False]
        elif statement.startswith("UPDATE sends") and hasattr(local, "kinds"):
            local.kinds[0] |= "attempted_at" in statement  # planned -> in_flight
            local.kinds[1] |= "settled_at" in statement  # in_flight -> settled (no skips here)

    def committed(conn: object) -> None:
        kinds = getattr(local, "kinds", None)
        if kinds and any(kinds):
            commits.append((kinds[0], kinds[1]))
        local.kinds = [False, False]

    event.listen(Engine, "before_cursor_execute", seen)
    event.listen(Engine, "commit", committed)
    try:
        launch(str(path), "flow-test-commits")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        event.remove(Engine, "commit", committed)

    emails = providers.messages("sendgrid")
    requests = [r for r in providers.requests("sendgrid") if r["path"] == "/v3/mail/send"]
    with Ledger(ClarionSettings().ledger_url()) as ledger:
        rows = [r for r in ledger.sends("flow-test-commits") if r.state is not SendState.SKIPPED]
    assert len(emails) == len({m["to"] for m in emails}) == len(rows) > 2_500
    assert {r.state for r in rows} == {SendState.SENT}
    batches = len({r.batch for r in rows})
    assert batches >= 2 and len(requests) > batches  # at least one batch of several requests
    assert sum(claims for claims, _ in commits) == len(requests)
    assert commits.count((True, True)) == len(requests) - batches  # a claim with the last results
    assert commits.count((False, True)) == batches  # each batch's last results, on their own
