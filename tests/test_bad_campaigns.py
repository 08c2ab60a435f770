"""Every broken campaign in tests/bad/ is refused by `clarion validate`, with the problem located and explained.

Each case is a folder holding `campaign.yaml` and whatever it points to (contacts, template files). The
campaign file's header says what must be reported, one problem a line:

    # expect: 14:5: channels.sms.from: is not a valid phone number
    # expect: contacts.csv:3:1: is not UTF-8

`LINE:COL` is in the campaign file unless a file name (relative to the case folder) comes first. What
follows is a substring of the reported message; when it starts with a field path and ": " (as in
`channels.sms.from: ...`), the report must name exactly that field. A `# xfail: reason` line marks a case
whose report is not yet what a marketer needs: the expectation states what it should be.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from clarion.cli.main import app
from tests.conftest import REPO

BAD = REPO / "tests" / "bad"
MIN_CASES = 30

_EXPECT = re.compile(
    r"^#\s*expect:\s*(?:(?P<file>[^\s:]*[^\d\s:][^\s:]*):)?(?P<line>\d+):(?P<col>\d+):\s+(?P<text>.+?)\s*$"
)
_XFAIL = re.compile(r"^#\s*xfail:\s*(?P<reason>.+?)\s*$")
_FIELD = re.compile(r"^(?P<field>[A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*): (?P<rest>.*)$")
_REPORTED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")


@dataclass(frozen=True)
class Expected:
    file: str  # relative to the case folder
    line: int
    col: int
    field: str | None
    text: str

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}:{self.col}: {field}...{self.text}..."

    def matches(self, reported: str) -> bool:
        """Whether one stderr line reports this problem: same file (path suffix), line, column, field, text."""
        found = _REPORTED.match(reported)
        if not found or (int(found["line"]), int(found["col"])) != (self.line, self.col):
            return False
        suffix = Path(self.file).parts
        if Path(found["file"]).parts[-len(suffix) :] != suffix:
            return False
        rest = found["rest"]
        if self.field is not None:
            if not rest.startswith(f"{self.field}: "):
                return False
            rest = rest[len(self.field) + 2 :]
        return self.text in rest


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expected: tuple[Expected, ...]
    xfail: str | None


def _header(path: Path) -> list[str]:
    """The leading comment lines; read as bytes, since some cases are deliberately not UTF-8."""
    lines: list[str] = []
    if not path.is_file():
        return lines
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _case(folder: Path) -> Case:
    path = folder / "campaign.yaml"
    expected, xfail = [], None
    for line in _header(path):
        if found := _EXPECT.match(line):
            text = found["text"]
            field = None
            if named := _FIELD.match(text):
                field, text = named["field"], named["rest"]
            expected.append(
                Expected(found["file"] or "campaign.yaml", int(found["line"]), int(found["col"]), field, text)
            )
        elif found := _XFAIL.match(line):
            xfail = found["reason"]
    return Case(folder.name, path, tuple(expected), xfail)


CASES = [_case(folder) for folder in sorted(BAD.iterdir()) if folder.is_dir()]


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _crash(result: Result) -> str:
    if result.exception is None or isinstance(result.exception, SystemExit):
        return ""
    assert result.exc_info is not None
    return "".join(traceback.format_exception(*result.exc_info))


def test_the_corpus_is_large_and_every_case_says_what_it_expects() -> None:
    assert len(CASES) >= MIN_CASES
    for case in CASES:
        assert case.path.is_file(), f"{case.name}: no campaign.yaml"
        assert case.expected, f"{case.name}: no `# expect:` line in its header"
        for expected in case.expected:
            assert (case.path.parent / expected.file).is_file(), f"{case.name}: no file {expected.file}"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_campaign_is_refused_with_located_problems(case: Case) -> None:
    result = _invoke("validate", str(case.path))

    assert not _crash(result), f"a user mistake crashed the CLI:\n{_crash(result)}"
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    assert not re.search(r"\bvalid\b", result.stdout, flags=re.IGNORECASE), result.stdout
    reported = result.stderr.splitlines()
    missing = [str(e) for e in case.expected if not any(e.matches(line) for line in reported)]
    assert not missing, "not reported:\n  " + "\n  ".join(missing) + "\nstderr:\n" + result.stderr
