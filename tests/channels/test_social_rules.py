"""The networks' counting, cross-checked against independent references, with texts at limit and limit + 1.

- Bluesky: the post lexicon's limits (300 graphemes, 3,000 UTF-8 bytes) with the `grapheme` package as an
  independent segmenter; atproto's own model is shown not to check graphemes (why Clarion counts them).
- Mastodon: its StatusLengthValidator's rules (URLs 23, a mention its local part, graphemes, the content
  warning counted too) on URLs, mentions, emoji and CJK.
- Threads: 500 with an emoji counted as its UTF-8 bytes, at most 5 links; LinkedIn: 3,000 UTF-16 units.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grapheme
import pytest

from clarion.channels.base import ChannelKind, Message
from clarion.channels.bluesky.adapter import BlueskyChannel, BlueskyConfig
from clarion.channels.bluesky.rules import MAX_BYTES, MAX_GRAPHEMES, post_problems
from clarion.channels.linkedin.adapter import LinkedInChannel, LinkedInConfig
from clarion.channels.linkedin.rules import escape_little_text, unescape_little_text
from clarion.channels.mastodon.adapter import MastodonChannel, MastodonConfig
from clarion.channels.mastodon.rules import countable_text, mastodon_length
from clarion.channels.text import find_urls, graphemes
from clarion.channels.threads.adapter import ThreadsChannel, ThreadsConfig
from clarion.channels.threads.rules import links, threads_length

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 7 code points, 25 UTF-8 bytes
FLAG = "🇺🇸"  # one grapheme, 2 code points, 8 bytes
RAINBOW = "🏳️\u200d🌈"  # one grapheme, 4 code points, 14 bytes
ACCENT = "e\u0301"  # é as e + combining acute: one grapheme
SAMPLES = [
    "plain ASCII text",
    "日本語のテキストです",
    FAMILY * 3,
    FLAG + " vote " + FLAG,
    RAINBOW + ACCENT + "👍🏽",
    "mixed: café " + ACCENT + " 한국어 😀 " + FAMILY,
]


def _message(provider: str, text: str) -> Message:
    return Message(
        channel="ch",
        provider=provider,
        kind=ChannelKind.SOCIAL,
        variant="v",
        contact_id=None,
        to=None,
        link="",
        text=text,
    )


# -- graphemes, against an independent segmenter -------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES, ids=range(len(SAMPLES)))
def test_graphemes_agree_with_an_independent_segmenter(text: str) -> None:
    assert graphemes(text) == grapheme.length(text)


# -- Bluesky -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("a" * MAX_GRAPHEMES, []),
        ("a" * (MAX_GRAPHEMES + 1), ["bluesky_too_long"]),
        (FLAG * MAX_GRAPHEMES, []),  # 300 graphemes, 2,400 bytes
        (FLAG * (MAX_GRAPHEMES + 1), ["bluesky_too_long"]),
        (FAMILY * 120, []),  # 120 graphemes, exactly 3,000 bytes
        (FAMILY * 120 + "a", ["bluesky_too_many_bytes"]),
        (FAMILY * 121, ["bluesky_too_many_bytes"]),
        (ACCENT * MAX_GRAPHEMES, []),  # 600 code points, 300 graphemes
    ],
    ids=[
        "300-ascii",
        "301-ascii",
        "300-flags",
        "301-flags",
        "3000-bytes",
        "3001-bytes",
        "3025-bytes",
        "accents",
    ],
)
def test_bluesky_counts_the_lexicons_graphemes_and_bytes(text: str, codes: list[str]) -> None:
    assert grapheme.length(text) <= MAX_GRAPHEMES or "bluesky_too_long" in codes
    assert len(text.encode()) <= MAX_BYTES or "bluesky_too_many_bytes" in codes
    assert [code for code, _ in post_problems(text)] == codes
    config = BlueskyConfig.model_validate({"provider": "bluesky", "body": "b"})
    assert [c for c, _ in BlueskyChannel.check(_message("bluesky", text), config)] == codes
    assert BlueskyChannel.size(_message("bluesky", text), config) == (grapheme.length(text), 300)


def test_atprotos_own_model_checks_no_graphemes_which_is_why_clarion_counts_them() -> None:
    from atproto import models

    text = "a" * (MAX_GRAPHEMES + 1)
    record = models.AppBskyFeedPost.Record(text=text, created_at=datetime.now(UTC).isoformat())
    assert record.text == text  # accepted by the model; the PDS would refuse it


# -- Mastodon ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("a" * 500, 500),
        ("a" * 501, 501),
        ("a" * 476 + " http://" + "b" * 30 + ".com/example", 500),  # a URL counts 23, however long
        ("https://go.example.org/c/" + "x" * 200, 23),
        ("go.example.org/c/abc", 20),  # without a scheme Mastodon does not link it: counted in full
        ("https://example.notatld/x", 25),  # not a known top-level domain: not a link
        ("see https://example.org.", 4 + 23 + 1),  # the full stop ends the sentence, not the URL
        ("@alice@" + "b" * 30 + ".com hi", 6 + 3),  # a remote mention counts as @alice
        ("@alice hi", 9),
        ("email me: alice@example.org", 27),  # not a mention: a word character before @
        ("日本語", 3),
        (FAMILY + RAINBOW + FLAG, 3),
        ("😀" * 500, 500),
    ],
    ids=[
        "500",
        "501",
        "url-23-at-limit",
        "long-url",
        "schemeless",
        "unknown-tld",
        "trailing-dot",
        "remote-mention",
        "local-mention",
        "email",
        "cjk",
        "emoji-sequences",
        "500-emoji",
    ],
)
def test_mastodon_counts_as_its_status_length_validator(text: str, length: int) -> None:
    assert mastodon_length(text) == length
    config = MastodonConfig.model_validate({"provider": "mastodon", "body": "b"})
    problems = [c for c, _ in MastodonChannel.check(_message("mastodon", text), config)]
    assert problems == (["mastodon_too_long"] if length > 500 else [])


def test_mastodon_counts_the_content_warning_and_the_instances_own_limits() -> None:
    assert mastodon_length("a" * 490, spoiler_text="content warning") == 505
    assert countable_text("go https://example.org/a", characters_per_url=30) == "go " + "x" * 30
    config = MastodonConfig.model_validate(
        {"provider": "mastodon", "body": "b", "max_characters": 1000, "characters_reserved_per_url": 30}
    )
    message = _message("mastodon", "a" * 970 + " https://example.org/x")
    assert MastodonChannel.size(message, config) == (1001, 1000)
    [(code, text)] = MastodonChannel.check(message, config)
    assert code == "mastodon_too_long" and "1001" in text and "1000" in text


# -- Threads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("a" * 500, 500),
        ("a" * 501, 501),
        ("😀" * 125, 500),  # an emoji counts its 4 UTF-8 bytes
        ("😀" * 126, 504),
        (FLAG, 8),
        (FAMILY, 25),
        ("日本語", 3),  # not emoji: one each
        ("caf" + ACCENT, 5),  # code points
    ],
    ids=["500", "501", "125-emoji", "126-emoji", "flag", "family", "cjk", "combining"],
)
def test_threads_counts_an_emoji_as_its_utf8_bytes(text: str, length: int) -> None:
    assert threads_length(text) == length
    config = ThreadsConfig.model_validate({"provider": "threads", "body": "b"})
    problems = [c for c, _ in ThreadsChannel.check(_message("threads", text), config)]
    assert problems == (["threads_too_long"] if length > 500 else [])


def test_threads_refuses_more_than_five_unique_links_counting_those_without_a_scheme() -> None:
    five = " ".join(f"https://example.org/{i}" for i in range(4)) + " www.example.com"
    assert len(links(five)) == 5
    assert len(links(five + " https://example.org/0")) == 5  # the same URL counts once
    config = ThreadsConfig.model_validate({"provider": "threads", "body": "b"})
    assert ThreadsChannel.check(_message("threads", five), config) == []
    [(code, _)] = ThreadsChannel.check(_message("threads", five + " example.net/x"), config)
    assert code == "threads_links"


# -- LinkedIn -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "over"),
    [("a" * 3000, False), ("a" * 3001, True), ("😀" * 1500, False), ("😀" * 1500 + "a", True)],
    ids=["3000", "3001", "1500-emoji", "3001-units"],
)
def test_linkedin_counts_utf16_units_against_3000(text: str, over: bool) -> None:
    config = LinkedInConfig.model_validate({"provider": "linkedin", "body": "b"})
    problems = [c for c, _ in LinkedInChannel.check(_message("linkedin", text), config)]
    assert problems == (["linkedin_too_long"] if over else [])
    assert LinkedInChannel.size(_message("linkedin", text), config)[1] == 3000


def test_linkedin_little_text_is_escaped_and_read_back_unchanged() -> None:
    text = "Join us (tonight) #debate @team [live] <now> *50%* off_ ~ | {x} \\ https://go.example.org/c/a_b"
    escaped = escape_little_text(text)
    assert "\\(" in escaped and "\\#" in escaped and "\\@" in escaped and "a\\_b" in escaped
    assert unescape_little_text(escaped) == text


# -- URLs ------------------------------------------------------------------------------------------------------


def test_urls_end_before_trailing_punctuation_and_unbalanced_brackets() -> None:
    text = "(see https://example.org/a_(b)) and https://example.org/x, then http://127.0.0.1:8080/p."
    assert [u.url for u in find_urls(text)] == [
        "https://example.org/a_(b)",
        "https://example.org/x",
        "http://127.0.0.1:8080/p",
    ]
    assert find_urls("nohttps://example.org") == []  # glued to a word


# -- share kits' compose links -------------------------------------------------------------------------------


def test_share_kits_get_each_networks_compose_link_with_the_ambassadors_own_link() -> None:
    from urllib.parse import parse_qs, urlsplit

    from clarion.messages.share import share_helpers

    link = "https://go.example.org/c/AAAA"
    helpers = share_helpers(link)

    for name, prefix in [
        ("share_bluesky", "https://bsky.app/intent/compose?"),
        ("share_threads", "https://www.threads.net/intent/post?"),
        ("share_mastodon", "https://s2f.kytta.dev/?"),  # asks the reader for their instance
    ]:
        url = helpers[name]("Join us tonight 🇺🇸")
        assert url.startswith(prefix), url
        assert parse_qs(urlsplit(url).query)["text"] == [f"Join us tonight 🇺🇸 {link}"]
    assert helpers["share_linkedin"]().startswith("https://www.linkedin.com/sharing/share-offsite/?url=")


@pytest.mark.parametrize("name", ["share_bluesky", "share_threads", "share_mastodon"])
def test_a_pre_filled_post_over_the_networks_limit_is_a_template_error(name: str) -> None:
    import jinja2

    from clarion.messages.share import share_helpers

    with pytest.raises(jinja2.TemplateRuntimeError, match=name):
        share_helpers("https://go.example.org/c/AAAA")[name]("a" * 600)
