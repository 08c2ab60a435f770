"""YAML loading that remembers where every key and value came from.

PyYAML composes a node tree whose nodes carry start marks; we construct plain Python data from that tree
with the safe constructor and, in the same walk, index each node's position by its path
(`("channels", "sms", "from")`). Validation errors then point at `FILE:LINE:COL` as a person sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clarion.base.errors import CampaignInvalid, Problem

PathKey = tuple[str | int, ...]

#: Deeper than any campaign needs; PyYAML composes nodes recursively and would hit Python's recursion limit.
MAX_DEPTH = 100
#: A campaign or responder file is a few kilobytes; a larger one is a wrong file (an export, a log),
#: and PyYAML would spend minutes on it before saying so.
MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    col: int  # 1-based
    block_scalar: bool = False  # a `|` or `>` scalar: its text starts on the next line


@dataclass
class SourceMap:
    """Where each path of a YAML document sits in its file."""

    file: str
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)

    def locate(self, path: PathKey, *, key: bool = False) -> Position:
        """The position of `path`'s value (or key), or of its nearest ancestor that is known."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if not key and probe in self.keys:
                return self.keys[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> Problem:
        pos = self.locate(path, key=key)
        return Problem(self.file, pos.line, pos.col, message, dotted(path))


def dotted(path: PathKey) -> str:
    """`("experiment", "variants", 0, "id")` -> `experiment.variants[0].id`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pos(mark: yaml.Mark, *, block: bool = False) -> Position:
    return Position(mark.line + 1, mark.column + 1, block)


def _index(
    node: yaml.Node, path: PathKey, source: SourceMap, problems: list[Problem], walked: dict[int, bool]
) -> None:
    """Record where `path` sits, and below it. `walked` maps each node already seen to whether it is still
    being walked: an alias to a node already indexed is not walked again (nested aliases would multiply the
    paths), and an alias inside the node it names would make the data recursive."""
    source.values[path] = _pos(node.start_mark, block=getattr(node, "style", None) in ("|", ">"))
    if id(node) in walked:
        if walked[id(node)]:
            pos = _pos(node.start_mark)
            message = "an alias inside this anchored node refers back to it; a campaign cannot be recursive"
            problems.append(Problem(source.file, pos.line, pos.col, message, dotted(path)))
        return
    walked[id(node)] = True
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: the constructor reports it, located
            key = key_node.value
            child = (*path, key)
            if key in seen:
                pos = _pos(key_node.start_mark)
                problems.append(
                    Problem(
                        source.file,
                        pos.line,
                        pos.col,
                        f"key {key!r} appears twice in the same mapping; keep one",
                        dotted(child),
                    )
                )
            seen.add(key)
            source.keys[child] = _pos(key_node.start_mark)
            _index(value_node, child, source, problems, walked)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), source, problems, walked)
    walked[id(node)] = False


class _Loader(yaml.SafeLoader):
    """The safe loader, with what it would let escape as Python errors reported as located YAML errors."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH and parent is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested more than {MAX_DEPTH} levels deep; a campaign needs far fewer",
                parent.start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, AttributeError, OverflowError):
            # how PyYAML's int, float, bool and timestamp constructors fail on a value their tag cannot
            # hold: `2026-13-45`, `!!bool maybe`, `!!float` with no value, a 5,000-digit number
            if not isinstance(node, yaml.ScalarNode):
                raise
            text = repr(node.value) if len(node.value) <= 40 else repr(node.value[:37] + "...")
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"{text} is not a valid {kind}; quote it if it is text", node.start_mark
            ) from None


def _syntax_problem(name: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A YAML syntax error where a person would look for it, in words a person would use."""
    what = exc.problem or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    if "end of stream" in what and exc.context_mark is not None:
        mark = exc.context_mark  # an unclosed quote or bracket: point at where it opens
        what = "the quote or bracket that opens here is never closed; add the closing one"
    elif exc.context:
        what = f"{exc.context}: {what}"
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    if "\\t" in what or "'\t'" in what:
        what += " (a tab: indent with spaces, not tabs)"
    elif "mapping values are not allowed" in what:
        what += " (check the indentation of this line, or quote a value that contains ': ')"
    elif "expected <block end>" in what or "block mapping" in what:
        what += " (check the indentation of this line against the lines above)"
    return Problem(name, line, col, f"YAML syntax error: {what}")


def load_yaml(path: Path, display: str | None = None) -> tuple[Any, SourceMap]:
    """Parse `path` into plain data and its source map; syntax errors raise CampaignInvalid."""
    name = display or str(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_BYTES:
            message = (
                f"is {size:,} bytes: not a campaign or responder file (those are a few KB; at most "
                f"{MAX_BYTES:,})"
            )
            raise CampaignInvalid([Problem(name, 0, 0, message)])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignInvalid([Problem(name, 0, 0, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CampaignInvalid(
            [
                Problem(
                    name,
                    line,
                    col,
                    f"is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                )
            ]
        ) from None
    except OSError as exc:
        raise CampaignInvalid([Problem(name, 0, 0, f"cannot be read: {exc.strerror}")]) from None
    source = SourceMap(name)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise CampaignInvalid(
            [
                Problem(
                    name, line, col, f"has a character YAML does not allow (U+{exc.character:04X}); remove it"
                )
            ]
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise CampaignInvalid([Problem(name, 1, 1, "the file is empty; start from examples/")])
        problems: list[Problem] = []
        _index(node, (), source, problems, {})
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise CampaignInvalid([_syntax_problem(name, exc)]) from None
    except yaml.YAMLError as exc:
        raise CampaignInvalid([Problem(name, 0, 0, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if problems:
        raise CampaignInvalid(problems)
    return data, source
