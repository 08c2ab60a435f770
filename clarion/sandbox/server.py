"""Running the sandbox: `Sandbox`, in a background thread of this process, and `serve`, in the foreground."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from clarion.base.serving import BackgroundServer
from clarion.sandbox.app import FaultsInput, SandboxState
from clarion.sandbox.engagement import EngagementConfig
from clarion.sandbox.faults import FaultConfig, check_provider
from clarion.sandbox.store import MAX_REQUESTS


class Sandbox:
    """The provider sandbox on 127.0.0.1, served by uvicorn in a background thread.

    >>> with Sandbox(port=0) as sb:           # doctest: +SKIP
    ...     SendGridAPIClient(api_key="SG.x", host=sb.url).send(mail)
    ...     sb.messages("sendgrid")
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        faults: FaultsInput | None = None,
        opted_out: Iterable[str] = (),
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self.host = host
        self.state = SandboxState(faults, opted_out, max_requests)
        self._server = BackgroundServer(
            self.state.app,
            port=port,
            host=host,
            lifespan="off",
            name="provider sandbox",
            loop="asyncio",
            http="h11",
        )

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._server.running:
            raise RuntimeError("the sandbox is not running; use it as a context manager or call start()")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sandbox:
        self.state.stopping.clear()
        self._server.start()
        return self

    def stop(self) -> None:
        self.state.set_engagement(None)
        self.state.stopping.set()  # stalled requests stop waiting, so the server can stop now
        self._server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests and demos use -----------------------------------------------------------------

    def messages(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted so far, oldest first; `provider` is "sendgrid", "twilio" or "x"."""
        return self.state.store.messages(provider)

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Every provider request received (faulted and refused ones too), credentials redacted."""
        return self.state.store.requests(provider)

    def reset(self) -> None:
        """Forget messages, requests and posts; fault settings stay and their sequences restart."""
        self.state.reset()

    def set_faults(self, provider: str, faults: FaultConfig | Mapping[str, Any] | None) -> None:
        """Replace one provider's fault settings; None turns its faults off."""
        self.state.set_faults(check_provider(provider), faults)

    def set_account(self, provider: str, **settings: Any) -> None:
        """Change what a provider's account answers (see clarion/sandbox/accounts.py), e.g.
        `set_account("sendgrid", revoked=True)` or `set_account("sendgrid", credits=10)`; reset() restores."""
        self.state.store.accounts.update(check_provider(provider), settings)

    def faults(self, provider: str) -> FaultConfig | None:
        return self.state.faults.get(check_provider(provider))

    def set_metrics(self, tweet_id: str | int, **public_metrics: int) -> dict[str, int]:
        """Set a post's public metrics (like_count=3, ...), as X's lookup will report them."""
        return self.state.store.set_metrics(str(tweet_id), public_metrics)

    def set_opted_out(self, numbers: Iterable[str]) -> None:
        """Replace the numbers Twilio refuses with error 21610."""
        self.state.twilio.set_opted_out(numbers)

    def reply_sms(
        self, sender: str, body: str, *, webhook: str, auth_token: str, to: str = "+15005550006"
    ) -> httpx.Response:
        """A person answers a text: as Twilio does, a STOP keyword opts the number out (later texts to it
        are refused with 21610) and START opts it back in; then the reply is posted, signed with the
        account's auth token, to the inbound-message webhook `webhook`. Returns the webhook's answer."""
        from twilio.request_validator import RequestValidator

        from clarion.base.consent import Reply, classify_reply

        word = classify_reply(body)
        if word in (Reply.STOP, Reply.START):
            self.state.twilio.opt(sender, out=word is Reply.STOP)
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": "AC" + "0" * 32,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        if word is not None:
            params["OptOutType"] = word.value.upper()
        signature = RequestValidator(auth_token).compute_signature(webhook, params)
        return httpx.post(webhook, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    # -- simulated recipients (engagement.py) -------------------------------------------------------

    @property
    def sendgrid_public_key(self) -> str:
        """The key the sandbox signs SendGrid events with, for the tracking service's settings."""
        return self.state.signing.public_key

    def set_engagement(self, config: EngagementConfig | Mapping[str, Any] | str | None) -> None:
        """Start simulated recipients (settings as a model, mapping or YAML path), or stop them (None)."""
        self.state.set_engagement(config)

    def engage_existing(self) -> None:
        """Engage the messages accepted before engagement started (each message at most once)."""
        if self.state.engagement is None:
            raise RuntimeError("engagement is off; call set_engagement first")
        self.state.engagement.offer(self.state.store.messages())

    def wait_engaged(self, timeout: float = 300) -> dict[str, Any]:
        """Block until every queued message was engaged; returns the counts (TimeoutError otherwise)."""
        if self.state.engagement is None:
            raise RuntimeError("engagement is off; call set_engagement first")
        return self.state.engagement.wait(timeout)


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    faults: FaultsInput | None = None,
    opted_out: Iterable[str] = (),
    engagement: EngagementConfig | Mapping[str, Any] | str | None = None,
) -> None:
    """Serve the sandbox in the foreground until interrupted (Ctrl-C), for `clarion sandbox`."""
    state = SandboxState(faults, opted_out)
    if engagement is not None:
        state.set_engagement(engagement)
    config = uvicorn.Config(
        state.app, host=host, port=port, loop="asyncio", http="h11", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        state.stopping.set()
        state.set_engagement(None)
