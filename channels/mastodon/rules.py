"""How Mastodon counts a status: its StatusLengthValidator, against the instance's own limit.

Mastodon counts grapheme clusters (Ruby's `each_grapheme_cluster`) of the content warning followed by the
text, after two rewrites: every URL with a scheme that it would link counts as `characters_reserved_per_url`
(23 by default) whatever its length, and a mention `@name@instance.example` counts as its local part,
`@name`. The limit is the instance's `configuration.statuses.max_characters` (500 by default); Clarion
validates with the campaign's `max_characters` / `characters_reserved_per_url` (defaults 500 and 23) and
reads the instance's own at pre-flight.
"""

from __future__ import annotations

import regex

from clarion.channels.text import find_urls, graphemes

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_CHARACTERS_PER_URL = 23
# Mastodon's Account::MENTION_RE: a username, optionally @domain; not after `=`, `/` or a word character
_USERNAME = r"[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*"
_MENTION = regex.compile(rf"(?<![=/\w])@(({_USERNAME})(?:@[\w]+(?:[.-]+[\w]+)*)?)", regex.IGNORECASE)


def countable_text(text: str, characters_per_url: int = DEFAULT_CHARACTERS_PER_URL) -> str:
    """`text` as Mastodon counts it: each linked URL as that many `x`, each mention as its local part."""
    entities: list[tuple[int, int, str]] = [
        (u.start, u.end, "x" * characters_per_url) for u in find_urls(text)
    ]
    for match in _MENTION.finditer(text):
        entities.append((match.start(), match.end(), "@" + match.group(2)))
    entities.sort()
    out, position = [], 0
    for start, end, replacement in entities:
        if start < position:  # overlapping: the earlier entity wins
            continue
        out.append(text[position:start])
        out.append(replacement)
        position = end
    out.append(text[position:])
    return "".join(out)


def mastodon_length(
    text: str, spoiler_text: str = "", characters_per_url: int = DEFAULT_CHARACTERS_PER_URL
) -> int:
    """The length Mastodon counts for a status with this text and content warning."""
    return graphemes(spoiler_text + countable_text(text, characters_per_url))


def post_problems(length: int, max_characters: int, where: str) -> list[tuple[str, str]]:
    if length > max_characters:
        return [
            (
                "mastodon_too_long",
                f"status is {length} characters as Mastodon counts them (each link counts 23, a mention "
                f"its @name), over {where}'s {max_characters}; shorten it",
            )
        ]
    return []
