"""Validation that does not repeat itself: a campaign that validated is remembered under a digest.

The digest covers everything validation read: the campaign file, its contacts file and template files
(the digest a run is resumed under), every other template file in its folder (for includes), its share
kits' files, and Clarion's own code and bundled templates (a new rule must see the campaign again). The
record is a small JSON file in CLARION_HOME/validated/, holding the report's counts; it holds no contact.

- `clarion validate` of files already valid under the same digest answers from the record, without
  reading the contacts file again;
- a run's planning, which must still read every contact to assign and plan it, skips rendering and
  checking each message once more when the same files validated before (by `clarion validate`, or by an
  earlier run or resume of the same campaign), and records them when they validate; a `clarion run` of
  files that never validated has its send helper validate them meanwhile (clarion/engine/spawn.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path

from clarion.base.settings import ClarionSettings
from clarion.campaign.contacts import file_digest
from clarion.campaign.kits import load_kits
from clarion.campaign.loader import LoadedCampaign, campaign_digest
from clarion.messages.validate import Progress, ValidationReport, validate

log = logging.getLogger("clarion.validated")

CODE = Path(__file__).resolve().parent.parent  # the clarion package: its code and bundled templates
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".html", ".htm", ".txt")
MAX_TEMPLATE_FILES = 500


def validation_digest(loaded: LoadedCampaign) -> str:
    """What a campaign's validation depends on, as one sha256 (see the module's docstring)."""
    parts = [campaign_digest(loaded), _templates(loaded.base_dir), _code()]
    try:
        parts.extend(campaign_digest(kit) for _, kit in load_kits(loaded))
    except Exception:  # a kit that does not load: never remembered as valid
        parts.append(os.urandom(16).hex())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def validate_once(
    loaded: LoadedCampaign, progress: Progress | None = None, digest: str | None = None
) -> ValidationReport:
    """`validate`, unless these very files validated before: then the report recorded then. `progress`:
    as `validate`'s; `digest`: their `validation_digest`, when the caller computed it."""
    try:
        digest = digest or validation_digest(loaded)
    except OSError:  # a file that cannot be read: validation says which, and where
        return validate(loaded, progress)
    report = recall(loaded, digest)
    if report is None:
        report = validate(loaded, progress)
        remember(report, digest)
    return report


def recall(loaded: LoadedCampaign, digest: str | None = None) -> ValidationReport | None:
    """The report of an earlier validation of these very files, or None."""
    path = _record(digest or validation_digest(loaded))
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    report = ValidationReport(loaded, contacts=int(data["contacts"]))
    report.arms = Counter(data["arms"])
    report.reachable = Counter(data["reachable"])
    report.consented = Counter(data["consented"])
    return report


def remember(report: ValidationReport, digest: str | None = None) -> None:
    """Record a successful validation (best effort: a read-only home only costs a validation later)."""
    path = _record(digest or validation_digest(report.loaded))
    data = {
        "campaign": str(report.loaded.path),
        "contacts": report.contacts,
        "arms": dict(report.arms),
        "reachable": dict(report.reachable),
        "consented": dict(report.consented),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data))
        temporary.replace(path)
    except OSError as exc:
        log.info("validation not recorded in %s: %s", path.parent, exc)


def _record(digest: str) -> Path:
    return ClarionSettings().home / "validated" / f"{digest}.json"


def _templates(folder: Path) -> str:
    """Every template-like file under the campaign's folder (includes and imports read them)."""
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in TEMPLATE_SUFFIXES and p.is_file() and ".clarion" not in p.parts
    )[:MAX_TEMPLATE_FILES]
    return file_digest(*found) if found else ""


def _code() -> str:
    """Clarion's own code and bundled templates, by size and modification time (cheap, and any edit or
    upgrade changes it)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(CODE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".j2")):
                stat = os.stat(os.path.join(root, name))
                digest.update(f"{root}/{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


__all__ = ["recall", "remember", "validate_once", "validation_digest"]
