"""A launch whose audience is a database query sends exactly what the same contacts in a CSV would."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from tests.conftest import point_adapters_at
from tests.flows.conftest import CAMPAIGN, write_audience


def test_a_query_audience_is_sent_in_batches_like_a_csv(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a request of 500 personalizations can take the sandbox more than the flow tests' 2-s timeout on a
    # busy machine; the send is then rightly settled uncertain, which is not what this test is about
    point_adapters_at(providers, monkeypatch, timeout=30)
    with write_audience(tmp_path, 2_300).open() as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0])
    with sqlite3.connect(tmp_path / "crm.db") as db:
        db.execute(f"CREATE TABLE supporters ({', '.join(columns)})")
        db.executemany(
            f"INSERT INTO supporters VALUES ({', '.join('?' * len(columns))})",
            [[r[c] for c in columns] for r in rows],
        )
    text = CAMPAIGN.replace(
        "  contacts: contacts.csv\n", '  query: {url: "sqlite:///crm.db", sql: "SELECT * FROM supporters"}\n'
    ).replace("    provider: sendgrid\n", "    provider: sendgrid\n    batch_size: 500\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(text)

    result = launch(str(path), "query-run")

    assert result.status == "completed"
    store = Ledger.open()
    emails = providers.messages("sendgrid")
    sent = [r for r in store.sends("query-run", "email") if r.state.value == "sent"]
    assert len(sent) == len(emails) == len({m["to"] for m in emails}) > 1_500
    by_id = {r["id"]: r["email"] for r in rows}
    assert all(by_id[r.recipient] in {m["to"] for m in emails} for r in sent)
    texts = providers.messages("twilio")
    assert len(texts) == sum(1 for r in store.sends("query-run", "sms") if r.state.value == "sent") > 0
