"""Templates rendered once per run, not once per contact: a skeleton with keys, and each recipient's values.

A template part whose per-recipient names (`contact`, `link`, `unsubscribe_url`, the share helpers, and
`variant` where it is not a condition) appear only as whole `{{ ... }}` expressions ("holes") is rendered
once with a key standing in each hole: its *skeleton*. A recipient's text is the skeleton with each key
replaced by that hole's value for them, escaped as Jinja escapes it in an HTML part: what Jinja would have
rendered, computed once. A provider that substitutes values itself (SendGrid's substitutions) gets the
skeleton once per request and only the values per recipient.

A hole's value comes straight from the data when the hole is a plain name or field (`{{ link }}`,
`{{ contact.first_name }}`), else from the hole alone compiled as a template, remembered by the values it
reads (`{{ contact.first_name or "Friend" }}` is worked out once per distinct first name).

A part is rendered per recipient, as before, when a per-recipient name is used anywhere else: in a
condition or a loop header, a `set`, a macro, a filter or call block, or when the template includes,
extends or imports another. Keys are ASCII letters and digits, which escaping, html2text and SendGrid
leave alone; a recipient whose values contain the key prefix gets their message rendered out in full.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from markupsafe import escape

KEY_PREFIX = "CLRNK"
_KEY = re.compile(KEY_PREFIX + r"\d{4}[HT]Z")
SPECIAL = re.compile("[&<>\"']")  # what HTML escaping changes; a value without any is its own escape
#: Statements a hole may sit in: their bodies run once per skeleton, whatever the recipient.
_PLAIN = (nodes.Template, nodes.Output, nodes.If, nodes.For)
#: Statements that make a template depend on others, or reuse their output in ways keys would not survive.
_OPAQUE = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
MEMO_LIMIT = 8192  # remembered values per hole; cleared when full (memory stays flat on any audience)
#: SendGrid's cap is 10,000 bytes of substitutions per personalization; keep room for the rest.
MAX_VALUES_BYTES = 9000


def key_name(number: int, escaped: bool) -> str:
    return f"{KEY_PREFIX}{number:04d}{'H' if escaped else 'T'}Z"


@dataclass
class Hole:
    """One `{{ ... }}` whose value depends on the recipient."""

    key: str
    escaped: bool  # an HTML part's hole: its value is escaped as Jinja's autoescape does
    template: jinja2.Template  # the expression alone, `{{ expr }}`, in the part's environment
    direct: tuple[str, str | None] | None  # ("link", None), ("contact", "first_name"): read, not rendered
    reads: tuple[str, ...] | None  # contact fields it reads, when that is all it reads (memo key)
    uses_variant: bool = False
    memo: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def value(
        self, context: Mapping[str, Any], run: Callable[[jinja2.Template, Mapping[str, Any]], str]
    ) -> str:
        if self.direct is not None:
            found = _read(context, self.direct)
            if found is not None:
                if self.escaped and SPECIAL.search(found):
                    return str(escape(found))
                return found
        memo_key: tuple[Any, ...] | None = None
        if self.reads is not None:
            fields = context.get("contact") or {}
            if all(name in fields for name in self.reads):
                variant = context["variant"]["id"] if self.uses_variant else None
                memo_key = (variant, *(fields[name] for name in self.reads))
                cached = self.memo.get(memo_key)
                if cached is not None:
                    return cached
        value = str(run(self.template, context))
        if memo_key is not None:
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[memo_key] = value
        return value


def _read(context: Mapping[str, Any], direct: tuple[str, str | None]) -> str | None:
    name, attr = direct
    value = context.get(name)
    if attr is not None:
        value = value.get(attr) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


@dataclass
class PartPlan:
    """How one template part is rendered: its skeleton template, and its holes in order."""

    skeleton: jinja2.Template
    holes: list[Hole]
    variant_fixed: bool  # `variant` is used outside holes: one skeleton per variant
    by_key: dict[str, Hole] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {hole.key: hole for hole in self.holes}


@dataclass(frozen=True)
class Shape:
    """A rendered skeleton, split at its keys: pieces[0] key pieces[1] key ... (keys at odd places)."""

    text: str
    pieces: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Shape:
        return cls(text, tuple(re.split(f"({_KEY.pattern})", text)))

    @property
    def keys(self) -> tuple[str, ...]:
        return self.pieces[1::2]

    def fill(self, values: Mapping[str, str]) -> str:
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        out = list(pieces)
        for i in range(1, len(out), 2):
            out[i] = values[out[i]]
        return "".join(out)


def text_keys(shape_text: str) -> str:
    """An HTML skeleton's keys as their plain-text twins (for the text part derived from the HTML)."""
    return _KEY.sub(lambda m: m.group(0)[:-2] + "TZ", shape_text)


