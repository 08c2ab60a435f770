"""Whatever a campaign file holds, loading it ends in a campaign or in a ClarionError that names the file:
arbitrary text and bytes, arbitrary YAML documents, and valid campaigns with keys dropped, values of the
wrong type, odd unicode, huge numbers and deep nesting. `clarion validate` on such files exits with a
status, never a traceback."""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Any

# Imported here, not at the first `schedule: {cron: ...}` an example draws: importing Prefect touches the
# global `random` state, which Hypothesis reports (as an error, under -W error) when it happens mid-test.
import prefect.client.schemas.schedules  # noqa: F401
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clarion import channels
from clarion.base.errors import CampaignInvalid, ClarionError
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.campaign.model import json_schema
from clarion.cli.main import app
from tests.conftest import CAMPAIGN, CONTACTS, REPO

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BASES = ((REPO / "examples" / "debate-night" / "campaign.yaml").read_text(encoding="utf-8"), CAMPAIGN)
#: Nine lists of nine aliases to the list before: a few lines that name 9^9 paths.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _schema_keys(node: Any) -> set[str]:
    """Every key the campaign format knows, channel sections included."""
    if isinstance(node, list):
        return set().union(*(_schema_keys(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set(node.get("properties", {})) if isinstance(node.get("properties"), dict) else set()
    return found.union(*(_schema_keys(value) for value in node.values()))


KEYS = sorted(_schema_keys(json_schema()))

# -- strategies ----------------------------------------------------------------------------------------

#: Pieces of YAML to string together: structure, anchors and aliases, tags, and scalars that look like
#: numbers, dates and times but are not valid ones.
YAML_PIECES = [
    *("name", "vars", "a", "b", "x", "1", ": ", "- ", "? ", ", ", "\n", "  ", "\t", "'", '"', "|", ">", "#"),
    *("[", "]", "{", "}", "[" * 400, "{a: " * 300, "&a ", "*a", "&b ", "*b", "<<: ", "---\n", "...\n"),
    *("&a [*a]", "&a {a: *a}", "[a]: b\n", "? {a: b}\n: c\n", "{[a]: b}"),
    *("!!bool ", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!str ", "!!map "),
    *("!!python/object:os.system ", "!<tag:yaml.org,2002:int> ", "%YAML 1.1\n", "%TAG ! tag:x:\n"),
    *("2026-13-45", "2026-02-30 25:61:00", "2001-12-14t21:59:43.10+99:00", "0x1G", "0b12", "1_0", "1:99"),
    *(".inf", "-.nan", "~", "yes", "9" * 5000, "9" * 400 + ".5e99999", "\ufeff", "\x85", "\u2028", "\x00"),
]
yaml_like_text = st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join)

odd_text = st.text(
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "So", "Lo"])
    | st.sampled_from("\ufeff\u202e\x85"),
    max_size=12,
)
huge_numbers = (
    st.integers(min_value=2**63 - 2, max_value=10**300)
    | st.integers(min_value=-(10**300), max_value=-(2**63))
    | st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 5e-324])
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_numbers
    | st.floats()
    | st.text(max_size=20)
    | odd_text
    | st.sampled_from([*KEYS, "x", "sendgrid", "twilio", "https://example.org/a", "5m", "0 9 * * 1"])
    | st.dates()
    | st.datetimes()
    | st.binary(max_size=8)
)
keys = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS),
    st.text(max_size=12),
    odd_text,
    st.integers() | st.booleans() | st.none(),
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


def _with(fixed: dict[str, Any], extra: dict[Any, Any]) -> dict[Any, Any]:
    return {**fixed, **extra}


