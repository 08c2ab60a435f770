"""Running the sandbox: `Sandbox`, in a background thread of this process, and `serve`, in the foreground."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from clarion.base.serving import BackgroundServer
from clarion.channels.emulation import MAX_REQUESTS
from clarion.sandbox.faults import FaultConfig
from clarion.sandbox.recipients import EngagementConfig
from clarion.sandbox.routes import FaultsInput, SandboxState


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
        """Messages accepted so far, oldest first; `provider` is a registered provider's name."""
        return self.state.store.messages(provider)

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Every provider request received (faulted and refused ones too), credentials redacted."""
        return self.state.store.requests(provider)

    def reset(self) -> None:
        """Forget messages, requests and posts; fault settings stay and their sequences restart."""
        self.state.reset()

    def set_faults(self, provider: str, faults: FaultConfig | Mapping[str, Any] | None) -> None:
        """Replace one provider's fault settings; None turns its faults off."""
        self.state.set_faults(self.state.store.check_provider(provider), faults)

    def set_account(self, provider: str, **settings: Any) -> None:
        """Change what a provider's account answers (its emulator's `Account`), e.g.
        `set_account("sendgrid", revoked=True)` or `set_account("sendgrid", credits=10)`; reset() restores."""
        self.state.control(provider).update_account(settings)

    def faults(self, provider: str) -> FaultConfig | None:
        return self.state.faults.get(self.state.store.check_provider(provider))

    def set_metrics(self, tweet_id: str | int, **public_metrics: int) -> dict[str, int]:
        """Set a post's public metrics (like_count=3, ...), as X's lookup will report them."""
        return dict(self.state.control("x").set_metrics(str(tweet_id), public_metrics))

    def set_opted_out(self, numbers: Iterable[str]) -> None:
        """Replace the numbers Twilio refuses with error 21610."""
        self.state.control("twilio").set_opted_out(numbers)

    def environment(self) -> dict[str, str]:
        """What every adapter needs to send here: dummy credentials and this sandbox's URL."""
        found: dict[str, str] = {}
        for emulator in self.state.emulators.values():
            found.update(emulator.environment(self.url))
        return found

    def cleared_variables(self) -> list[str]:
        """Variables that would send an adapter elsewhere (a Twilio edge, X's OAuth 1.0a keys)."""
        return [name for e in self.state.emulators.values() for name in e.cleared_variables]

    def webhook_environment(self) -> dict[str, str]:
        """What a tracking service needs to verify the webhooks this sandbox's simulated recipients send."""
        return self.state.webhook_environment()

    def reply_sms(
        self, sender: str, body: str, *, webhook: str, auth_token: str, to: str = "+15005550006"
    ) -> httpx.Response:
        """A person answers a text (Twilio's emulator: a STOP keyword also opts the number out there),
        posted signed to the inbound-message webhook `webhook`. Returns the webhook's answer."""
        answer: httpx.Response = self.state.control("twilio").reply(
            sender, body, webhook=webhook, auth_token=auth_token, to=to
        )
        return answer

    # -- people writing in (responders) -----------------------------------------------------------

    def write_sms(
        self,
        sender: str,
        text: str,
        *,
        webhook: str,
        to: str = "+15005550006",
        message_sid: str | None = None,
    ) -> httpx.Response:
        """A person texts `to`: Twilio's inbound-message webhook, signed with the sandbox's auth token
        (the same `message_sid` again is a redelivery). Returns the webhook's answer."""
        twilio = self.state.control("twilio")
        answer: httpx.Response = twilio.reply(
            sender,
            text,
            webhook=webhook,
            auth_token=twilio.credentials["TWILIO_AUTH_TOKEN"],
            to=to,
            message_sid=message_sid,
        )
        return answer

    def write_dm(
        self, sender_id: str, text: str, *, webhook: str, event_id: str | None = None
    ) -> httpx.Response:
        """A person sends the sandbox's X account a DM, delivered signed as X's Account Activity webhook
        does (the same `event_id` again is a redelivery). Returns the webhook's answer."""
        answer: httpx.Response = self.state.control("x").inbox.write(
            sender_id, text, webhook, event_id=event_id
        )
        return answer

    def set_dm_webhook(self, url: str | None) -> None:
        """Echo every DM the sandbox's X account sends to this webhook, as X's Account Activity API does."""
        self.state.control("x").inbox.webhook = url

    # -- simulated recipients (recipients.py) -------------------------------------------------------

    def set_engagement(self, config: EngagementConfig | Mapping[str, Any] | str | None) -> None:
        """Start simulated recipients (settings as a model, mapping or YAML path), or stop them (None)."""
        self.state.set_engagement(config)

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
