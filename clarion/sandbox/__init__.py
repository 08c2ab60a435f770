"""Local emulators of SendGrid, Twilio and X, on one port, so tests and demos never reach the internet.

The real SDKs talk to it over HTTP and get each provider's own answers and errors; faults (5xx, stalls, 429
bursts, latency) can be injected per provider. `GET /` shows what went out;
`/_sandbox/*` is for tests. With engagement settings, simulated recipients deliver, open, click and convert
through the tracking service (engagement.py).
"""

from __future__ import annotations

from clarion.sandbox.app import SandboxState, build_app
from clarion.sandbox.engagement import EngagementConfig
from clarion.sandbox.faults import PROVIDERS, FaultConfig
from clarion.sandbox.server import Sandbox, serve
from clarion.sandbox.store import PUBLIC_METRICS

__all__ = [
    "PROVIDERS",
    "PUBLIC_METRICS",
    "EngagementConfig",
    "FaultConfig",
    "Sandbox",
    "SandboxState",
    "build_app",
    "serve",
]
