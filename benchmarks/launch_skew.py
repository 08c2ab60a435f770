"""Launch skew: how close together the first accepted message of each channel reaches the sandbox.

    .venv/bin/python benchmarks/launch_skew.py [--runs 3] [--campaign examples/debate-night/campaign.yaml]

Runs the campaign against a sandbox in a separate process and prints, per run, the time of the first
X post, email and SMS after the first message of any channel (the goal: all within 1 s).
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
from send_throughput import CREDENTIALS, ROOT, start_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--campaign", default=str(ROOT / "examples/debate-night/campaign.yaml"))
    args = parser.parse_args()
    sandbox, url = start_sandbox()
    try:
        for i in range(args.runs):
            httpx.delete(f"{url}/_sandbox/messages")
            with tempfile.TemporaryDirectory() as home:
                env = {
                    **os.environ,
                    **CREDENTIALS,
                    "CLARION_HOME": home,
                    "CLARION_SENDGRID_URL": url,
                    "CLARION_TWILIO_URL": url,
                    "CLARION_X_URL": url,
                    "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(ROOT / ".clarion" / "prefect")),
                    "PREFECT_LOGGING_LEVEL": "CRITICAL",
                }
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
            print(f"run {i + 1}: first message per channel: {offsets}; skew {skew:.3f} s")
    finally:
        sandbox.terminate()
        sandbox.wait()


if __name__ == "__main__":
    main()
