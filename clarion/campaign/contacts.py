"""Reading the audience: a CSV file of contacts, streamed, never held in memory whole.

The file is read in binary and decoded line by line, so a non-UTF-8 byte is reported with its line, and
the byte offset where each record starts is known exactly: the send engine stores the offset of each
batch's first record and later seeks straight to it instead of re-reading the file from the top.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from clarion.base.errors import ClarionError, Problem

ID_COLUMN = "id"
MIDDLE_TRIES = 64  # lines tried after the middle of a file for one outside any quoted value
#: Bytes read from the audience file at a time: each read lets go of the GIL, and a planning thread that
#: let it go waited for it behind the send threads for up to a switch interval (5 ms) per read; 8 KiB, the
#: default, was a read per 150-odd contacts.
READ_BUFFER = 1 << 20
#: A read of `limit` records (a batch's) takes at most this many bytes a record, and at least 64 KiB, at a
#: time: an SMS batch of 250 no longer reads a MiB (from the page cache) per batch and thread
RECORD_BYTES, SMALLEST_BUFFER = 256, 1 << 16


class ContactsError(ClarionError):
    """A contacts file cannot be read; carries where."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class Contact(NamedTuple):
    """One record of the audience. A named tuple, not a frozen dataclass: as immutable, and built in a
    third of the time (a frozen dataclass sets each field through object.__setattr__), which counts when
    every contact is built three times a run (validating, planning, sending)."""

    seq: int  # 0-based position among the records
    line: int  # 1-based line where the record starts
    offset: int  # byte offset where the record starts
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return self.fields[ID_COLUMN]


class ContactsFile:
    """A contacts CSV: its header, and its records from any byte offset on."""

    def __init__(self, path: Path, display: str | None = None) -> None:
        self.path = path
        self.display = display or str(path)
        try:
            with path.open("rb") as fh:
                first = fh.readline()
                self.data_offset = fh.tell()
        except FileNotFoundError:
            raise ContactsError(Problem(self.display, 0, 0, "contacts file not found")) from None
        except OSError as exc:
            raise ContactsError(Problem(self.display, 0, 0, f"cannot be read: {exc.strerror}")) from None
        header_text = self._decode(first, 1).lstrip("\ufeff")
        if not header_text.strip():
            raise ContactsError(
                Problem(self.display, 1, 1, "the file is empty; it needs a header line (id,email,phone,...)")
            )
        self.columns = [c.strip() for c in next(csv.reader([header_text]))]
        dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dupes:
            raise ContactsError(Problem(self.display, 1, 1, f"column(s) {', '.join(dupes)} appear twice"))
        if ID_COLUMN not in self.columns:
            raise ContactsError(
                Problem(
                    self.display,
                    1,
                    1,
                    f"has no {ID_COLUMN!r} column (found: {', '.join(self.columns)}); "
                    "add a column of unique, opaque contact ids",
                )
            )

    unit = "line"  # what a contact's `line` counts

    def column_of(self, name: str) -> int:
        """Where a field's problems point in a record: its line's start (a CSV record may span lines)."""
        return 1

    def _decode(self, raw: bytes, line: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContactsError(
                Problem(
                    self.display,
                    line,
                    exc.start + 1,
                    f"is not UTF-8 (byte 0x{raw[exc.start]:02x}); export the file as UTF-8 CSV",
                )
            ) from None

    def records(
        self, offset: int | None = None, seq: int = 0, limit: int | None = None, line: int | None = None
    ) -> Iterator[Contact]:
        """Records from byte `offset` (default: after the header), numbered from `seq`; `line` is the line
        before the one at `offset`, where a read from the top found it (else records' lines are unknown)."""
        start = self.data_offset if offset is None else offset
        size = READ_BUFFER if limit is None else min(READ_BUFFER, max(SMALLEST_BUFFER, limit * RECORD_BYTES))
        with self.path.open("rb", buffering=size) as fh:
            fh.seek(start)
            yield from self._read(fh, start, seq, limit, line)

    def middle(self) -> int | None:
        """Where a line starts near the middle of the records, outside any quoted value as far as counting
        quotes tells (an even number of them before it): where a second process may start reading, once a
        read from the top has confirmed a record starts there (`count_before`). None: no such line found
        (a stray quote in a value can fool the count, which is why it is confirmed)."""
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            fh.seek(self.data_offset + (size - self.data_offset) // 2)
            fh.readline()  # to the next line's start
            at = fh.tell()
            if at >= size:
                return None
            fh.seek(self.data_offset)
            quotes, left = 0, at - self.data_offset
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                quotes += block.count(b'"')
                left -= len(block)
            for _ in range(MIDDLE_TRIES):  # an odd count: inside a quoted value; try the next lines
                if quotes % 2 == 0:
                    return at
                line = fh.readline()
                if not line:
                    return None
                quotes += line.count(b'"')
                at += len(line)
        return None

    def count_before(self, offset: int) -> int | None:
        """How many records start before byte `offset`, read from the top; None when no record starts
        exactly there (the offset is inside a record, or past the last)."""
        for contact in self.records():
            if contact.offset >= offset:
                return contact.seq if contact.offset == offset else None
        return None

    def _read(
        self, fh: BinaryIO, start: int, seq: int, limit: int | None, line: int | None
    ) -> Iterator[Contact]:
        # Line numbers are exact from the top of the file (the header is line 1), or from a line the caller
        # knows; else unknown (0 from the offset on). Plain locals: every contact passes here twice a run.
        offset = start
        if line is None:
            line = 1 if start == self.data_offset else 0

        def lines() -> Iterator[str]:
            nonlocal offset, line
            for raw in fh:
                offset += len(raw)
                line += 1
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield self._decode(raw, line)  # raises, naming the line and the byte

        reader = csv.reader(lines(), strict=True)
        columns, width, strip = self.columns, len(self.columns), str.strip
        record_start, record_line = start, line + 1
        count = 0
        try:
            for row in reader:
                if limit is not None and count >= limit:
                    return
                if not row or not "".join(row).strip():  # every cell blank
                    record_start, record_line = offset, line + 1
                    continue
                if len(row) != width:
                    raise ContactsError(
                        Problem(
                            self.display,
                            record_line,
                            1,
                            f"has {len(row)} fields where the header has {width}; "
                            "quote values that contain commas",
                        )
                    )
                # the widths were just compared: strict=True would compare them again, 40% slower
                fields = dict(zip(columns, map(strip, row), strict=False))
                yield Contact(seq, record_line, record_start, fields)
                seq += 1
                count += 1
                record_start, record_line = offset, line + 1
        except csv.Error as exc:
            hint = ""
            if "end of data" in str(exc) or "quote" in str(exc):
                hint = ' (a quoted value is not closed: look for a stray " in this record)'
            raise ContactsError(
                Problem(self.display, record_line, 1, f"is not valid CSV: {exc}{hint}")
            ) from None


def file_digest(*paths: Path) -> str:
    """sha256 over the given files, to tell later whether anything changed."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\x00")
    return digest.hexdigest()
