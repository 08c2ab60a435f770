"""Where a campaign's templates come from, and where their errors point.

Templates are inline in the campaign file (a part's field: `body`, `subject`, ...) or files beside it, then
Clarion's own templates/ folder. An error names the campaign file's line and column for an inline
template (its block's first line and indentation), or the template file's own line, and says in the
user's terms what a missing field or var is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from clarion.base.errors import ClarionError, Problem
from clarion.channels.base import Channel, ChannelKind

BUNDLED_TEMPLATES = (Path(__file__).resolve().parent.parent / "templates").resolve()


class ContactFields(dict[str, str]):
    """A contact's row as templates see it (`contact.first_name`)."""


class VariantVars(dict[str, Any]):
    """A variant as templates see it (`variant.id`, `variant.headline`)."""


class RenderProblem(ClarionError):
    """A template failed for one contact; `code` groups the same failure across contacts."""

    def __init__(self, problem: Problem, code: str) -> None:
        self.problem = problem
        self.code = code
        super().__init__(str(problem))


class Origin:
    """Where a compiled template's line 1 is, to report errors at the right place."""

    def __init__(self, file: str, first_line: int, col: int, field: str, *, block: bool = False) -> None:
        self.file, self.first_line, self.col, self.field, self.block = file, first_line, col, field, block

    def at(self, lineno: int | None, message: str) -> Problem:
        line = self.first_line + max((lineno or 1) - 1, 0)
        col = self.col if (lineno or 1) == 1 or self.block else 1
        return Problem(self.file, line, col, message, self.field)


def indentation(path: Path, line: int) -> int:
    """The spaces before line `line` of `path` (0 if unreadable): the column an inline template starts at."""
    try:
        text = path.read_text(encoding="utf-8").splitlines()[line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        return 0
    return len(text) - len(text.lstrip(" "))


class Loader(jinja2.BaseLoader):
    """Inline sources by name; files under the campaign's folder, then Clarion's templates/ folder."""

    def __init__(self, base_dir: Path, inline: dict[str, str]) -> None:
        self.roots = [base_dir.resolve(), BUNDLED_TEMPLATES.parent]
        self.inline = inline

    def resolve(self, name: str) -> Path | None:
        for root in self.roots:
            candidate = (root / name).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                if root == self.roots[1] and not candidate.is_relative_to(BUNDLED_TEMPLATES):
                    continue
                return candidate
        return None

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template in self.inline:
            return self.inline[template], template, lambda: True
        path = self.resolve(template)
        if path is None:
            raise jinja2.TemplateNotFound(template)
        try:
            return path.read_text(encoding="utf-8"), str(path), lambda: True
        except UnicodeDecodeError:
            raise jinja2.TemplateError(f"template file {template} is not UTF-8 text") from None


_NO_ATTR = re.compile(r"'(?P<obj>[\w.]+) object' has no attribute '(?P<name>[^']+)'")
_UNDEFINED = re.compile(r"'(?P<name>[^']+)' is undefined")


def explain_undefined(raw: str, adapter: type[Channel]) -> tuple[str, str]:
    """Jinja's message for an undefined name said in the campaign's terms (what to add or fix), and a code
    that groups the same failure across contacts."""
    match = _NO_ATTR.search(raw)
    if match and match["obj"].endswith("ContactFields"):
        return (
            f"the contacts file has no column {match['name']!r} (used as contact.{match['name']}); "
            "add the column or fix the name",
            f"contact_field:{match['name']}",
        )
    if match and match["obj"].endswith("VariantVars"):
        return (
            f"variant has no var {match['name']!r} (used as variant.{match['name']}); "
            "add it under the variant's `vars:` or fix the name",
            f"variant_var:{match['name']}",
        )
    match = _UNDEFINED.search(raw)
    if match and match["name"] == "contact" and adapter.kind is ChannelKind.SOCIAL:
        return (
            "a post goes to everyone, so `contact` is not available in this channel's templates",
            "contact_in_social",
        )
    if match:
        return (
            f"{match['name']!r} is undefined; templates can use contact, variant, campaign, link, channel, "
            "share_x(), share_linkedin(), and in emails unsubscribe_url and postal_address",
            f"undefined:{match['name']}",
        )
    return f"template error: {raw}", "undefined"


__all__ = [
    "BUNDLED_TEMPLATES",
    "ContactFields",
    "Loader",
    "Origin",
    "RenderProblem",
    "VariantVars",
    "explain_undefined",
    "indentation",
]
