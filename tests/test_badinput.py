"""Bad input, proven harmless: every command's every parameter, every setting, every endpoint (the harness
is tests/badinput/). Short and seeded in `make test`; CLARION_FUZZ=long tries many more inputs, and
benchmarks/bad_input.py prints the figures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.badinput import cli, environment, http
from tests.badinput.world import CLEARED, World, endpoints, prepare, send, services
from tests.conftest import CampaignDir

LONG = os.environ.get("CLARION_FUZZ") == "long"
CASES = settings(
    max_examples=200 if LONG else 5,
    derandomize=not LONG,  # seeded in CI: the same inputs every run
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
PARAMS = cli.parameters()


@pytest.fixture(scope="session")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> cli.Files:
    """The files the path cases name (empty, binary, 14 MB...), written once: the cases only read them."""
    return cli.Files(tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, case_files: cli.Files) -> World:
    """The world prepared once (its ledger migrated, a run planned); each test gets a copy of the ledger."""
    root = tmp_path_factory.mktemp("template")
    saved = os.environ.get("CLARION_HOME")
    os.environ["CLARION_HOME"] = str(root / "home")
    try:
        return prepare(root, case_files)
    finally:
        if saved is not None:
            os.environ["CLARION_HOME"] = saved


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: World) -> World:
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    home = Path(os.environ["CLARION_HOME"])
    shutil.copyfile(template.watched[0] / "clarion.db", home / "clarion.db")
    return World(template.files, template.base, [home, work, *template.watched[1:]])


def test_every_parameter_has_wrong_values() -> None:
    """A new command, option or argument gets cases without edits here, as long as it declares what it
    takes: a kind (clarion/cli/params.py), a range, or a path to read or write."""
    missing = []
    for p in PARAMS:
        try:
            cli.strategy_for(p)
        except cli.NoStrategy as exc:
            missing.append(str(exc))
    assert not missing, "\n".join(missing)
    assert len(PARAMS) > 80 and len(cli.commands()) > 30


# commands import Prefect lazily, and importing it touches the global `random` mid-case
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.id)
def test_a_wrong_value_ends_in_a_clear_message_and_writes_nothing(param: cli.Param, world) -> None:  # type: ignore[no-untyped-def]
    @CASES
    @given(value=st.data())
    def case(value: st.DataObject) -> None:
        bad = value.draw(cli.strategy_for(param), label=param.id)
        outcome = cli.run_case(param, bad, world.files, world.base, world.watched)
        assert not outcome.problems, (
            f"clarion {' '.join(a if len(a) < 100 else a[:60] + f'...({len(a)} chars)' for a in outcome.argv)!r}: "
            f"exit {outcome.exit_code}\n"
            + "\n".join(outcome.problems)
            + f"\n--- output ---\n{outcome.output[-2000:]}"
        )

    case()


# -- endpoints ----------------------------------------------------------------------------------------


ENDPOINTS = endpoints()


@pytest.fixture
def clients(campaign_dir: CampaignDir) -> Iterator[dict[str, Any]]:
    with services(campaign_dir) as found:
        yield found


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_a_wrong_request_gets_a_4xx_and_records_nothing(endpoint: http.Endpoint, clients) -> None:  # type: ignore[no-untyped-def]
    client = clients[endpoint.service]
    home = Path(os.environ["CLARION_HOME"])

    @CASES
    @given(request=http.requests(endpoint))
    def case(request: http.Request) -> None:
        outcome = send(client, request, endpoint, home)
        assert not outcome.problems, f"{request!r}\n" + "\n".join(outcome.problems) + f"\n{outcome.body}"

    case()


# -- settings -----------------------------------------------------------------------------------------

VARIABLES = environment.variables()


def test_every_setting_has_wrong_values() -> None:
    """Every variable of the README's settings tables has a rule for its wrong values (a new variable
    gets one from its name: *_URL, *_KEY, *_SECRET, *_TOKEN, a number in a settings class)."""
    missing = []
    for name in VARIABLES:
        try:
            environment.strategy_for(name)
        except environment.NoRule as exc:
            missing.append(str(exc))
    assert not missing, "\n".join(missing)
    assert len(VARIABLES) > 25


@pytest.mark.parametrize("name", VARIABLES)
def test_a_wrong_setting_is_named_before_anything_happens(
    name: str, world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Any command (here `clarion runs`, which reads the ledger) stops at a malformed setting: exit 1,
    the variable named, no traceback, nothing written."""
    from tests.badinput.state import snapshot

    @CASES
    @given(value=environment.strategy_for(name))
    def case(value: str) -> None:
        value = world.files.resolve(value)
        before = snapshot(*world.watched)
        with monkeypatch.context() as env:
            env.setenv(name, value)
            result = cli.invoke(["runs"])
        problems = []
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"raised {type(result.exception).__name__}: {result.exception}")
        if result.exit_code != 1:
            problems.append(f"exit code {result.exit_code} (1 expected)")
        if name not in result.output:
            problems.append("the message does not name the variable")
        if "Traceback" in result.output:
            problems.append("printed a traceback")
        if (
            name.endswith(("KEY", "SECRET", "TOKEN"))
            and len(value.strip()) > 3
            and value.strip() in result.output
        ):
            problems.append("the message shows the secret")
        changes = before.changes(snapshot(*world.watched))
        if changes:
            problems.append("wrote: " + "; ".join(changes))
        assert not problems, f"{name}={value[:80]!r}\n" + "\n".join(problems) + f"\n{result.output[-1000:]}"

    case()
