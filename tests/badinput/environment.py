"""Wrong values for every environment variable in the README's settings tables (Settings, Credentials).

A variable's wrong values come from its name and, where a settings class declares it, its type: numbers
out of range and not numbers, URLs that are not URLs or of the wrong scheme, keys too short, control
characters and blanks around any value. `strategy_for` raises for a variable it has no rule for, and the
coverage test fails: a new variable documented in the README gets cases or a rule, never silence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

README = Path(__file__).resolve().parents[2] / "README.md"
CONTROL = st.sampled_from(["\n", "\t", "\r", "\x1b[2J", "\x7f"])
PADDED = st.sampled_from([" x", "x ", " ", "\t"])
GENERIC = st.one_of(
    st.builds(
        lambda c, s: s + c,
        CONTROL,
        st.sampled_from(["a", "https://x.example", "8", "value-0123456789abcdef"]),
    ),
    PADDED,
)


def variables() -> list[str]:
    """The variables named in the first column of the README's Settings and Credentials tables."""
    text = README.read_text(encoding="utf-8")
    sections = [text.split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]]
    sections.append(text.split("### Credentials", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0])
    names: list[str] = []
    for section in sections:
        for line in section.splitlines():
            cells = line.strip().strip("|").split("|")
            if len(cells) < 2 or set(cells[0].strip()) <= {"-", " "}:
                continue
            where = cells[0] if cells[0].strip().startswith("`") else cells[1]  # Credentials: 2nd column
            names += [n for n in re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", where) if n not in names]
    return list(dict.fromkeys(names))


def _number_rules(name: str) -> Any:
    from clarion import channels
    from clarion.base.settings import ClarionSettings, ConsoleSettings, TrackingSettings

    fields: dict[str, Any] = {f"CLARION_{k.upper()}": v for k, v in ClarionSettings.model_fields.items()}
    fields |= {
        k.upper(): v
        for k, v in (*TrackingSettings.model_fields.items(), *ConsoleSettings.model_fields.items())
    }
    for adapter in channels.adapters():
        fields |= {str(v.validation_alias): v for v in adapter.settings_model.model_fields.values()}
    return fields.get(name)


class NoRule(Exception):
    pass


URLS = st.sampled_from(
    ["not a url", "ftp://x.example", "http//x", "://", "http://x:99999", "mysql://u@h/db", "redis:", "x"]
)
NUMBERS = st.sampled_from(["abc", "-1", "1e999", "nan", "-inf", "99999999999999999999", "1,5", ""])


def strategy_for(name: str) -> st.SearchStrategy[str]:
    field = _number_rules(name)
    annotation = getattr(field, "annotation", None)
    if annotation in (int, float):
        return st.one_of(GENERIC, NUMBERS)
    if name.endswith("_URL"):
        return st.one_of(GENERIC, URLS)
    if name in ("CLARION_SECRET_KEY", "CLARION_CONVERSION_SECRET"):
        return st.one_of(GENERIC, st.text("abc", min_size=1, max_size=15))
    if name == "CLARION_HOME":
        return st.sampled_from(["@under-file", "@under-file/below"])
    if name in ("CLARION_RATE_LIMIT", "CLARION_REJECT_LIMIT"):
        return st.one_of(
            GENERIC, st.sampled_from(["lots", "0/second", "-1/minute", "30/fortnight", "1/0 second"])
        )
    if name == "CLARION_CONSOLE_TRUSTED_PROXIES":
        return st.one_of(GENERIC, st.sampled_from(["not-an-ip", "10.0.0.0/33", "1.2.3.4,,x", "300.1.1.1"]))
    if name == "CLARION_CONSOLE_USER_HEADER":
        return st.one_of(GENERIC, st.sampled_from(["X User", "X-User:", "(x)", "é"]))
    if name == "CLARION_SEND_POOL":
        return st.one_of(GENERIC, st.sampled_from(["Bad Pool", "../x", "a/b"]))
    if name == "TWILIO_ACCOUNT_SID":
        return st.one_of(GENERIC, st.sampled_from(["AC12", "SK" + "0" * 32, "AC" + "g" * 32]))
    if name == "CLARION_SMS_HELP_REPLY":
        return st.one_of(GENERIC, st.just("x" * 2000))
    if field is not None or re.search(r"(KEY|SECRET|TOKEN|PASSWORD)$", name):
        return (
            GENERIC  # a provider's setting (from the registry) or a secret: any printable value may be theirs
        )
    raise NoRule(f"{name}: no rule for its wrong values in tests/badinput/environment.py")
