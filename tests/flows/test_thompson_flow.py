"""`rollout.strategy: thompson` on the launch flow run by hand (as `clarion run` does): the test cell at
launch, then the rest in waves, each allocated by what the earlier waves showed; every contact but the
holdout reached once per channel; a resume between waves reuses the recorded allocation and sends nobody
twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from scipy.stats import binomtest

from clarion.analysis.report import build_report
from clarion.engine.coordination import LocalCoordination
from clarion.engine.schedule import bandit_run_id
from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign
from tests.flows.test_sequence import INSTANT, _click, _finish, _in_background, _tracking, _wait_for
from tests.tracking.conftest import AppClient

pytestmark = pytest.mark.usefixtures("prefect_server")

# wave 1 at 12 s, wave 2 at 24 s: time for the test cell to be sent and clicked before wave 1 draws
THOMPSON = "rollout: {test_share: 0.4, wait: 24s, strategy: thompson, waves: 3, metric: click_rate}\n"
B_SUBJECT = "Join the supporters."


def _sent(store: Ledger, run_id: str) -> bool:
    """The run is in the ledger and none of its sends is still to go."""
    if store.get_run(run_id) is None:
        return False
    states = Counter(row.state for row in store.sends(run_id))
    return states["sent"] > 0 and not states["planned"] and not states["in_flight"]


def _click_b(store: Ledger, providers: Sandbox) -> None:
    client = AppClient(_tracking(store))
    try:  # everyone who got b's email clicks it; nobody clicks a's
        for message in providers.messages("sendgrid"):
            if B_SUBJECT in (message.get("subject") or ""):
                _click(client, message)
    finally:
        client.close()


def _reached_once(store: Ledger, run_id: str) -> None:
    """Every contact but the holdout has one send per channel across the launch and its waves."""
    launched = {cid: arm for _seq, cid, arm in store.assigned(run_id)}
    runs = [run_id, bandit_run_id(run_id, 1), bandit_run_id(run_id, 2)]
    for channel in ("email", "sms"):
        per_contact = Counter(row.contact_id for run in runs for row in store.sends(run, channel))
        assert set(per_contact.values()) == {1}, channel
        assert set(per_contact) == {cid for cid, arm in launched.items() if arm != "holdout"}, channel


def test_thompson_waves_reach_everyone_once_and_favour_the_arm_that_does_better(
    tmp_path: Path, providers: Sandbox
) -> None:
    path = write_campaign(tmp_path, 1000, INSTANT + THOMPSON)
    thread, out = _in_background(launch, str(path), "thompson-run")
    store = Ledger.open()
    _wait_for(lambda: _sent(store, "thompson-run"))
    _click_b(store, providers)
    result = _finish(thread, out)

    assert result.status == "completed", result.errors
    assert [w.wave for w in result.waves] == [1, 2]
    first = result.waves[0].allocation
    assert first["arms"] == ["a", "b"] and first["successes"][0] == 0 and first["successes"][1] > 100
    assert first["prob_best"][1] > 0.99 and first["shares"][1] > 0.85, result.waves[0].text
    for wave in result.waves:
        per_arm = Counter(row.variant for row in store.sends(wave.run_id, "email"))
        assert per_arm["b"] > 3 * per_arm["a"] > 0  # a keeps half the uniform share
    _reached_once(store, "thompson-run")
    emails = Counter(m["to"] for m in providers.messages("sendgrid"))
    assert max(emails.values()) == 1
    assert len(providers.messages("x")) == 2  # the posts went once, at launch

    bandit = build_report(store, "thompson-run").experiment.bandit  # type: ignore[union-attr]
    assert bandit is not None
    later = sum(w.contacts for w in bandit.waves)
    assert binomtest(sum(w.uniform_contacts for w in bandit.waves), later, 0.2).pvalue > 0.001
    assert bandit.uniform.verdict.winner == "b", bandit.text
    assert result.as_dict()["waves"][1]["run_id"] == bandit_run_id("thompson-run", 2)


def test_a_resume_between_waves_reuses_the_recorded_allocation_and_sends_nobody_twice(
    tmp_path: Path, providers: Sandbox
) -> None:
    path = write_campaign(tmp_path, 600, INSTANT + THOMPSON)
    stop = LocalCoordination()
    thread, out = _in_background(launch, str(path), "thompson-resume", coordination=stop)
    store = Ledger.open()
    _wait_for(lambda: _sent(store, "thompson-resume"))
    _click_b(store, providers)
    _wait_for(lambda: _sent(store, bandit_run_id("thompson-resume", 1)))
    stop.request_stop("the test stops it between waves")
    stopped = _finish(thread, out)
    assert stopped.status == "interrupted"
    assert store.get_run(bandit_run_id("thompson-resume", 2)) is None  # wave 2 had not come yet
    recorded = store.decisions("thompson-resume")["bandit:wave-1"]
    first = {cid: arm for _seq, cid, arm in store.assigned(bandit_run_id("thompson-resume", 1))}

    # while it is stopped, a's test cell is clicked by everyone: a new draw would favour a
    client = AppClient(_tracking(store))
    try:
        for message in providers.messages("sendgrid"):
            if "Chip in now." in (message.get("subject") or ""):
                _click(client, message)
    finally:
        client.close()

    result = launch(str(path), "thompson-resume")
    assert result.status == "completed", result.errors
    assert store.decisions("thompson-resume")["bandit:wave-1"] == recorded
    assert result.waves[0].allocation == recorded
    assert {cid: arm for _seq, cid, arm in store.assigned(bandit_run_id("thompson-resume", 1))} == first
    _reached_once(store, "thompson-resume")
    emails = Counter(m["to"] for m in providers.messages("sendgrid"))
    assert max(emails.values()) == 1
