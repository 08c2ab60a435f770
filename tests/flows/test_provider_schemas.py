"""Every request Clarion makes passes the providers' own published schemas, and a personalised email goes
out in whole chunks: SendGrid's POST /v3/mail/send (sendgrid/sendgrid-oai) and Twilio's Messages create
(twilio/twilio-oai), in tests/channels/schemas/ (derived from the published files, see their $comment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from clarion.campaign.loader import load_campaign
from clarion.flows.launch import launch
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

SCHEMAS = Path(__file__).resolve().parent.parent / "channels" / "schemas"

CAMPAIGN = """\
name: schema-test
cta:
  url: https://donate.example.org/test
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  variants:
    - id: a
      vars: {headline: "Chip in now."}
    - id: b
      vars: {headline: "Join the supporters & friends."}
channels:
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    reply_to: "Help <help@example.org>"
    categories: [appeal]
    subject: "{{ contact.first_name }}, {{ variant.headline }}"
    postal_address: "Team, PO Box 1, Springfield"
    body: "<p>Hi {{ contact.first_name or 'friend' }}, {{ variant.headline }} <a href='{{ link }}'>Give</a></p>
      <p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>"
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null  # runs at any hour; quiet hours are tested on their own
    body: "{{ contact.first_name }}: {{ variant.headline }} {{ link }} Reply STOP to opt out"
"""
#: The body steered by the contact (a condition): rendered per contact, sent in groups of equal content.
STEERED = CAMPAIGN.replace(
    "<p>Hi {{ contact.first_name or 'friend' }},",
    "<p>{% if contact.first_name %}Hi {{ contact.first_name }}{% else %}Hello{% endif %},",
)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _form(body: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A form body as the JSON the schema describes: each field converted to the type it names."""
    fields: dict[str, Any] = {}
    for name, values in parse_qs(body, keep_blank_values=True).items():
        kind = schema["properties"].get(name, {}).get("type")
        if kind == "array":
            fields[name] = values
        elif kind == "boolean":
            fields[name] = values[0].lower() == "true"
        elif kind in ("integer", "number"):
            fields[name] = float(values[0]) if kind == "number" else int(values[0])
        else:
            fields[name] = values[0]
    return fields


def _problems(validator: Draft202012Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@pytest.mark.parametrize(("text", "whole"), [(CAMPAIGN, True), (STEERED, False)], ids=["skeleton", "steered"])
def test_every_request_passes_the_providers_published_schemas(
    tmp_path: Path, providers: Sandbox, text: str, whole: bool
) -> None:
    path = write_campaign(tmp_path, 400, text)
    result = launch(str(path), f"schema-{'whole' if whole else 'steered'}")
    assert result.completed
    mail, texts = _validator("sendgrid_mail_send.json"), _validator("twilio_messages_create.json")
    sent_mail = sent_texts = 0
    for request in providers.requests():
        if request["path"] == "/v3/mail/send":
            payload = json.loads(request["body"])
            assert not _problems(mail, payload), _problems(mail, payload)[:5]
            # at the top, as the schema requires; per personalization where it differs
            assert payload["subject"]
            assert all(p.get("subject", payload["subject"]) for p in payload["personalizations"])
            assert request["status"] == 202
            sent_mail += 1
        elif request["path"].endswith("/Messages.json"):
            form = _form(request["body"], texts.schema)
            assert not _problems(texts, form), _problems(texts, form)[:5]
            sent_texts += 1
    assert sent_mail and sent_texts
    emails = providers.messages("sendgrid")
    batches = {(m["x_message_id"]) for m in emails}
    if whole:  # an opening batch of 50, then the rest: one request each, both variants in it
        assert len(batches) == sent_mail == 2
    else:  # per contact: a request per group of equal content
        assert sent_mail > 2
    # what each recipient got is their own message: their first name, their variant's words, their links
    for m in emails[:50]:
        assert m["html"].count("https://go.example.org/c/") == 1
        assert m["custom_args"]["clarion_token"] in m["html"]
        assert "CLRNK" not in m["html"] + m["text"] + m["subject"]
        assert m["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


#: One variant: its words are the same for every recipient of a request.
ONE_VARIANT = CAMPAIGN.replace(
    """    - id: b
      vars: {headline: "Join the supporters & friends."}
""",
    "",
)


@pytest.mark.parametrize(
    "text", [CAMPAIGN.replace("&", "and"), ONE_VARIANT], ids=["two-variants", "one-variant"]
)
def test_a_request_says_each_value_once_and_every_recipient_gets_their_own_message(
    tmp_path: Path, providers: Sandbox, text: str
) -> None:
    """The HTML part's first name and the text part's are one substitution when no one's needs escaping,
    a value the same for the whole request (a variant's words) is written into the content, a subject is
    given per personalization only where it differs from the top one: and what each recipient gets is
    still exactly the message rendered for them alone."""
    path = write_campaign(tmp_path, 120, text)
    assert launch(str(path), "condensed").completed
    requests = [json.loads(r["body"]) for r in providers.requests() if r["path"] == "/v3/mail/send"]
    assert requests
    for payload in requests:
        people = payload["personalizations"]
        columns = [
            tuple(p.get("substitutions", {}).get(key) for p in people)
            for key in {k for p in people for k in p.get("substitutions", {})}
        ]
        assert len(set(columns)) == len(columns), "two keys carry the same value for every recipient"
        if len(people) > 1:
            assert all(len(set(column)) > 1 for column in columns), "a value the same for all is substituted"
        assert all(p.get("subject") != payload["subject"] for p in people)  # the top one stands for them
    loaded = load_campaign(path)
    full = Renderer(loaded, LinkSigner.from_settings(), "condensed", skeletons=False)
    variants = {v.id: v for v in loaded.campaign.experiment.variants}
    contacts = {c.id: c for c in loaded.contacts().records()}
    emails = providers.messages("sendgrid")
    assert len(emails) == sum(len(p["personalizations"]) for p in requests)
    for m in emails:
        args = m["custom_args"]
        want = full.render(
            "email", variants[args["clarion_variant"]], contacts[args["clarion_contact"]], address=m["to"]
        )
        assert (m["subject"], m["html"]) == (want.subject, want.html)
        assert " ".join(m["text"].replace("\\", "").split()) == " ".join(want.text.replace("\\", "").split())
