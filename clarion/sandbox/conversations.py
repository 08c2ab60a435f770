"""`clarion responders demo`: simulated people text and DM a responder, through the sandbox and the real
tracking service, and some of them follow their personal links and sign up.

Everything goes over HTTP as in production: the sandbox posts each message to the tracking service signed
as Twilio or X would, the responder answers through the providers' APIs (the sandbox's), and simulated
recipients (recipients.py) click the links of the replies they get and convert through the conversion
webhook. The ledger is the usual one (CLARION_HOME), so `clarion report RESPONDER.yaml` shows the funnel
afterwards.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clarion.base.serving import BackgroundServer
from clarion.base.settings import TrackingSettings
from clarion.ledger import Ledger
from clarion.responders.model import DmChannel, SmsChannel
from clarion.responders.validation import validate_responder
from clarion.sandbox.server import Sandbox

SAYINGS = [
    "94110",
    "10001",
    "my zip is 60614",
    "30301",
    "98101",
    "VOLUNTEER",
    "hi, how do I register?",
    "STOP",
    "80202",
]


@dataclass(frozen=True)
class Exchange:
    channel: str
    who: str
    wrote: str
    answer: str | None


def run_demo(file: Path, people: int, seed: int, show: Callable[[Exchange], None]) -> str:
    """Play `people` people writing in; returns the responder's name (for its report)."""
    loaded = validate_responder(file).loaded
    rng = random.Random(seed)
    secret = secrets.token_urlsafe(24)
    with Sandbox() as sandbox:
        saved = {k: os.environ.get(k) for k in (*sandbox.environment(), *sandbox.cleared_variables())}
        os.environ.update(sandbox.environment())
        for name in sandbox.cleared_variables():
            os.environ.pop(name, None)
        ledger = Ledger.open()
        settings = TrackingSettings(
            clarion_conversion_secret=secret, clarion_rate_limit="off", clarion_reject_limit="off"
        )
        from clarion.tracking import build_app

        app = build_app(ledger, settings=settings, environ=sandbox.webhook_environment(), responders=[loaded])
        try:
            with BackgroundServer(app, name="tracking service") as server:
                behaviour = {"click": 0.7, "convert": 0.4, "amount": {"mean": 0}}
                sandbox.set_engagement(
                    {
                        "tracking_url": server.url,
                        "conversion_secret": secret,
                        "twilio_auth_token": sandbox.webhook_environment().get("TWILIO_AUTH_TOKEN"),
                        "seed": seed,
                        "channels": {"*": behaviour},
                    }
                )
                _converse(loaded.responder.channels, sandbox, server.url, people, rng, show)
                sandbox.wait_engaged(60)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return loaded.name


def _converse(
    channels: dict[str, SmsChannel | DmChannel],
    sandbox: Sandbox,
    url: str,
    people: int,
    rng: random.Random,
    show: Callable[[Exchange], None],
) -> None:
    run = secrets.randbelow(9000) + 1000  # new people each demo: no one hits last run's hourly cap
    for i in range(people):
        sms = i % 3 != 2 or not any(isinstance(c, DmChannel) for c in channels.values())
        said = [rng.choice(SAYINGS)]
        if said[0] == "VOLUNTEER":
            said.append(rng.choice(["94110", "02134", "not sure"]))
        for text in said:
            before = len(sandbox.messages())
            if sms:
                who = f"+1415555{(run * 7 + i) % 10000:04d}"
                sms_channel = next(c for c in channels.values() if isinstance(c, SmsChannel))
                to = sms_channel.numbers[0] if sms_channel.numbers else "+15005550006"
                sandbox.write_sms(who, text, webhook=f"{url}/webhooks/twilio/inbound", to=to)
            else:
                who = f"{3000000000 + run * 1000 + i}"
                sandbox.write_dm(who, text, webhook=f"{url}/webhooks/x")
            quiet = text == "STOP" and sms  # on SMS, Twilio itself confirms STOP: nothing from us
            show(Exchange("sms" if sms else "dm", who, text, _answer(sandbox, before, 0.5 if quiet else 5)))


def _answer(sandbox: Sandbox, before: int, timeout: float = 5) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sandbox.messages()
        if len(found) > before:
            return str(found[-1]["text"])
        time.sleep(0.02)
    return None
