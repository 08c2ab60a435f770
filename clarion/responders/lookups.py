"""Lookups a responder's rules call: zip code -> place (the `zipcodes` package), and rows of CSV tables.

A rule binds names in order (`lookup:` in the file), each to an expression over what is known so far:

    lookup:
      place: zipcode(zip)                          # {zip, state, city, county} or nothing
      state: table("deadlines", place.state)       # the row of deadlines.csv whose key is that state

A lookup that finds nothing makes the rule answer with its `not_found` text (or the fallback).

`zipcodes` 3.x has its dataset compiled in (offline); its first query loads it (~0.9 s measured here), so
`warm()` runs at start-up, never inside a webhook. It accepts ZIP+4 and surrounding spaces, returns nothing
for a well-formed unknown zip ("00000") and raises for a malformed one (which we read as nothing). A zip is
one state in its data; it says nothing about a voter's registration jurisdiction: replies should say "for
CA" and link to the official source.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clarion.base.errors import Problem

_ZIP = re.compile(r"\s*(\d{5})(?:-?\d{4})?\s*")


def warm() -> None:
    """Load zipcodes' dataset now (its first query is slow)."""
    import zipcodes

    zipcodes.is_real("10001")  # type: ignore[no-untyped-call]


def zipcode(raw: object) -> dict[str, str] | None:
    """The place of a US zip code: zip, state (two letters), city, county; None when unknown or malformed."""
    if not isinstance(raw, str):
        return None
    found = _ZIP.fullmatch(raw)
    if found is None:
        return None
    place = _place(found.group(1))
    return None if place is None else dict(place)


@functools.lru_cache(maxsize=65_536)  # the dataset is fixed: a zip's place never changes in a process
def _place(code: str) -> tuple[tuple[str, str], ...] | None:
    """One zipcodes query (~1-4 ms of native code each here), remembered: people write the same zips."""
    import zipcodes

    try:
        matches = zipcodes.matching(code)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError):
        return None
    if not matches:
        return None
    z = matches[0]
    return (
        ("zip", code),
        ("state", str(z.get("state", ""))),
        ("city", str(z.get("city", ""))),
        ("county", str(z.get("county", ""))),
    )


class TableError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Table:
    """A CSV keyed by one column; keys compared trimmed and upper-cased. Rows are read-only dicts."""

    name: str
    source: str
    key: str
    rows: dict[str, dict[str, str]]

    def get(self, key: object) -> dict[str, str] | None:
        if key is None:
            return None
        return self.rows.get(str(key).strip().upper())

    @classmethod
    def read(cls, name: str, path: Path, key: str, display: str) -> Table:
        """Load and check a table; TableError names the file and line of its first problem."""
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
                reader = csv.reader(fh, strict=True)
                header = [h.strip() for h in next(reader, [])]
                if not header:
                    raise TableError(Problem(display, 1, 1, "the table is empty; it needs a header line"))
                if key not in header:
                    raise TableError(
                        Problem(display, 1, 1, f"has no column {key!r} (found: {', '.join(header)})")
                    )
                rows: dict[str, dict[str, str]] = {}
                for line, record in enumerate(reader, start=2):
                    if not record or all(not c.strip() for c in record):
                        continue
                    if len(record) != len(header):
                        message = f"has {len(record)} fields where the header has {len(header)}"
                        raise TableError(Problem(display, line, 1, message))
                    row = {h: c.strip() for h, c in zip(header, record, strict=True)}
                    value = row[key].upper()
                    if not value:
                        raise TableError(Problem(display, line, 1, f"the key column {key!r} is empty"))
                    if value in rows:
                        raise TableError(Problem(display, line, 1, f"a second row for {key} {row[key]!r}"))
                    rows[value] = row
        except FileNotFoundError:
            raise TableError(Problem(display, 0, 0, "table file not found")) from None
        except UnicodeDecodeError as exc:
            raise TableError(
                Problem(display, 0, 0, f"is not UTF-8 ({exc.reason}); save it as UTF-8")
            ) from None
        except csv.Error as exc:
            raise TableError(Problem(display, 0, 0, f"is not valid CSV: {exc}")) from None
        return cls(name, display, key, rows)


class Lookups:
    """The functions lookup expressions may call, over the responder's tables."""

    def __init__(self, tables: dict[str, Table]) -> None:
        self.tables = tables

    def table(self, name: object, key: object) -> dict[str, str] | None:
        found = self.tables.get(str(name))
        if found is None:
            known = ", ".join(self.tables) or "none"
            raise LookupError(f"no table named {name!r} (the file's `tables:` has: {known})")
        return found.get(key)

    def functions(self) -> dict[str, Any]:
        return {"zipcode": zipcode, "table": self.table}
