"""Wrong values for every parameter of the `clarion` command, found by walking the typer application.

A parameter's wrong values come from what the code declares about it: its type (int and float with their
ranges, bool flags, enums, paths to read, paths to write, folders) and, for text, the kind its parser
names (clarion/cli/params.py). A text parameter without a kind, an int or float without a range, or a
path that is neither read nor written has no strategy: `strategy_for` raises, and the coverage test fails.
"""

from __future__ import annotations

import enum
import functools
import re
import signal
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import typer
import typer.testing
from hypothesis import strategies as st
from typer.testing import CliRunner

from clarion.cli.main import app
from clarion.cli.params import Kind

CASE_SECONDS = 30  # a case that has not ended by then started something it should have refused


@dataclass(frozen=True)
class Param:
    command: tuple[str, ...]
    param: Any  # typer's parameter object

    @property
    def id(self) -> str:
        return f"{' '.join(self.command)}:{self.param.name}"

    @property
    def info(self) -> Any:
        return self.param.type_descriptor.parameter_info

    @property
    def annotation(self) -> Any:
        return _unwrap(self.param.type_descriptor.annotation)

    @property
    def is_argument(self) -> bool:
        return not getattr(self.param, "opts", None) or not self.param.opts[0].startswith("-")

    @property
    def names(self) -> list[str]:
        """What a message may call it: its options, its name, its metavar."""
        found = [o for o in (getattr(self.param, "opts", None) or []) if o.startswith("-")]
        name = self.param.name or ""
        return [*found, name, name.upper(), name.replace("_", "-"), (self.info.metavar or "") or name]


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; `list[X]` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0]
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return annotation


@functools.cache
def root() -> Any:
    """The click command typer builds from the app (built once: it takes a tenth of a second)."""
    return typer.main.get_command(app)


@functools.cache
def commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the app, with its path: (("suppress", "add"), command)."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in sorted(subcommands.items()):
                walk(sub, (*path, name))
        else:
            found.append((path, command))

    walk(root(), ())
    return found


def parameters() -> list[Param]:
    return [Param(path, p) for path, command in commands() for p in command.params]


# -- wrong values -------------------------------------------------------------------------------------

CONTROL = st.sampled_from(["\n", "\r", "\t\x1b[2J", "\x07", "\u200b", "\u202e", "\x7f", "\x85", "\ufeff"])
NASTY_TEXT = st.one_of(
    st.just(""),
    st.just(" "),
    st.just("\u3000"),
    st.builds(lambda c, s: s + c + s, CONTROL, st.text("ab", min_size=1, max_size=5)),
    st.builds(lambda c: "ok" + c, CONTROL),
    st.builds(lambda n: "x" * n, st.integers(5_000, 200_000)),
)
PATH_LIKE = st.sampled_from(["../../etc", "a/b", "/etc/passwd", "..", ".", "~root", "a\\b", "C:\\x"])
IDENTIFIER_BAD = st.one_of(
    NASTY_TEXT,
    PATH_LIKE,
    st.sampled_from(
        ["Debate", "a b", "-a", ".a", "_a", "a\n", "café", "a;rm -rf", "a" * 201, "%2e%2e", "a:b"]
    ),
    st.text(min_size=1, max_size=30).filter(lambda s: not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,199}", s)),
)
BY_KIND: dict[str, st.SearchStrategy[str]] = {
    "identifier": IDENTIFIER_BAD,
    "name": st.one_of(NASTY_TEXT, st.sampled_from([" ana", "ana ", "a" * 101])),
    "text": st.one_of(NASTY_TEXT.filter(lambda s: s != "" or True)),
    "address": st.one_of(NASTY_TEXT, st.sampled_from(["not an address", "@", "+", "a@", "+1", "a" * 400])),
    "region": st.one_of(NASTY_TEXT, st.sampled_from(["USA", "U", "1", "ü", "U1", "XX1"])),
    "currency": st.one_of(NASTY_TEXT, st.sampled_from(["DOLLAR", "US", "12", "€", "U$D"])),
    "duration": st.one_of(
        NASTY_TEXT,
        st.sampled_from(["5 parsecs", "-1s", "1e999s", "99999999999999999d", "s", "1.5.2m", "nan"]),
    ),
    "json": st.one_of(
        NASTY_TEXT,
        st.sampled_from(["{", "[]", "1", "null", '"a"', "{'a': 1}", "[" * 100_000, '{"a": ' * 5_000]),
    ),
    "host": st.one_of(
        NASTY_TEXT,
        st.sampled_from(["a b", "-x", "http://x", "1.2.3.4.5:80", "::g", "[::1]", "a..b", "x" * 300]),
    ),
    "url": st.one_of(
        NASTY_TEXT,
        st.sampled_from(
            [
                "http://",
                "ftp://x",
                "mysql://u@h/db",
                "postgresql://h:99999/db",
                "redis://h:-1",
                "://",
                "x",
                "[::1",
            ]
        ),
    ),
}
NOT_A_NUMBER = st.sampled_from(["", " ", "abc", "1.5.1", "0x10", "1e", "--", "١٢", "½", "nan?", "1_0_"])


