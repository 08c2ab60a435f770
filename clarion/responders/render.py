"""A responder's replies: Jinja templates and lookup expressions, compiled once, in Jinja's sandbox.

Templates see the match's named groups (by name, and as `match`), what each `lookup:` found, the sender's
contact fields (`contact`, empty for an unknown sender), `responder` and `link`: the sender's personal
tracked link, whose clicks and conversions count for this responder and rule. `link` is made only when a
template uses it. Undefined names are errors (StrictUndefined), which validation finds by rendering every
rule's examples, never a blank at reply time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clarion.responders.lookups import Lookups
from clarion.responders.model import Answering

Path = tuple[str | int, ...]
_HTTP = re.compile(r"^https?://[^\s/]+\S*\Z")


class ContactFields(dict[str, str]):
    """A sender's contact fields; a field an unknown sender has no value for reads as empty, so a template
    can say `{% if contact.first_name %}, {{ contact.first_name }}{% endif %}`."""

    def __missing__(self, key: str) -> str:
        return ""


class ReplyError(Exception):
    """A template or lookup failed; `at` is its place in the file, for FILE:LINE:COL."""

    def __init__(self, message: str, at: Path) -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class Answer:
    """A rendered reply: its text, where its personal link leads (if any), whether the lookups found all."""

    text: str
    destination: str | None
    found: bool = True


class _Compiled:
    """One Answering block (a rule, or a rule's follow-up answer), compiled."""

    def __init__(self, env: jinja2.Environment, block: Answering, at: Path) -> None:
        self.at = at
        self.lookups: list[tuple[str, Any, Path]] = []
        for name, expression in block.lookup.items():
            try:
                self.lookups.append((name, env.compile_expression(expression), (*at, "lookup", name)))
            except jinja2.TemplateSyntaxError as exc:
                raise ReplyError(f"lookup expression error: {exc.message}", (*at, "lookup", name)) from None
        self.reply = _template(env, block.reply, (*at, "reply"))
        self.not_found = _template(env, block.not_found, (*at, "not_found")) if block.not_found else None
        self.link = _template(env, block.link, (*at, "link")) if block.link else None
        self.uses_link = any(t is not None and t[1] for t in (self.reply, self.not_found))


def _template(env: jinja2.Environment, source: str, at: Path) -> tuple[jinja2.Template, bool]:
    try:
        parsed = env.parse(source)
        return env.from_string(source), "link" in meta.find_undeclared_variables(parsed)
    except jinja2.TemplateSyntaxError as exc:
        raise ReplyError(f"template error: {exc.message}", at) from None


class Replies:
    """Every reply of a responder, compiled; `answer()` renders one for one sender."""

    def __init__(self, lookups: Lookups, responder_name: str, default_link: str | None) -> None:
        self.env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        self.env.globals.update(lookups.functions())
        self.responder = {"name": responder_name}
        self.default_link = default_link
        self._blocks: dict[str, _Compiled] = {}
        self._plain: dict[str, tuple[jinja2.Template, bool, Path]] = {}

    def add(self, key: str, block: Answering, at: Path) -> None:
        self._blocks[key] = _Compiled(self.env, block, at)

    def add_text(self, key: str, source: str, at: Path) -> None:
        template, uses_link = _template(self.env, source, at)
        self._plain[key] = (template, uses_link, at)

    def uses_link(self, key: str) -> bool:
        if key in self._blocks:
            return self._blocks[key].uses_link
        return key in self._plain and self._plain[key][1]

    def keys(self) -> list[str]:
        return [*self._blocks, *self._plain]

    def __contains__(self, key: str) -> bool:
        return key in self._blocks or key in self._plain

    def answer(
        self,
        key: str,
        groups: Mapping[str, str],
        contact: Mapping[str, str],
        link: Callable[[str], str] | None,
    ) -> Answer:
        """Render the reply of `key` (a rule id, `<rule>/answer`, or a plain text's key). `link` turns a
        destination into the sender's personal link (None: the link shows the destination itself)."""
        context: dict[str, Any] = {
            **groups,
            "match": dict(groups),
            "contact": ContactFields(contact),
            "responder": self.responder,
        }
        if key in self._plain:
            template, uses_link, at = self._plain[key]
            destination = self.default_link if uses_link else None
            if uses_link:
                context["link"] = self._link(destination, link, at)
            return Answer(self._render(template, context, at), destination)
        block = self._blocks[key]
        for name, expression, at in block.lookups:
            try:
                value = expression(**context)
            except jinja2.UndefinedError as exc:
                raise ReplyError(f"lookup {name}: {exc.message}", at) from None
            except (LookupError, jinja2.TemplateError) as exc:
                raise ReplyError(f"lookup {name}: {exc}", at) from None
            if value is None or isinstance(value, jinja2.Undefined):
                return self._not_found(block, context, link)
            context[name] = value
        destination = self._destination(block, context) if block.reply[1] else None
        if block.reply[1]:
            context["link"] = self._link(destination, link, (*block.at, "reply"))
        return Answer(self._render(block.reply[0], context, (*block.at, "reply")), destination)

    def _not_found(
        self, block: _Compiled, context: dict[str, Any], link: Callable[[str], str] | None
    ) -> Answer:
        if block.not_found is None:
            return Answer("", None, found=False)
        at = (*block.at, "not_found")
        destination = self.default_link if block.not_found[1] else None
        if block.not_found[1]:
            context["link"] = self._link(destination, link, at)
        return Answer(self._render(block.not_found[0], context, at), destination, found=False)

    def _destination(self, block: _Compiled, context: dict[str, Any]) -> str | None:
        if block.link is None:
            return self.default_link
        at = (*block.at, "link")
        url = self._render(block.link[0], context, at).strip()
        if not _HTTP.match(url):
            raise ReplyError(f"the link renders as {url[:80]!r}, which is not an http(s) URL", at)
        return url

    def _link(self, destination: str | None, link: Callable[[str], str] | None, at: Path) -> str:
        if destination is None:
            raise ReplyError("the reply uses {{ link }} but the file has no `link: {url: ...}`", at)
        return destination if link is None else link(destination)

    @staticmethod
    def _render(template: jinja2.Template, context: dict[str, Any], at: Path) -> str:
        try:
            return template.render(context).strip()
        except jinja2.UndefinedError as exc:
            raise ReplyError(
                f"{exc.message}; templates see the pattern's groups, match, contact, "
                "responder, link and the rule's lookups",
                at,
            ) from None
        except jinja2.TemplateError as exc:
            raise ReplyError(f"template error: {exc}", at) from None
