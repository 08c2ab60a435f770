"""The console's operators and sessions in the ledger (mixed into `Ledger`).

Only hashes are kept: a user's token as its scrypt hash (clarion/console/auth.py makes and checks it), a
session as the SHA-256 of its cookie. Expired sessions are deleted whenever a new one is made.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from clarion.ledger.errors import LedgerError
from clarion.ledger.schema import console_sessions, console_users


class UserExists(LedgerError):
    """A console user of that name exists already."""


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    token_id: str
    token_hash: str
    created_at: datetime
    token_issued_at: datetime
    last_seen_at: datetime | None


@dataclass(frozen=True)
class ConsoleSession:
    id: str
    user_name: str
    via: str
    csrf: str
    created_at: datetime
    expires_at: datetime
    flash: str | None


class ConsoleStore:
    """Operators who may sign in to /console, and the sessions of signed-in browsers."""

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def add_console_user(self, name: str, token_id: str, token_hash: str, *, replace: bool = False) -> None:
        """A new user (UserExists if the name is taken), or with `replace` a new token for an existing
        one: the old token stops working and the user's sessions end."""
        now = datetime.now(UTC)
        values = {"token_id": token_id, "token_hash": token_hash, "token_issued_at": now}
        with self._tx(write=True) as conn:
            exists = conn.execute(select(console_users.c.name).where(console_users.c.name == name)).first()
            if exists and not replace:
                raise UserExists(f"console user {name!r} exists already")
            if exists:
                conn.execute(update(console_users).where(console_users.c.name == name).values(values))
                conn.execute(delete(console_sessions).where(console_sessions.c.user_name == name))
                return
            try:
                conn.execute(insert(console_users).values(name=name, created_at=now, **values))
            except IntegrityError as exc:
                raise UserExists(f"console user {name!r} exists already") from exc

    def remove_console_user(self, name: str) -> bool:
        with self._tx(write=True) as conn:
            gone = conn.execute(delete(console_users).where(console_users.c.name == name)).rowcount
            conn.execute(delete(console_sessions).where(console_sessions.c.user_name == name))
        return bool(gone)

    def console_users(self) -> list[ConsoleUser]:
        with self._tx() as conn:
            rows = conn.execute(select(console_users).order_by(console_users.c.name)).mappings()
            return [ConsoleUser(**row) for row in rows]

    def console_user_by_token(self, token_id: str) -> ConsoleUser | None:
        with self._tx() as conn:
            row = (
                conn.execute(select(console_users).where(console_users.c.token_id == token_id))
                .mappings()
                .first()
            )
        return None if row is None else ConsoleUser(**row)

    def start_session(self, session: ConsoleSession) -> None:
        """Record a session (and forget the expired ones, and note when its user was last seen)."""
        now = datetime.now(UTC)
        with self._tx(write=True) as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            conn.execute(insert(console_sessions).values(**_values(session)))
            conn.execute(
                update(console_users)
                .where(console_users.c.name == session.user_name)
                .values(last_seen_at=now)
            )

    def session(self, session_id: str, now: datetime) -> ConsoleSession | None:
        """The session, unless it expired (or never was)."""
        query = select(console_sessions).where(
            console_sessions.c.id == session_id, console_sessions.c.expires_at > now
        )
        with self._tx() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else ConsoleSession(**row)

    def end_session(self, session_id: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.id == session_id))

    def set_flash(self, session_id: str, message: str | None) -> None:
        """A message the session's next page shows once (None clears it)."""
        with self._tx(write=True) as conn:
            conn.execute(
                update(console_sessions).where(console_sessions.c.id == session_id).values(flash=message)
            )


def _values(session: ConsoleSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "user_name": session.user_name,
        "via": session.via,
        "csrf": session.csrf,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "flash": session.flash,
    }


__all__ = ["ConsoleSession", "ConsoleStore", "ConsoleUser", "UserExists"]
