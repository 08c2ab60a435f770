"""Settling the uncertain at scale: a three-channel run whose providers stall, `clarion reconcile`, then
`clarion run --retry-failed`; how long the settling takes and whether anything went out twice or not at all.
The long version of tests/flows/test_reconcile_e2e.py.

    .venv/bin/python benchmarks/reconcile_soak.py                      # 5,000 contacts
    .venv/bin/python benchmarks/reconcile_soak.py --contacts 20000 --sms-stalls 0.02

Twilio's calls stall at --sms-stalls, SendGrid's (50 recipients a request) at --email-stalls, both X posts
stall; half of the stalls come after the provider stored the message (the answer is lost, the message
went). Everything runs against a
`prefect server` and the provider sandbox, as `clarion run` does. Afterwards it checks, against the
sandbox's own record of what arrived: every uncertain send the sandbox holds is `sent` with the sandbox's id,
every other one `failed` / `not_received`; after the retry, nobody got a channel twice and every reachable
contact got each of their channels once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_soak import PROVIDER_CHANNEL, write_campaign  # noqa: E402

from clarion.ledger import Ledger, SendState  # noqa: E402
from clarion.sandbox import FaultConfig, Sandbox  # noqa: E402
from clarion.sandbox.devstack import prefect_server  # noqa: E402

LOOKUPS = ("/Messages.json", "/v3/messages", "/tweets", "/2/users/me")


def clarion(args: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    with log.open("a") as err:
        return subprocess.run(
            [sys.executable, "-m", "clarion", *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--sms-stalls", type=float, default=0.05, help="share of Twilio calls stalling")
    parser.add_argument("--email-stalls", type=float, default=0.2, help="share of SendGrid calls stalling")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="clarion-reconcile-"))
    path = write_campaign(root, args.contacts)
    path.write_text(path.read_text().replace('    body: "<p>', '    batch_size: 50\n    body: "<p>', 1))
    log = root / "clarion.log"
    run_id = "reconcile-soak"
    with Sandbox(port=0) as sandbox, prefect_server(root / "prefect", log=root / "prefect.log") as api:
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_LOGGING_LEVEL": "CRITICAL",
            "CLARION_HOME": str(root / "home"),
            "CLARION_SECRET_KEY": "reconcile-soak-signing-key-0123456789abcdef",
            "CLARION_HTTP_TIMEOUT": "1",
            **sandbox.environment(),
        }
        for i, (provider, rate) in enumerate((("sendgrid", args.email_stalls), ("twilio", args.sms_stalls))):
            sandbox.set_faults(
                provider, FaultConfig(timeout_rate=rate, stall_seconds=2, stall_accepted=0.5, seed=i)
            )
        sandbox.set_faults("x", FaultConfig(timeout_rate=1.0, stall_seconds=2, stall_accepted=0.5, seed=7))
        ledger = Ledger(f"sqlite:///{root / 'home' / 'clarion.db'}")

        started = time.monotonic()
        if clarion(["run", str(path), "--run-id", run_id, "--json"], env, log).returncode != 0:
            raise SystemExit(f"the run failed; see {log}")
        sent_in = time.monotonic() - started
        before = {(r.channel, r.recipient): r for r in ledger.sends(run_id)}
        uncertain = {k for k, r in before.items() if r.state is SendState.UNCERTAIN}
        for provider in ("sendgrid", "twilio", "x"):
            sandbox.set_faults(provider, None)
        asked_before = len(sandbox.requests())

        started = time.monotonic()
        clarion(["runs", "--json"], env, log)  # what starting a command costs here, for comparison
        start_up = time.monotonic() - started
        started = time.monotonic()
        # the stalls are over: lookups get the default timeout, as a user's would
        patient = {**env, "CLARION_HTTP_TIMEOUT": "20"}
        settled = clarion(["reconcile", run_id, "--grace", "0s", "--json"], patient, log)
        took = time.monotonic() - started
        if settled.returncode != 0:
            raise SystemExit(f"reconcile failed; see {log}")
        lookups = [r for r in sandbox.requests()[asked_before:] if r["path"].endswith(LOOKUPS)]
        report = json.loads(settled.stdout)
        arrived = {(PROVIDER_CHANNEL[m["provider"]], m["provider_id"]) for m in sandbox.messages()}
        after = {(r.channel, r.recipient): r for r in ledger.sends(run_id)}
        wrong = 0
        for key in uncertain:
            row = after[key]
            if row.state is SendState.SENT:
                wrong += (row.channel, row.provider_id) not in arrived
            elif row.state is SendState.FAILED:
                wrong += row.reason != "not_received"
            else:
                wrong += 1  # with --grace 0s and every provider answering, nothing should stay uncertain
        not_received = sum(1 for k in uncertain if after[k].state is SendState.FAILED)

        messages_before = len(sandbox.messages())
        started = time.monotonic()
        if clarion(["run", str(path), "--run-id", run_id, "--retry-failed", "--json"], env, log).returncode:
            raise SystemExit(f"the retry failed; see {log}")
        retried_in = time.monotonic() - started
        messages = sandbox.messages()
        duplicates = 0
        for provider in ("sendgrid", "twilio", "x"):
            counts = Counter(
                m["text"] if provider == "x" else m["to"] for m in messages if m["provider"] == provider
            )
            duplicates += sum(n - 1 for n in counts.values() if n > 1)
        final = list(ledger.sends(run_id))
        states = Counter(r.state for r in final)
        arrived = {(PROVIDER_CHANNEL[m["provider"]], m["provider_id"]) for m in messages}
        # left behind: planned or in flight after the retry, or called sent but never arrived
        omitted = states[SendState.PLANNED] + states[SendState.IN_FLIGHT]
        omitted += sum(
            1 for r in final if r.state is SendState.SENT and (r.channel, r.provider_id) not in arrived
        )

    per_channel = ", ".join(
        f"{c['channel']} {c['uncertain_before']:,} -> sent {c['sent']:,}, not received {c['failed']:,}, "
        f"uncertain {c['uncertain']:,}"
        for c in report["channels"]
    )
    print(
        f"{args.contacts:,} contacts, 3 channels; stalled: {args.email_stalls:.0%} of SendGrid requests "
        f"(50 recipients each), {args.sms_stalls:.0%} of Twilio's, both X posts"
    )
    print(f"run: {sent_in:.0f} s; {len(uncertain):,} uncertain ({per_channel})")
    print(
        f"`clarion reconcile`: {took:.1f} s for {len(uncertain):,} uncertain sends, "
        f"{len(lookups):,} provider lookups (starting a command, `clarion runs`, takes {start_up:.1f} s "
        f"here); settled wrongly: {wrong}"
    )
    print(
        f"retry-failed: {retried_in:.0f} s, {len(messages) - messages_before:,} sent again "
        f"(of {not_received:,} not received); final: sent {states[SendState.SENT]:,}, "
        f"failed {states[SendState.FAILED]:,}, uncertain {states[SendState.UNCERTAIN]:,}; "
        f"duplicates {duplicates}, omissions {omitted}"
    )
    for channel in report["channels"]:
        for why, count in channel["why_uncertain"].items():
            print(f"  still uncertain, {channel['channel']}: {count:,}: {why}")
    if wrong or duplicates or omitted:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
