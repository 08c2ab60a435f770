"""The sandbox's home page: what "went out", for a person watching a demo.

Rendered only when someone asks for it, from a snapshot of the latest messages; every value that came from a
request is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

LATEST = 50

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .counts td { font-size: 1.2rem; } code { font-size: 12px; }
.muted { color: #777; }
"""


def _cell(value: Any, limit: int = 160) -> str:
    if value is None or value == "":
        return '<span class="muted">-</span>'
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def render_page(
    labels: dict[str, str],
    counts: dict[str, int],
    latest: list[dict[str, Any]],
    faults: dict[str, dict[str, Any] | None],
) -> str:
    """`labels` names each provider's messages (its emulator's label), in the order shown."""
    count_cells = "".join(
        f"<td>{escape(label)}: <strong>{counts.get(p, 0):,}</strong></td>" for p, label in labels.items()
    )
    rows = []
    for m in reversed(latest):
        rows.append(
            "<tr>"
            f"<td><code>{_cell(m.get('received_at'))}</code></td>"
            f"<td>{_cell(m.get('provider'))}</td>"
            f"<td>{_cell(m.get('to'))}</td>"
            f"<td>{_cell(m.get('subject'))}</td>"
            f"<td>{_cell(m.get('text'))}</td>"
            f"<td><code>{_cell(m.get('provider_id'))}</code></td>"
            "</tr>"
        )
    table = "\n".join(rows) or '<tr><td colspan="6" class="muted">Nothing sent yet.</td></tr>'
    active = [f"{escape(p)}: {escape(_fault_summary(c))}" for p, c in faults.items() if c]
    fault_line = "; ".join(active) if active else "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clarion provider sandbox</title>
<meta http-equiv="refresh" content="5"><style>{STYLE}</style></head>
<body>
<h1>Clarion provider sandbox</h1>
<p class="muted">Nothing here reached a real provider. Faults: {fault_line}.
JSON: <a href="/_sandbox/messages">messages</a>, <a href="/_sandbox/requests">requests</a>,
<a href="/_sandbox/faults">faults</a>.</p>
<table class="counts"><tr>{count_cells}</tr></table>
<h2>Latest {min(len(latest), LATEST)} messages</h2>
<table><thead><tr><th>Received (UTC)</th><th>Provider</th><th>To</th><th>Subject</th><th>Text</th>
<th>Provider id</th></tr></thead>
<tbody>
{table}
</tbody></table>
</body></html>
"""


def _fault_summary(config: dict[str, Any]) -> str:
    defaults = {"stall_seconds": 30.0, "retry_after": 1.0, "seed": None}
    return ", ".join(f"{k}={v}" for k, v in config.items() if v and defaults.get(k, 0) != v)