#: Documents shaped like a campaign (the required keys, channel sections with a provider) but with
#: arbitrary values under known keys, so that they get past the first checks and into the deeper ones.
channel_sections = st.builds(
    _with,
    st.fixed_dictionaries({"provider": st.sampled_from(sorted(channels.providers())) | scalars}),
    st.dictionaries(st.sampled_from(KEYS), documents, max_size=4),
)
campaign_like = st.builds(
    _with,
    st.fixed_dictionaries(
        {
            "name": st.just("fuzz") | scalars,
            "cta": st.just({"url": "https://example.org/"}) | documents,
            "audience": st.just({"contacts": "contacts.csv"}) | documents,
            "channels": st.dictionaries(
                st.sampled_from(["x", "email", "sms"]) | keys, channel_sections, max_size=3
            ),
        }
    ),
    st.dictionaries(st.sampled_from(KEYS), documents, max_size=4),
)


def _dump(data: Any, flow: bool | None, unicode: bool) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, allow_unicode=unicode, width=1000)


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in `node`, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((node, index))
            _slots(value, out)
    return out


@st.composite
def mutated_campaigns(draw: st.DrawFn, bases: tuple[str, ...] = BASES) -> str:
    """A valid campaign after one to four mutations of its data or of its text."""
    text = draw(st.sampled_from(bases))
    data = yaml.safe_load(text)
    textual = draw(st.booleans())
    for _ in range(draw(st.integers(1, 4))):
        if textual:
            at = draw(st.integers(0, len(text)))
            how = draw(st.sampled_from(["insert", "delete", "tabs", "duplicate-line", "cut"]))
            if how == "insert":
                text = text[:at] + draw(odd_text | yaml_like_text) + text[at:]
            elif how == "delete":
                text = text[:at] + text[at + draw(st.integers(1, 20)) :]
            elif how == "tabs":
                text = text[:at] + text[at:].replace("  ", "\t", 1)
            elif how == "duplicate-line":
                lines = text.splitlines(keepends=True)
                i = at % max(len(lines), 1)
                text = "".join([*lines[: i + 1], *lines[i:]])
            else:
                text = text[:at]
            continue
        slots = _slots(data, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        how = draw(st.sampled_from(["drop", "retype", "nest", "add", "rename", "odd-unicode"]))
        if how == "drop":
            del container[key]
        elif how == "retype":
            container[key] = draw(scalars | documents)
        elif how == "nest":
            value = container[key]
            for _ in range(draw(st.integers(1, 120))):  # up to past clarion.campaign.yamlsource.MAX_DEPTH
                value = draw(st.sampled_from([[value], {"vars": value}]))
            container[key] = value
        elif how == "add" and isinstance(container, dict):
            container[draw(keys)] = draw(documents)
        elif how == "add":
            container.insert(key, draw(documents))
        elif how == "rename" and isinstance(container, dict):
            container[draw(st.sampled_from(KEYS) | odd_text)] = container.pop(key)
        elif isinstance(container[key], str):
            at = draw(st.integers(0, len(container[key])))
            container[key] = container[key][:at] + draw(odd_text) + container[key][at:]
        else:
            container[key] = draw(odd_text)
    if textual:
        return text
    return _dump(data, draw(st.sampled_from([None, False, True])), draw(st.booleans()))


# -- the property --------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with a contacts file; each example overwrites campaign.yaml in it."""
    (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    return tmp_path


def loads_or_names_the_file(path: Path) -> LoadedCampaign | None:
    """The loaded campaign, or None once the ClarionError is checked: every problem names `path`, at a line
    the file has. Any other exception propagates, and fails the test."""
    lines = len(path.read_bytes().decode("utf-8", "replace").splitlines()) + 1
    try:
        return load_campaign(path)
    except CampaignInvalid as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path)
            assert 0 <= problem.line <= lines, problem
            assert problem.message.strip()
        assert str(exc).startswith(str(path))
    except ClarionError as exc:
        assert str(path) in str(exc)
    return None


def _write(folder: Path, text: str) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(text=st.text(max_size=300) | yaml_like_text)
@example(text="a: &a [*a]\n")  # RecursionError: _index walked the alias into itself forever
@example(text="[1]: 2\n")  # TypeError: a list as a mapping key is unhashable
@example(text="? {a: 1}\n: 2\n")  # the same, with a mapping as the key
@example(text="[" * 2000)  # RecursionError: PyYAML composes nested nodes recursively
@example(text="a: " + "9" * 5000)  # ValueError: int() refuses more than 4,300 digits
@example(text="a: 2026-13-45\n")  # ValueError: YAML reads it as a date, month 13
@example(text="a: 2001-12-14t21:59:43.10+99:00\n")  # ValueError: a UTC offset over 24 hours
@example(text="a: !!bool maybe\n")  # KeyError in PyYAML's bool constructor
@example(text="a: !!int abc\n")  # ValueError
@example(text="a: !!timestamp abc\n")  # AttributeError
@example(text="name: \x00\n")  # ReaderError, raised by the loader's constructor outside the try
@example(text=LAUGHS)  # each path through the aliases was walked: 9^9 of them, a hang
def test_arbitrary_text_loads_or_is_refused_naming_the_file(folder: Path, text: str) -> None:
    loads_or_names_the_file(_write(folder, text))


@FUZZ
@given(
    raw=st.binary(max_size=300)
    | st.builds(
        lambda base, at, bad: base[:at] + bad + base[at:],
        st.sampled_from([b.encode() for b in BASES]),
        st.integers(0, 1500),
        st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xef\xbb\xbf"]),
    )
    | st.sampled_from([b.encode("utf-16") for b in BASES])
)
def test_arbitrary_bytes_load_or_are_refused_naming_the_file(folder: Path, raw: bytes) -> None:
    path = folder / "campaign.yaml"
    path.write_bytes(raw)
    loads_or_names_the_file(path)


@FUZZ
@given(
    data=campaign_like | st.dictionaries(keys, documents, max_size=8) | documents,
    flow=st.sampled_from([None, False, True]),
)
def test_arbitrary_yaml_documents_load_or_are_refused_naming_the_file(
    folder: Path, data: Any, flow: bool | None
) -> None:
    loads_or_names_the_file(_write(folder, _dump(data, flow, unicode=True)))


@FUZZ
@given(text=mutated_campaigns())
def test_mutated_campaigns_load_or_are_refused_naming_the_file(folder: Path, text: str) -> None:
    loads_or_names_the_file(_write(folder, text))


@pytest.mark.parametrize("text", BASES, ids=["debate-night", "test-appeal"])
def test_the_campaigns_mutated_above_are_valid(folder: Path, text: str) -> None:
    assert loads_or_names_the_file(_write(folder, text)) is not None


@pytest.mark.parametrize(
    "extra",
    [
        "approval:\n  timeout: .inf\n",
        "approval:\n  timeout: 1000000000d\n",
        "share_kits:\n  - name: k\n    campaign: k.yaml\n    after: 99999999999h\n",
        "schedule:\n  cron: '0 9 * * 1'\n  timezone: America\n",
        "schedule:\n  cron: '0 9 * * 1'\n  timezone: " + "a" * 300 + "\n",
    ],
    ids=[
        "duration-infinite",
        "duration-too-many-days",
        "duration-too-many-hours",
        "zone-folder",
        "zone-long",
    ],
)
def test_durations_and_time_zones_out_of_range_are_refused_naming_the_file(folder: Path, extra: str) -> None:
    """Found by the properties above: an infinite or huge duration, a zone folder, a too-long zone name."""
    path = _write(folder, CAMPAIGN + extra)
    with pytest.raises(CampaignInvalid, match=re.escape(str(path))):
        load_campaign(path)


# -- through the CLI -----------------------------------------------------------------------------------


@settings(FUZZ, max_examples=50)
@given(text=mutated_campaigns(bases=(CAMPAIGN,)) | yaml_like_text)
@example(text="a: &a [*a]\n")
@example(text="[" * 2000)
def test_validate_exits_with_a_status_never_a_traceback(folder: Path, text: str) -> None:
    path = _write(folder, text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        pytest.fail(
            "a user mistake crashed the CLI:\n" + "".join(traceback.format_exception(*result.exc_info))
        )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output
    if loads_or_names_the_file(path) is None:
        assert result.exit_code == 1
        assert str(path) in result.output
