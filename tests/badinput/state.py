"""What "nothing written" means: the files under CLARION_HOME and the working folder, and the ledger's
rows (read through SQLite, so that its write-ahead log counts), compared before and after each case."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

DB_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, str]
    ledger: str

    def changes(self, after: Snapshot) -> list[str]:
        """What differs, as lines a person reads: files added, removed or changed, and the ledger."""
        found = []
        for name in sorted(set(self.files) | set(after.files)):
            before_hash, after_hash = self.files.get(name), after.files.get(name)
            if before_hash != after_hash:
                verb = "added" if before_hash is None else "removed" if after_hash is None else "changed"
                found.append(f"{verb}: {name}")
        if self.ledger != after.ledger:
            found.append("the ledger's rows changed")
        return found


def snapshot(*roots: Path) -> Snapshot:
    files: dict[str, str] = {}
    ledgers = []
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_symlink() or not path.is_file():
                continue
            if path.name.endswith(DB_SUFFIXES):
                if path.suffix == ".db":
                    ledgers.append(_dump(path))
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = "unreadable"
            files[str(path)] = digest
    return Snapshot(files, "\n".join(ledgers))


def _dump(path: Path) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"
    finally:
        connection.close()