class NoStrategy(Exception):
    """A parameter the harness cannot make wrong values for: declare its kind or range."""


def strategy_for(p: Param) -> st.SearchStrategy[str]:
    """Wrong values (as the command line spells them) for parameter `p`."""
    info, kind = p.info, p.annotation
    if isinstance(info.parser, Kind):
        if info.parser.kind not in BY_KIND:
            raise NoStrategy(f"{p.id}: kind {info.parser.kind!r} has no wrong values in BY_KIND")
        return BY_KIND[info.parser.kind].filter(lambda v, k=info.parser: _rejected(k, v))
    if info.parser is not None:
        raise NoStrategy(f"{p.id}: its parser is not a clarion.cli.params.Kind")
    if kind is bool:
        return st.sampled_from(["yes", "1", "", "no"])  # given as --flag=VALUE: flags take none
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = {str(m.value) for m in kind}
        return st.one_of(NASTY_TEXT, st.text(max_size=12)).filter(lambda v: v not in choices)
    if kind is int or kind is float:
        if info.min is None or info.max is None:
            raise NoStrategy(f"{p.id}: a number without min= and max=; declare its range")
        low, high = info.min, info.max
        numbers: st.SearchStrategy[Any] = st.one_of(
            st.integers(max_value=int(low) - 1)
            if kind is int
            else st.floats(max_value=low, exclude_max=True),
            st.integers(min_value=int(high) + 1)
            if kind is int
            else st.floats(min_value=high, exclude_min=True),
            st.sampled_from([10**40, -(10**40)]),
        )
        extra = st.sampled_from(["nan", "inf", "-inf", "1e999"]) if kind is float else st.just("1.5")
        return st.one_of(numbers.map(str), NOT_A_NUMBER, extra)
    if kind is Path:
        if info.writable:
            return st.sampled_from(WRITE_CASES)
        if info.file_okay is False:  # a folder to create or use
            return st.sampled_from(["@under-file", "@under-file/x"])
        return st.sampled_from(READ_CASES)  # a file (or folder) to read
    raise NoStrategy(f"{p.id}: a {kind!r} parameter without a Kind parser (clarion/cli/params.py)")


def _rejected(kind: Kind, value: str) -> bool:
    try:
        kind.check(value)
    except ValueError:
        return True
    return False


#: Paths to read, by what is wrong with them; `@name` is a file the fixture writes (see `Files`).
READ_CASES = [
    "@missing",
    "@folder",
    "@empty",
    "@binary",
    "@not-utf8",
    "@huge",
    "@csv",
    "@yaml-list",
    "@unreadable",
    "@nul-yaml",
    "@deep-yaml",
    "@bom-only",
]
WRITE_CASES = ["@folder", "@missing-folder/out.html", "@under-file/out.html", ""]


