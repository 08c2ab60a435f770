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
from tests.conftest import CampaignDir

RUN = "test-appeal-20261122t190000-ab12"

LONG = os.environ.get("CLARION_FUZZ") == "long"
CASES = settings(
    max_examples=200 if LONG else 8,
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


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[cli.Files, dict[str, str], list[Path]]]:
    """A working folder with a valid campaign, the path cases' files, and a ledger with one suppression."""
    from clarion.base.consent import Kind, Reason
    from clarion.campaign.loader import load_campaign
    from clarion.engine.plan import plan_run
    from clarion.ledger import Ledger, Suppression

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for var in (
        "PREFECT_API_URL",
        "SENDGRID_API_KEY",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "X_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    campaign = CampaignDir(work / "campaign").campaign()
    files = cli.Files(tmp_path / "cases")
    ledger = Ledger.open()
    plan_run(ledger, load_campaign(campaign), RUN)  # base run ids name it: the bad value is the only fault
    ledger.suppress([Suppression(Kind.EMAIL.value, "gone@example.org", Reason.MANUAL.value, "test")])
    ledger.close()
    base = {
        "campaign": str(campaign),
        "identifier": RUN,
        "name": "ana",
        "text": "hello",
        "address": "ada@example.org",
        "region": "US",
        "currency": "USD",
        "duration": "60s",
        "json": "{}",
        "host": "127.0.0.1",
    }
    yield files, base, [Path(os.environ["CLARION_HOME"]), work]


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
    files, base, watched = world

    @CASES
    @given(value=st.data())
    def case(value: st.DataObject) -> None:
        bad = value.draw(cli.strategy_for(param), label=param.id)
        outcome = cli.run_case(param, bad, files, base, watched)
        assert not outcome.problems, (
            f"clarion {' '.join(a if len(a) < 100 else a[:60] + f'...({len(a)} chars)' for a in outcome.argv)!r}: "
            f"exit {outcome.exit_code}\n"
            + "\n".join(outcome.problems)
            + f"\n--- output ---\n{outcome.output[-2000:]}"
        )

    case()


# -- endpoints ----------------------------------------------------------------------------------------


def _serve_endpoints() -> list[http.Endpoint]:
    from clarion.console import build_console, mount
    from clarion.ledger import Ledger
    from clarion.tracking import build_app

    ledger = Ledger("sqlite://")
    app = mount(build_app(ledger, environ={}), build_console(ledger))
    return http.endpoints(app, "serve")


def _sandbox_endpoints() -> list[http.Endpoint]:
    from clarion.sandbox.routes import SandboxState

    return http.endpoints(SandboxState().app, "sandbox")


ENDPOINTS = _serve_endpoints() + _sandbox_endpoints()


@pytest.fixture
def services(campaign_dir: CampaignDir) -> Iterator[dict[str, Any]]:
    """`clarion serve`'s app as the command builds it (tracking service + console) with every webhook
    key set, so that requests reach the signature checks, on a ledger holding a planned run; and the
    provider sandbox's app."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from clarion.base.settings import ClarionSettings, TrackingSettings
    from clarion.campaign.loader import load_campaign
    from clarion.console import build_console, mount
    from clarion.engine.plan import plan_run
    from clarion.ledger import Ledger
    from clarion.messages.links import LinkSigner
    from clarion.sandbox.routes import SandboxState
    from clarion.tracking import build_app
    from tests.tracking.conftest import CONVERSION_SECRET, RUN, TWILIO_TOKEN, AppClient, public_key_text

    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(campaign_dir.campaign()), RUN)
    keys = {
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text(ec.generate_private_key(ec.SECP256R1())),
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "X_CONSUMER_SECRET": "x-consumer-secret-for-tests-000000",
    }
    settings = TrackingSettings(
        clarion_conversion_secret=CONVERSION_SECRET, clarion_rate_limit="off", clarion_reject_limit="off"
    )
    app = build_app(ledger, signer=LinkSigner.from_settings(), settings=settings, environ=keys)
    clients = {
        "serve": AppClient(mount(app, build_console(ledger))),
        "sandbox": AppClient(SandboxState().app),
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        ledger.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_a_wrong_request_gets_a_4xx_and_records_nothing(endpoint: http.Endpoint, services) -> None:  # type: ignore[no-untyped-def]
    import logging

    from tests.badinput.state import snapshot

    client = services[endpoint.service]
    home = Path(os.environ["CLARION_HOME"])

    @CASES
    @given(request=http.requests(endpoint))
    def case(request: http.Request) -> None:
        catcher = http.Tracebacks()
        logging.getLogger().addHandler(catcher)
        before = snapshot(home)
        try:
            response = client.request(
                request.method, request.url, content=request.body, headers=request.headers, timeout=30
            )
        finally:
            logging.getLogger().removeHandler(catcher)
        outcome = http.judge(endpoint, request, response.status_code, catcher.records)
        changes = before.changes(snapshot(home))
        if changes:
            outcome.problems.append("wrote: " + "; ".join(changes))
        assert not outcome.problems, (
            f"{request!r}\n" + "\n".join(outcome.problems) + f"\n{response.text[:500]}"
        )

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
    from typer.testing import CliRunner

    from clarion.cli.main import app
    from tests.badinput.state import snapshot

    files, _, watched = world

    @CASES
    @given(value=environment.strategy_for(name))
    def case(value: str) -> None:
        value = str(files.root / value[1:]) if value.startswith("@") else value
        before = snapshot(*watched)
        with monkeypatch.context() as env:
            env.setenv(name, value)
            result = CliRunner().invoke(app, ["runs"], catch_exceptions=True)
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
        changes = before.changes(snapshot(*watched))
        if changes:
            problems.append("wrote: " + "; ".join(changes))
        assert not problems, f"{name}={value[:80]!r}\n" + "\n".join(problems) + f"\n{result.output[-1000:]}"

    case()
