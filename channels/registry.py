"""The registry of providers, keyed by name, found through the entry-point group `clarion.channels`.

Clarion declares its own providers there (pyproject.toml), exactly as another package would declare one:

    [project.entry-points."clarion.channels"]
    mastodon = "my_package.mastodon:MastodonChannel"

Each entry point names a `Channel` subclass whose `provider` is the entry point's name. A provider may also
declare its `settings_model` on its own, in the group `clarion.settings` under the same name, so that the
start-up check of every setting (`settings_models()`) loads no adapter and no SDK:

    [project.entry-points."clarion.settings"]
    mastodon = "my_package.mastodon_settings:MastodonSettings"

The registry is
read once, on first use, and never changes afterwards. Two classes claiming one name, or an entry point
whose name differs from its class's `provider`, is an error when the registry is read, never a silent
override. The tracking service, the sandbox and validation reach providers only through here.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from importlib.metadata import EntryPoint

    from clarion.channels.base import Channel, ProviderSettings

GROUP = "clarion.channels"
SETTINGS_GROUP = "clarion.settings"


class RegistryError(RuntimeError):
    """A provider's entry point is broken, or two providers claim one name."""


@cache
def _registry() -> Mapping[str, type[Channel]]:
    from clarion.channels.base import Channel

    found: dict[str, type[Channel]] = {}
    for point in entry_points(group=GROUP):
        try:
            cls = point.load()
        except Exception as exc:  # a third-party provider that cannot be imported names itself
            raise RegistryError(f"provider {point.name!r} ({point.value}) cannot be loaded: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Channel)):
            raise RegistryError(f"provider {point.name!r} ({point.value}) is not a Channel subclass")
        if cls.provider != point.name:
            raise RegistryError(
                f"provider entry point {point.name!r} names {cls.__qualname__}, whose provider is "
                f"{cls.provider!r}; the two must be the same"
            )
        if point.name in found and found[point.name] is not cls:
            other = found[point.name]
            raise RegistryError(
                f"two channel adapters claim provider {point.name!r}: "
                f"{other.__module__}.{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        declared = _declared_settings().get(point.name)
        if declared is not None and _load_settings(declared) is not cls.settings_model:
            raise RegistryError(
                f"provider {point.name!r} declares its settings as {declared.value} under "
                f"{SETTINGS_GROUP!r}, but its adapter's settings_model is "
                f"{cls.settings_model.__module__}.{cls.settings_model.__qualname__}; they must be the same"
            )
        found[point.name] = cls
    if not found:
        raise RegistryError(
            f"no providers are registered under the entry-point group {GROUP!r}: is Clarion installed "
            "(pip install -e .)?"
        )
    return MappingProxyType(dict(sorted(found.items())))


@cache
def _declared_settings() -> Mapping[str, EntryPoint]:
    return MappingProxyType({point.name: point for point in entry_points(group=SETTINGS_GROUP)})


def _load_settings(point: EntryPoint) -> type[ProviderSettings]:
    from clarion.channels.base import ProviderSettings

    try:
        cls = point.load()
    except Exception as exc:  # a third-party provider's settings that cannot be imported name themselves
        raise RegistryError(f"settings of {point.name!r} ({point.value}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, ProviderSettings)):
        raise RegistryError(f"settings of {point.name!r} ({point.value}) are not a ProviderSettings subclass")
    return cls


def settings_models() -> list[type[ProviderSettings]]:
    """Every registered provider's settings model, in the order of `providers()`: from `clarion.settings`
    where the provider declares them there (no adapter imported), else from its adapter."""
    declared = _declared_settings()
    names = sorted(point.name for point in entry_points(group=GROUP))
    if any(name not in declared for name in names):
        return [adapter.settings_model for adapter in adapters()]
    return [_load_settings(declared[name]) for name in names]


def get(provider: str) -> type[Channel]:
    """The adapter class of `provider`; KeyError for an unknown name (validation reports those first)."""
    return _registry()[provider]


def providers() -> list[str]:
    """Every registered provider's name, sorted."""
    return list(_registry())


def adapters() -> list[type[Channel]]:
    """Every registered adapter class, in the order of `providers()`."""
    return list(_registry().values())


__all__ = ["GROUP", "SETTINGS_GROUP", "RegistryError", "adapters", "get", "providers", "settings_models"]
