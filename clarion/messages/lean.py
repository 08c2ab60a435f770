"""The send's messages without Jinja, when every hole of a channel's parts reads the data directly.

`Renderer.render(..., full=False)` makes what is sent to a provider that substitutes values itself: the
parts' skeletons and the recipient's values. When each hole is `{{ link }}`, `{{ unsubscribe_url }}`,
`{{ contact.<field> }}` or `{{ variant.<var> }}` (`Hole.direct`), those values are read straight from the
data, in the order the general way fills them, with no template context built: the same message
(tests/test_skeleton.py compares the two), at a fraction of the work per recipient. Where a recipient's
message needs more (a field missing, a value that looks like a key, too much to substitute) `message()`
answers None and the renderer takes the general way, which reports or handles it as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from markupsafe import escape

from clarion.campaign.contacts import Contact
from clarion.channels.base import Channel, ChannelKind, Message
from clarion.messages.skeleton import SPECIAL, Shape, substitutable, unescaped

#: Where a value comes from: each step of a LeanSend is (key, source, argument, escaped), the argument a
#: field's name, a constant's value as shown (a variant's var, worked out once), or the HTML key whose value
#: a derived text value unescapes.
LINK, UNSUBSCRIBE, FIELD, CONSTANT, DERIVED = range(5)
Step = tuple[str, int, str, bool]


class LeanSend:
    """One channel and variant's messages for the send, when every hole reads the data directly."""

    sources: ClassVar[dict[str, int]] = {
        "link": LINK,
        "unsubscribe_url": UNSUBSCRIBE,
        "contact": FIELD,
        "variant": CONSTANT,
    }

    def __init__(
        self,
        *,
        run: str,
        channel: str,
        variant: str,
        adapter: type[Channel],
        shapes: dict[str, Shape],
        steps: list[Step],
        token: Callable[[int], str],
        link: Callable[[str], str],
        unsubscribe: Callable[[str], str] | None,
    ) -> None:
        """`link` and `unsubscribe` make a recipient's URLs from their token (None: the channel has no
        unsubscribe URL); `shapes` are the parts' skeletons, in the order the message lists them."""
        self.run, self.channel, self.variant, self.adapter = run, channel, variant, adapter
        self.shapes, self.steps = shapes, steps
        self.token, self.link, self.unsubscribe = token, link, unsubscribe
        #: the parts filled in per recipient: those the provider does not substitute into
        self.filled = tuple(
            (name, shape) for name, shape in shapes.items() if name not in adapter.substitutes
        )
        self.strip = adapter.kind is not ChannelKind.EMAIL
        self.shared = {name: shape.text for name, shape in shapes.items()}  # one dict for every message

    def message(self, contact: Contact, address: str | None) -> Message | None:
        """The contact's message; None when it is to be made the general way (see the module)."""
        token = self.token(contact.seq)
        link = self.link(token)
        unsubscribe = self.unsubscribe(token) if self.unsubscribe is not None else None
        fields = contact.fields
        values: dict[str, str] = {}
        for key, source, arg, escaped in self.steps:
            if source == FIELD:
                found = fields.get(arg)
                if type(found) is not str:
                    return None  # its hole's template says what is wrong
            elif source == LINK:
                found = link
            elif source == UNSUBSCRIBE:
                found = unsubscribe or ""
            else:
                values[key] = arg if source == CONSTANT else unescaped(values[arg])
                continue
            values[key] = str(escape(found)) if escaped and SPECIAL.search(found) else found
        if not substitutable(values):
            return None
        rendered = {name: shape.fill(values) for name, shape in self.filled}
        text = rendered.get("text") or ""
        adapter = self.adapter
        return Message(
            channel=self.channel,
            provider=adapter.provider,
            kind=adapter.kind,
            variant=self.variant,
            contact_id=contact.id,
            to=address,
            link=link,
            text=text.strip() if self.strip else text,
            subject=rendered.get("subject"),
            html=rendered.get("html"),
            run=self.run,
            token=token,
            unsubscribe=unsubscribe,
            shared=self.shared,
            values=values,
        )


__all__ = ["CONSTANT", "DERIVED", "FIELD", "LINK", "UNSUBSCRIBE", "LeanSend", "Step"]
