"""A Thompson rollout's waves without a flow (clarion.engine.bandit): the rest divided among the waves,
each later wave allocated by the outcomes so far and recorded once, its uniform share recomputable, and the
report's lift read from the uniform share only."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from scipy.stats import binomtest

from clarion.analysis.bandit import allocate
from clarion.analysis.report import build_report
from clarion.analysis.report.experiment_formats import experiment_terminal
from clarion.analysis.report.html import render_html
from clarion.base.errors import CampaignInvalid
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.cli.app import resolve_run
from clarion.engine.bandit import allocation_salt, decide_wave, later_wave
from clarion.engine.plan import plan_run
from clarion.engine.schedule import bandit_run_id, waves
from clarion.ledger import Click, Conversion, Ledger, SendState, Settlement
from tests.flows.conftest import CAMPAIGN, write_campaign

RUN = "thompson-20261203t120000-abcd"
THOMPSON = "rollout: {test_share: 0.3, wait: 30m, strategy: thompson, waves: 3, metric: click_rate}\n"


def _ledger() -> Ledger:
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    return ledger


def _send_all(ledger: Ledger, run_id: str) -> None:
    for channel in ("email", "sms"):
        for batch in ledger.batches(run_id, channel):
            rows = ledger.pending(run_id, channel, batch)
            ledger.begin(run_id, channel, [r.recipient for r in rows])
            ledger.settle(
                run_id, channel, [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows]
            )


def _click(ledger: Ledger, run_id: str, variant: str, share: float) -> None:
    rows = [r for r in ledger.sends(run_id, "email") if r.variant == variant and r.state == SendState.SENT]
    reach = ledger.reach_times(run_id)
    clicks = [
        Click(run_id, "email", variant, r.seq, reach.first[r.seq] + timedelta(minutes=2))  # type: ignore[arg-type]
        for r in rows[: int(len(rows) * share)]
    ]
    ledger.record(clicks)


def _assigned(ledger: Ledger, run_id: str) -> dict[str, str]:
    return {cid: arm for _seq, cid, arm in ledger.assigned(run_id)}


def _planned(tmp_path: Path, count: int) -> tuple[Ledger, LoadedCampaign]:
    loaded = load_campaign(write_campaign(tmp_path, count, CAMPAIGN + THOMPSON))
    ledger = _ledger()
    plan_run(ledger, loaded, RUN)
    _send_all(ledger, RUN)
    return ledger, loaded


def test_the_waves_follow_the_test_cell_evenly_up_to_wait(tmp_path: Path) -> None:
    loaded = load_campaign(write_campaign(tmp_path, 10, CAMPAIGN + THOMPSON))
    from datetime import UTC, datetime

    launched = datetime(2026, 12, 3, 12, tzinfo=UTC)
    found = [(w.name, w.at - launched, w.bandit) for w in waves(loaded.campaign, launched) if w.bandit]
    assert found == [("wave-1", timedelta(minutes=15), 1), ("wave-2", timedelta(minutes=30), 2)]


def test_a_later_wave_favours_the_arm_that_does_better_and_keeps_its_uniform_share(tmp_path: Path) -> None:
    ledger, loaded = _planned(tmp_path, 3000)
    _click(ledger, RUN, "b", 0.3)
    _click(ledger, RUN, "a", 0.05)
    wave, decision = decide_wave(ledger, RUN, loaded.campaign, 1)
    assert decision["arms"] == ["a", "b"] and decision["prob_best"][1] > 0.99
    assert decision["shares"][1] == pytest.approx(0.9, abs=0.01)  # 0.2 / 2 + 0.8 x P(best)
    plan_run(ledger, loaded, bandit_run_id(RUN, 1), wave=wave)

    launch = _assigned(ledger, RUN)
    first = _assigned(ledger, bandit_run_id(RUN, 1))
    rest = {cid for cid, arm in launch.items() if arm == "rest"}
    assert set(first) == {cid for cid in rest if later_wave(RUN, cid, 3) == 1}
    assert 0.4 < len(first) / len(rest) < 0.6  # half the rest in each of two later waves
    assert Counter(first.values())["b"] / len(first) == pytest.approx(0.9, abs=0.05)
    allocated = allocate(wave.allocation, list(first), allocation_salt(RUN, 1))
    assert all(allocated[cid][0] == arm for cid, arm in first.items())  # recomputable: no storage
    uniform = sum(1 for _arm, flag in allocated.values() if flag)
    assert binomtest(uniform, len(first), 0.2).pvalue > 0.001
    assert not set(first) & {cid for cid, arm in launch.items() if arm == "holdout"}
    emails = Counter(r.contact_id for r in ledger.sends(bandit_run_id(RUN, 1), "email"))
    assert set(emails.values()) == {1} and set(emails) <= set(first)
    assert not list(ledger.sends(bandit_run_id(RUN, 1), "x"))  # the posts went once, at launch

    # a is clicked a lot more now: wave 1's allocation stays the one recorded, and so do its contacts
    _click(ledger, RUN, "a", 1.0)
    again, recorded = decide_wave(ledger, RUN, loaded.campaign, 1)
    assert again == wave and recorded == decision
    plan_run(ledger, loaded, bandit_run_id(RUN, 1), wave=again)
    assert _assigned(ledger, bandit_run_id(RUN, 1)) == first

    # wave 2 counts the test cell and wave 1
    _send_all(ledger, bandit_run_id(RUN, 1))
    _wave2, second = decide_wave(ledger, RUN, loaded.campaign, 2)
    assert sum(second["exposures"]) == sum(1 for a in launch.values() if a in ("a", "b")) + len(first)


def test_the_report_reads_the_lift_from_the_uniform_share_only(tmp_path: Path) -> None:
    ledger, loaded = _planned(tmp_path, 2000)
    _click(ledger, RUN, "b", 0.3)
    for wave in (1, 2):
        plan, _ = decide_wave(ledger, RUN, loaded.campaign, wave)
        plan_run(ledger, loaded, bandit_run_id(RUN, wave), wave=plan)
        _send_all(ledger, bandit_run_id(RUN, wave))
        _click(ledger, bandit_run_id(RUN, wave), "b", 0.3)
    section = build_report(ledger, RUN).experiment
    assert section is not None and section.bandit is not None
    bandit = section.bandit
    assert [w.wave for w in bandit.waves] == [1, 2]
    later = sum(w.contacts for w in bandit.waves)
    uniform = sum(w.uniform_contacts for w in bandit.waves)
    assert binomtest(uniform, later, 0.2).pvalue > 0.001
    test_cell = sum(1 for a in _assigned(ledger, RUN).values() if a in ("a", "b"))
    assert sum(a.exposures for a in bandit.uniform.arms) == test_cell + uniform
    assert "uniform share" in bandit.text
    assert bandit.uniform.verdict.winner == "b"
    assert resolve_run(ledger, "latest") == RUN  # the launch, whose report holds the waves'
    report = build_report(ledger, RUN)
    assert report.as_dict()["experiment"]["bandit"]["waves"][0]["run_id"] == bandit_run_id(RUN, 1)
    page = render_html(report)
    assert 'id="bandit"' in page and "uniform share only" in page
    console = Console(record=True, width=200)
    for part in experiment_terminal(section):
        console.print(part)
    shown = console.export_text()
    assert "Thompson waves" in shown and "Lift from the uniform share only" in shown


def _convert(ledger: Ledger, run_id: str, variant: str, share: float) -> None:
    rows = [r for r in ledger.sends(run_id, "email") if r.variant == variant and r.state == SendState.SENT]
    reach = ledger.reach_times(run_id)
    gifts = [
        Conversion(
            run_id,
            "webhook",
            f"{run_id}-{r.seq}",
            variant,
            2500,
            "USD",
            reach.first[r.seq] + timedelta(hours=1),
            "email",
            r.seq,
        )  # type: ignore[arg-type]
        for r in rows[: int(len(rows) * share)]
    ]
    ledger.record(conversion_rows=gifts)


def test_on_conversions_the_waves_count_gifts_inside_the_window(tmp_path: Path) -> None:
    """metric: conversion_rate: the posteriors and the uniform-share comparison count contacts who gave
    (inside the attribution window), in the test cell and in each earlier wave's run."""
    text = CAMPAIGN + THOMPSON.replace("click_rate", "conversion_rate")
    loaded = load_campaign(write_campaign(tmp_path, 2000, text))
    ledger = _ledger()
    plan_run(ledger, loaded, RUN)
    _send_all(ledger, RUN)
    _convert(ledger, RUN, "a", 0.2)
    plan, decision = decide_wave(ledger, RUN, loaded.campaign, 1)
    assert decision["metric"] == "conversion rate" and decision["successes"][1] == 0
    assert decision["successes"][0] > 50 and decision["prob_best"][0] > 0.99
    plan_run(ledger, loaded, bandit_run_id(RUN, 1), wave=plan)
    _send_all(ledger, bandit_run_id(RUN, 1))
    _convert(ledger, bandit_run_id(RUN, 1), "a", 0.2)
    _plan2, second = decide_wave(ledger, RUN, loaded.campaign, 2)
    assert second["successes"][0] > decision["successes"][0]  # wave 1's gifts count for wave 2
    bandit = build_report(ledger, RUN).experiment.bandit  # type: ignore[union-attr]
    assert bandit is not None and bandit.metric == "conversion_rate"
    assert bandit.uniform.verdict.winner == "a", bandit.text


