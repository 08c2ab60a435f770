"""How X counts a post: the weighted length of the twitter-text v3 configuration.

NFC-normalised; code points in a few Latin/punctuation ranges weigh 1, everything else 2; an emoji sequence
counts once at weight 2; every URL, with or without a scheme, counts 23. We use `twitter-text-parser`, a
port of Twitter's own library that carries its conformance data, instead of re-deriving the URL and emoji
grammars. It is imported when a post is first measured (its emoji grammar takes about a second to
compile): a run without X channels never pays for it.
"""

from __future__ import annotations

X_MAX_WEIGHTED_LENGTH = 280


def x_weighted_length(text: str) -> int:
    """The length X counts for `text` against its 280 limit."""
    from twitter_text import parse_tweet

    return int(parse_tweet(text).weightedLength)
