"""The provider registry: adapters and their settings found through entry points, and the settings read
without loading any adapter (what every command's start-up check needs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from clarion.channels import registry


@pytest.fixture
def fresh() -> Iterator[None]:
    registry._registry.cache_clear()
    registry._declared_settings.cache_clear()
    yield
    registry._registry.cache_clear()
    registry._declared_settings.cache_clear()


def test_the_declared_settings_are_the_adapters_own() -> None:
    assert registry.settings_models() == [adapter.settings_model for adapter in registry.adapters()]


def test_settings_load_without_any_adapter() -> None:
    code = (
        "import sys, json; from clarion.channels import settings_models; models = settings_models(); "
        "print(json.dumps([len(models), sorted(m for m in sys.modules if m.endswith('.adapter'))]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[7, []]"


def _points(group: str, settings: str) -> list[EntryPoint]:
    if group == registry.GROUP:
        return [EntryPoint("sendgrid", "clarion.channels.sendgrid.adapter:SendGridChannel", group)]
    return [EntryPoint("sendgrid", settings, group)]


def test_settings_declared_apart_from_the_adapters_must_be_the_same(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "clarion.channels.twilio.settings:TwilioSettings"
    monkeypatch.setattr(registry, "entry_points", lambda group: _points(group, wrong))
    with pytest.raises(registry.RegistryError, match=r"sendgrid.*TwilioSettings.*SendGridSettings"):
        registry.adapters()


def test_settings_that_are_not_settings_are_refused(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry, "entry_points", lambda group: _points(group, "clarion.channels.base:Message")
    )
    with pytest.raises(registry.RegistryError, match="not a ProviderSettings subclass"):
        registry.settings_models()
