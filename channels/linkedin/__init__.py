"""linkedin"""

from clarion.channels.linkedin.adapter import LinkedInChannel

__all__ = ["LinkedInChannel"]
