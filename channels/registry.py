"""The registry of providers, keyed by name, found through the entry-point group `clarion.channels`.

Clarion declares its own providers there (pyproject.toml), exactly as another package would declare one:

    [project.entry-points."clarion.channels"]
    mastodon = "my_package.mastodon:MastodonChannel"

Each entry point names a `Channel` subclass whose `provider` is the entry point's name. The registry is
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

    from clarion.channels.base import Channel

GROUP = "clarion.channels"


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
        found[point.name] = cls
    if not found:
        raise RegistryError(
            f"no providers are registered under the entry-point group {GROUP!r}: is Clarion installed "
            "(pip install -e .)?"
        )
    return MappingProxyType(dict(sorted(found.items())))


def get(provider: str) -> type[Channel]:
    """The adapter class of `provider`; KeyError for an unknown name (validation reports those first)."""
    return _registry()[provider]


def providers() -> list[str]:
    """Every registered provider's name, sorted."""
    return list(_registry())


def adapters() -> list[type[Channel]]:
    """Every registered adapter class, in the order of `providers()`."""
    return list(_registry().values())


__all__ = ["GROUP", "RegistryError", "adapters", "get", "providers"]
