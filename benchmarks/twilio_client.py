"""CPU a text costs Clarion's Twilio adapter, its environment read once per client against per request.

    .venv/bin/python benchmarks/twilio_client.py                # 2,000 texts each way, three rounds
    .venv/bin/python benchmarks/twilio_client.py --texts 5000 --rounds 5

Starts `clarion sandbox` in its own process (the texts' answers take none of this process's CPU), then
sends texts one a request through `TwilioChannel.send`, as a send thread does, alternating two ways in
each round: as Clarion sends (the CA bundle the environment names, read once for the client, and its
proxies once per host) and with the SDK's `requests` session reading the environment again for every
request (what it does unless told otherwise). Prints this process's CPU milliseconds per text (user +
system, from time.process_time) and the wall milliseconds, per way and round, and the median of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from send_throughput import CREDENTIALS, start_sandbox  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sandbox, url = start_sandbox()
    try:
        os.environ.update({**CREDENTIALS, "CLARION_TWILIO_URL": url})
        from clarion.channels.base import ChannelKind, Message, Outbound
        from clarion.channels.twilio.adapter import TwilioChannel, TwilioConfig

        config = TwilioConfig.model_validate({"provider": "twilio", "from": "+15005550006", "body": "b"})
        adapter = TwilioChannel("sms", config, TwilioChannel.settings_model.load("sms"))
        session = adapter._client().http_client.session

        def message(i: int) -> Outbound:
            link = f"https://go.example.org/c/{i:08d}"
            text = f"The debate is over. Chip in $5: {link} Reply STOP to opt out"
            to = f"+1415555{i % 10_000:04d}"
            sms = Message("sms", "twilio", ChannelKind.SMS, "a", f"c{i}", to, link=link, text=text)
            return Outbound(f"r{i}", sms)

        ways = {"environment read once (Clarion)": False, "read per request (requests' default)": True}
        figures: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
        for round_ in range(1, args.rounds + 1):
            for way, per_request in ways.items():
                session.trust_env = per_request
                cpu, wall = time.process_time(), time.perf_counter()
                for i in range(args.texts):
                    [result] = adapter.send([message(i)])
                    assert result.outcome.value == "sent", result
                cpu = (time.process_time() - cpu) / args.texts * 1000
                wall = (time.perf_counter() - wall) / args.texts * 1000
                figures[way].append((cpu, wall))
                print(f"round {round_}, {way}: {cpu:.3f} ms CPU, {wall:.3f} ms wall a text", flush=True)
        print()
        for way, rows in figures.items():
            cpu = statistics.median(c for c, _ in rows)
            wall = statistics.median(w for _, w in rows)
            print(f"median, {way}: {cpu:.3f} ms CPU, {wall:.3f} ms wall a text")
    finally:
        sandbox.terminate()
        sandbox.wait()


if __name__ == "__main__":
    main()
