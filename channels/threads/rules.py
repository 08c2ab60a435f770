"""How Threads counts a text post: 500 characters, where an emoji counts as its UTF-8 bytes, and at most
five links.

Meta's Threads API documents both: "Text posts are limited to 500 characters. Emojis are counted as the
number of UTF-8 bytes", and a post whose text holds more than 5 unique URLs fails at container creation
(THREADS_API__LINK_LIMIT_EXCEEDED; `www.example.org` counts without a scheme). Other characters count one
per code point.
"""

from __future__ import annotations

from clarion.channels.text import find_urls, grapheme_list, is_emoji, utf8_bytes

MAX_CHARACTERS = 500
MAX_LINKS = 5


def threads_length(text: str) -> int:
    """The length Threads counts for `text` against its 500."""
    return sum(utf8_bytes(cluster) if is_emoji(cluster) else len(cluster) for cluster in grapheme_list(text))


def links(text: str) -> list[str]:
    """The unique URLs Threads counts in `text`."""
    return list(dict.fromkeys(u.url for u in find_urls(text, schemeless=True)))


def post_problems(text: str) -> list[tuple[str, str]]:
    problems = []
    length = threads_length(text)
    if length > MAX_CHARACTERS:
        problems.append(
            (
                "threads_too_long",
                f"post is {length} characters as Threads counts them (an emoji counts as its UTF-8 bytes, "
                f"4 for most), over its {MAX_CHARACTERS}; shorten it",
            )
        )
    found = links(text)
    if len(found) > MAX_LINKS:
        problems.append(
            ("threads_links", f"post has {len(found)} links; Threads refuses more than {MAX_LINKS}")
        )
    return problems
