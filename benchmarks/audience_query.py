"""Memory of an audience read from a database (`audience.query`): peak RSS while streaming 10k, 100k and
1M contacts, each size in a fresh process, from SQLite (and PostgreSQL with --postgres URL).

    .venv/bin/python benchmarks/audience_query.py [--sizes 10000,100000,1000000] [--postgres URL]

`last batch` is what one send task pays to read its 1,000 contacts from the end of the audience, after a
whole read (as planning does) taught the seek marks. Flat memory means the peak hardly moves from 10k
to 1M rows: rows come through a server-side cursor (stream_results, yield_per), never a list. Each
child also prints the baseline RSS after importing Clarion (before the query), so the growth is shown
apart from the interpreter's own size. The machine is shared with other work: times are indicative,
memory is not affected.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SQL = "SELECT * FROM supporters WHERE active = 1"
COLUMNS = "id, email, phone, first_name, timezone, persona, sms_consent, active"


def rows(n: int):
    for i in range(n):
        yield (
            f"c-{i:07d}",
            f"person{i}@example.org",
            f"+1415555{i % 10000:04d}",
            "Sam",
            "America/New_York",
            "cfo",
            "yes",
            1,
        )


def make_sqlite(path: Path, n: int) -> str:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE supporters ({COLUMNS})")
        db.executemany("INSERT INTO supporters VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows(n))
        db.execute("CREATE INDEX ix_id ON supporters (id)")
    return f"sqlite:///{path}"


def make_postgres(url: str, n: int) -> str:
    import psycopg
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS supporters"))
        types = ", ".join(c + (" int" if c == "active" else " text") for c in COLUMNS.split(", "))
        conn.execute(text(f"CREATE TABLE supporters ({types})"))
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor() as cursor, cursor.copy(f"COPY supporters ({COLUMNS}) FROM STDIN") as copy:
            for row in rows(n):
                copy.write_row(row)
        conn.execute(text("CREATE INDEX ix_id ON supporters (id)"))
    engine.dispose()
    return url


def drop_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS supporters"))
    engine.dispose()


def child(url: str) -> None:
    from clarion.campaign.query import QueryContacts

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    source = QueryContacts(url, SQL)
    count = 0
    for contact in source.records():
        count += len(contact.fields["email"]) > 0
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # what a send task does: read one batch of 1,000 from the last batch's position (OFFSET + LIMIT)
    started = time.perf_counter()
    last = list(source.records(offset=max(count - 1000, 0), seq=0, limit=1000))
    seek = time.perf_counter() - started
    assert len(last) == min(count, 1000)
    print(
        json.dumps(
            {"rows": count, "base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": elapsed, "seek": seek}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--postgres", help="a PostgreSQL URL whose search_path may get a supporters table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'backend':<10} {'rows':>9} {'RSS before':>11} {'peak RSS':>9} {'growth':>7} {'rows/s':>9} "
        f"{'last batch':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ["sqlite", *(["postgresql"] if args.postgres else [])]:
            for n in sizes:
                url = (
                    make_sqlite(Path(tmp) / f"crm-{n}.db", n)
                    if backend == "sqlite"
                    else make_postgres(args.postgres, n)
                )
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url], capture_output=True, text=True, check=True
                )
                found = json.loads(out.stdout)
                assert found["rows"] == n, found
                if backend == "postgresql":
                    drop_postgres(args.postgres)
                print(
                    f"{backend:<10} {n:>9,} {found['base_mb']:>9.1f}MB {found['peak_mb']:>7.1f}MB "
                    f"{found['peak_mb'] - found['base_mb']:>5.1f}MB {n / found['seconds']:>9,.0f} "
                    f"{found['seek'] * 1000:>8.0f}ms"
                )


if __name__ == "__main__":
    main()
