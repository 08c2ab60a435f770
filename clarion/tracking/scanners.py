"""Who fetched a link: known scanners and preview bots by User-Agent, and mail-security vendors' networks.

Two lists ship as data in clarion/tracking/data/: `crawler-user-agents.json`, the patterns of the
community-maintained crawler-user-agents list (its source, commit and licence are in the file), and
`scanners.json`, the mail-security scanners (Microsoft, Mimecast, Proofpoint, Barracuda), headless browsers
and HTTP libraries beyond it, with the networks the vendors publish, each entry with its source. Patterns
run on RE2 (linear time: a forged User-Agent cannot stall the service), all of them in one compiled set.

The decision is taken when the request arrives, so the ledger keeps only the verdict and the matched name,
never the client's address. The timing rules that need the ledger are in clarion/analysis/clicks.py.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import re2

SCANNER_AGENT, SCANNER_NETWORK = "scanner_agent", "scanner_network"
MAX_AGENT = 512  # characters of a User-Agent looked at


@dataclass(frozen=True)
class Match:
    reason: str  # scanner_agent or scanner_network
    name: str  # the scanner's name, or the crawler pattern that matched


def _data(name: str) -> Any:
    return json.loads(resources.files("clarion.tracking").joinpath("data", name).read_text(encoding="utf-8"))


class Scanners:
    """The compiled lists; `Scanners.default()` reads the shipped ones once per process."""

    def __init__(self, agents: list[tuple[str, str]], networks: list[tuple[str, str]]) -> None:
        options = re2.Options()
        options.max_mem = 256 << 20  # the whole list as one automaton (the default budget is too small)
        self._agents = [(name, re2.compile(pattern, options)) for name, pattern in agents]
        combined = "|".join(f"(?:{pattern})" for _, pattern in agents) or "$^"
        self._any = re2.compile(combined, options)
        self._networks = [(name, ipaddress.ip_network(cidr)) for name, cidr in networks]

    @classmethod
    @functools.cache
    def default(cls) -> Scanners:
        vendors = _data("scanners.json")
        crawlers = _data("crawler-user-agents.json")
        agents = [(a["name"], a["pattern"]) for a in vendors["agents"]]
        agents += [(f"crawler: {p}", p) for p in crawlers["patterns"]]
        networks = [(n["name"], cidr) for n in vendors["networks"] for cidr in n["cidrs"]]
        return cls(agents, networks)

    def match(self, user_agent: str | None, client: str | None) -> Match | None:
        """Why this request is a scanner's (its User-Agent, else its network), or None."""
        agent = (user_agent or "")[:MAX_AGENT]
        if agent and self._any.search(agent):
            for name, pattern in self._agents:
                if pattern.search(agent):
                    return Match(SCANNER_AGENT, name[:64])
        if client:
            try:
                address = ipaddress.ip_address(client)
            except ValueError:
                return None
            for name, network in self._networks:
                if address.version == network.version and address in network:
                    return Match(SCANNER_NETWORK, name[:64])
        return None


__all__ = ["SCANNER_AGENT", "SCANNER_NETWORK", "Match", "Scanners"]
