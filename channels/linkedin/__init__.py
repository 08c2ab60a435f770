"""linkedin: the adapter is clarion.channels.linkedin.adapter, its settings clarion.channels.linkedin.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
