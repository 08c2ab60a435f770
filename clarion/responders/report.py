"""A responder's funnel, per rule: inbound -> matched -> replied -> clicked -> converted, in people.

Counted in conversations (one per sender and channel), from the ledger: `inbound` is everyone who wrote;
a rule's `matched` those it answered at least once (or would have, but for a cap), `replied` those a
reply of that rule reached the provider for, `clicked` those who followed that rule's personal link,
`converted` those whose conversion came through it. Each step's rate is of the step before, with a Wilson
95% interval. What fell through to the fallback is listed too: the most common texts (within the text
retention) and the rule whose answer people wrote back to, so organisers see what people ask that no
rule answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select

from clarion.analysis.stats import wilson
from clarion.base.text import normalise
from clarion.ledger import Ledger
from clarion.ledger.schema import clicks, conversions

STEPS = ("matched", "replied", "clicked", "converted")
TOP = 10


def funnel(ledger: Ledger, responder: str) -> dict[str, Any]:
    """The funnel per rule and what fell through, as plain data (JSON-ready)."""
    run_id = f"responder-{responder}"
    rows = ledger.conversation_messages(responder)
    inbound_people = {r["conversation_id"] for r in rows if r["direction"] == "in"}
    matched: dict[str, set[int]] = defaultdict(set)
    replied: dict[str, set[int]] = defaultdict(set)
    messages: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    fallback_texts: Counter[str] = Counter()
    after: Counter[str] = Counter()
    last_rule: dict[int, str] = {}
    for r in rows:
        conversation, rule = r["conversation_id"], r["rule"]
        if r["direction"] == "in":
            messages["inbound"] += 1
            if r["state"] == "ignored":
                ignored[r["reason"] or "ignored"] += 1
            if rule is None:
                continue
            base = _rule(rule)
            matched[base].add(conversation)
            if base == "fallback":
                if r["text"]:
                    fallback_texts[normalise(r["text"])[:80]] += 1
                after[last_rule.get(conversation, "(first message)")] += 1
        else:
            if r["state"] == "sent" and rule is not None:
                replied[_rule(rule)].add(conversation)
            if rule is not None:
                last_rule[conversation] = _rule(rule)
            messages["replies_" + r["state"]] += 1
    clicked, converted = _engaged(ledger, run_id)
    rules = sorted(set(matched) | set(replied), key=lambda k: (k == "fallback", -len(matched.get(k, ())), k))
    table = []
    for rule in rules:
        counts = {
            "matched": len(matched.get(rule, ())),
            "replied": len(replied.get(rule, ())),
            "clicked": len(clicked.get(rule, ())),
            "converted": len(converted.get(rule, set())),
        }
        before = len(inbound_people)
        steps = {}
        for step in STEPS:
            n = counts[step]
            low, high = wilson(min(n, before), before) if before else (0.0, 1.0)
            steps[step] = {"people": n, "rate": (n / before) if before else None, "low": low, "high": high}
            before = n
        table.append({"rule": rule, **steps})
    return {
        "responder": responder,
        "run": run_id,
        "inbound_people": len(inbound_people),
        "messages": dict(messages),
        "ignored": dict(ignored),
        "rules": table,
        "fallback": {
            "messages": sum(after.values()),
            "top_texts": [{"text": t, "count": n} for t, n in fallback_texts.most_common(TOP)],
            "after_rule": [{"rule": k, "count": n} for k, n in after.most_common(TOP)],
        },
    }


def _rule(key: str) -> str:
    """The funnel row of a reply key: a question's answer, retry and reminder count for its rule."""
    return key.split("/", 1)[0] if not key.startswith("compliance:") else key.split(":", 1)[1]


def _engaged(ledger: Ledger, run_id: str) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    clicked: dict[str, set[int]] = defaultdict(set)
    converted: dict[str, set[int]] = defaultdict(set)
    with ledger.engine.connect() as conn:
        for variant, seq in conn.execute(
            select(clicks.c.variant, clicks.c.contact_seq).where(clicks.c.run_id == run_id)
        ):
            if seq is not None:
                clicked[_rule(variant)].add(int(seq))
        query = select(conversions.c.arm, conversions.c.contact_seq).where(conversions.c.run_id == run_id)
        for arm, seq in conn.execute(query.group_by(conversions.c.arm, conversions.c.contact_seq)):
            if seq is not None:
                converted[_rule(arm)].add(int(seq))
    return clicked, converted


def terminal(data: dict[str, Any]) -> Any:
    """The funnel as rich renderables for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(
        f"responder {data['responder']}: {data['inbound_people']:,} people wrote in "
        f"({data['messages'].get('inbound', 0):,} messages)"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("rule")
    for step in STEPS:
        table.add_column(step, justify="right")
    for row in data["rules"]:
        cells = []
        for step in STEPS:
            s = row[step]
            rate = "" if s["rate"] is None else f" {s['rate']:.0%} [{s['low']:.0%}-{s['high']:.0%}]"
            cells.append(f"{s['people']:,}{rate}")
        table.add_row(row["rule"], *cells)
    parts: list[Any] = [table, Text("each step's rate is of the step before (people), Wilson 95% interval")]
    fb = data["fallback"]
    if fb["messages"]:
        parts.append(Text(f"\nfell through to the fallback: {fb['messages']:,} messages"))
        after = ", ".join(f"{a['rule']} {a['count']}" for a in fb["after_rule"])
        parts.append(Text(f"  after: {after}"))
        for item in fb["top_texts"]:
            parts.append(Text(f"  {item['count']:>5}  {item['text']}"))
    if data["ignored"]:
        ignored = ", ".join(f"{k} {v}" for k, v in sorted(data["ignored"].items()))
        parts.append(Text(f"\nnot answered: {ignored}"))
    return Group(*parts)
