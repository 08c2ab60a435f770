"""The tracking service: tracked links, unsubscribe pages, and every provider's webhooks, into the ledger."""

from clarion.tracking.service import build_app

__all__ = ["build_app"]
