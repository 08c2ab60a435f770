"""Responder files: every mistake located at FILE:LINE:COL with what to do; the commands around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.base.errors import CampaignInvalid
from clarion.cli.main import app
from clarion.responders.validation import validate_responder
from tests.responders.conftest import EXAMPLE

runner = CliRunner()


def _problems(path: Path) -> list[str]:
    with pytest.raises(CampaignInvalid) as caught:
        validate_responder(path)
    return [str(p) for p in caught.value.problems]


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_example_validates_and_its_schema_is_printed() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLE / "responder.yaml")])
    assert result.exit_code == 0, result.output
    assert "responder register-by-zip" in result.output
    schema = json.loads(runner.invoke(app, ["schema", "--responder"]).output)
    assert schema["title"] == "Clarion responder" and "rules" in schema["properties"]


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "  replies_per_hour: 5",
            "  replies_per_our: 5",
            "replies_per_our",
            "unknown key 'replies_per_our'; did you mean 'replies_per_hour'?",
        ),
        (
            "keywords: [VOLUNTEER,",
            "keywords: [STOP, VOLUNTEER,",
            "keywords: [STOP",
            "compliance keyword STOP",
        ),
        ("pattern: '(?P<zip>\\d{5})'", "pattern: '(?P<zip>\\d{5})(?=x)'", "(?=x)", "look-ahead"),
        ("provider: x", "provider: mastodon", "provider: mastodon", "unknown provider 'mastodon'"),
        (
            'examples: ["94110", "my zip',
            'examples: ["hello", "94110", "my zip',
            'examples: ["hello"',
            "example 'hello' is answered by the fallback",
        ),
        ("{{ state.name }}:", "{{ state.nmae }}:", "reply: >-", "'dict object' has no attribute 'nmae'"),
        (
            "file: deadlines.csv",
            "file: deadline.csv",
            "file: deadline.csv",
            "table file 'deadline.csv' not found",
        ),
        ("  - id: volunteer", "  - id: stop", "id: stop", "'stop' is reserved"),
    ],
    ids=[
        "misspelt-key",
        "claims-stop",
        "look-ahead",
        "provider",
        "shadowed-example",
        "template",
        "table",
        "reserved-id",
    ],
)
def test_mistakes_are_located(responder_copy: Path, old: str, new: str, needle: str, expected: str) -> None:
    _edit(responder_copy, old, new)
    problems = _problems(responder_copy)
    assert any(expected in p for p in problems), problems
    line = _line_of(responder_copy, needle)
    assert any(re.match(rf".*responder\.yaml:{line}:\d+: ", p) for p in problems if expected in p), problems


def test_a_reply_too_long_for_three_segments_is_refused(responder_copy: Path) -> None:
    _edit(
        responder_copy,
        "Thank you! Which zip code",
        "Thank you! " + "Really, thank you. " * 30 + "Which zip code",
    )
    [problem] = _problems(responder_copy)
    assert "over max_segments 3" in problem and "rules[1].keywords[0]" in problem


def test_the_cli_prints_the_problem_and_exits_1(responder_copy: Path) -> None:
    _edit(responder_copy, "retention: 30d", "retention: forever")
    result = runner.invoke(app, ["validate", str(responder_copy)])
    assert result.exit_code == 1
    assert "retention" in result.output and "Traceback" not in result.output


def test_responders_test_prints_the_rule_and_the_reply_and_sends_nothing() -> None:
    result = runner.invoke(
        app,
        [
            "responders",
            "test",
            str(EXAMPLE / "responder.yaml"),
            "--channel",
            "sms",
            "--from",
            "+14155550100",
            "--text",
            "94110",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rule: zip (pattern)" in result.output
    assert "California: register to vote by 2026-10-04" in result.output
    dm = runner.invoke(
        app,
        [
            "responders",
            "test",
            str(EXAMPLE / "responder.yaml"),
            "--channel",
            "dm",
            "--from",
            "3001969357",
            "--text",
            "stop",
            "--json",
        ],
    )
    assert json.loads(dm.output)["reply"].startswith("You will get no more messages")
    bad = runner.invoke(
        app, ["responders", "test", str(EXAMPLE / "responder.yaml"), "--from", "hello", "--text", "x"]
    )
    assert bad.exit_code == 1 and "not a phone number" in bad.output


def test_a_known_sender_is_greeted_by_name(responder_copy: Path) -> None:
    from clarion.responders.preview import preview

    folder = responder_copy.parent
    (folder / "contacts.csv").write_text("id,phone,x_id,first_name\nc-1,(415) 555-0100,3001969357,Ada\n")
    _edit(responder_copy, "retention: 30d", "retention: 30d\ncontacts: {file: contacts.csv}")
    _edit(
        responder_copy,
        'reply: "Thank you!',
        'reply: "Thank you{% if contact.first_name %}, {{ contact.first_name }}{% endif %}!',
    )

    sms = preview(responder_copy, "sms", "+14155550100", "volunteer")
    dm = preview(responder_copy, "dm", "3001969357", "volunteer")
    stranger = preview(responder_copy, "sms", "+12025550123", "volunteer")

    assert sms["reply"].startswith("Thank you, Ada!") and sms["known_contact"]
    assert dm["reply"].startswith("Thank you, Ada!")
    assert stranger["reply"].startswith("Thank you!") and not stranger["known_contact"]
