"""Share kits: the ambassador pattern without automation on anyone else's account.

A campaign's `share_kits:` name kit campaign files. A kit's audience is a list of ambassadors; its email or
SMS channels send each of them, at the kit's offset from the launch, links that open a pre-filled post in
their own X or LinkedIn account (`share_x(text)`, `share_linkedin()` in templates, clarion.messages.share).
The link inside the post is the ambassador's own tracked link, so every click their followers make is
counted against the ambassador who shared, in the kit's own run `<run>-kit-<name>`.

X's automation rules forbid posting, liking or reposting from other people's accounts on their behalf;
a share link leaves the decision (and the button) to the ambassador.
"""

from __future__ import annotations

from pathlib import Path

from clarion import channels
from clarion.base.errors import CampaignInvalid, Problem
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.campaign.model import ShareKit
from clarion.channels.base import ChannelKind

#: A kit is sent as part of its parent's run; these belong to the parent.
PARENT_ONLY = ("schedule", "steps", "approval", "rollout", "share_kits")


def kit_run_id(run_id: str, kit: str) -> str:
    return f"{run_id}-kit-{kit}"


def kit_path(parent: LoadedCampaign, kit: ShareKit) -> Path:
    return parent.base_dir / kit.campaign


def load_kits(parent: LoadedCampaign) -> list[tuple[ShareKit, LoadedCampaign]]:
    """Every kit campaign of `parent`, loaded and checked; raises CampaignInvalid listing every problem
    (a kit file's own problems name that file and line)."""
    found: list[tuple[ShareKit, LoadedCampaign]] = []
    problems: list[Problem] = []
    for index, kit in enumerate(parent.campaign.share_kits or []):
        at = ("share_kits", index, "campaign")
        path = kit_path(parent, kit)
        if not path.is_file():
            problems.append(
                parent.source.problem(
                    at, f"share kit file {kit.campaign!r} not found beside {parent.path.name}"
                )
            )
            continue
        if path.resolve() == parent.path.resolve():
            problems.append(
                parent.source.problem(at, "a share kit is a campaign file of its own, not this one")
            )
            continue
        try:
            loaded = load_campaign(path)
        except CampaignInvalid as exc:
            problems.extend(exc.problems)
            continue
        data = loaded.campaign
        for key in PARENT_ONLY:
            if getattr(data, key) is not None:
                problems.append(
                    loaded.source.problem(
                        (key,),
                        f"a share kit is sent as part of {parent.campaign.name}'s run: `{key}:` belongs in "
                        f"{parent.path.name}, not in the kit",
                        key=True,
                    )
                )
        for cid, config in data.channels.items():
            if channels.get(config.provider).kind is ChannelKind.SOCIAL:
                problems.append(
                    loaded.source.problem(
                        ("channels", cid),
                        "a share kit reaches ambassadors by email or SMS; Clarion never posts from their "
                        "accounts (use share_x() / share_linkedin() links in the kit's message instead)",
                        key=True,
                    )
                )
        found.append((kit, loaded))
    if problems:
        raise CampaignInvalid(problems)
    return found


__all__ = ["kit_path", "kit_run_id", "load_kits"]
