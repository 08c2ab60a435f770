"""How a message people typed is read: one normal form for keywords, a lighter one for patterns.

Carriers and Braze match keywords as the whole message, trimmed and case-insensitive; people also write
"Stop!!", "ＳＴＯＰ" (fullwidth), "Arrêt", "stop\u200b" (a zero-width space pasted from somewhere) or
"STOP 🙏". `normalise` reads all of those as one word, so an opt-out is honoured at least whenever a
carrier would honour it (erring towards honouring opt-outs is the safe side): NFKD, combining marks
(accents) and format characters dropped, casefolded, whitespace collapsed, surrounding punctuation,
symbols and emoji stripped. Patterns see `pattern_text`: NFKC (fullwidth digits become ASCII digits),
format characters dropped, whitespace collapsed and trimmed, case and accents kept.
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The form keywords are compared on: `normalise("  Arrêt!! ") == "arret"`."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Me", "Cf"))
    folded = _WS.sub(" ", kept.casefold()).strip()
    start, end = 0, len(folded)
    while start < end and _edge_junk(folded[start]):
        start += 1
    while end > start and _edge_junk(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _edge_junk(ch: str) -> bool:
    # punctuation, spaces, and the emoji and symbols people append ("STOP 🙏"); letters and digits stay
    category = unicodedata.category(ch)
    return category[0] in ("P", "Z") or category in ("So", "Sk", "Sm") or ch.isspace()


def pattern_text(text: str) -> str:
    """The form patterns run on: NFKC, no format characters, whitespace collapsed, trimmed."""
    composed = unicodedata.normalize("NFKC", text)
    composed = "".join(ch for ch in composed if unicodedata.category(ch) != "Cf")
    return _WS.sub(" ", composed).strip()


def printable(text: str, limit: int = 24) -> str:
    """A short, single-line, ASCII-safe excerpt of something a stranger typed, for a log line."""
    cut = text[:limit]
    shown = "".join(ch if ch.isprintable() and ch.isascii() else "?" for ch in cut)
    return shown + ("..." if len(text) > limit else "")


__all__ = ["normalise", "pattern_text", "printable"]
