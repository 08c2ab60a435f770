"""`clarion compare`: aggregated counts in, the same statistics out; every bad input named by file:line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)
from statsmodels.stats.weightstats import ttest_ind
from typer.testing import CliRunner

from clarion.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    # A user mistake ends in an exit status, never in an exception or a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def compare(tmp_path: Path, text: str | bytes, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "counts.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    result = invoke("compare", str(path), *args)
    return result.exit_code, result.stdout, result.stderr


def test_json_numbers_agree_with_statsmodels(tmp_path: Path) -> None:
    code, out, err = compare(
        tmp_path, "variant,exposures,conversions\nA,5000,200\nB,5000,260\nC,4900,205\n", "--json"
    )
    assert code == 0, err
    data = json.loads(out)["analysis"]
    arms = {a["name"]: a for a in data["arms"]}
    low, high = proportion_confint(260, 5000, method="wilson")
    assert arms["B"]["rate_low"] == pytest.approx(low, abs=1e-12)
    assert arms["B"]["rate_high"] == pytest.approx(high, abs=1e-12)
    b = next(c for c in data["comparisons"] if c["name"] == "B")
    assert b["p_value"] == pytest.approx(proportions_ztest([260, 200], [5000, 5000])[1], rel=1e-9)
    assert data["baseline"] == "A"
    assert data["verdict"]["winner"] == "B"


def test_json_agrees_with_statsmodels_on_every_comparison_and_on_revenue(tmp_path: Path) -> None:
    """Per-recipient revenue generated here; the CSV carries only its sums, statsmodels sees the raw values."""
    rng = np.random.default_rng(5)
    counts = {"A": (4000, 160), "B": (4100, 205), "C": (3900, 170)}
    raw, lines = {}, ["conversions,revenue_sq,variant,exposures,revenue"]  # column order is free
    for name, (n, s) in counts.items():
        values = np.zeros(n)
        values[:s] = rng.choice([10.0, 20.0, 45.5], s)
        raw[name] = values
        lines.append(f"{s},{float((values**2).sum())!r},{name},{n},{float(values.sum())!r}")
    code, out, err = compare(tmp_path, "\n".join(lines) + "\n", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [row["variant"] for row in data["input"]] == ["A", "B", "C"]
    analysis = data["analysis"]
    assert analysis["baseline"] == "A"
    n2, s2 = counts["A"]
    raw_p = []
    for c in analysis["comparisons"]:
        n1, s1 = counts[c["name"]]
        z, p = proportions_ztest([s1, s2], [n1, n2])
        assert c["z"] == pytest.approx(z, rel=1e-9) and c["p_value"] == pytest.approx(p, rel=1e-9)
        raw_p.append(c["p_value"])
        low, high = confint_proportions_2indep(s1, n1, s2, n2, method="wald", compare="diff")
        assert [c["lift_abs_low"], c["lift_abs_high"]] == pytest.approx([low, high], rel=1e-9)
        low, high = confint_proportions_2indep(s1, n1, s2, n2, method="log", compare="ratio")
        assert [c["lift_rel_low"], c["lift_rel_high"]] == pytest.approx([low - 1, high - 1], rel=1e-9)
        t, p_t, _df = ttest_ind(raw[c["name"]], raw["A"], usevar="unequal")
        assert c["revenue_t"] == pytest.approx(t, rel=1e-9) and c["revenue_p"] == pytest.approx(p_t, rel=1e-9)
    adjusted = multipletests(raw_p, method="holm")[1]
    assert [c["p_adjusted"] for c in analysis["comparisons"]] == pytest.approx(list(adjusted), rel=1e-12)
    for arm in analysis["arms"]:
        n, s = counts[arm["name"]]
        assert [arm["rate_low"], arm["rate_high"]] == pytest.approx(
            list(proportion_confint(s, n, method="wilson")), rel=1e-9
        )
        assert arm["revenue_per_recipient"] == pytest.approx(raw[arm["name"]].mean(), rel=1e-12)
    assert sum(arm["prob_best"] for arm in analysis["arms"]) == pytest.approx(1.0, abs=1e-12)


def test_mde_in_json_agrees_with_statsmodels(tmp_path: Path) -> None:
    code, out, err = compare(
        tmp_path, "variant,exposures,conversions\nA,1000,40\nB,1000,44\n", "--json", "--mde", "0.01"
    )
    assert code == 0, err
    mde = json.loads(out)["mde"]
    theirs = samplesize_proportions_2indep_onetail(0.01, 0.04, 0.8, alpha=0.05, alternative="two-sided")
    assert mde["per_arm"] == math.ceil(theirs)
    assert mde["mde_rel"] == pytest.approx(0.25)
    assert mde["total"] == 2 * mde["per_arm"]
    assert (mde["baseline_rate"], mde["alpha"], mde["power"]) == (0.04, 0.05, 0.8)


def test_the_table_shows_the_verdict_and_the_sample_size_for_an_mde(tmp_path: Path) -> None:
    code, out, err = compare(
        tmp_path, "variant,exposures,conversions,revenue\nA,1000,40,800\nB,1000,44,900\n", "--mde", "0.01"
    )
    assert code == 0, err
    assert "do not decide" in out
    per_arm = math.ceil(
        samplesize_proportions_2indep_onetail(0.01, 0.04, 0.8, alpha=0.05, alternative="two-sided")
    )
    assert f"{per_arm:,} recipients" in out
    assert "+25.0%" in out  # the relative lift the absolute one represents
    assert "revenue per" in out and "0.80" in out and "0.90" in out  # revenue per recipient


def test_a_clear_winner_is_named_in_the_table(tmp_path: Path) -> None:
    code, out, err = compare(tmp_path, "variant,exposures,conversions\nA,5000,200\nB,5000,300\n")
    assert code == 0, err
    assert "B beats A: +2.00 pts (95% CI" in out
    assert "revenue" not in out  # no revenue column, no revenue in the table


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "counts.csv:1: the file is empty", id="empty"),
        pytest.param(
            "variant,exposures\nA,10\n", "counts.csv:1: missing column(s) conversions", id="missing-column"
        ),
        pytest.param(
            "variant,exposures,conversions,clicks\nA,1,1,1\nB,1,1,1\n",
            "counts.csv:1: unknown column(s) 'clicks'; remove them",
            id="extra-column",
        ),
        pytest.param(
            "variant,exposures,conversions,\nA,1,1,\nB,1,1,\n",
            "counts.csv:1: unknown column(s) an unnamed column (a trailing comma?)",
            id="trailing-comma",
        ),
        pytest.param(
            "variant,exposures,conversions,exposures\nA,1,1,1\nB,1,1,1\n",
            "counts.csv:1: column(s) exposures appear twice",
            id="duplicate-column",
        ),
        pytest.param(
            "variant;exposures;conversions\nA;10;1\nB;10;2\n",
            "counts.csv:1: missing column(s) variant, exposures, conversions; the header needs "
            "variant,exposures,conversions; is it comma-separated?",
            id="semicolons",
        ),
        pytest.param(
            "variant,exposures,conversions,revenue_sq\nA,10,1,4\nB,10,2,4\n",
            "counts.csv:1: revenue_sq needs a revenue column",
            id="revenue-sq-alone",
        ),
        pytest.param(
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\xfa\xff\x00",
            "counts.csv: not a UTF-8 text file",
            id="spreadsheet-not-csv",
        ),
        pytest.param(
            'variant,exposures,conversions\nA,"10"0,1\nB,10,1\n',
            "counts.csv:2: not valid CSV (',' expected after '\"'); save it as CSV",
            id="bad-quoting",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,10\x00,1\nB,10,1\n",
            "counts.csv:2: exposures: '10\\x00' is not a whole number",
            id="nul-byte",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,100,5,7\n",
            "counts.csv:3: 4 fields, but the header has 3",
            id="extra-field",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,100\n",
            "counts.csv:3: conversions: missing",
            id="short-row",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,1e3,5\n",
            "counts.csv:3: exposures: '1e3' is not a whole number of 0 or more; write digits",
            id="float-count",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,100,\u00b2\n",
            "counts.csv:3: conversions: '\u00b2' is not a whole number",
            id="unicode-digit",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\n,100,5\n",
            "counts.csv:3: variant: empty",
            id="unnamed-variant",
        ),
        pytest.param(
            "variant,exposures,conversions,revenue\nA,100,5,12.5\nB,100,5,lots\n",
            "counts.csv:3: revenue: 'lots' is not a number",
            id="revenue-not-a-number",
        ),
        pytest.param(
            "variant,exposures,conversions,revenue\nA,100,5,nan\nB,100,5,1\n",
            "counts.csv:2: revenue: 'nan' is not a number",
            id="revenue-nan",
        ),
        pytest.param(
            "variant,exposures,conversions,revenue,revenue_sq\nA,100,5,500,50\nB,100,5,1,1\n",
            "counts.csv:2: revenue_sq: 50 cannot come from 100 recipients whose revenue totals 500",
            id="revenue-sq-too-small",
        ),
        pytest.param(
            "variant,exposures,conversions,revenue,revenue_sq\nA,100,5,,50\nB,100,5,1,1\n",
            "counts.csv:2: revenue: blank, but revenue_sq is given",
            id="revenue-blank",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,lots,5\n",
            "counts.csv:3: exposures: 'lots'",
            id="not-a-number",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nB,10,50\n",
            "counts.csv:3: conversions: 50 is more than exposures",
            id="more-than-exposures",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\nA,100,6\n",
            "counts.csv:3: variant: 'A' appears twice",
            id="duplicate",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,5\n",
            "counts.csv:2: only 'A'; give the baseline's row, then at least one variant's row",
            id="one-row",
        ),
        pytest.param(
            "variant,exposures,conversions\n",
            "counts.csv:1: no data rows; give the baseline's row",
            id="header-only",
        ),
        pytest.param(
            "variant,exposures,conversions\nA,100,-5\nB,1,1\n",
            "counts.csv:2: conversions: '-5'",
            id="negative",
        ),
    ],
)
def test_bad_counts_are_named_by_line_and_column(tmp_path: Path, text: str | bytes, message: str) -> None:
    code, out, err = compare(tmp_path, text)
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'counts.csv'}")
    assert message in err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        # out of the option's declared range: a usage error (2), found while the command line is read
        pytest.param(
            ["--mde", "-0.01"], 2, "'--mde': Input should be greater than or equal to 0", id="negative"
        ),
        pytest.param(["--mde", "0.97"], 1, "plus 97.00% is above 100%", id="beyond-100"),
        pytest.param(["--alpha", "5"], 2, "'--alpha': Input should be less than or equal to 0.5", id="alpha"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path: Path, args: list[str], exit_code: int, message: str) -> None:
    code, _out, err = compare(tmp_path, "variant,exposures,conversions\nA,1000,40\nB,1000,44\n", *args)
    assert code == exit_code
    assert message in err
    assert "Traceback" not in err


def test_mde_needs_a_baseline_rate(tmp_path: Path) -> None:
    code, _out, err = compare(tmp_path, "variant,exposures,conversions\nA,0,0\nB,1000,44\n", "--mde", "0.01")
    assert code == 1
    assert "the baseline 'A' has no exposures" in err


def test_a_missing_file_or_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    # checked while the command line is read: a usage error (2) naming the argument and the path
    result = invoke("compare", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2
    assert f"'{tmp_path / 'nope.csv'}' does not exist" in result.stderr
    result = invoke("compare", str(tmp_path))
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_blank_revenue_means_not_measured_and_edge_counts_pass(tmp_path: Path) -> None:
    code, out, err = compare(
        tmp_path,
        "variant,exposures,conversions,revenue\nA,100,0,\nB,100,100,250\nC,0,0,\n",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["input"][0] == {"variant": "A", "exposures": 100, "conversions": 0}
    arms = {a["name"]: a for a in data["analysis"]["arms"]}
    assert arms["A"]["revenue_per_recipient"] is None and arms["B"]["revenue_per_recipient"] == 2.5
    assert arms["C"]["rate"] is None and arms["C"]["prob_best"] is None
    comparisons = {c["name"]: c for c in data["analysis"]["comparisons"]}
    assert comparisons["C"]["p_value"] is None and comparisons["C"]["significant"] is False
    assert comparisons["B"]["lift_rel"] is None  # the baseline's rate is 0
    assert data["analysis"]["verdict"]["winner"] == "B"  # 0 of 100 against 100 of 100 decides
