"""Reading the files people give on the command line (CSV exports, lists, settings files) as text.

A file that is not what the command reads (binary, another encoding, a folder, unreadable) is a
ClarionError naming the file and what to give instead, never a UnicodeDecodeError's traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clarion.base.errors import ClarionError

MAX_SETTINGS_BYTES = 1024 * 1024  # a faults or engagement file is a few lines


def not_text(path: Path, exc: UnicodeDecodeError, what: str) -> ClarionError:
    """The error for a file that is not UTF-8 text (`what`: what it should be, e.g. "a CSV export")."""
    return ClarionError(
        f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}); "
        f"give {what}, saved as UTF-8"
    )


def read_text(path: Path, what: str, *, limit: int = MAX_SETTINGS_BYTES) -> str:
    """The whole of a small text file (a YAML or JSON settings file), or a ClarionError saying why not."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise ClarionError(f"{path}: {size:,} bytes, more than {what} holds (at most {limit:,})")
        data = path.read_bytes()
    except OSError as exc:
        raise ClarionError(f"{path}: cannot read ({exc.strerror}); give {what}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_text(path, exc, what) from None
    if "\x00" in text:
        raise ClarionError(f"{path}: holds NUL bytes, so it is not a text file; give {what}")
    return text


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A small YAML (or JSON) settings file that must hold a mapping: a ClarionError naming the file, the
    line and what to give when it is not text, not YAML, empty, or not a mapping."""
    import yaml

    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ClarionError(f"{where}: {problem}; give {what}") from None
    except RecursionError:
        raise ClarionError(f"{path}: nested too deeply; give {what}") from None
    if data is None:
        raise ClarionError(f"{path}: the file is empty; give {what}")
    if not isinstance(data, dict):
        raise ClarionError(f"{path}: holds a {type(data).__name__}, not a mapping of settings; give {what}")
    return data
