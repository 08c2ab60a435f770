"""How LinkedIn counts a post's commentary: 3,000 characters, and its "little text" syntax.

The Posts API's `commentary` holds at most 3,000 characters; LinkedIn's servers are Java, and Clarion
counts as Java's String.length() does, in UTF-16 code units (an emoji outside the Basic Multilingual
Plane counts 2), which never undercounts. `commentary` is "little text": `@[Name](urn:li:...)` is a
mention and `#tag` a hashtag, so the characters ``| { } @ [ ] ( ) < > # \\ * _ ~`` are escaped with a
backslash before sending, or LinkedIn drops or garbles the text after them. The limit applies to the text
as people will read it.
"""

from __future__ import annotations

import re

from clarion.channels.text import utf16_units

MAX_CHARACTERS = 3000
_RESERVED = re.compile(r"([|{}@\[\]()<>#\\*_~])")


def escape_little_text(text: str) -> str:
    """`text` as LinkedIn's little-text format reads it literally."""
    return _RESERVED.sub(r"\\\1", text)


def unescape_little_text(text: str) -> str:
    return re.sub(r"\\([|{}@\[\]()<>#\\*_~])", r"\1", text)


def linkedin_length(text: str) -> int:
    return utf16_units(text)


def post_problems(text: str) -> list[tuple[str, str]]:
    length = linkedin_length(text)
    if length > MAX_CHARACTERS:
        return [
            (
                "linkedin_too_long",
                f"post is {length:,} characters (UTF-16 units: most emoji count 2), over LinkedIn's "
                f"{MAX_CHARACTERS:,}; shorten it",
            )
        ]
    return []
