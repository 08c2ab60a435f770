"""Responders: answering people where they write (SMS keywords and patterns, X direct messages).

A responder file (model.py) is loaded and checked (loader.py, validation.py): its rules (rules.py: the
compliance keywords first, then keywords, then RE2 patterns, then the fallback), its replies (render.py:
sandboxed Jinja with the match's groups, lookups from tables and zip codes (lookups.py), the sender's
contact fields and a personal tracked link (links.py)). The tracking service hands it every verified
inbound message; `Responders` (engine.py) records each once in the ledger and decides its reply, and
`ReplySender` (sender.py) sends replies through the providers' APIs, reminders within quiet hours, and
erases texts past retention. report.py is the funnel per rule.

Layer: above clarion.engine (it reads local send windows) and below clarion.tracking (which serves it).
"""

from clarion.responders.loader import LoadedResponder, load_responder
from clarion.responders.validation import validate_responder

__all__ = ["LoadedResponder", "load_responder", "validate_responder"]
