"""Audiences from a database (`audience.query: {url, sql}`): the same contacts, the same validation rules
with ROW:COLUMN locations, planned and resumed like a CSV audience, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from clarion.base.errors import CampaignInvalid
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.campaign.query import QueryContacts
from clarion.engine.plan import campaign_digest, plan_run
from clarion.ledger import Ledger
from clarion.messages.validate import validate
from tests.conftest import CAMPAIGN, CONTACTS, CampaignDir

ROWS = [line.split(",") for line in CONTACTS.strip().splitlines()[1:]]
COLUMNS = CONTACTS.splitlines()[0].split(",")


def query_campaign(url: str, sql: str = "SELECT * FROM supporters WHERE active = 1") -> str:
    return CAMPAIGN.replace(
        "audience:\n  contacts: contacts.csv\n", f'audience:\n  query:\n    url: "{url}"\n    sql: "{sql}"\n'
    )


def make_sqlite(path: Path, rows: list[list[str]] = ROWS) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE supporters ({', '.join(COLUMNS)}, active INTEGER)")
        db.executemany(
            f"INSERT INTO supporters VALUES ({', '.join('?' * (len(COLUMNS) + 1))})", [[*r, 1] for r in rows]
        )
        db.execute("INSERT INTO supporters (id, email, active) VALUES ('c-999', 'gone@example.org', 0)")


def test_a_query_audience_validates_and_plans_like_the_csv(campaign_dir: CampaignDir) -> None:
    make_sqlite(campaign_dir.root / "crm.db")
    loaded = load_campaign(campaign_dir.campaign(query_campaign("sqlite:///crm.db"), contacts=None))
    report = validate(loaded)
    assert report.contacts == 4
    csv = validate(load_campaign(campaign_dir.write("csv/campaign.yaml", CAMPAIGN) and _csv(campaign_dir)))
    assert report.arms == csv.arms and report.reachable == csv.reachable
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, loaded, "q-run")
    assert sum(ledger.arm_counts("q-run").values()) == 4


def _csv(campaign_dir: CampaignDir) -> Path:
    campaign_dir.write("csv/contacts.csv", CONTACTS)
    return campaign_dir.root / "csv" / "campaign.yaml"


def test_rows_stream_in_id_order_from_any_position(campaign_dir: CampaignDir) -> None:
    make_sqlite(campaign_dir.root / "crm.db")
    source = QueryContacts(
        f"sqlite:///{campaign_dir.root / 'crm.db'}", "SELECT * FROM supporters WHERE active = 1"
    )
    assert [c.id for c in source.records()] == ["c-001", "c-002", "c-003", "c-004"]
    later = list(source.records(offset=2, seq=2))
    assert [(c.seq, c.id, c.offset) for c in later] == [(2, "c-003", 2), (3, "c-004", 3)]
    assert [c.id for c in source.records(offset=1, limit=2)] == ["c-002", "c-003"]


def test_a_bad_row_is_reported_at_its_row_and_column(campaign_dir: CampaignDir) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][1] = "not-an-email"
    make_sqlite(campaign_dir.root / "crm.db", rows)
    with pytest.raises(CampaignInvalid) as caught:
        validate(load_campaign(campaign_dir.campaign(query_campaign("sqlite:///crm.db"), contacts=None)))
    shown = "\n".join(str(p) for p in caught.value.problems)
    assert (
        "audience.query:2:2:" in shown and "not-an-email" in shown and "(row 2)" in shown
    )  # row 2, column email


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT email FROM supporters", "returns no 'id' column", id="no-id"),
        pytest.param("SELECT * FROM nowhere", "the query failed", id="no-table"),
        pytest.param("DELETE FROM supporters", "must be one SELECT", id="not-a-select"),
        pytest.param("SELECT 1 AS id; DROP TABLE supporters", "must be one SELECT", id="two-statements"),
    ],
)
def test_a_bad_query_is_a_clear_error_at_audience_query(
    campaign_dir: CampaignDir, sql: str, expected: str
) -> None:
    make_sqlite(campaign_dir.root / "crm.db")
    with pytest.raises(CampaignInvalid) as caught:
        validate(load_campaign(campaign_dir.campaign(query_campaign("sqlite:///crm.db", sql), contacts=None)))
    shown = "\n".join(str(p) for p in caught.value.problems)
    assert "campaign.yaml:" in shown and "audience" in shown and expected in shown, shown


def test_the_url_may_come_from_the_environment_and_its_password_is_never_shown(
    campaign_dir: CampaignDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql+psycopg://crm:s3cret-pw@127.0.0.1:1/crm")
    with pytest.raises(CampaignInvalid) as caught:
        validate(load_campaign(campaign_dir.campaign(query_campaign("${CRM_DATABASE_URL}"), contacts=None)))
    shown = "\n".join(str(p) for p in caught.value.problems)
    assert "the query failed" in shown and "s3cret-pw" not in shown and "***" in shown
    monkeypatch.delenv("CRM_DATABASE_URL")
    with pytest.raises(CampaignInvalid) as unset:
        validate(load_campaign(campaign_dir.campaign(query_campaign("${CRM_DATABASE_URL}"), contacts=None)))
    assert "CRM_DATABASE_URL is not set" in str(unset.value.problems[0])


def test_the_resume_digest_covers_the_query_result(campaign_dir: CampaignDir) -> None:
    db = campaign_dir.root / "crm.db"
    make_sqlite(db)
    loaded = load_campaign(campaign_dir.campaign(query_campaign("sqlite:///crm.db"), contacts=None))
    before = campaign_digest(loaded)
    assert campaign_digest(loaded) == before
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE supporters SET first_name = 'Benjamin' WHERE id = 'c-002'")
    assert campaign_digest(loaded) != before


def test_exactly_one_of_contacts_or_query(campaign_dir: CampaignDir) -> None:
    both = CAMPAIGN.replace(
        "  contacts: contacts.csv\n",
        '  contacts: contacts.csv\n  query: {url: "sqlite:///x.db", sql: "SELECT 1 AS id"}\n',
    )
    with pytest.raises(CampaignInvalid) as caught:
        load_campaign(campaign_dir.campaign(both))
    assert "exactly one of `contacts:`" in str(caught.value.problems[0])


@pytest.mark.postgres
def test_a_query_audience_on_postgresql(campaign_dir: CampaignDir, postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE supporters ({', '.join(c + ' text' for c in COLUMNS)}, active int)"))
        for row in ROWS:
            conn.execute(
                text(f"INSERT INTO supporters VALUES ({', '.join(':' + c for c in COLUMNS)}, 1)"),
                dict(zip(COLUMNS, row, strict=True)),
            )
    engine.dispose()
    loaded = load_campaign(campaign_dir.campaign(query_campaign(postgres_url), contacts=None))
    report = validate(loaded)
    assert report.contacts == 4
    source = loaded.contacts()
    assert [c.id for c in source.records(offset=3, seq=3)] == ["c-004"]
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, loaded, "pg-run")
    assert sum(ledger.arm_counts("pg-run").values()) == 4


def test_reading_from_a_later_position_seeks_by_id_and_finds_the_same_rows(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, email TEXT)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?)", [(f"p-{i:05d}", f"p{i}@example.org") for i in range(2_500)]
        )
    url, sql = f"sqlite:///{db}", "SELECT id, email FROM people"
    everyone = [c.id for c in QueryContacts(url, sql).records()]
    assert everyone == sorted(everyone) and len(everyone) == 2_500
    fresh, warmed = QueryContacts(url, sql), QueryContacts(url, sql)
    assert len(list(warmed.records())) == 2_500  # a whole read (as planning does) leaves the marks
    for start in (1, 999, 1_000, 1_001, 2_003, 2_495):
        for source in (fresh, warmed):  # fresh: one id-only pass finds them first
            batch = list(source.records(offset=start, seq=start, limit=7))
            assert [c.id for c in batch] == everyone[start : start + 7]
            assert [c.seq for c in batch] == list(range(start, start + len(batch)))
