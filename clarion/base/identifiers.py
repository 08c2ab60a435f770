"""The one pattern every identifier follows: run ids, campaign names, channel ids, variant ids, step and
share-kit names, responder names and rule ids, event names, work-pool names.

    IDENTIFIER = lowercase letters, digits, '.', '_' and '-', starting with a letter or a digit,
                 at most 200 characters (names written in a campaign or responder file: at most 63, so
                 that the run ids built from them, `<campaign>-<time>-<hex>-kit-<kit>`, stay within 200)

Identifiers travel into Prefect names, artifact keys, links, file names and the ledger: a slash, a space,
a control character or a trailing newline in one is a mistake caught where it enters (the CLI, a campaign
or responder file, an event), with a message that states the pattern.
"""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}")
MAX_LENGTH = 200
NAME_LENGTH = 63
HINT = "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
#: The resource id prefix of `clarion trigger`'s events (`clarion.trigger.<event name>`), which deployed
#: campaigns' automations match; here, so that `clarion trigger` needs no campaign model to emit one.
EVENT_RESOURCE = "clarion.trigger"


def check_identifier(value: str, what: str, *, max_length: int = MAX_LENGTH) -> str:
    """`value` when it is an identifier of at most `max_length` characters; else ValueError naming `what`
    and the pattern (the message shows the value with its control characters escaped)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value) or len(value) > max_length:
        shown = value if isinstance(value, str) else str(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ValueError(f"{shown!r} is not a valid {what}: use {HINT} (at most {max_length})")
    return value


def check_name(value: str, what: str) -> str:
    """A name written in a campaign or responder file (campaign, channel, variant, step, kit, rule)."""
    return check_identifier(value, what, max_length=NAME_LENGTH)
