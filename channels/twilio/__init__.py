"""twilio: the adapter is clarion.channels.twilio.adapter, its settings clarion.channels.twilio.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
