"""bluesky: the adapter is clarion.channels.bluesky.adapter, its settings clarion.channels.bluesky.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
