"""threads: the adapter is clarion.channels.threads.adapter, its settings clarion.channels.threads.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
