"""The operators' console of `clarion serve` (/console): runs, live results, approvals, suppressions.

A layer above the flows (it answers approvals through clarion.flows.approval) and below the command line.
"""

from clarion.console.app import build_console, mount
from clarion.console.auth import issue_token

__all__ = ["build_console", "issue_token", "mount"]
