"""Conversions measured outside tracked links: Clarion's conversion webhook, and CSV imports.

The webhook (`POST /webhooks/conversion`, signed with clarion.base.signing) takes a landing page's report
of a donation or sign-up, by click token or by the contact's email or phone (`ConversionIn`).

`clarion conversions import`: conversions from a CSV export, joined to a run's contacts by email or phone.

This is how the holdout's outcome is measured: the holdout got no message and no link, but its members can
still donate, and the donation platform's export names them by email or phone. Each row is matched to the
run's audience (never stored by address: the ledger keeps the contact's position and arm), and is recorded
once: by its `id` column when the export has one, else by a digest of (who, amount, currency, time), so
importing the same file twice changes nothing. Rows that match no contact are counted and listed, not
dropped silently. A row's `time` is ISO 8601, or an offset from the run's launch (`+2h30m`, `-1d`): how
the demo's donations are dated, so they fall where they would for a run launched whenever it is.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clarion.base.errors import ClarionError
from clarion.base.files import not_text
from clarion.base.timing import parse_duration
from clarion.channels.webhooks import Refused
from clarion.ledger import Conversion, Ledger, RunNotFound
from clarion.tracking.runs import AddressIndex, RunFacts

REQUIRED_ANY = ("email", "phone")
KNOWN = {"id", "email", "phone", "amount", "currency", "time", "occurred_at"}
BATCH = 2_000


@dataclass
class ImportResult:
    rows: int = 0
    recorded: int = 0
    unmatched_lines: list[int] = field(default_factory=list)


def import_conversions(ledger: Ledger, path: Path, run_id: str, *, currency: str = "USD") -> ImportResult:
    record = ledger.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    index = AddressIndex.read(Path(RunFacts.of(record).campaign_file))
    launch = ledger.launch_time(run_id)
    result = ImportResult()
    pending: list[tuple[int, Conversion]] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ClarionError(f"{path}: cannot read ({exc.strerror}); give the path of a CSV export") from None
    with handle:
        reader = csv.DictReader(handle, strict=True)
        try:
            _check_header(path, reader.fieldnames)
            for row in reader:
                result.rows += 1
                line = reader.line_num
                seq = index.find(email=_get(row, "email"), phone=_get(row, "phone"))
                if seq is None:
                    result.unmatched_lines.append(line)
                    continue
                pending.append((seq, _conversion(path, line, row, run_id, seq, currency, launch)))
        except csv.Error as exc:
            raise ClarionError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise not_text(path, exc, "a donation platform's CSV export") from None
    # written once the whole file has been read: a bad line anywhere leaves the ledger as it was
    for start in range(0, len(pending), BATCH):
        result.recorded += _write(ledger, run_id, pending[start : start + BATCH])
    return result


def _check_header(path: Path, header: Sequence[str] | None) -> None:
    if not header:
        raise ClarionError(f"{path}:1: the file is empty; expected a header such as email,amount,time")
    columns = {h.strip().lower() for h in header}
    if not columns & set(REQUIRED_ANY):
        raise ClarionError(
            f"{path}:1: no email or phone column to match contacts by (columns: {', '.join(header)})"
        )
    if "amount" not in columns:
        raise ClarionError(f"{path}:1: no amount column (columns: {', '.join(header)})")
    unknown = sorted(columns - KNOWN)
    if unknown:
        raise ClarionError(
            f"{path}:1: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(sorted(KNOWN))}"
        )


def _get(row: dict[str, str | None], name: str) -> str:
    for key, value in row.items():
        if key and key.strip().lower() == name:
            return (value or "").strip()
    return ""


def _conversion(
    path: Path,
    line: int,
    row: dict[str, str | None],
    run_id: str,
    seq: int,
    default_currency: str,
    launch: datetime | None = None,
) -> Conversion:
    raw_amount = _get(row, "amount")
    try:
        amount = Decimal(raw_amount.replace(",", "")) if raw_amount else Decimal(0)
    except InvalidOperation:
        raise ClarionError(f"{path}:{line}: amount: {raw_amount!r} is not a number (e.g. 25.00)") from None
    if amount < 0 or not amount.is_finite():
        raise ClarionError(f"{path}:{line}: amount: {raw_amount!r} must be zero or more")
    currency = (_get(row, "currency") or default_currency).upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ClarionError(f"{path}:{line}: currency: {currency!r} is not a 3-letter code such as USD")
    raw_time = _get(row, "time") or _get(row, "occurred_at")
    at = _when(path, line, raw_time, launch)
    external = (
        _get(row, "id")
        or hashlib.sha256(f"{seq}|{amount}|{currency}|{at.isoformat()}".encode()).hexdigest()[:32]
    )
    return Conversion(
        run_id=run_id,
        source="import",
        external_id=external[:200],
        arm="",  # filled in from the assignment when written
        amount_minor=int((amount * 100).to_integral_value()),
        currency=currency,
        at=at,
        contact_seq=seq,
    )


def _when(path: Path, line: int, raw: str, launch: datetime | None = None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    if raw[0] in "+-":
        return _offset(path, line, raw, launch)
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ClarionError(
            f"{path}:{line}: time: {raw!r} is not an ISO 8601 time (e.g. 2026-11-22T21:05:00Z)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _offset(path: Path, line: int, raw: str, launch: datetime | None) -> datetime:
    """`+2h30m` / `-1d`: that long after (before) the run's launch."""
    try:
        span = parse_duration(raw[1:])
    except ValueError:
        raise ClarionError(
            f"{path}:{line}: time: {raw!r} is neither an ISO 8601 time nor an offset from the launch "
            "(e.g. +2h30m, -1d)"
        ) from None
    if launch is None:
        raise ClarionError(
            f"{path}:{line}: time: {raw!r} is an offset from the run's launch, but the run has sent nothing "
            "yet; import after the launch, or give ISO 8601 times"
        )
    return launch + (span if raw[0] == "+" else -span)


