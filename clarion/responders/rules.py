"""Matching a message against a responder's rules: compliance words, then keywords, then patterns.

Order of evaluation, first hit wins:

1. the compliance keywords (STOP and its synonyms, START, HELP): fixed, checked first, and no rule can
   claim one of them (a keyword rule naming one is a validation error);
2. exact keywords: one dict lookup on the normalised message (clarion.base.text.normalise: the whole
   message, any case, accents and surrounding punctuation ignored, as carriers and Braze match them);
3. patterns, in file order, run by RE2 (linear time: no pattern can backtrack catastrophically) on
   `pattern_text` of the message; named groups become the reply's variables;
4. the fallback, if any.

Patterns are validated before use (`check_pattern`), with what RE2 refuses explained in words a rule author
reads. RE2 is not Python's `re`: `\\d`, `\\w` and `\\b` are ASCII-only, `$` matches only at the very end
(`\\z`, not `\\Z`), and there are no backreferences or look-arounds. One `re2.Set` per case-sensitivity
finds which patterns match in one pass; only the first of them is run again for its groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

from clarion.base.consent import HELP_WORDS, START_WORDS, STOP_WORDS, Reply
from clarion.base.text import normalise, pattern_text

Kind = Literal["compliance", "keyword", "pattern", "fallback", "answer", "retry"]

MAX_PATTERN_LENGTH = 1000
MAX_PROGRAM_SIZE = 10_000  # RE2 program size; a zip pattern is ~20, `[a-z]{1000}` ~1000
RE2_MAX_MEM = 1 << 20

COMPLIANCE: dict[str, Reply] = {
    **{w.lower(): Reply.STOP for w in STOP_WORDS},
    **{w.lower(): Reply.START for w in START_WORDS},
    **{w.lower(): Reply.HELP for w in HELP_WORDS},
}

_GROUP_NAME = re.compile(r"(?<!\\)\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")
_HINTS = (
    (re.compile(r"\\[1-9]|\(\?P=|\\k<"), "backreferences are not supported by RE2"),
    (re.compile(r"\(\?<?[=!]"), "look-ahead and look-behind are not supported by RE2"),
    (re.compile(r"\(\?>"), "atomic groups are not supported by RE2"),
    (re.compile(r"[*+?}]\+"), "possessive quantifiers are not supported by RE2"),
    (re.compile(r"\\Z"), r"RE2 spells end-of-text \z, not \Z"),
    (re.compile(r"\(\?[a-wyz]*x"), "verbose mode (?x) is not supported by RE2"),
)


class RuleError(ValueError):
    """A rule that cannot be used: `at` says which rule and field (for FILE:LINE:COL), `str()` why."""

    def __init__(self, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class KeywordRule:
    id: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class PatternRule:
    id: str
    pattern: str
    fullmatch: bool = False
    case_sensitive: bool = False


@dataclass(frozen=True)
class Match:
    """Which rule answered, and the named groups that took part in the match."""

    rule: str
    kind: Kind
    groups: Mapping[str, str] = field(default_factory=dict)
    compliance: Reply | None = None


def _options(case_sensitive: bool) -> Any:
    opts = re2.Options()
    opts.log_errors = False  # otherwise RE2 writes every parse error to stderr through absl
    opts.max_mem = RE2_MAX_MEM
    opts.case_sensitive = case_sensitive
    return opts


def anchored(pattern: str, fullmatch: bool) -> str:
    # RE2's \A and \z are absolute; wrapping keeps one unanchored Set for both kinds of rule
    return rf"\A(?:{pattern})\z" if fullmatch else pattern


def check_pattern(pattern: str, *, case_sensitive: bool = False) -> tuple[str, ...]:
    """The pattern's group names, in order; RuleError saying why RE2 will not run it within our limits."""
    if not pattern:
        raise RuleError("the pattern is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RuleError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    names = _GROUP_NAME.findall(pattern)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuleError(f"group name used twice: {', '.join(dupes)}")
    try:
        compiled = re2.compile(pattern, _options(case_sensitive))
    except re2.error as exc:
        raw = exc.args[0] if exc.args else exc
        detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        hint = next((h for rx, h in _HINTS if rx.search(pattern)), None)
        raise RuleError(f"RE2 cannot use this pattern: {detail}" + (f" ({hint})" if hint else "")) from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise RuleError(f"the pattern is too complex (RE2 program size {size} > {MAX_PROGRAM_SIZE})")
    index: dict[str, int] = dict(compiled.groupindex)  # by name, not group order (RE2 builds it from a map)
    return tuple(sorted(index, key=lambda name: index[name]))


def compile_pattern(pattern: str, *, fullmatch: bool = False, case_sensitive: bool = False) -> Any:
    """A compiled RE2 pattern (checked first)."""
    check_pattern(anchored(pattern, fullmatch), case_sensitive=case_sensitive)
    return re2.compile(anchored(pattern, fullmatch), _options(case_sensitive))


def groups_of(match: Any) -> dict[str, str]:
    return {k: v for k, v in match.groupdict().items() if v is not None}


class Matcher:
    """An ordered rule set, built once per responder channel; `match` is called per message."""

    def __init__(
        self,
        keywords: Iterable[KeywordRule] = (),
        patterns: Iterable[PatternRule] = (),
        *,
        fallback: str | None = None,
    ) -> None:
        self._keywords: dict[str, str] = {}
        for rule in keywords:
            for word in rule.keywords:
                key = normalise(word)
                if not key:
                    raise RuleError(f"rule {rule.id}: keyword {word!r} is empty once normalised")
                if key in COMPLIANCE:
                    raise RuleError(
                        f"rule {rule.id}: {word!r} is the compliance keyword {key.upper()} "
                        f"({COMPLIANCE[key].value}); it is always handled first and cannot be given "
                        "another reply"
                    )
                if self._keywords.get(key, rule.id) != rule.id:
                    raise RuleError(
                        f"rule {rule.id}: {word!r} is already a keyword of rule {self._keywords[key]}"
                    )
                self._keywords[key] = rule.id
        self._patterns: list[tuple[PatternRule, Any]] = []
        for prule in patterns:
            try:
                compiled = compile_pattern(
                    prule.pattern, fullmatch=prule.fullmatch, case_sensitive=prule.case_sensitive
                )
            except RuleError as exc:
                raise RuleError(f"rule {prule.id}: {exc}") from None
            self._patterns.append((prule, compiled))
        self._fallback = fallback
        self._sets: list[tuple[Any, list[int]]] = []
        for case_sensitive in (False, True):
            members = [i for i, (r, _) in enumerate(self._patterns) if r.case_sensitive is case_sensitive]
            if not members:
                continue
            found = re2.Set.SearchSet(_options(case_sensitive))
            for i in members:
                member = self._patterns[i][0]
                found.Add(anchored(member.pattern, member.fullmatch))
            found.Compile()  # Match() on an uncompiled Set silently returns None: always compile
            self._sets.append((found, members))

    @property
    def keywords(self) -> Mapping[str, str]:
        return self._keywords

    def match(self, text: str) -> Match | None:
        key = normalise(text)
        reply = COMPLIANCE.get(key)
        if reply is not None:
            return Match(reply.value, "compliance", compliance=reply)
        rule = self._keywords.get(key)
        if rule is not None:
            return Match(rule, "keyword")
        if self._patterns:
            hit = self._first_pattern(pattern_text(text))
            if hit is not None:
                return Match(hit[0], "pattern", hit[1])
        if self._fallback is not None:
            return Match(self._fallback, "fallback")
        return None

    def _first_pattern(self, body: str) -> tuple[str, dict[str, str]] | None:
        first: int | None = None
        for found, members in self._sets:
            hits = found.Match(body)  # indices in no particular order, or None
            if hits:
                best = members[min(hits)]
                first = best if first is None else min(first, best)
        if first is None:
            return None
        rule, compiled = self._patterns[first]
        m = compiled.search(body)
        if m is None:  # Set and Regexp disagree: cannot happen, but never guess
            return self._sequential(body)
        return rule.id, groups_of(m)

    def _sequential(self, body: str) -> tuple[str, dict[str, str]] | None:
        for rule, compiled in self._patterns:
            m = compiled.search(body)
            if m is not None:
                return rule.id, groups_of(m)
        return None


def matcher_for(rules: Sequence[Any], channel: str, fallback: str | None) -> Matcher:
    """The matcher of one channel from the responder's rules (those limited to other channels left out)."""
    mine = [r for r in rules if r.channels is None or channel in r.channels]
    keywords = [KeywordRule(r.id, tuple(r.keywords)) for r in mine if r.keywords is not None]
    patterns = [PatternRule(r.id, r.pattern, r.fullmatch, r.case_sensitive) for r in mine if r.pattern]
    return Matcher(keywords, patterns, fallback=fallback)
