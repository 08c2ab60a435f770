"""sendgrid: the adapter is clarion.channels.sendgrid.adapter, its settings clarion.channels.sendgrid.settings
(nothing is imported here, so that the settings load without the adapter and its SDK)."""
