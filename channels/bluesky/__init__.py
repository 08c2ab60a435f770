"""bluesky"""

from clarion.channels.bluesky.adapter import BlueskyChannel

__all__ = ["BlueskyChannel"]
