"""How a carrier counts a text: its encoding, size and segments, by GSM 03.38 and UCS-2.

A text is sent as GSM-7 when every character is in GSM 03.38 (the extension characters ``^ { } \\ [ ~ ] | €``
take two septets), otherwise as UCS-2 counted in UTF-16 code units. One segment holds 160 septets or 70
units; a longer message is split into segments of 153 septets or 67 units (the rest is the concatenation
header). The `gsm0338` codec encodes each character to its septets, so its byte count is the septet count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67
_OPT_OUT_HINT = re.compile(r"\bSTOP\b", re.IGNORECASE)

SmsEncoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SmsLength:
    encoding: SmsEncoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def _segments(units: int, single: int, multi: int) -> int:
    if units <= single:
        return 1
    return -(-units // multi)


def _gsm_alphabet() -> dict[str, int]:
    """Septets per character of GSM 03.38, read once from the codec (basic table 1, extension table 2)."""
    septets = {}
    for byte in range(128):
        if byte == 0x1B:
            continue  # the escape to the extension table
        septets[bytes([byte]).decode("gsm03.38")] = 1
        try:
            extended = bytes([0x1B, byte]).decode("gsm03.38")
        except UnicodeDecodeError:
            continue
        if len(extended) == 1 and extended not in septets:
            septets[extended] = 2
    return septets


GSM7_SEPTETS = _gsm_alphabet()


def sms_length(text: str) -> SmsLength:
    """The encoding, size and segment count a carrier will use for `text`."""
    table = GSM7_SEPTETS
    try:
        septets = sum(table[ch] for ch in text)
    except KeyError:
        units = len(text.encode("utf-16-le")) // 2
        return SmsLength("UCS-2", units, _segments(units, UCS2_SINGLE, UCS2_MULTI))
    return SmsLength("GSM-7", septets, _segments(septets, GSM7_SINGLE, GSM7_MULTI))


def non_gsm_characters(text: str) -> list[str]:
    """The characters that force `text` out of GSM-7 into UCS-2, in order of appearance, once each."""
    return list(dict.fromkeys(ch for ch in text if ch not in GSM7_SEPTETS))


def tells_how_to_opt_out(text: str) -> bool:
    """Whether a text tells its reader how to stop getting texts ("Reply STOP to opt out")."""
    return _OPT_OUT_HINT.search(text) is not None
