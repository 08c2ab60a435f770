"""Who may use the console, and how a browser proves it.

- **Tokens.** `clarion console add-user NAME` issues `clc_<id>_<secret>`: the id finds the user, the
  secret (32 random bytes) is checked against its scrypt hash (n=2**14, r=8, p=1, a 16-byte salt), which
  is all the ledger keeps. A wrong token costs the same scrypt as a right one.
- **The reverse proxy's user.** With CLARION_CONSOLE_USER_HEADER set, a request whose direct peer is one of
  CLARION_CONSOLE_TRUSTED_PROXIES is signed in as the user that header names (the proxy authenticated them
  and must strip any copy a client sent). From anywhere else the header is ignored.
- **Sessions.** A random cookie (`clarion_console`: HttpOnly, SameSite=Strict, Path=/console, Secure over
  HTTPS) whose SHA-256 names a ledger row with the user, the expiry (CLARION_CONSOLE_SESSION_HOURS) and the
  session's CSRF token, which every form carries and every POST must return. The sign-in form, before any
  session, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clarion.base.errors import ClarionError
from clarion.ledger import Ledger
from clarion.ledger.console import ConsoleSession

COOKIE = "clarion_console"
PRE_COOKIE = "clarion_console_signin"  # the sign-in form's double-submit CSRF cookie
TOKEN = re.compile(r"^clc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_DUMMY = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32  # checked against when the id is unknown


def check_name(name: str) -> str:
    """A console user's name: what approvers are listed as in campaign files."""
    if not NAME.fullmatch(name):
        raise ClarionError(
            f"{name!r} is not a console user name: 1 to 64 letters, digits and . _ @ -, starting with a "
            "letter or digit (use the name the campaigns' `approval.approvers` list)"
        )
    return name


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _matches(secret: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = stored.split("$")
        found = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(found.hex(), digest)


def issue_token(ledger: Ledger, name: str, *, replace: bool = False) -> str:
    """A new sign-in token for `name` (a new user, or with `replace` a new token that ends the old one)."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    ledger.add_console_user(check_name(name), token_id, hash_secret(secret), replace=replace)
    return f"clc_{token_id}_{secret}"


def user_of_token(ledger: Ledger, token: str) -> str | None:
    """The user a token signs in, or None (unknown, revoked, malformed)."""
    found = TOKEN.match(token.strip())
    user = ledger.console_user_by_token(found.group(1)) if found else None
    secret = found.group(2) if found else "-"
    ok = _matches(secret, user.token_hash if user else _DUMMY)  # the same work either way
    return user.name if user is not None and ok else None


class Trusted:
    """The proxies whose user header is believed (CLARION_CONSOLE_TRUSTED_PROXIES)."""

    def __init__(self, spec: str) -> None:
        self.networks = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            try:
                self.networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ClarionError(
                    f"CLARION_CONSOLE_TRUSTED_PROXIES: {part!r} is not an address or network "
                    "(e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class NewSession:
    cookie: str  # what the browser keeps
    session: ConsoleSession


def new_session(user: str, via: str, hours: float) -> NewSession:
    cookie = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session = ConsoleSession(
        id=session_id(cookie),
        user_name=user,
        via=via,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        flash=None,
    )
    return NewSession(cookie, session)


def session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


__all__ = [
    "COOKIE",
    "PRE_COOKIE",
    "NewSession",
    "Trusted",
    "check_name",
    "hash_secret",
    "issue_token",
    "new_session",
    "same_token",
    "session_id",
    "user_of_token",
]
