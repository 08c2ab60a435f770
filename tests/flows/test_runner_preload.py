"""`clarion worker` forks each flow run from a process that has imported, besides Prefect and the launch
flow, what a launch sends with on the served campaigns' providers (`Channel.preload`): imported after an
event arrived, X's text rules and the SDKs cost about a second before the first message."""

from __future__ import annotations

import importlib.util

import pytest

from clarion import channels
from clarion.flows import runner


@pytest.mark.parametrize("provider", channels.providers())
def test_what_a_provider_preloads_is_importable(provider: str) -> None:
    """The forkserver skips a module it cannot import without a word: a misspelt name would go unnoticed."""
    adapter = channels.get(provider)
    missing = [name for name in adapter.preload if importlib.util.find_spec(name) is None]
    assert not missing, f"{provider}: Channel.preload names modules that are not installed: {missing}"


def test_a_worker_preloads_the_served_providers_sdks_and_rules() -> None:
    modules = runner.preload({"x", "sendgrid", "twilio"})
    assert modules[: len(runner.PRELOAD)] == runner.PRELOAD
    for name in ("twitter_text", "tweepy", "sendgrid.helpers.mail", "twilio.rest"):
        assert name in modules
    assert channels.get("x").__module__ in modules
    assert "mastodon" not in modules  # only the providers of the campaigns served
    assert len(modules) == len(set(modules))
