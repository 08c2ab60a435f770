"""Personal links: one per sender and rule, whose clicks and conversions count for the responder.

A responder is recorded in the ledger as a run of its own, `responder-<name>` (its channels and the rules
that carry a link are frozen in the run's options, appended to, never reordered, so old links keep their
meaning when the file changes). A link's token names, by position, that run, the channel, the rule, and
the conversation (one per sender and channel): no phone number or X account travels in a link. Through
the tracking service (`tracking.base_url`) the link is `<base>/c/<token>`, which records the click and
redirects to the destination the reply was rendered with (the state's registration page); without it, the
link is the destination itself with the UTM parameters and the token (`ct=`) for the page to pass on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clarion.channels.base import ChannelKind
from clarion.messages.links import click_link, cta_url

if TYPE_CHECKING:
    from clarion.responders.loader import LoadedResponder

KINDS = {"twilio": ChannelKind.SMS, "x": ChannelKind.SOCIAL}


def personal_link(loaded: LoadedResponder, channel: str, rule: str, destination: str, token: str) -> str:
    base = loaded.responder.tracking.base_url
    if base:
        return click_link(base, token)
    kind = KINDS[loaded.responder.channels[channel].provider]
    return cta_url(destination, campaign=loaded.name, channel=channel, kind=kind, variant=rule, token=token)
