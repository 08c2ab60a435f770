"""The explicit registry of channel adapters, keyed by provider name.

Adapters register themselves with `@register`; registering two adapters under one name is an error at
import time, never a silent override.
"""

from __future__ import annotations

from typing import TypeVar

from channels.base import Channel

_ADAPTERS: dict[str, type[Channel]] = {}

C = TypeVar("C", bound=type[Channel])


def register(cls: C) -> C:
    name = cls.provider
    if name in _ADAPTERS and _ADAPTERS[name] is not cls:
        raise RuntimeError(
            f"two channel adapters claim provider {name!r}: "
            f"{_ADAPTERS[name].__module__}.{_ADAPTERS[name].__qualname__} "
            f"and {cls.__module__}.{cls.__qualname__}"
        )
    _ADAPTERS[name] = cls
    return cls


def get(provider: str) -> type[Channel]:
    return _ADAPTERS[provider]


def providers() -> list[str]:
    return sorted(_ADAPTERS)


def adapters() -> list[type[Channel]]:
    return [_ADAPTERS[name] for name in providers()]