def unescaped(value: str) -> str:
    """An HTML hole's value as the derived text part shows it: unescaped, its whitespace runs as one
    space (as the HTML displays it), without the Markdown escapes html2text would add."""
    return " ".join(htmllib.unescape(value).split())


def substitutable(values: Mapping[str, str]) -> bool:
    """Whether a provider can substitute these values: none looks like a key, and all of them together fit
    (MAX_VALUES_BYTES, counted in characters). One join, where a message's values are few and short."""
    joined = "\0".join(values.values())  # the separator is in no key: a key is found only inside a value
    return KEY_PREFIX not in joined and len(joined) - max(len(values) - 1, 0) <= MAX_VALUES_BYTES


class Planner:
    """Builds the PartPlans of one environment's templates; keys are numbered across a Renderer's parts."""

    def __init__(self, per_recipient: frozenset[str], constant: frozenset[str]) -> None:
        self.per_recipient = per_recipient
        self.constant = constant
        self._numbers: dict[tuple[str, str, bool], int] = {}

    def plan(self, env: jinja2.Environment, name: str, channel: str) -> PartPlan | None:
        """The part's plan, or None when it must be rendered per recipient."""
        assert env.loader is not None
        try:
            source, filename, _ = env.loader.get_source(env, name)
        except jinja2.TemplateError:
            return None
        if KEY_PREFIX in source:
            return None
        for variant_fixed in (False, True):
            names = self.per_recipient if variant_fixed else self.per_recipient | {"variant"}
            try:
                tree = env.parse(source, name, filename)
            except jinja2.TemplateSyntaxError:
                return None
            found = _holes(tree, names, self.constant | set(env.globals))
            if found is None:
                continue
            holes = [self._hole(env, name, filename, channel, out, i) for out, i in found]
            return PartPlan(_compiled(env, tree, name, filename), holes, variant_fixed)
        return None

    def _hole(
        self,
        env: jinja2.Environment,
        name: str,
        filename: str | None,
        channel: str,
        out: nodes.Output,
        i: int,
    ) -> Hole:
        expr = out.nodes[i]
        escaped = bool(env.autoescape)
        number = self._numbers.setdefault((channel, repr(expr), escaped), len(self._numbers) + 1)
        key = key_name(number, escaped)
        body = nodes.Template([nodes.Output([expr], lineno=expr.lineno)], lineno=1)
        body.set_environment(env)
        template = _compiled(env, body, name, filename)
        const = nodes.Const(key, lineno=expr.lineno)
        const.set_environment(env)
        out.nodes[i] = const
        direct = _direct(expr)
        reads = _contact_reads(expr)
        uses_variant = any(n.name == "variant" for n in expr.find_all(nodes.Name))
        return Hole(key, escaped, template, direct, reads, uses_variant)


def _compiled(
    env: jinja2.Environment, tree: nodes.Template, name: str, filename: str | None
) -> jinja2.Template:
    """A template from a syntax tree, named as its source (errors are located in the campaign's files)."""
    template = env.template_class.from_code(
        env, env.compile(tree, name, filename), env.make_globals(None), None
    )
    template.name = name
    return template


