"""`reconcile_run` and `clarion reconcile` without a flow: a run planned in the ledger, some of its sends
made uncertain by hand (some of which reached the sandbox first), then settled by asking the providers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.base.errors import ClarionError
from clarion.campaign.loader import load_campaign
from clarion.channels.base import Outbound
from clarion.cli.main import app
from clarion.engine.context import make_adapter
from clarion.engine.plan import plan_run
from clarion.engine.reconcile import reconcile_run
from clarion.ledger import Ledger, RunNotFound, SendState, Settlement
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.sandbox import Sandbox
from tests.conftest import CampaignDir, point_adapters_at

RUN = "appeal-run"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as box:
        yield box


@pytest.fixture
def providers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return point_adapters_at(sandbox, monkeypatch, timeout=2)  # type: ignore[no-any-return]


@pytest.fixture
def campaign(campaign_dir: CampaignDir) -> Path:
    return campaign_dir.campaign()


def _stalled(path: Path, reached: dict[str, list[str]], missed: dict[str, list[str]]) -> Ledger:
    """Plan RUN; the sends in `reached` go to the sandbox, then every one of `reached` and `missed` is
    settled uncertain, as after read timeouts (per channel: contact ids, or post:<variant>)."""
    ledger = Ledger.open()
    loaded = load_campaign(path)
    plan_run(ledger, loaded, RUN)
    renderer = Renderer(loaded, LinkSigner.from_settings(), RUN)
    contacts = {c.id: c for c in loaded.contacts().records()}
    variants = {v.id: v for v in loaded.campaign.experiment.variants}
    rows = {(r.channel, r.recipient): r for r in ledger.sends(RUN)}
    for channel in set(reached) | set(missed):
        adapter = make_adapter(loaded, channel)
        everyone = reached.get(channel, []) + missed.get(channel, [])
        assert ledger.begin(RUN, channel, everyone) == everyone
        for recipient in reached.get(channel, []):
            variant = variants[rows[(channel, recipient)].variant]
            if recipient.startswith("post:"):
                message = renderer.render(channel, variant, None)
            else:
                contact = contacts[recipient]
                raw = contact.fields[adapter.address_column or ""]
                message = renderer.render(
                    channel, variant, contact, address=adapter.send_address(raw, adapter.config)
                )
            [result] = adapter.send([Outbound(recipient, message)])
            assert result.provider_id
        ledger.settle(RUN, channel, [Settlement(r, SendState.UNCERTAIN, reason="timeout") for r in everyone])
    return ledger


def _states(ledger: Ledger) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(r.channel, r.recipient): (r.state.value, r.reason) for r in ledger.sends(RUN)}


def test_found_sends_are_sent_and_absent_ones_fail_after_the_grace(
    providers: Sandbox, campaign: Path
) -> None:
    ledger = _stalled(
        campaign,
        reached={"sms": ["c-001"], "email": ["c-002"], "x": ["post:a"]},
        missed={"sms": ["c-002"], "email": ["c-001"], "x": ["post:b"]},
    )

    result = reconcile_run(ledger, RUN, grace=timedelta(0))

    states = _states(ledger)
    for key in (("sms", "c-001"), ("email", "c-002"), ("x", "post:a")):
        assert states[key] == ("sent", "reconciled"), key
    for key in (("sms", "c-002"), ("email", "c-001"), ("x", "post:b")):
        assert states[key] == ("failed", "not_received"), key
    ids = {m["provider_id"] for m in providers.messages()}
    assert {r.provider_id for r in ledger.sends(RUN, state=SendState.SENT)} <= ids
    assert [(c.channel, c.sent, c.failed, c.uncertain) for c in result.channels] == [
        ("email", 1, 1, 0),
        ("sms", 1, 1, 0),
        ("x", 1, 1, 0),
    ]
    assert reconcile_run(ledger, RUN).channels == []  # nothing left to settle
    assert ledger.requeue_failed(RUN) == 3


def test_a_recent_absence_stays_uncertain_until_the_provider_had_time(
    providers: Sandbox, campaign: Path
) -> None:
    ledger = _stalled(campaign, reached={"sms": ["c-001"]}, missed={"sms": ["c-002"]})

    result = reconcile_run(ledger, RUN)  # Twilio's 60 s have not passed since the attempt

    states = _states(ledger)
    assert states[("sms", "c-001")] == ("sent", "reconciled")  # found is found, at once
    assert states[("sms", "c-002")] == ("uncertain", "timeout")
    [sms] = result.channels
    [(why, count)] = sms.why.items()
    assert count == 1 and "not listed yet" in why and "run `clarion reconcile` again after" in why


def test_a_channel_without_credentials_stays_uncertain_and_names_them(
    providers: Sandbox, campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _stalled(campaign, reached={"sms": ["c-001"]}, missed={"email": ["c-001"]})
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")

    result = reconcile_run(ledger, RUN, grace=timedelta(0))

    assert _states(ledger)[("sms", "c-001")] == ("uncertain", "timeout")
    assert _states(ledger)[("email", "c-001")] == ("failed", "not_received")
    sms = next(c for c in result.channels if c.channel == "sms")
    assert "TWILIO_AUTH_TOKEN" in next(iter(sms.why))


def test_the_campaign_must_be_the_runs_unchanged(providers: Sandbox, campaign: Path) -> None:
    ledger = _stalled(campaign, reached={}, missed={"sms": ["c-001"]})
    contacts = campaign.parent / "contacts.csv"
    original = contacts.read_text()
    contacts.write_text(original.replace("Ada", "Adah"))
    with pytest.raises(ClarionError, match="changed since run appeal-run was planned"):
        reconcile_run(ledger, RUN)
    contacts.write_text(original)
    with pytest.raises(RunNotFound):
        reconcile_run(ledger, "no-such-run")


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_clarion_reconcile_prints_what_it_settled_and_how_to_resend(
    providers: Sandbox, campaign: Path
) -> None:
    _stalled(campaign, reached={"sms": ["c-001"]}, missed={"sms": ["c-002"]})

    code, stdout, stderr = _cli("reconcile", "latest", "--grace", "0s")

    assert code == 0, stderr
    assert "uncertain sends, settled by asking the providers" in stdout
    assert "sms" in stdout and "twilio" in stdout
    assert f"clarion run {campaign} --run-id {RUN} --retry-failed" in stderr
    code, stdout, _ = _cli("reconcile", RUN, "--json")
    assert code == 0 and json.loads(stdout) == {"run_id": RUN, "channels": [], "sends": []}


def test_clarion_reconcile_reads_the_campaign_from_elsewhere_when_asked(
    providers: Sandbox, campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stalled(campaign, reached={}, missed={"sms": ["c-001"]})
    monkeypatch.chdir(tmp_path)
    with Ledger.open() as ledger:  # the run recorded its campaign as it was given; here it is relative
        from sqlalchemy import update

        from clarion.ledger.schema import runs

        with ledger.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == RUN).values(campaign_file="elsewhere/campaign.yaml"))

    code, _, stderr = _cli("reconcile", RUN)
    assert code == 1 and "name it with --campaign FILE" in stderr
    code, stdout, stderr = _cli("reconcile", RUN, "--campaign", str(campaign), "--grace", "0s", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["channels"][0]["failed"] == 1


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["reconcile", "no-such-run"], 1, ["no run 'no-such-run' in the ledger"]),
        # a malformed option is a usage error (2), found while the command line is read
        (["reconcile", "latest", "--grace", "soon"], 2, ["'--grace'", "'soon' is not a duration"]),
    ],
)
def test_clarion_reconcile_mistakes_are_one_line(args: list[str], code: int, says: list[str]) -> None:
    Ledger.open()
    exit_code, _, stderr = _cli(*args)
    assert exit_code == code and all(s in stderr for s in says), stderr
    assert "Traceback" not in stderr


def test_retry_failed_needs_a_known_run(campaign: Path) -> None:
    code, _, stderr = _cli("run", str(campaign), "--retry-failed")
    assert code == 1 and "name the run with --run-id RUN" in stderr
    code, _, stderr = _cli("run", str(campaign), "--run-id", "nope", "--retry-failed")
    assert code == 1 and "run 'nope' is not in the ledger" in stderr
