"""Deterministic variant assignment: the same contact always lands in the same arm.

A contact's arm is picked by a uniform number drawn from sha256(campaign name, contact id); the arms
(holdout first, then the variants in file order) split [0, 1) by their shares. No state is kept, so a
resumed run, a preview and the report all agree without asking the ledger.

Channel holdouts (`experiment.channel_holdouts`) draw a second, independent uniform per contact and channel,
from sha256(campaign name, channel id, contact id): a channel is withheld from a contact when it falls below
the channel's share. Independent of the arm's draw, so channel x variant is a full factorial design.
"""

from __future__ import annotations

import bisect
import hashlib

from clarion.campaign.model import HOLDOUT, REST, Experiment


class Assigner:
    """Arms in order: the holdout, the variants, then (with a rollout) the rest, who wait for the winner.

    `test_share` is the rollout's share of the non-holdout contacts that test the variants."""

    def __init__(self, campaign_name: str, experiment: Experiment, test_share: float = 1.0) -> None:
        self._salt = campaign_name.encode() + b"\x1f"
        self.channel_holdouts = dict(experiment.channel_holdouts)
        total = sum(v.weight for v in experiment.variants)
        self.arms: list[str] = []
        self.shares: list[float] = []
        if experiment.holdout > 0:
            self.arms.append(HOLDOUT)
            self.shares.append(experiment.holdout)
        for variant in experiment.variants:
            if variant.weight > 0:
                self.arms.append(variant.id)
                self.shares.append((1 - experiment.holdout) * test_share * variant.weight / total)
        if test_share < 1:
            self.arms.append(REST)
            self.shares.append((1 - experiment.holdout) * (1 - test_share))
        self._bounds: list[float] = []
        acc = 0.0
        for share in self.shares[:-1]:
            acc += share
            self._bounds.append(acc)

    def uniform(self, contact_id: str) -> float:
        digest = hashlib.sha256(self._salt + contact_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def arm(self, contact_id: str) -> str:
        return self.arms[bisect.bisect_right(self._bounds, self.uniform(contact_id))]

    def withheld(self, contact_id: str, channel: str) -> bool:
        """Whether `channel` is withheld from this contact (its channel holdout); never for other channels."""
        share = self.channel_holdouts.get(channel, 0.0)
        if share <= 0:
            return False
        digest = hashlib.sha256(
            self._salt + b"channel\x1f" + channel.encode() + b"\x1f" + contact_id.encode()
        )
        return int.from_bytes(digest.digest()[:8], "big") / 2**64 < share