def _direct(expr: nodes.Expr) -> tuple[str, str | None] | None:
    if isinstance(expr, nodes.Name) and expr.name in ("link", "unsubscribe_url"):
        return (expr.name, None)
    attr = _field_of(expr)
    if attr is not None and attr[0] in ("contact", "variant"):
        return attr
    return None


def _field_of(expr: nodes.Node) -> tuple[str, str] | None:
    """`contact.x` or `contact["x"]` (a name's field, not one of dict's own attributes)."""
    if isinstance(expr, nodes.Getattr) and isinstance(expr.node, nodes.Name):
        attr = expr.attr
    elif (
        isinstance(expr, nodes.Getitem)
        and isinstance(expr.node, nodes.Name)
        and isinstance(expr.arg, nodes.Const)
        and isinstance(expr.arg.value, str)
    ):
        attr = expr.arg.value
    else:
        return None
    return None if hasattr(dict, attr) else (expr.node.name, attr)


def _contact_reads(expr: nodes.Expr) -> tuple[str, ...] | None:
    """The contact fields a hole reads, when it reads nothing else per recipient (then it can be
    remembered by their values)."""
    reads: list[str] = []
    allowed: set[int] = set()
    for node in expr.find_all((nodes.Getattr, nodes.Getitem)):
        attr = _field_of(node)
        if attr is not None and attr[0] == "contact":
            reads.append(attr[1])
            allowed.add(id(node.node))  # type: ignore[attr-defined]
    for name in expr.find_all(nodes.Name):
        if name.name == "contact" and id(name) not in allowed:
            return None
        if name.name in ("link", "unsubscribe_url") or name.name.startswith("share_"):
            return None
    return tuple(sorted(set(reads)))


def _holes(
    tree: nodes.Template, per_recipient: frozenset[str] | set[str], allowed: set[str] | frozenset[str]
) -> list[tuple[nodes.Output, int]] | None:
    """Where the holes are, or None when a per-recipient name is used anywhere but in a hole."""
    if any(True for _ in tree.find_all(_OPAQUE)):
        return None
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if assigned & set(per_recipient):
        return None
    holes: list[tuple[nodes.Output, int]] = []

    def personal(node: nodes.Node) -> bool:
        return any(n.name in per_recipient for n in node.find_all(nodes.Name)) or (
            isinstance(node, nodes.Name) and node.name in per_recipient
        )

    def walk(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Output):
            for i, child in enumerate(node.nodes):
                if isinstance(child, nodes.TemplateData) or not personal(child):
                    continue
                names = {n.name for n in child.find_all(nodes.Name)}
                if isinstance(child, nodes.Name):
                    names.add(child.name)
                if names - set(per_recipient) - set(allowed) or names & assigned:
                    return False  # it reads a loop variable or a `set` name: not on its own
                holes.append((node, i))
            return True
        if isinstance(node, (nodes.If, nodes.For)):
            heads = [node.test] if isinstance(node, nodes.If) else [node.iter, node.target]
            if isinstance(node, nodes.For) and node.test is not None:
                heads.append(node.test)
            if any(personal(h) for h in heads):
                return False
            bodies = [*node.body, *node.else_]
            if isinstance(node, nodes.If):
                for elif_ in node.elif_:
                    if personal(elif_.test):
                        return False
                    bodies.extend(elif_.body)
            return all(walk(child) for child in bodies)
        if isinstance(node, nodes.Template):
            return all(walk(child) for child in node.body)
        return not personal(node)

    return holes if walk(tree) else None


__all__ = [
    "SPECIAL",
    "Hole",
    "PartPlan",
    "Planner",
    "Shape",
    "key_name",
    "substitutable",
    "text_keys",
    "unescaped",
]
