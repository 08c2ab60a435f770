"""Share links for templates: `share_<provider>(text)` opens a pre-filled post in the reader's own account.

Every registered provider that has a compose link (`Channel.compose_url`, e.g. X's web intent) gives
templates a `share_<provider>(text)`; `share_linkedin()` opens LinkedIn's share dialog. The link inside
the post is this message's own tracked link, so a share kit's ambassadors are credited with their
followers' clicks. Clarion never posts from anyone else's account: the reader presses the button.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import jinja2

from clarion import channels

LINKEDIN_SHARE = "https://www.linkedin.com/sharing/share-offsite/"


def linkedin_share_url(link: str) -> str:
    """LinkedIn's share dialog for `link` (LinkedIn takes the text from the page's own preview tags)."""
    return f"{LINKEDIN_SHARE}?{urlencode({'url': link}, quote_via=quote)}"


def share_helpers(link: str) -> dict[str, Any]:
    """The template helpers for one message whose tracked link is `link`."""
    helpers: dict[str, Any] = {"share_linkedin": lambda: linkedin_share_url(link)}
    for adapter in channels.adapters():
        if adapter.composes:
            helpers[f"share_{adapter.provider}"] = _composer(adapter.compose_url, link)
    return helpers


def _composer(compose: Callable[[str, str], str], link: str) -> Callable[[str], str]:
    def share(text: str) -> str:
        try:
            return compose(str(text), link)
        except ValueError as exc:  # reported at the template line that called it
            raise jinja2.TemplateRuntimeError(str(exc)) from None

    return share


__all__ = ["linkedin_share_url", "share_helpers"]
