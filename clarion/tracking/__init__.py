"""The tracking service (`clarion serve`): tracked-link redirects and webhooks, writing to the ledger."""

from clarion.tracking.app import build_app
from clarion.tracking.webhooks import conversion_signature

__all__ = ["build_app", "conversion_signature"]
