"""The X and SMS counters against the published rules, on the text people actually write."""

from __future__ import annotations

import pytest

from clarion.channels.twilio.rules import non_gsm_characters, sms_length
from clarion.channels.x.rules import x_weighted_length

X_CASES = [
    ("plain ASCII", "Chip in $5 before midnight.", 27),
    ("accented Latin weighs 1", "café résumé naïve", 17),
    ("CJK weighs 2", "日本語のテキスト", 16),
    ("Korean weighs 2", "안녕하세요", 10),
    ("ZWJ family is one emoji", "👨‍👩‍👧‍👦", 2),
    ("skin tone is one emoji", "👍🏽", 2),
    ("flag is one emoji", "🇺🇸", 2),
    ("keycap is one emoji", "1️⃣", 2),
    ("emoji beside text", "Vote 🗳️ today", 13),
    (
        "URL with scheme counts 23",
        "Give: https://donate.example.org/debate?utm_source=x&utm_medium=social",
        29,
    ),
    ("URL without scheme counts 23", "Give at donate.example.org/debate", 31),
    ("two URLs", "a.org b.org", 47),
    ("dashes and curly quotes (8208-8223) weigh 1", "\u2014\u2019\u201c\u201d", 4),
    ("the ellipsis (8230) is outside the ranges: 2", "\u2026", 2),
    ("primes (8242-8247) weigh 1", "\u2032\u2033", 2),
    ("NFC: decomposed e + accent counts once", "e\u0301", 1),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in X_CASES], ids=[c[0] for c in X_CASES])
def test_x_weighted_length(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected


def test_x_limit_boundary() -> None:
    assert x_weighted_length("a" * 280) == 280
    assert x_weighted_length("a" * 281) == 281
    assert x_weighted_length("日" * 140) == 280
    assert x_weighted_length("日" * 141) == 282


SMS_CASES = [
    ("160 GSM-7 chars fit one segment", "a" * 160, "GSM-7", 160, 1),
    ("161 GSM-7 chars need two", "a" * 161, "GSM-7", 161, 2),
    ("306 septets fit two segments of 153", "a" * 306, "GSM-7", 306, 2),
    ("307 septets need three", "a" * 307, "GSM-7", 307, 3),
    ("extension chars take two septets", "{}[]~^|\\€", "GSM-7", 18, 1),
    ("80 euro signs fill one segment", "€" * 80, "GSM-7", 160, 1),
    ("81 euro signs spill over", "€" * 81, "GSM-7", 162, 2),
    ("accented letters in GSM 03.38 stay GSM-7", "é è ù ì ò Ç Ø å Ä ñ ü à", "GSM-7", 23, 1),
    ("70 UCS-2 units fit one segment", "日" * 70, "UCS-2", 70, 1),
    ("71 UCS-2 units need two", "日" * 71, "UCS-2", 71, 2),
    ("134 UCS-2 units fit two segments of 67", "日" * 134, "UCS-2", 134, 2),
    ("one emoji is two UTF-16 units", "Hi 👋", "UCS-2", 5, 1),
    ("lower-case c-cedilla is not GSM", "ça va", "UCS-2", 5, 1),
    ("smart quotes force UCS-2", "It\u2019s on", "UCS-2", 7, 1),
]


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"), [c[1:] for c in SMS_CASES], ids=[c[0] for c in SMS_CASES]
)
def test_sms_length(text: str, encoding: str, units: int, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_non_gsm_characters_names_the_culprits_once() -> None:
    assert non_gsm_characters("Zoë says it\u2019s ë time") == ["ë", "\u2019"]
    assert non_gsm_characters("plain text") == []
