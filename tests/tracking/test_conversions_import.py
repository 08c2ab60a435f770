"""`clarion conversions import`: an export joined to the run's contacts, recorded once, mistakes named by line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.cli.main import app
from tests.tracking.conftest import RUN, Tracked

runner = CliRunner()


def run_import(path: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["conversions", "import", str(path), "--run", RUN, *args])
    return result.exit_code, result.stdout, result.stderr


def test_an_export_is_joined_to_contacts_by_email_or_phone(tracked: Tracked, tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(
        "email,phone,amount,time\n"
        "ADA@example.org,,25.00,2026-11-22T21:05:00Z\n"
        ",(212) 555-0142,10,2026-11-22T21:06:00Z\n"
        "someone@else.net,,99,2026-11-22T21:07:00Z\n"
    )
    code, out, err = run_import(export)
    assert code == 0, err
    assert "3 rows read, 2 conversions recorded" in out
    assert "1 rows match no contact of the run (lines 4)" in err
    found = tracked.ledger.engagement(RUN)
    assert sum(people for people, *_ in found.arm_conversions.values()) == 2
    assert sum(revenue for *_, revenue, _sq in found.arm_conversions.values()) == 3500
    assert all(channel is None for _arm, channel in found.conversions)  # an import names no channel


def test_importing_the_same_export_twice_records_it_once(tracked: Tracked, tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text("id,email,amount\nd-1,ben@example.org,5\n")
    export2 = tmp_path / "export2.csv"
    export2.write_text("email,amount,time\nben@example.org,7,2026-11-22T21:05:00Z\n")
    for _ in range(2):
        assert run_import(export)[0] == 0
        assert run_import(export2)[0] == 0
    (people, conversions, revenue, _sq) = next(iter(tracked.ledger.engagement(RUN).arm_conversions.values()))
    assert (people, conversions, revenue) == (1, 2, 1200)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "export.csv:1: the file is empty", id="empty"),
        pytest.param("name,amount\nx,1\n", "export.csv:1: no email or phone column", id="no-address"),
        pytest.param("email,total\na@b.org,1\n", "export.csv:1: no amount column", id="no-amount"),
        pytest.param("email,amount,bonus\na@b.org,1,2\n", "unknown column(s) bonus", id="unknown-column"),
        pytest.param(
            "email,amount\nada@example.org,lots\n",
            "export.csv:2: amount: 'lots' is not a number",
            id="bad-amount",
        ),
        pytest.param(
            "email,amount\nada@example.org,-4\n",
            "export.csv:2: amount: '-4' must be zero or more",
            id="negative",
        ),
        pytest.param(
            "email,amount,time\nada@example.org,4,yesterday\n",
            "export.csv:2: time: 'yesterday' is not an ISO 8601",
            id="bad-time",
        ),
        pytest.param(
            "email,amount,currency\nada@example.org,4,dollars\n", "export.csv:2: currency", id="bad-currency"
        ),
    ],
)
def test_mistakes_in_an_export_are_named_by_line_and_record_nothing(
    tracked: Tracked, tmp_path: Path, text: str, message: str
) -> None:
    export = tmp_path / "export.csv"
    export.write_text(text)
    code, _out, err = run_import(export)
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert tracked.ledger.engagement(RUN).arm_conversions == {}


def test_an_unknown_run_or_a_missing_file_is_a_clear_error(tracked: Tracked, tmp_path: Path) -> None:
    wide = CliRunner(env={"COLUMNS": "400"})  # a long temporary path is not folded inside a word
    result = wide.invoke(app, ["conversions", "import", str(tmp_path / "none.csv"), "--run", RUN])
    assert result.exit_code == 2  # a usage error, said while the command line is read
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # the box wraps it between words
    assert f"{tmp_path / 'none.csv'}' does not exist" in said
    export = tmp_path / "export.csv"
    export.write_text("email,amount\nada@example.org,4\n")
    result = runner.invoke(app, ["conversions", "import", str(export), "--run", "no-such-run"])
    assert result.exit_code == 1
    assert "no-such-run" in result.stderr


def test_times_may_be_offsets_from_the_runs_launch(tracked: Tracked, tmp_path: Path) -> None:
    """How the demo's donations are dated: relative to whenever the run launched."""
    from datetime import timedelta

    from clarion.ledger import SendState, Settlement

    export = tmp_path / "export.csv"
    export.write_text("email,amount,time\nada@example.org,5,+2h30m\nben@example.org,7,-1d\n")
    code, _out, err = run_import(export)
    assert code == 1 and "the run has sent nothing yet" in err and "export.csv:2: time: '+2h30m'" in err
    store = tracked.ledger
    rows = store.pending(RUN, "sms", store.batches(RUN, "sms")[0])
    store.begin(RUN, "sms", [r.recipient for r in rows])
    store.settle(RUN, "sms", [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows])
    launch = store.reach_times(RUN).launch
    assert launch is not None
    assert run_import(export)[0] == 0
    found = sorted(at for _arm, _channel, at, _amount in store.engagement(RUN).conversion_times)
    assert found == [launch - timedelta(days=1), launch + timedelta(hours=2, minutes=30)]
    bad = tmp_path / "bad.csv"
    bad.write_text("email,amount,time\nada@example.org,5,+soon\n")
    code, _out, err = run_import(bad)
    assert code == 1 and "bad.csv:2: time: '+soon' is neither an ISO 8601 time nor an offset" in err
