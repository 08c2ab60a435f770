"""The accounts behind the sandbox's credentials: what pre-flight checks ask the providers before a launch.

Each provider's account can be made to refuse its credentials (a revoked key, a rotated token), and
SendGrid's remaining credits, Twilio's account status and balance can be set, so the checks are tested
against answers in the providers' own formats:

- SendGrid `GET /v3/scopes` (the API key's permissions) and `GET /v3/user/credits` (emails left this period);
- Twilio `GET /2010-04-01/Accounts/{Sid}.json` (status) and `.../Balance.json`;
- X `GET /2/users/me` (whose account the token posts as).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

from clarion.sandbox.faults import PROVIDERS


@dataclass(frozen=True)
class Account:
    revoked: bool = False  # every request with these credentials gets the provider's 401
    scopes: tuple[str, ...] = ("mail.send", "user.credits.read")  # SendGrid API key permissions
    credits: int = 100_000  # SendGrid: emails left this period
    status: str = "active"  # Twilio: active, suspended or closed
    balance: str = "20.00"  # Twilio, in `currency`
    currency: str = "USD"
    username: str = "clarion_sandbox"  # X


class Accounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts = {p: Account() for p in PROVIDERS}

    def get(self, provider: str) -> Account:
        with self._lock:
            return self._accounts[provider]

    def update(self, provider: str, settings: dict[str, Any]) -> Account:
        """Change some of an account's settings; ValueError naming an unknown one or a wrong type."""
        current = self.get(provider)
        known = asdict(current)
        for key, value in settings.items():
            if key not in known:
                raise ValueError(f"unknown account setting {key!r}; known: {', '.join(sorted(known))}")
            if key == "scopes":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("scopes: expected a list of strings")
                settings = {**settings, key: tuple(value)}
            elif type(value) is not type(known[key]):
                raise ValueError(f"{key}: expected {type(known[key]).__name__}")
        updated = replace(current, **settings)
        with self._lock:
            self._accounts[provider] = updated
        return updated

    def reset(self) -> None:
        with self._lock:
            self._accounts = {p: Account() for p in PROVIDERS}

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {p: {**asdict(a), "scopes": list(a.scopes)} for p, a in self._accounts.items()}


__all__ = ["Account", "Accounts"]
