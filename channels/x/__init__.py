"""x"""

from clarion.channels.x.adapter import XChannel

__all__ = ["XChannel"]
