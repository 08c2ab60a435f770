"""A Thompson rollout's waves in the launch flow: each later wave's allocation drawn (or read back, on a
resume) when its time comes, logged and shown in the Prefect UI; at the end, each wave's run closed and
its outcome returned. The rules (who goes in which wave, on which arm, from which counts) are
clarion.engine.bandit's; this module only orchestrates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from clarion.engine.bandit import DECISION, WavePlan, arm_rows, decide_wave
from clarion.engine.context import RunContext
from clarion.engine.outcome import WaveOutcome
from clarion.engine.schedule import bandit_run_id
from clarion.flows.artifacts import artifact_key, publish_results
from clarion.ledger import RunStatus
from clarion.ledger.results import run_results


def wave_plan(run: RunContext, wave: int) -> WavePlan:
    """The allocation wave `wave` is planned on: recorded in the launch run's decisions the first time."""
    plan, decision = decide_wave(run.ledger, run.run_id, run.loaded.campaign, wave)
    get_run_logger().info("run %s: Thompson %s", run.run_id, decision["text"])
    publish_wave(run.run_id, decision)
    return plan


def publish_wave(run_id: str, decision: Mapping[str, Any]) -> None:
    rows = "\n".join(
        f"| {arm} | {share:.1%} | {p:.3f} | {n:,} | {s:,} |" for arm, share, p, n, s in arm_rows(decision)
    )
    create_markdown_artifact(
        key=artifact_key(f"wave-{decision['wave']}", run_id),
        markdown=(
            f"# Thompson rollout of {run_id}: wave {decision['wave']}\n\n"
            f"Sent in run `{decision['run_id']}`, allocated on {decision['metric']} so far "
            f"({decision['uniform_share']:.0%} of the wave spread evenly over the arms, for the unbiased "
            "comparison; the rest by each arm's posterior probability of being best).\n\n"
            "| arm | share of the wave | P(best) | contacts so far | successes so far |\n"
            "| --- | ---: | ---: | ---: | ---: |\n"
            f"{rows}\n"
        ),
        description=f"Clarion run {run_id}: Thompson wave {decision['wave']}'s allocation",
    )


def finish_waves(run: RunContext, status: RunStatus) -> list[WaveOutcome]:
    """Every wave run that was planned: given the launch's final state, its results published."""
    store, run_id = run.ledger, run.run_id
    rollout = run.loaded.campaign.rollout
    if rollout is None or rollout.strategy != "thompson":
        return []
    decisions = store.decisions(run_id)
    found = []
    for wave in range(1, rollout.waves):
        child = bandit_run_id(run_id, wave)
        if store.get_run(child) is None:
            continue
        store.set_run_status(child, status)
        results = run_results(store, child)
        publish_results(store, child, results, {})
        decision = dict(decisions.get(f"{DECISION}{wave}", {}))
        found.append(WaveOutcome(child, results, wave, str(decision.get("text", "")), decision))
    return found


__all__ = ["finish_waves", "publish_wave", "wave_plan"]
