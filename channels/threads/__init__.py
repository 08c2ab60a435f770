"""threads"""

from clarion.channels.threads.adapter import ThreadsChannel

__all__ = ["ThreadsChannel"]
