"""One launch's working set, built once per flow run and handed to its tasks: no module-level caches.

A launch loads its campaign (and its share kits) once, opens the ledger once, and keeps here what its
send tasks share: the compiled templates of each run it sends (the launch's own, a rollout's or its
Thompson waves', each kit's), one adapter per channel (credentials read and the SDK warmed before the
first send), the link signer, and the run's `Coordination`. Tasks running in the flow run's threads get
this object; anything that leaves the process (a continuation run, a deployment) carries only the
campaign's path and digest (`CampaignRef`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clarion import channels
from clarion.base.settings import ClarionSettings
from clarion.campaign.kits import kit_run_id
from clarion.campaign.loader import LoadedCampaign
from clarion.channels.base import Channel, ChannelKind
from clarion.engine.coordination import Coordination, LocalCoordination
from clarion.engine.schedule import child_runs
from clarion.ledger import Ledger
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer


@dataclass(frozen=True)
class CampaignRef:
    """What crosses a process boundary: where the campaign is, and what it held when the run was planned."""

    path: str
    digest: str


def make_adapter(loaded: LoadedCampaign, channel_id: str) -> Channel:
    """The adapter of one channel of a campaign, with its provider's credentials from the environment
    (ClarionError naming the missing variable when they are not there)."""
    config = loaded.campaign.channels[channel_id]
    adapter_cls = channels.get(config.provider)
    settings = adapter_cls.settings_model.load(channel_id)
    return adapter_cls(channel_id, config, settings, callback_base=loaded.campaign.tracking.base_url)


class RunContext:
    """What one launch's tasks share; thread-safe. Not a dataclass: Prefect walks dataclasses passed to
    tasks looking for futures, and there are none in here."""

    def __init__(
        self,
        ledger: Ledger,
        loaded: LoadedCampaign,
        run_id: str,
        kits: Mapping[str, LoadedCampaign] | None = None,
        *,
        coordination: Coordination | None = None,
        signer: LinkSigner | None = None,
    ) -> None:
        self.ledger = ledger
        self.threads = ClarionSettings().max_workers  # send tasks of this process at once
        self.loaded = loaded
        self.run_id = run_id
        self.kits = dict(kits or {})
        self.coordination = coordination or LocalCoordination()
        self.signer = signer or LinkSigner.from_settings()
        self._campaigns = {run_id: loaded}
        self._campaigns.update({child: loaded for child in child_runs(loaded.campaign, run_id)})
        self._campaigns.update({kit_run_id(run_id, name): kit for name, kit in self.kits.items()})
        self._lock = threading.Lock()
        self._renderers: dict[str, Renderer] = {}
        self._adapters: dict[tuple[str, str], Channel] = {}
        #: the launch's local send helpers (a clarion.engine.helpers.Helpers, which imports this module)
        self.helpers: Any = None

    def campaign(self, run_id: str) -> LoadedCampaign:
        """The campaign a run of this launch sends: the launch's, or a share kit's."""
        return self._campaigns[run_id]

    def renderer(self, run_id: str) -> Renderer:
        """The compiled templates of one run of this launch (its links carry that run's key)."""
        with self._lock:
            renderer = self._renderers.get(run_id)
            if renderer is None:
                renderer = self._renderers[run_id] = Renderer(self.campaign(run_id), self.signer, run_id)
            return renderer

    def adapter(self, run_id: str, channel: str) -> Channel:
        """The ready adapter of a channel of one run of this launch, built and warmed once."""
        loaded = self.campaign(run_id)
        key = (str(loaded.path), channel)
        with self._lock:
            adapter = self._adapters.get(key)
        if adapter is None:
            adapter = make_adapter(loaded, channel)
            adapter.warm()
            with self._lock:
                adapter = self._adapters.setdefault(key, adapter)
        return adapter

    def warm(self, *, networks: bool = True) -> None:
        """Every channel's credentials are present and its SDK loaded, the kits' too: a missing key stops
        the launch here, before anything is planned or sent. `networks=False` leaves the social networks'
        adapters cold (a local send helper, which never sends a post: warming one may open a session)."""
        for run_id in (self.run_id, *(kit_run_id(self.run_id, name) for name in self.kits)):
            for channel, config in self.campaign(run_id).campaign.channels.items():
                if networks or channels.get(config.provider).kind is not ChannelKind.SOCIAL:
                    self.adapter(run_id, channel)


__all__ = ["CampaignRef", "RunContext", "make_adapter"]
