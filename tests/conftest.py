"""Shared fixtures: an isolated Clarion home per test, and a builder of small campaigns on disk."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-signing-key-0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the developer's .clarion, or reaches a real provider."""
    home = tmp_path_factory.mktemp("clarion-home")
    monkeypatch.setenv("CLARION_HOME", str(home))
    monkeypatch.setenv("CLARION_SECRET_KEY", TEST_SECRET)
    monkeypatch.delenv("CLARION_DATABASE_URL", raising=False)
    for var in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(var, raising=False)
    yield


CONTACTS = """\
id,email,phone,first_name,timezone,persona,sms_consent
c-001,ada@example.org,+14155552671,Ada,America/Los_Angeles,cfo,yes
c-002,ben@example.org,+12025550123,Ben,America/New_York,it-director,yes
c-003,,+12125550142,Chloé,America/New_York,cfo,yes
c-004,dana@example.com,,Dana,America/Chicago,ops-manager,no
"""

EMAIL_BODY = (
    "<p>{{ contact.first_name }}, {{ variant.headline }} <a href='{{ link }}'>Give</a></p>"
    "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>"
)

CAMPAIGN = """\
name: test-appeal
cta:
  url: https://donate.example.org/appeal
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  holdout: 0
  variants:
    - id: a
      vars: {headline: "Chip in now."}
    - id: b
      vars: {headline: "Join 12,000 supporters."}
channels:
  x:
    provider: x
    body: "{{ variant.headline }} {{ link }}"
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "{{ variant.headline }}"
    postal_address: "Team Example, PO Box 1, Springfield"
    body: "{{ EMAIL_BODY }}"
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null  # runs at any hour; quiet hours are tested on their own
    body: "{{ contact.first_name }}, {{ variant.headline }} {{ link }} Reply STOP to opt out"
""".replace("{{ EMAIL_BODY }}", EMAIL_BODY)

#: The same campaign without a tracking service: links go straight to the CTA page (previews only: an email
#: needs the tracking service for its unsubscribe link, so this does not validate).
UNTRACKED = CAMPAIGN.replace("tracking:\n  base_url: https://go.example.org\n", "", 1)


class CampaignDir:
    """A folder holding one campaign file, its contacts and any template files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str, *, dedent: bool = True) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if dedent else text, encoding="utf-8")
        return path

    def campaign(self, text: str = CAMPAIGN, contacts: str | None = CONTACTS) -> Path:
        if contacts is not None:
            self.write("contacts.csv", contacts)
        return self.write("campaign.yaml", text)


@pytest.fixture
def campaign_dir(tmp_path: Path) -> CampaignDir:
    return CampaignDir(tmp_path)


def point_adapters_at(sandbox: Any, monkeypatch: pytest.MonkeyPatch, timeout: float) -> Any:
    """Empty the sandbox, clear its faults, and send every adapter there with dummy credentials."""
    sandbox.reset()
    sandbox.set_opted_out([])  # numbers an earlier test had reply STOP
    for provider in ("sendgrid", "twilio", "x"):
        sandbox.set_faults(provider, None)
    for key, value in sandbox.environment().items():
        monkeypatch.setenv(key, value)
    for name in sandbox.cleared_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", str(timeout))
    return sandbox
