"""The one exception tree of Clarion.

Every mistake a user can make (a bad campaign file, a bad address, an unknown run id) is raised as a
`ClarionError`, whose message says what is wrong and what to do. The CLI prints it and exits non-zero;
anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ClarionError(Exception):
    """A mistake the user can fix; the message is shown as it is, without a traceback."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a campaign, located in the file a person edits.

    `file` is the path as the user gave it (or a template file's path); `line` and `col` are 1-based and
    may be unknown (0) for problems that belong to the whole file.
    """

    file: str
    line: int
    col: int
    message: str
    field: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col or 1}"
        prefix = f"{self.field}: " if self.field else ""
        return f"{where}: {prefix}{self.message}"


class CampaignInvalid(ClarionError):
    """A campaign file (or what it points to) has problems; all of them are listed, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
