"""x: the adapter is clarion.channels.x.adapter, its settings clarion.channels.x.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