def _write(ledger: Ledger, run_id: str, pending: list[tuple[int, Conversion]]) -> int:
    if not pending:
        return 0
    arms = ledger.arms_of(run_id, [seq for seq, _ in pending])
    rows = []
    for seq, conversion in pending:
        arm = arms.get(seq)
        if arm is None:  # in the contacts file but not in this run (e.g. added after it was planned)
            continue
        rows.append(
            Conversion(
                run_id=conversion.run_id,
                source=conversion.source,
                external_id=conversion.external_id,
                arm=arm,
                amount_minor=conversion.amount_minor,
                currency=conversion.currency,
                at=conversion.at,
                contact_seq=seq,
            )
        )
    ledger.record(conversion_rows=rows)
    return len(rows)


# -- the conversion webhook ---------------------------------------------------------------------------


class ConversionIn(BaseModel):
    """A conversion reported by a landing page: by click token, or by the contact's email or phone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200, description="The conversion's own id: replays are no-ops.")
    token: str | None = Field(default=None, max_length=64)
    run: str | None = Field(default=None, max_length=200, description="Needed with email or phone.")
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    amount: Decimal = Field(default=Decimal(0), ge=0, le=10**9)
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    occurred_at: datetime | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-11-22T21:05:00Z")
        return value

    def amount_minor(self) -> int:
        return int((self.amount * 100).to_integral_value())


def parse_conversion(body: bytes) -> ConversionIn:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused(400, "conversion body is not JSON") from None
    try:
        conversion = ConversionIn.model_validate(data)
    except (ValidationError, InvalidOperation) as exc:
        fields = ", ".join(
            ".".join(str(p) for p in e["loc"]) or "body" for e in getattr(exc, "errors", list)()
        )
        raise Refused(422, f"conversion body invalid: {fields or exc}") from None
    if not conversion.token and not conversion.email and not conversion.phone:
        raise Refused(422, "conversion names no one: give token, or run with email or phone")
    if not conversion.token and not conversion.run:
        raise Refused(422, "a conversion keyed by email or phone needs run (the run id)")
    return conversion
