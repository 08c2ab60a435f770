"""Launch skew: how close together the first accepted message of each channel reaches the sandbox.

    .venv/bin/python benchmarks/launch_skew.py [--runs 3] [--campaign examples/debate-night/campaign.yaml]
    .venv/bin/python benchmarks/launch_skew.py --validated   # validated first: openings while planning

Runs the campaign against a sandbox in a separate process and prints, per run, the time of each channel's
first accepted message (posts on X, Bluesky and Mastodon, the first email and SMS) after the first message
of any channel (the goal: all within 1 s).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send_throughput import ROOT, start_sandbox


def sandbox_environment(url: str) -> dict[str, str]:
    """Every registered provider's dummy credentials, and its adapter pointed at the sandbox."""
    from clarion import channels

    found: dict[str, str] = {}
    for adapter in channels.adapters():
        emulator = adapter.emulator()
        if emulator is not None:
            found.update(emulator.credentials)
            if emulator.url_variable:
                found[emulator.url_variable] = url
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--campaign", default=str(ROOT / "examples/debate-night/campaign.yaml"))
    parser.add_argument(
        "--validated",
        action="store_true",
        help="`clarion validate` before each run (not timed): the run sends its openings while it plans",
    )
    args = parser.parse_args()
    sandbox, url = start_sandbox()
    try:
        for i in range(args.runs):
            httpx.delete(f"{url}/_sandbox/messages")
            with tempfile.TemporaryDirectory() as home:
                env = {
                    **os.environ,
                    **sandbox_environment(url),
                    "CLARION_HOME": home,
                    "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(ROOT / ".clarion" / "prefect")),
                    "PREFECT_LOGGING_LEVEL": "CRITICAL",
                }
                if args.validated:
                    check = [sys.executable, "-m", "clarion", "validate", args.campaign]
                    subprocess.run(check, env=env, check=True, capture_output=True)
                subprocess.run(
                    [sys.executable, "-m", "clarion", "run", args.campaign, "--json"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            firsts: dict[str, datetime] = {}
            for message in httpx.get(f"{url}/_sandbox/messages", timeout=60).json():
                when = datetime.fromisoformat(message["received_at"])
                provider = message["provider"]
                if provider not in firsts or when < firsts[provider]:
                    firsts[provider] = when
            start = min(firsts.values())
            offsets = ", ".join(
                f"{p} +{(t - start).total_seconds():.3f} s" for p, t in sorted(firsts.items())
            )
            skew = (max(firsts.values()) - start).total_seconds()
            verdict = "within 1 s" if skew <= 1.0 else "OVER 1 s"
            print(f"run {i + 1}: first message per channel: {offsets}; skew {skew:.3f} s ({verdict})")
    finally:
        sandbox.terminate()
        sandbox.wait()


if __name__ == "__main__":
    main()
