"""mastodon: the adapter is clarion.channels.mastodon.adapter, its settings clarion.channels.mastodon.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