class Files:
    """The files the path cases name, written once in a folder of their own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "folder").mkdir(exist_ok=True)
        writes: dict[str, bytes] = {
            "empty": b"",
            "binary": bytes(range(256)) * 64,
            "not-utf8": "name: caf\u00e9\nid,email\n".encode("latin-1") + b"\xff\xfe\x00bad",
            "huge": b"id,email,phone\n" + b"c-1,not an address,12\n" * 600_000,  # 14 MB of wrong rows
            "csv": b"id,email\nc-1,not-an-email\n",  # a CSV no command takes (no valid address, no amount)
            "yaml-list": b"- a\n- b\n",
            "unreadable": b"name: x\n",
            "nul-yaml": b"name: a\x00b\n",
            "deep-yaml": b"[" * 5000 + b"]" * 5000,
            "bom-only": b"\xef\xbb\xbf",
            "under-file": b"a file, not a folder\n",
        }
        for name, data in writes.items():
            (root / name).write_bytes(data)
        (root / "unreadable").chmod(0)

    def resolve(self, value: str) -> str:
        if not value.startswith("@"):
            return value
        return str(self.root / value[1:])


# -- running one case ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    argv: list[str]
    exit_code: int | None
    output: str
    problems: list[str] = field(default_factory=list)


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"still running after {CASE_SECONDS} s: it started something instead of refusing")


def argv_for(p: Param, value: str, base: dict[str, str]) -> list[str]:
    """The command line: the bad value for `p`, base values for the other required parameters."""
    options, arguments = [], []
    for other in _command(p.command).params:
        mine = other is p.param
        if not mine and not other.required:
            continue
        text = value if mine else base_value(Param(p.command, other), base)
        if not getattr(other, "opts", None) or not other.opts[0].startswith("-"):
            arguments.append(text)
        else:
            options.append(f"{other.opts[0]}={text}" if not (other.is_flag and not mine) else other.opts[0])
    return [*p.command, *options, "--", *arguments]


def _command(path: tuple[str, ...]) -> Any:
    for candidate, command in commands():
        if candidate == path:
            return command
    raise KeyError(path)


def base_value(p: Param, base: dict[str, str]) -> str:
    """A plausible value for a required parameter that is not the one under test."""
    info = p.info
    if isinstance(info.parser, Kind):
        return base.get(info.parser.kind, "no-such-run")
    if p.annotation is Path:
        return base["campaign"]
    return base.get(p.param.name, "1")


def run_case(p: Param, value: str, files: Files, base: dict[str, str], watched: list[Path]) -> Outcome:
    """Run one case in-process and list what went wrong with it (nothing, when it ended as it should)."""
    from tests.badinput.state import snapshot

    value = files.resolve(value)
    argv = argv_for(p, value, base)
    before = snapshot(*watched)
    result = invoke(argv)
    output = result.output + (getattr(result, "stderr", "") if _separate(result) else "")
    outcome = Outcome(argv, result.exit_code, output)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception))
        outcome.problems.append(f"raised {type(result.exception).__name__}:\n{tb[-3000:]}")
    if "Traceback (most recent call last)" in output:
        outcome.problems.append("printed a traceback")
    if result.exit_code not in (1, 2):
        outcome.problems.append(f"exit code {result.exit_code} (1 or 2 expected)")
    if not _names_it(output, p, value):
        outcome.problems.append("the message names neither the parameter nor the value")
    changes = before.changes(snapshot(*watched))
    if changes:
        outcome.problems.append("wrote: " + "; ".join(changes[:5]))
    return outcome


def invoke(argv: list[str]) -> Any:
    """`clarion ARGV` in-process (typer's runner on the command built once), stopped after CASE_SECONDS."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    build = typer.testing._get_command  # type: ignore[attr-defined]
    typer.testing._get_command = lambda given: root() if given is app else build(given)  # type: ignore[attr-defined]
    try:
        return CliRunner().invoke(app, argv, catch_exceptions=True)
    finally:
        typer.testing._get_command = build  # type: ignore[attr-defined]
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _separate(result: Any) -> bool:
    try:
        return bool(result.stderr) and result.stderr not in result.output
    except ValueError:
        return False


def flatten(output: str) -> tuple[str, str]:
    """The message with rich's box drawing and line wraps taken out (joined with and without spaces)."""
    lines = [line.strip().strip("│╭╮╰╯─").strip() for line in output.splitlines()]
    return " ".join(lines), "".join(lines)


def _names_it(output: str, p: Param, value: str) -> bool:
    if not output.strip():
        return False
    spaced, joined = flatten(output)
    lowered = spaced.lower(), joined.lower()
    candidates = [n for n in p.names if n]
    shown = value.strip()
    if 0 < len(shown) <= 60 and shown.isprintable():
        candidates += [shown, Path(shown).name]
    candidates.append(repr(value)[1:40])
    return any(c.lower() in text for c in candidates if c.strip() for text in lowered)


def iter_params(selection: str | None = None) -> Iterator[Param]:
    for p in parameters():
        if selection is None or p.id.startswith(selection):
            yield p
