"""A rollout's decision on the test cell, without a flow: the fixed-horizon test once, the always-valid test
at any look, scanners' clicks left out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.engine.schedule import decide_rollout, sequential_rollout
from clarion.ledger import Click, Ledger, SendState, Settlement
from tests.flows.conftest import CAMPAIGN, write_campaign

RUN = "rollout-decision-20261203t120000-abcd"
SEQUENTIAL = "rollout: {test_share: 0.5, wait: 1m, max_wait: 1h, check_every: 10m, decide: sequential, metric: click_rate}\n"


def planned(tmp_path: Path, rollout: str) -> tuple[Ledger, object]:
    loaded = load_campaign(write_campaign(tmp_path, 800, CAMPAIGN + rollout))
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, loaded, RUN)
    for batch in ledger.batches(RUN, "email"):
        rows = ledger.pending(RUN, "email", batch)
        ledger.begin(RUN, "email", [r.recipient for r in rows])
        ledger.settle(RUN, "email", [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows])
    return ledger, loaded.campaign


def click_all(ledger: Ledger, variant: str, share: float, **flags: str) -> None:
    rows = [r for r in ledger.sends(RUN, "email") if r.variant == variant and r.state == SendState.SENT]
    reach = ledger.reach_times(RUN)
    clicks = [
        Click(RUN, "email", variant, r.seq, reach.first[r.seq] + timedelta(minutes=2), **flags)  # type: ignore[arg-type]
        for r in rows[: int(len(rows) * share)]
    ]
    ledger.record(clicks)


def test_the_always_valid_test_decides_once_the_evidence_is_in(tmp_path: Path) -> None:
    ledger, campaign = planned(tmp_path, SEQUENTIAL)
    rollout = campaign.rollout  # type: ignore[attr-defined]
    assert sequential_rollout(ledger, RUN, campaign, rollout) is None  # nothing yet: keep looking
    click_all(ledger, "b", 0.5)
    click_all(ledger, "a", 0.05)
    found = sequential_rollout(ledger, RUN, campaign, rollout)
    assert found is not None and found.winner == "b" and found.decided
    assert "always valid" in found.text


def test_scanners_clicks_do_not_make_a_winner(tmp_path: Path) -> None:
    ledger, campaign = planned(tmp_path, SEQUENTIAL)
    rollout = campaign.rollout  # type: ignore[attr-defined]
    click_all(ledger, "b", 0.6, automated="scanner_agent", agent="Mimecast")
    assert sequential_rollout(ledger, RUN, campaign, rollout) is None
    decision = decide_rollout(ledger, RUN, campaign, rollout)
    assert decision.decided is False and "did not decide by max_wait" in decision.text
