"""How Bluesky counts a post: the limits of the `app.bsky.feed.post` lexicon.

The record's `text` has `maxGraphemes: 300` and `maxLength: 3000`, and a lexicon string's length is its
UTF-8 byte count; a post must keep both. atproto's Python model checks only a length of 3,000 (and in code
points), so Clarion counts the graphemes and the bytes itself. Links become facets whose offsets are UTF-8
byte offsets: that is the SDK's job (`atproto`'s facet detection), and the text is not shortened.
"""

from __future__ import annotations

from clarion.channels.text import graphemes, utf8_bytes

MAX_GRAPHEMES = 300
MAX_BYTES = 3000


def post_problems(text: str) -> list[tuple[str, str]]:
    """(rule code, message) for each lexicon limit `text` breaks."""
    problems = []
    count = graphemes(text)
    if count > MAX_GRAPHEMES:
        problems.append(
            (
                "bluesky_too_long",
                f"post is {count} graphemes, over Bluesky's {MAX_GRAPHEMES} (a grapheme is what a reader "
                "sees as one character: an emoji, a flag, an accented letter); shorten it",
            )
        )
    size = utf8_bytes(text)
    if size > MAX_BYTES:
        problems.append(
            (
                "bluesky_too_many_bytes",
                f"post is {size:,} bytes in UTF-8, over Bluesky's {MAX_BYTES:,}; shorten it",
            )
        )
    return problems
