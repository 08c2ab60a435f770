"""The provider sandbox: every registered provider's emulator on one port, so tests and demos never reach
the internet.

The real SDKs talk to it over HTTP and get each provider's own answers and errors (the emulators live with
their provider, channels/<provider>/emulator.py); faults (5xx, stalls, 429 bursts, latency) can be
injected per provider. `GET /` shows what went out; `/_sandbox/*` is for tests. With engagement
settings, simulated recipients deliver, open, click and convert through the tracking service
(recipients.py). Used by the command line (`clarion sandbox`, `clarion run --sandbox`) and tests only.
"""

from __future__ import annotations

from clarion.sandbox.faults import FaultConfig
from clarion.sandbox.recipients import EngagementConfig
from clarion.sandbox.routes import SandboxState, build_app
from clarion.sandbox.server import Sandbox, serve

__all__ = ["EngagementConfig", "FaultConfig", "Sandbox", "SandboxState", "build_app", "serve"]
