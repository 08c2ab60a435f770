"""sendgrid"""

from clarion.channels.sendgrid.adapter import SendGridChannel

__all__ = ["SendGridChannel"]
