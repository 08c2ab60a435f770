"""Templates rendered once per run: every message built from a skeleton is the message Jinja renders for
that contact, and templates whose per-recipient values steer them are rendered per contact."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarion import channels
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.messages.sources import RenderProblem
from tests.conftest import CAMPAIGN, CONTACTS, UNTRACKED, CampaignDir

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(REPO.glob("examples/*/campaign.yaml"))


def _pair(loaded: LoadedCampaign) -> tuple[Renderer, Renderer]:
    signer = LinkSigner.from_settings()
    return Renderer(loaded, signer, "run-1"), Renderer(loaded, signer, "run-1", skeletons=False)


def _plain(text: str) -> str:
    return " ".join(text.replace("\\", "").split())


def _same(
    loaded: LoadedCampaign, fast: Renderer, full: Renderer, limit: int = 300, *, derived: bool = False
) -> int:
    """Every channel x variant for the first `limit` contacts: identical parts; returns messages compared."""
    compared = 0
    campaign = loaded.campaign
    for contact in loaded.contacts().records(limit=limit):
        for cid in campaign.channels:
            for variant in campaign.experiment.variants:
                a = fast.render(cid, variant, contact, address="someone@example.org")
                b = full.render(cid, variant, contact, address="someone@example.org")
                assert (a.subject, a.html) == (b.subject, b.html), (cid, variant.id, contact)
                if derived and cid == "email":  # html2text escapes Markdown; a derived value is shown as is
                    assert _plain(a.text) == _plain(b.text)
                else:
                    assert a.text == b.text
                assert b.shared is None
                if a.shared is not None:  # the shared parts, filled with the values, are the message
                    for part, value in (("subject", a.subject), ("html", a.html), ("text", a.text)):
                        if part in a.shared:
                            filled = a.shared[part]
                            for key, text in a.values.items():
                                filled = filled.replace(key, text)
                            assert filled == value
                # what the send renders (`full=False`): for a provider that substitutes values itself, the
                # same skeleton and values, its parts not filled in; otherwise the very same message
                # (every field but the parts and their measures; the values in the same order: the request)
                sent = fast.render(cid, variant, contact, address="someone@example.org", full=False)
                apart = {"html": None, "text": "", "metrics": {}}
                assert replace(sent, **apart) == replace(a, **apart)
                assert list(sent.values) == list(a.values)
                if sent.shared is not None and "html" in channels.get(a.provider).substitutes:
                    assert (sent.html, sent.text) == (None, "")
                else:
                    assert (sent.html, sent.text) == (a.html, a.text)
                compared += 1
    return compared


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_examples_render_the_same_once_as_per_contact(path: Path) -> None:
    loaded = load_campaign(path)
    fast, full = _pair(loaded)
    assert _same(loaded, fast, full) > 0


def test_a_plain_personalised_email_is_one_skeleton_for_every_variant(campaign_dir: CampaignDir) -> None:
    loaded = load_campaign(campaign_dir.campaign())
    fast, _ = _pair(loaded)
    contacts = list(loaded.contacts().records())
    variants = loaded.campaign.experiment.variants
    messages = [fast.render("email", v, c, address="a@example.org") for c in contacts for v in variants]
    assert all(m.shared is not None for m in messages)
    assert len({(m.shared["html"], m.shared["text"]) for m in messages if m.shared}) == 1
    first = messages[0]
    assert first.values  # the first name, the headline, the link and the unsubscribe link, by key
    assert first.link in first.values.values() and "Ada" in first.values.values()


@pytest.mark.parametrize(
    ("text", "contacts"),
    [
        (UNTRACKED, CONTACTS),  # the link is the CTA's URL, its `&` escaped in the HTML; no unsubscribe URL
        (CAMPAIGN.replace('"Chip in now."', "12000"), CONTACTS),  # a var that is not text: rendered once
        (
            CAMPAIGN.replace(
                "    postal_address:", '    text: "{{ contact.first_name }} {{ link }}"\n    postal_address:'
            ),
            CONTACTS,
        ),  # a text part of its own
        (
            CAMPAIGN,
            CONTACTS + "c-005,eve@example.org,,Eve" + "e" * 9000 + ",UTC,cfo,no\n",
        ),  # too much to substitute
        (
            CAMPAIGN,
            CONTACTS + "c-005,eve@example.org,,CLRNK0001HZ,UTC,cfo,no\n",
        ),  # a value that looks like a key
    ],
    ids=["untracked", "number-var", "text-part", "long-value", "key-like-value"],
)
def test_the_sends_message_is_the_full_ones_skeleton_and_values(
    campaign_dir: CampaignDir, text: str, contacts: str
) -> None:
    loaded = load_campaign(campaign_dir.campaign(text, contacts=contacts))
    fast, full = _pair(loaded)
    assert _same(loaded, fast, full) == len(contacts.splitlines()[1:]) * 3 * 2


def test_a_missing_field_fails_the_send_as_it_fails_the_full_render(campaign_dir: CampaignDir) -> None:
    loaded = load_campaign(
        campaign_dir.campaign(
            CAMPAIGN.replace("{{ contact.first_name }}, {{ variant", "{{ contact.nickname }}, {{ variant")
        )
    )
    fast, _ = _pair(loaded)
    contact = next(loaded.contacts().records())
    variant = loaded.campaign.experiment.variants[0]
    problems = []
    for full in (True, False):
        with pytest.raises(RenderProblem) as caught:
            fast.render("email", variant, contact, address="a@example.org", full=full)
        problems.append((caught.value.code, str(caught.value)))
    assert problems[0] == problems[1]
    assert problems[0][0] == "contact_field:nickname"


STEERED = """\
{% if contact.first_name %}Hi {{ contact.first_name }},{% else %}Hi,{% endif %}
{% set who = contact.first_name %}{{ who }} {{ variant.headline }} <a href="{{ link }}">Give</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}
"""


@pytest.mark.parametrize(
    ("body", "shared"),
    [
        (STEERED, False),  # a condition and a `set` on the contact: rendered per contact
        (
            '{% if variant.id == "a" %}A{% endif %} {{ contact.first_name|title }} {{ link }} '
            "{{ unsubscribe_url }} {{ postal_address }}",
            True,
        ),  # the variant steers: one skeleton a variant
        (
            "{% for i in range(2) %}{{ contact.first_name }}{{ i }}{% endfor %} {{ link }} {{ unsubscribe_url }}"
            " {{ postal_address }}",
            True,
        ),
        (
            "{% for i in range(2) %}{{ contact.first_name ~ i }}{% endfor %} {{ link }} {{ unsubscribe_url }}"
            " {{ postal_address }}",
            False,
        ),  # the hole reads the loop variable
        (
            "{% macro hi(n) %}{{ n }}{% endmacro %}{{ hi(contact.first_name) }} {{ link }} {{ unsubscribe_url }}"
            " {{ postal_address }}",
            False,
        ),  # the hole calls a macro of the template: not on its own
        (
            "{% filter upper %}{{ contact.first_name }}{% endfilter %} {{ link }} {{ unsubscribe_url }}"
            " {{ postal_address }}",
            False,
        ),
    ],
    ids=["condition-on-contact", "variant-condition", "loop", "loop-variable", "macro-call", "filter-block"],
)
def test_templates_steered_by_a_contact_are_rendered_per_contact(
    campaign_dir: CampaignDir, body: str, shared: bool
) -> None:
    text = CAMPAIGN.replace('body: "<p>{{ contact.first_name }}', 'body_was: "', 1)
    campaign_dir.write("mail.html.j2", body, dedent=False)
    text = text.replace("    body_was:", "    template: mail.html.j2\n    body_was:", 1)
    text = "\n".join(line for line in text.splitlines() if "body_was" not in line) + "\n"
    loaded = load_campaign(campaign_dir.campaign(text))
    fast, full = _pair(loaded)
    assert _same(loaded, fast, full) == 8 * 3
    contact = next(loaded.contacts().records())
    message = fast.render("email", loaded.campaign.experiment.variants[0], contact, address="a@example.org")
    assert (message.shared is not None) is shared


NAMES = st.lists(
    st.sampled_from([*"abcXYZ <>&\"'*_\\-#[]().!é€😀`~|", "CLRNK0001HZ", "&amp;", "\n"]), max_size=12
).map(lambda chars: "".join(chars).strip())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=1, max_size=5))
def test_any_value_renders_as_jinja_renders_it(campaign_dir: CampaignDir, names: list[str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "email", "phone", "first_name"])
    for i, name in enumerate(names):
        writer.writerow([f"c-{i}", f"p{i}@example.org", "+14155552671", name])
    loaded = load_campaign(campaign_dir.campaign(CAMPAIGN, contacts=out.getvalue()))
    fast, full = _pair(loaded)
    _same(loaded, fast, full, derived=True)
