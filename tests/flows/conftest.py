"""Fixtures for flow tests: one Prefect test server per session, the provider sandbox, generated audiences."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarion.sandbox import Sandbox
from tests.conftest import REPO, clear_sandbox, point_adapters_at

sys.path.insert(0, str(REPO / "examples"))
from make_contacts import generate


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as box:
        yield box


@pytest.fixture
def providers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox, emptied, with every adapter pointed at it; left without faults or opted-out numbers,
    for the tests that use the session's sandbox as it is (and run after any test file, under xdist)."""
    yield point_adapters_at(sandbox, monkeypatch, timeout=2)
    clear_sandbox(sandbox)


def write_audience(folder: Path, count: int, kind: str = "debate-night") -> Path:
    rows = generate(kind, count, seed=7)
    path = folder / "contacts.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


CAMPAIGN = """\
name: flow-test
cta:
  url: https://donate.example.org/test
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  holdout: 0.05
  variants:
    - id: a
      vars: {headline: "Chip in now."}
    - id: b
      vars: {headline: "Join the supporters."}
channels:
  x:
    provider: x
    body: "{{ variant.headline }} {{ link }}"
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "{{ variant.headline }}"
    postal_address: "Team, PO Box 1, Springfield"
    body: "<p>{{ variant.headline }} <a href='{{ link }}'>Give</a></p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>"
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null  # runs at any hour; quiet hours are tested on their own
    body: "{{ variant.headline }} {{ link }} Reply STOP to opt out"
"""


def write_campaign(folder: Path, count: int, text: str = CAMPAIGN) -> Path:
    write_audience(folder, count)
    path = folder / "campaign.yaml"
    path.write_text(text)
    return path


def ledger_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("CLARION_", "PREFECT_"))}