@pytest.mark.parametrize(
    ("rollout", "field", "text"),
    [
        (
            "{test_share: 0.3, wait: 1h, strategy: thompson, decide: sequential}",
            "rollout.decide",
            "names none",
        ),
        (
            "{test_share: 0.3, wait: 1h, strategy: thompson, waves: 1}",
            "rollout.waves",
            "greater than or equal to 2",
        ),
        (
            "{test_share: 0.3, wait: 1h, strategy: thompson, uniform_share: 1}",
            "rollout.uniform_share",
            "less than 1",
        ),
        ("{test_share: 0.3, wait: 1h, waves: 3}", "rollout.waves", "applies to `strategy: thompson`"),
        (
            "{test_share: 0.3, wait: 1h, strategy: thompson, fallback: b}",
            "rollout.fallback",
            "drop `fallback`",
        ),
        (
            "{test_share: 0.3, wait: 2s, strategy: thompson, waves: 4}",
            "rollout.waves",
            "under 1s between waves",
        ),
        ("{test_share: 0.3, wait: 1h, strategy: bandit}", "rollout.strategy", "'fixed' or 'thompson'"),
    ],
    ids=["sequential", "one-wave", "uniform-all", "waves-fixed", "fallback", "too-close", "unknown"],
)
def test_a_bad_thompson_rollout_is_refused_naming_the_field(
    tmp_path: Path, rollout: str, field: str, text: str
) -> None:
    with pytest.raises(CampaignInvalid) as caught:
        load_campaign(write_campaign(tmp_path, 5, CAMPAIGN + f"rollout: {rollout}\n"))
    message = str(caught.value)
    assert f"{field}: " in message and text in message, message


def test_unequal_variant_weights_are_refused(tmp_path: Path) -> None:
    text = CAMPAIGN.replace("    - id: b\n", "    - id: b\n      weight: 3\n") + THOMPSON
    with pytest.raises(CampaignInvalid) as caught:
        load_campaign(write_campaign(tmp_path, 5, text))
    assert "rollout.strategy: " in str(caught.value) and "equal weights" in str(caught.value)
