"""Time in campaign files: durations (`after: 5m`), local clock times (`send_at_local: "09:00"`) and the
SMS quiet-hours window, evaluated in each contact's own time zone.

All instants are timezone-aware UTC datetimes; a contact's zone is the IANA name from its `timezone` column
(validated when the campaign is checked), else the zone the campaign names as the default.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
DURATION_HINT = "write it as days, hours, minutes and seconds, e.g. 90s, 5m, 3h, 1h30m or 2d"


def parse_duration(value: object) -> timedelta:
    """`5m`, `3h`, `1h30m`, `2d`, `90s` (or a number of seconds) as a timedelta; ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            if not math.isfinite(value):
                raise OverflowError
            return timedelta(seconds=value)
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.match(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration: {DURATION_HINT}")
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration (at most {timedelta.max.days:,} days)") from None


def format_duration(value: timedelta) -> str:
    """The short form parse_duration reads: 1h30m, 2d, 0s."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_clock(value: object) -> time:
    """`"09:00"` (24-hour, minutes required) as a time; ValueError otherwise."""
    match = re.match(r"^([01]?\d|2[0-3]):([0-5]\d)\Z", str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a local time: write HH:MM on a 24-hour clock, e.g. 09:00")
    return time(int(match.group(1)), int(match.group(2)))


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder, or a name too long
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. America/New_York)") from None


def in_window(local: time, start: time, end: time) -> bool:
    """Is `local` inside [start, end)? A window whose end is before its start spans midnight."""
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def next_local(at: datetime, clock: time, tz: ZoneInfo) -> datetime:
    """The first instant at or after `at` when the wall clock in `tz` reads `clock` (UTC).

    A clock time that a daylight-saving jump skips falls on the first instant after the jump."""
    local = at.astimezone(tz)
    for days in range(0, 3):
        day = (local + timedelta(days=days)).date()
        candidate = datetime.combine(day, clock, tzinfo=tz)
        # round-trip through UTC: a skipped wall time (spring forward) normalises to a real instant
        candidate = candidate.astimezone(UTC).astimezone(tz)
        if candidate >= local:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a wall-clock time recurs within two days")


def quiet_until(at: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """None when `at` is inside the sending window [start, end) in `tz`; else when the window next opens."""
    if in_window(at.astimezone(tz).time(), start, end):
        return None
    return next_local(at, start, tz)


__all__ = [
    "DURATION_HINT",
    "format_duration",
    "in_window",
    "next_local",
    "parse_clock",
    "parse_duration",
    "quiet_until",
    "zone",
]
