"""Channel providers: one folder each (adapter, content rules, webhooks, sandbox emulator, pre-flight).

    from clarion import channels
    channels.get("sendgrid")        # the adapter class registered under that name
    channels.providers()            # every registered name
    channels.settings_models()      # every provider's settings, without loading the adapters

The built-in providers are registered like third-party ones, through the entry-point group
`clarion.channels` (see registry.py); nothing here imports a provider until the registry is first read.
"""

from clarion.channels.base import Channel, ChannelConfig, ChannelKind, Message
from clarion.channels.registry import adapters, get, providers, settings_models

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelKind",
    "Message",
    "adapters",
    "get",
    "providers",
    "settings_models",
]
