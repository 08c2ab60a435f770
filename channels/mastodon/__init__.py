"""mastodon"""

from clarion.channels.mastodon.adapter import MastodonChannel

__all__ = ["MastodonChannel"]
