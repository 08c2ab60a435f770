"""Runs in time, on the launch flow run by hand (as `clarion run` does): staggered steps with a condition
on real clicks, texts held for the contact's local hours, the approval gate answered at launch, and a
rollout that tests the variants, waits, and sends the winner to the rest."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from clarion.base.settings import TrackingSettings
from clarion.engine.outcome import RunOutcome
from clarion.engine.schedule import LAUNCHED
from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from clarion.tracking import build_app
from tests.flows.conftest import CAMPAIGN, write_campaign
from tests.tracking.conftest import AppClient

pytestmark = pytest.mark.usefixtures("prefect_server")

TRACKED = CAMPAIGN  # sets tracking.base_url
# the tests' people click the instant a message arrives, which the fast-click rule calls a scanner's
INSTANT = TRACKED.replace(
    "  base_url: https://go.example.org\n",
    "  base_url: https://go.example.org\n  automated_clicks: {fast_click: 0s}\n",
)
TOKEN = re.compile(r"https://go\.example\.org/c/([A-Za-z0-9_=-]+)")


def _tracking(store: Ledger) -> Starlette:
    """The tracking service; every click of a test comes from one address, so no per-client limit."""
    return build_app(store, settings=TrackingSettings(clarion_rate_limit="off", clarion_reject_limit="off"))


def _received(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["received_at"])


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not predicate():
        assert datetime.now(UTC) < deadline, "timed out"
        threading.Event().wait(0.1)


def _in_background(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised by the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _finish(thread: threading.Thread, out: dict[str, Any], timeout: float = 240) -> RunOutcome:
    thread.join(timeout)
    assert not thread.is_alive(), "the flow did not finish"
    if "error" in out:
        raise out["error"]
    result: RunOutcome = out["result"]
    return result


def _click(client: AppClient, message: dict[str, Any], agent: str = "") -> None:
    text = message.get("html") or message.get("text") or ""
    token = TOKEN.search(text)
    assert token, text
    browser = agent or "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    response = client.get(f"/c/{token.group(1)}", headers={"User-Agent": browser})  # a person, not a library
    assert response.status_code == 302


def test_three_staggered_steps_and_a_reminder_only_to_those_who_did_not_click(
    tmp_path: Path, providers: Sandbox
) -> None:
    text = INSTANT + (
        "steps:\n"
        "  - {name: post, channels: [x]}\n"
        "  - {name: mail, after: 3s, channels: [email]}\n"
        "  - {name: remind, after: 8s, channels: [sms], only_if: not_clicked}\n"
    )
    path = write_campaign(tmp_path, 200, text)
    thread, out = _in_background(launch, str(path), "steps-run")
    _wait_for(lambda: len(providers.messages("sendgrid")) > 0)
    _wait_for(lambda: len(providers.messages("sendgrid")) >= 150)  # the email step is done or nearly
    client = AppClient(_tracking(Ledger.open()))
    try:
        emails = providers.messages("sendgrid")[:40]
        for message in emails:  # 40 recipients click their email's link before the reminder
            _click(client, message)
        scanned = providers.messages("sendgrid")[40:55]
        for message in scanned:  # a mail scanner fetches 15 others' links: they have not clicked
            _click(client, message, agent="Mimecast URL Protect")
    finally:
        client.close()
    assert not providers.messages("twilio"), "the reminder went before its time"
    result = _finish(thread, out)

    posts, mails, texts = (providers.messages(p) for p in ("x", "sendgrid", "twilio"))
    # steps count from the launch (the moment the run passed its gate), not from the first post,
    # whose opening may take a second or two (credentials checked, SDKs warmed)
    start = datetime.fromisoformat(Ledger.open().decisions("steps-run")[LAUNCHED])
    assert min(_received(m) for m in posts) - start < timedelta(seconds=5)
    assert min(_received(m) for m in mails) - start >= timedelta(seconds=3)
    assert min(_received(m) for m in texts) - start >= timedelta(seconds=8)
    assert result.status == "completed"
    contacts = _contacts(path)
    clicked = {contacts[("email", m["to"])] for m in emails}
    reachable_by_sms = {cid for (column, _), cid in contacts.items() if column == "phone"}
    skipped = {
        row.contact_id for row in Ledger.open().sends("steps-run", "sms") if row.reason == "already_clicked"
    }
    assert len(clicked) == 40
    assert skipped == clicked & reachable_by_sms and skipped
    texted = {contacts[("phone", m["to"])] for m in texts}
    assert not (texted & clicked)
    by_scanner = {contacts[("email", m["to"])] for m in scanned} - clicked
    assert by_scanner & reachable_by_sms and by_scanner & reachable_by_sms <= texted  # still reminded
    assert max(Counter(m["to"] for m in texts).values()) == 1


def _contacts(path: Path) -> dict[tuple[str, str], str]:
    """(column, address) -> contact id, for the email and phone columns of the campaign's contacts."""
    import csv

    found = {}
    with path.with_name("contacts.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            for column in ("email", "phone"):
                if row.get(column) and (column == "email" or row["sms_consent"] == "yes"):
                    found[(column, row[column])] = row["id"]  # texts only to those who agreed
    return found


def test_texts_outside_local_hours_wait_for_the_window_and_are_never_dropped(
    tmp_path: Path, providers: Sandbox
) -> None:
    now = datetime.now(UTC)
    opens = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (opens - now).total_seconds() < 8:  # leave the launch time to send the ones inside
        opens += timedelta(minutes=1)
    closes = opens + timedelta(hours=12)
    window = f'quiet_hours: {{start: "{opens:%H:%M}", end: "{closes:%H:%M}"}}'
    text = CAMPAIGN.replace(
        "    quiet_hours: null  # runs at any hour; quiet hours are tested on their own", f"    {window}"
    )
    path = write_campaign(tmp_path, 60, text)
    # half the audience in UTC (outside the window until it opens), half at UTC+6 (inside it now)
    lines = path.with_name("contacts.csv").read_text().splitlines()
    header = lines[0].split(",")
    tz = header.index("timezone")
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        row[tz] = "UTC" if i % 2 else "Asia/Dhaka"
    path.with_name("contacts.csv").write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    result = launch(str(path), "quiet-run")

    texts = providers.messages("twilio")
    store = Ledger.open()
    rows_by_phone = {row.recipient: row for row in store.sends("quiet-run", "sms")}
    early = [m for m in texts if _received(m) < opens]
    late = [m for m in texts if _received(m) >= opens]
    assert early and late
    assert result.status == "completed"
    sent = [r for r in rows_by_phone.values() if r.state.value == "sent"]
    skipped = ("no_address", "no_consent")  # texts only to those who have a number and agreed
    assert len(sent) == len(texts) == sum(1 for r in rows_by_phone.values() if r.reason not in skipped)
    deferred = [r for r in rows_by_phone.values() if r.not_before is not None]
    assert deferred and all(r.not_before == opens for r in deferred)
    assert len(deferred) == len(late)
    assert max(Counter(m["to"] for m in texts).values()) == 1


def test_approval_given_at_launch_is_recorded_and_a_stranger_cannot_give_it(
    tmp_path: Path, providers: Sandbox
) -> None:
    text = CAMPAIGN + "approval: {approvers: [ana], timeout: 5m}\n"
    path = write_campaign(tmp_path, 30, text)

    refused = launch(str(path), "approval-stranger", approved_by="mallory")
    assert refused.status == "cancelled"
    assert providers.messages() == []
    run = Ledger.open().get_run("approval-stranger")
    assert run is not None and "not one of the approvers" in (run.error or "")

    result = launch(str(path), "approval-ana", approved_by="ana")
    assert result.status == "completed"
    assert Ledger.open().decisions("approval-ana")["approval"]["by"] == "ana"
    assert len(providers.messages("x")) == 2


def test_a_failed_preflight_stops_the_run_before_anyone_is_asked_and_sends_nothing(
    tmp_path: Path, providers: Sandbox
) -> None:
    text = CAMPAIGN + "approval: {approvers: [ana], timeout: 5m}\n"
    path = write_campaign(tmp_path, 30, text)
    providers.set_account("sendgrid", revoked=True)  # the key was rotated after the campaign was written
    providers.set_account("twilio", balance="0.00")

    result = launch(str(path), "preflight-fails")

    assert result.status == "failed"
    run = Ledger.open().get_run("preflight-fails")
    assert run is not None and run.error is not None
    assert "email credentials: SendGrid refused the API key (HTTP 401)" in run.error
    assert "sms quota: no credit left: balance 0.00 USD" in run.error
    assert "x credentials" not in run.error  # what passed is not reported as a failure
    assert not providers.messages()
    states = {str(r.state) for r in Ledger.open().sends("preflight-fails")}
    assert "planned" in states and states <= {"planned", "skipped"}  # nothing was attempted


def test_rollout_sends_the_winner_to_the_rest_and_leaves_the_holdout_alone(
    tmp_path: Path, providers: Sandbox
) -> None:
    text = INSTANT + "rollout: {test_share: 0.4, wait: 4s, metric: click_rate, min_confidence: 0.95}\n"
    path = write_campaign(tmp_path, 1000, text)
    thread, out = _in_background(launch, str(path), "rollout-run")
    store = Ledger.open()
    _wait_for(lambda: store.get_run("rollout-run") is not None and len(providers.messages("sendgrid")) > 0)
    _wait_for(lambda: sum(1 for _ in store.sends("rollout-run", "email", "planned")) == 0)
    client = AppClient(_tracking(store))
    try:  # everyone who got b's email clicks it; nobody clicks a's
        for message in providers.messages("sendgrid"):
            if "Join the supporters." in (message.get("subject") or ""):
                _click(client, message)
    finally:
        client.close()
    result = _finish(thread, out)

    assert result.rollout is not None
    assert result.rollout.winner == "b" and result.rollout.decided is True, result.rollout.text
    child = result.rollout.run_id
    assigned = _assignments(store, "rollout-run")
    rest = {row.contact_id for row in store.sends(child, "email")}
    test_cell = {row.contact_id for row in store.sends("rollout-run", "email")}
    assert rest == {cid for cid, arm in assigned.items() if arm == "rest"}
    assert test_cell == {cid for cid, arm in assigned.items() if arm in ("a", "b")}
    assert {row.variant for row in store.sends(child)} == {"b"}
    holdout = {cid for cid, arm in assigned.items() if arm == "holdout"}
    assert holdout and rest and not (holdout & (rest | test_cell)) and not (rest & test_cell)
    emails = Counter(m["to"] for m in providers.messages("sendgrid"))
    assert max(emails.values()) == 1  # nobody got the test and the rollout
    assert len(providers.messages("x")) == 2  # the posts went once, in the test


def test_a_sequential_rollout_decides_as_soon_as_the_always_valid_test_allows(
    tmp_path: Path, providers: Sandbox
) -> None:
    """max_wait is 90 s; the test cell's b is clicked by everyone who got it, a by no one: the
    always-valid test decides at a look every 2 s, long before max_wait."""
    rollout = (
        "{test_share: 0.4, wait: 2s, max_wait: 90s, check_every: 2s, decide: sequential, metric: click_rate}"
    )
    path = write_campaign(tmp_path, 1000, INSTANT + f"rollout: {rollout}\n")
    thread, out = _in_background(launch, str(path), "sequential-run")
    store = Ledger.open()

    def test_cell_sent() -> bool:  # this run's emails all sent (the sandbox also holds earlier tests')
        if store.get_run("sequential-run") is None:
            return False
        states = Counter(row.state for row in store.sends("sequential-run", "email"))
        return states["sent"] > 0 and not states["planned"] and not states["in_flight"]

    _wait_for(test_cell_sent)
    client = AppClient(_tracking(store))
    try:
        for message in providers.messages("sendgrid"):
            if "Join the supporters." in (message.get("subject") or ""):
                _click(client, message)
    finally:
        client.close()
    result = _finish(thread, out)
    assert result.rollout is not None
    assert result.rollout.winner == "b" and result.rollout.decided is True
    assert "always valid" in result.rollout.text
    record = store.get_run("sequential-run")
    assert record is not None
    launched = datetime.fromisoformat(record.decisions[LAUNCHED])
    began = datetime.fromisoformat(record.decisions["wave:rollout"])
    assert began - launched < timedelta(seconds=60)  # before max_wait
    # and the run ends once the rest has its message: it waited out max_wait for nothing before
    assert record.finished_at is not None and record.finished_at - launched < timedelta(seconds=60)
    assert {row.variant for row in store.sends(result.rollout.run_id)} == {"b"}


def test_rollout_without_a_winner_sends_the_fallback_and_says_so(tmp_path: Path, providers: Sandbox) -> None:
    text = TRACKED + "rollout: {test_share: 0.5, wait: 1s, metric: click_rate, fallback: baseline}\n"
    path = write_campaign(tmp_path, 200, text)
    result = launch(str(path), "fallback-run")
    decision = result.rollout
    assert decision is not None
    assert decision.winner == "a" and decision.decided is False
    assert "Sending the fallback, a." in decision.text
    assert {row.variant for row in Ledger.open().sends(decision.run_id)} == {"a"}


def _assignments(store: Any, run_id: str) -> dict[str, str]:
    from sqlalchemy import select

    from clarion.ledger.schema import assignments

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(assignments.c.contact_id, assignments.c.arm).where(assignments.c.run_id == run_id)
        )
        return {cid: arm for cid, arm in rows}


