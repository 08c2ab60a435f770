"""twilio"""

from clarion.channels.twilio.adapter import TwilioChannel

__all__ = ["TwilioChannel"]
