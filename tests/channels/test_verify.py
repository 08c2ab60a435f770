"""Pre-flight: each adapter asks its provider (the sandbox, in the provider's wire format) whether the
credentials work and the account can take the planned volume, and says why when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clarion.campaign.loader import load_campaign
from clarion.channels.base import AccountCheck
from clarion.engine.context import make_adapter
from clarion.sandbox import Sandbox
from tests.conftest import CampaignDir, point_adapters_at


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


def _verify(path: Path, channel: str, planned: int) -> dict[str, AccountCheck]:
    checks = make_adapter(load_campaign(path), channel).verify(planned)
    return {c.what: c for c in checks}


def test_valid_accounts_pass_and_say_what_they_found(providers: Sandbox, campaign: Path) -> None:
    email = _verify(campaign, "email", 5_000)
    assert email["credentials"].ok and email["quota"].ok
    assert email["quota"].detail == "100,000 emails left this period for 5,000 planned"
    sms = _verify(campaign, "sms", 3)
    assert sms["credentials"].ok and sms["quota"].ok and "balance 20.00 USD" in sms["quota"].detail
    x = _verify(campaign, "x", 2)
    assert x["credentials"].ok and "@clarion_sandbox" in x["credentials"].detail and x["quota"].ok


@pytest.mark.parametrize(
    ("provider", "channel", "expected"),
    [
        ("sendgrid", "email", "SendGrid refused the API key (HTTP 401)"),
        ("twilio", "sms", "Twilio refused the credentials (error 20003)"),
        ("x", "x", "X refused the token (HTTP 401)"),
    ],
)
def test_revoked_credentials_fail_with_the_providers_answer(
    providers: Sandbox, campaign: Path, provider: str, channel: str, expected: str
) -> None:
    providers.set_account(provider, revoked=True)
    checks = _verify(campaign, channel, 1)
    assert list(checks) == ["credentials"]
    assert not checks["credentials"].ok
    assert checks["credentials"].detail.startswith(expected)
    for secret in ("SG.sandbox-key", "sandbox-token", "sandbox-x-token"):
        assert secret not in checks["credentials"].detail


def test_quotas_too_small_for_the_plan_fail(providers: Sandbox, campaign: Path) -> None:
    providers.set_account("sendgrid", credits=40)
    assert _verify(campaign, "email", 40)["quota"].ok
    email = _verify(campaign, "email", 41)["quota"]
    assert not email.ok and email.detail == "only 40 emails left this period for 41 planned"
    providers.set_account("twilio", status="suspended")
    assert not _verify(campaign, "sms", 1)["account"].ok
    providers.set_account("twilio", status="active", balance="0.00")
    assert not _verify(campaign, "sms", 1)["quota"].ok
    assert not _verify(campaign, "x", 18)["quota"].ok


def test_a_key_without_mail_send_or_credit_access(providers: Sandbox, campaign: Path) -> None:
    providers.set_account("sendgrid", scopes=["user.credits.read"])
    assert _verify(campaign, "email", 1)["credentials"].detail == "the API key lacks the Mail Send permission"
    providers.set_account("sendgrid", scopes=["mail.send"])
    quota = _verify(campaign, "email", 10**9)["quota"]
    assert quota.ok and quota.detail == "SendGrid reports no credit limit for this key"


def test_an_unreachable_provider_is_a_failed_check_not_a_crash(
    providers: Sandbox, campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLARION_SENDGRID_URL", "http://127.0.0.1:9")
    check = _verify(campaign, "email", 1)["credentials"]
    assert not check.ok and check.detail.startswith("cannot reach SendGrid")