KIT = """\
name: relay
cta:
  url: https://donate.example.org/test
tracking:
  base_url: https://go.example.org
audience:
  contacts: ambassadors.csv
channels:
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "Relay tonight's appeal"
    postal_address: "Team, PO Box 1, Springfield"
    body: >-
      <p>{{ contact.first_name }}, post it from your account:
      <a href='{{ share_x("We just chipped in. Join us:") }}'>on X</a> or
      <a href='{{ share_linkedin() }}'>on LinkedIn</a></p>
      <p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>
"""
AMBASSADORS = "id,email,first_name\namb-1,ana@relay.example.org,Ana\namb-2,raj@relay.example.org,Raj\namb-3,lee@relay.example.org,Lee\n"
SHARE_LINK = re.compile(
    r"https://(?:x\.com/intent/post|www\.linkedin\.com/sharing/share-offsite/)\?[^'\"\s]+"
)


def test_a_share_kit_sends_ambassadors_links_to_post_themselves_carrying_their_own_tracked_link(
    tmp_path: Path, providers: Sandbox
) -> None:
    from html import unescape
    from urllib.parse import parse_qs, urlsplit

    text = TRACKED + "share_kits:\n  - {name: relay, campaign: relay.yaml, after: 3s}\n"
    path = write_campaign(tmp_path, 40, text)
    (tmp_path / "ambassadors.csv").write_text(AMBASSADORS)
    (tmp_path / "relay.yaml").write_text(KIT)

    result = launch(str(path), "kit-run")

    assert result.status == "completed"
    assert result.kits["relay"].run_id == "kit-run-kit-relay"
    launched = datetime.fromisoformat(Ledger.open().decisions("kit-run")[LAUNCHED])
    relays = [m for m in providers.messages("sendgrid") if m["to"].endswith("@relay.example.org")]
    assert sorted(m["to"] for m in relays) == [
        "ana@relay.example.org",
        "lee@relay.example.org",
        "raj@relay.example.org",
    ]
    assert min(_received(m) for m in relays) - launched >= timedelta(seconds=3)
    assert len(providers.messages("x")) == 2, (
        "only the campaign's own posts: nothing from ambassadors' accounts"
    )

    shared: dict[str, str] = {}
    for message in relays:
        links = [parse_qs(urlsplit(unescape(u)).query) for u in SHARE_LINK.findall(message["html"])]
        assert len(links) == 2, message["html"]
        x_link, linkedin = links
        assert x_link["text"] == ["We just chipped in. Join us:"]
        assert x_link["url"] == linkedin["url"]
        shared[message["to"]] = x_link["url"][0]
    assert len(set(shared.values())) == 3, "each ambassador shares a link of their own"

    # two of Ana's followers open the link she posted: both clicks count for her share, in the kit's run
    token = shared["ana@relay.example.org"].rsplit("/", 1)[1]
    client = AppClient(_tracking(Ledger.open()))
    try:
        for _ in range(2):
            response = client.get(f"/c/{token}")
            assert response.status_code == 302
            assert response.headers["location"].startswith("https://donate.example.org/test")
    finally:
        client.close()
    engagement = Ledger.open().engagement("kit-run-kit-relay")
    assert engagement.unique_clicks == {("email", "default"): 1}
    assert engagement.total_clicks == {("email", "default"): 2}
    assert not Ledger.open().engagement("kit-run").total_clicks
