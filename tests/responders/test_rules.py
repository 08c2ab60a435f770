"""Matching: compliance words first and unclaimable, keywords as carriers read them, RE2 patterns in order."""

from __future__ import annotations

import time

import pytest

from clarion.base.consent import classify_reply
from clarion.base.text import normalise
from clarion.responders.rules import KeywordRule, Matcher, PatternRule, RuleError, check_pattern

ZIP = r"(?:^|\D)(?P<zip>\d{5})(?:-\d{4})?(?:\D|$)"


def matcher(**kwargs: object) -> Matcher:
    keywords = [KeywordRule("volunteer", ("VOLUNTEER", "Bénévole")), KeywordRule("info-pack", ("PACK",))]
    patterns = [PatternRule("zip", ZIP), PatternRule("remind", r"remind me (?P<when>\d{1,2}(?:am|pm))")]
    return Matcher(keywords, patterns, fallback="fallback", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("  Arrêt!! ", "arret"),
        ("¿Ayuda?", "ayuda"),
        ("ＳＴＯＰ", "stop"),
        ("stop\u200b", "stop"),
        ("STOP 🙏", "stop"),
    ],
)
def test_normalise_reads_what_people_type_as_one_word(text: str, word: str) -> None:
    assert normalise(text) == word


@pytest.mark.parametrize("text", ["STOP", "Stop.", "¡stop!", "ＳＴＯＰ", "stop 🙏", "unsubscribe", "QUIT"])
def test_compliance_keywords_come_first(text: str) -> None:
    found = matcher().match(text)
    assert found is not None and found.kind == "compliance" and found.rule == "stop"
    assert classify_reply(text) == "stop"  # the tracking service reads them the same way


@pytest.mark.parametrize("text", ["please stop texting me", "stop it", "STOPP"])
def test_a_sentence_with_stop_in_it_is_not_an_opt_out(text: str) -> None:
    found = matcher().match(text)
    assert found is not None and found.kind != "compliance"
    assert classify_reply(text) is None


@pytest.mark.parametrize("word", ["STOP", "help", "Start", "info", "END"])
def test_no_rule_can_claim_a_compliance_word(word: str) -> None:
    with pytest.raises(RuleError, match="compliance keyword"):
        Matcher([KeywordRule("mine", (word,))])


def test_keywords_ignore_case_accents_and_surrounding_punctuation() -> None:
    m = matcher()
    for text in ("volunteer", " VOLUNTEER! ", "benevole", "BÉNÉVOLE."):
        found = m.match(text)
        assert found is not None and found.rule == "volunteer" and found.kind == "keyword", text
    assert m.match("I want to volunteer").rule == "fallback"  # type: ignore[union-attr]


def test_two_rules_cannot_share_a_keyword() -> None:
    with pytest.raises(RuleError, match="already a keyword of rule a"):
        Matcher([KeywordRule("a", ("JOIN",)), KeywordRule("b", ("join!",))])


def test_patterns_give_their_named_groups_and_keep_their_order() -> None:
    m = matcher()
    found = m.match("my zip is 94110, thanks")
    assert found is not None and found.rule == "zip" and found.groups == {"zip": "94110"}
    assert m.match("ZIP ９４１１０").groups == {"zip": "94110"}  # type: ignore[union-attr]  # fullwidth digits
    assert m.match("remind me 7pm").groups == {"when": "7pm"}  # type: ignore[union-attr]
    both = Matcher([], [PatternRule("first", r"\d+"), PatternRule("second", r"(?P<n>\d{5})")])
    assert both.match("94110").rule == "first"  # type: ignore[union-attr]


def test_anything_else_gets_the_fallback_or_nothing() -> None:
    assert matcher().match("hello there").kind == "fallback"  # type: ignore[union-attr]
    assert Matcher([KeywordRule("a", ("A",))]).match("hello") is None


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences"),
        (r"foo(?=bar)", "look-ahead"),
        (r"a++", "possessive"),
        (r"end\Z", r"\\z"),
        (r"(?P<x>a)(?P<x>b)", "used twice"),
        (r"a{1001}", "RE2 cannot use this pattern"),
        ("(", "missing"),
    ],
)
def test_patterns_re2_refuses_are_explained(pattern: str, why: str) -> None:
    with pytest.raises(RuleError, match=why):
        check_pattern(pattern)


def test_a_catastrophic_pattern_for_backtracking_runs_in_linear_time() -> None:
    m = Matcher([], [PatternRule("evil", r"(a|aa)*b")])
    started = time.perf_counter()
    assert m.match("a" * 100_000) is None
    assert time.perf_counter() - started < 0.5


def test_the_pacer_holds_the_call_past_its_limit() -> None:
    import threading

    from clarion.responders.sender import Pacer

    pacer, stop = Pacer(2, 0.3), threading.Event()
    started = time.monotonic()
    assert all(pacer.wait(stop) for _ in range(3))
    assert time.monotonic() - started >= 0.25  # the third call waited for the window to move
    stop.set()
    assert Pacer(1, 60).wait(stop) is False  # shutting down: nothing waits
