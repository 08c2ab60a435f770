"""Channel adapters, one module per provider; importing this package registers the built-in ones."""

from channels import sendgrid, twilio, x
from channels.base import Channel, ChannelConfig, ChannelKind, Message
from channels.registry import adapters, get, providers, register

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelKind",
    "Message",
    "adapters",
    "get",
    "providers",
    "register",
    "sendgrid",
    "twilio",
    "x",
]
