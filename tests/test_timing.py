"""Durations, local clock times and the SMS send window, in each contact's own zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from clarion.base.timing import format_duration, next_local, parse_clock, parse_duration, quiet_until, zone
from clarion.campaign.contacts import Contact
from clarion.channels.twilio.adapter import TwilioConfig
from clarion.engine.schedule import SendWindow


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("90s", 90), ("5m", 300), ("3h", 10800), ("1h30m", 5400), ("2d", 172800), (45, 45)],
)
def test_durations_read_as_people_write_them(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "3 hours", "5min", "h", "-5m", "1.5h", "m5"])
def test_other_durations_are_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration: write it as"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["9am", "24:00", "9:7", "09:60", ""])
def test_local_times_are_hh_mm(text: str) -> None:
    with pytest.raises(ValueError, match="is not a local time"):
        parse_clock(text)


def test_quiet_hours_defer_to_the_next_local_opening() -> None:
    ny = zone("America/New_York")
    start, end = time(8), time(21)
    # 02:30 UTC on a November night is 21:30 in New York: after the window, so 08:00 local next morning
    late = datetime(2026, 11, 4, 2, 30, tzinfo=UTC)
    assert quiet_until(late, ny, start, end) == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)
    # 15:00 UTC is 10:00 there: inside, no wait
    assert quiet_until(datetime(2026, 11, 4, 15, 0, tzinfo=UTC), ny, start, end) is None
    # the same instant is 18:30 in Los Angeles: inside
    assert quiet_until(late, zone("America/Los_Angeles"), start, end) is None


def test_a_window_may_span_midnight() -> None:
    tz = zone("UTC")
    assert quiet_until(datetime(2026, 1, 1, 23, 0, tzinfo=UTC), tz, time(22), time(2)) is None
    assert quiet_until(datetime(2026, 1, 1, 3, 0, tzinfo=UTC), tz, time(22), time(2)) == datetime(
        2026, 1, 1, 22, 0, tzinfo=UTC
    )


def test_next_local_time_across_a_daylight_saving_change() -> None:
    ny = zone("America/New_York")
    # 1 November 2026: clocks fall back at 02:00; 09:00 local that day is 14:00 UTC (EST)
    assert next_local(datetime(2026, 11, 1, 5, 0, tzinfo=UTC), time(9), ny) == datetime(
        2026, 11, 1, 14, 0, tzinfo=UTC
    )
    # 8 March 2026: 02:30 does not exist in New York; the send goes at the first instant after the jump
    skipped = next_local(datetime(2026, 3, 8, 6, 0, tzinfo=UTC), time(2, 30), ny)
    assert skipped.astimezone(ny).hour == 3


def _contact(tz: str = "", phone: str = "") -> Contact:
    return Contact(seq=0, line=2, offset=0, fields={"id": "c-1", "timezone": tz, "phone": phone})


def _window(**extra: object) -> SendWindow:
    return SendWindow(
        TwilioConfig.model_validate({"provider": "twilio", "from": "+15005550006", "body": "x", **extra})
    )


def test_the_send_window_reads_the_contacts_zone_then_the_number_then_the_default() -> None:
    window = _window(default_timezone="Europe/Paris")
    assert window.zone_of(_contact("Asia/Tokyo", "+14155552671"), "+14155552671").key == "Asia/Tokyo"
    assert window.zone_of(_contact("", "+14155552671"), "+14155552671").key == "America/Los_Angeles"
    # +1 500 numbers belong to no one zone: the channel's default
    assert window.zone_of(_contact("", "+15005550006"), "+15005550006").key == "Europe/Paris"


def test_send_at_local_spreads_a_send_across_zones() -> None:
    window = _window(send_at_local="09:00")
    now = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)  # 07:00 in New York, 04:00 in Los Angeles
    ny = window.not_before(_contact("America/New_York"), None, now)
    la = window.not_before(_contact("America/Los_Angeles"), None, now)
    assert ny == datetime(2026, 11, 4, 14, 0, tzinfo=UTC)
    assert la == datetime(2026, 11, 4, 17, 0, tzinfo=UTC)


def test_quiet_hours_are_on_by_default_and_can_be_turned_off() -> None:
    night = datetime(2026, 11, 4, 7, 0, tzinfo=UTC)  # 02:00 in New York
    assert _window().not_before(_contact("America/New_York"), None, night) == datetime(
        2026, 11, 4, 13, 0, tzinfo=UTC
    )
    assert _window(quiet_hours=None).not_before(_contact("America/New_York"), None, night) is None
