"""Rendering a campaign's channels into messages, in Jinja's sandbox.

Templates come inline from the campaign file or from template files beside it (falling back to Clarion's
own templates/ folder). They run in an immutable SandboxedEnvironment with StrictUndefined: a campaign file
cannot reach Python internals, and a field the contacts file lacks is an error that names the template
line, never a blank at send time. HTML parts are autoescaped; an email without a text part gets one
derived from its HTML.

Each part is rendered once per run (and variant, where the variant steers it) with keys where the
per-recipient values go (skeleton.py); a message is that skeleton filled with its recipient's values, and
carries both, so that a provider that substitutes values itself sends the skeleton once for many. Where
templates come from and where their errors point: sources.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

import html2text
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clarion import channels
from clarion.base.errors import CampaignInvalid, Problem, display_path
from clarion.campaign.contacts import Contact
from clarion.campaign.loader import LoadedCampaign
from clarion.campaign.model import Variant
from clarion.channels.base import Channel, ChannelConfig, ChannelKind, Message, Part
from clarion.messages.lean import CONSTANT, DERIVED, LeanSend, Step
from clarion.messages.links import (
    LinkClaims,
    LinkSigner,
    click_link,
    contact_bytes,
    message_link,
    run_key,
    unsubscribe_link,
)
from clarion.messages.share import share_helpers
from clarion.messages.skeleton import (
    PartPlan,
    Planner,
    Shape,
    substitutable,
    text_keys,
    unescaped,
)
from clarion.messages.sources import (
    ContactFields,
    Loader,
    Origin,
    RenderProblem,
    VariantVars,
    explain_undefined,
    indentation,
)

PREVIEW_RUN = "preview"


def _text_from_html(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    return str(converter.handle(html)).strip()


@dataclass(frozen=True)
class _ChannelInfo:
    """What every message of one channel shares, worked out at its first message."""

    adapter: type[Channel]
    config: ChannelConfig
    channel: dict[str, str]
    postal_address: str
    shares: bool  # its templates call share_<provider>(): the helpers go in the context


class Renderer:
    """Compiled templates of one campaign; `render()` makes one channel's message for one contact."""

    def __init__(
        self, loaded: LoadedCampaign, signer: LinkSigner, run_id: str = PREVIEW_RUN, *, skeletons: bool = True
    ) -> None:
        """`skeletons=False` renders every part per recipient (what skeletons are checked against)."""
        self.loaded = loaded
        self.campaign = loaded.campaign
        self.signer = signer
        self.run_id = run_id
        self._run_key = run_key(run_id)
        self._channel_index = {cid: i for i, cid in enumerate(self.campaign.channels)}
        self._variant_index = {v.id: i for i, v in enumerate(self.campaign.experiment.variants)}
        self._origins: dict[str, Origin] = {}
        inline: dict[str, str] = {}
        sources: dict[tuple[str, str], tuple[str, bool]] = {}
        problems: list[Problem] = []
        for cid, config in self.campaign.channels.items():
            adapter = channels.get(config.provider)
            for part in adapter.parts:
                name = self._part_source(cid, config, part, inline, problems)
                if name is not None:
                    sources[(cid, part.name)] = (name, part.html)
        loader = Loader(loaded.base_dir, inline)
        self._envs = {
            html: ImmutableSandboxedEnvironment(
                loader=loader, autoescape=html, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
            )
            for html in (False, True)
        }
        self._templates: dict[tuple[str, str], jinja2.Template] = {}
        for key, (name, html) in sources.items():
            try:
                self._templates[key] = self._envs[html].get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(
                    self._origin(exc.name or name).at(exc.lineno, f"template error: {exc.message}")
                )
            except jinja2.TemplateNotFound as exc:
                problems.append(self._origin(name).at(1, f"template {exc.name!r} not found"))
            except jinja2.TemplateError as exc:
                problems.append(self._origin(name).at(1, str(exc)))
        self.context_campaign = {
            "name": self.campaign.name,
            "description": self.campaign.description,
            "cta_url": self.campaign.cta.url,
        }
        if problems:
            raise CampaignInvalid(problems)
        per_recipient = frozenset({"contact", "link", "unsubscribe_url", *share_helpers("").keys()})
        planner = Planner(per_recipient, frozenset({"variant", "campaign", "channel", "postal_address"}))
        self._plans: dict[tuple[str, str], PartPlan | None] = {
            key: planner.plan(self._envs[sources[key][1]], sources[key][0], key[0]) if skeletons else None
            for key in self._templates
        }
        self._shapes: dict[tuple[str, str, str | None], Shape] = {}
        self._infos: dict[str, _ChannelInfo] = {}
        self._reads: dict[str, tuple[str, ...] | None] = {}
        self._tokens: dict[tuple[str, str], Callable[[int], str]] = {}
        self._leans: dict[tuple[str, str], LeanSend | None] = {}

    def _part_source(
        self, cid: str, config: ChannelConfig, part: Part, inline: dict[str, str], problems: list[Problem]
    ) -> str | None:
        source = self.loaded.source
        inline_text: str | None = getattr(config, part.inline, None) if part.inline else None
        file_name: str | None = getattr(config, part.file, None) if part.file else None
        if inline_text is not None and part.inline:
            name = f"channels.{cid}.{part.inline}"
            pos = source.locate(("channels", cid, part.inline))
            first, col = pos.line, pos.col
            if pos.block_scalar:  # the text starts on the next line, at the block's indentation
                first = pos.line + 1
                col = indentation(self.loaded.path, first) + 1
            self._origins[name] = Origin(source.file, first, col, name, block=pos.block_scalar)
            inline[name] = inline_text
            return name
        if file_name is not None and part.file:
            field_path = ("channels", cid, part.file)
            loader = Loader(self.loaded.base_dir, {})
            path = loader.resolve(file_name)
            if path is None:
                problems.append(
                    source.problem(
                        field_path,
                        f"template file {file_name!r} not found (looked in {self.loaded.base_dir}/ "
                        "and in Clarion's templates/); check the path, relative to the campaign file",
                    )
                )
                return None
            self._origins[file_name] = Origin(display_path(path), 1, 1, "")
            self._origins[str(path)] = self._origins[file_name]
            return file_name
        return None

    def _origin(self, name: str) -> Origin:
        return self._origins.get(name) or Origin(name, 1, 1, "")

    # -- rendering ---------------------------------------------------------------------------------

    def token(self, channel_id: str, variant_id: str, contact_seq: int | None) -> str:
        if contact_seq is None:
            claims = LinkClaims(
                self._run_key, self._channel_index[channel_id], self._variant_index[variant_id]
            )
            return self.signer.sign(claims)
        return self._contact_tokens(channel_id, variant_id)(contact_seq)

    def _contact_tokens(self, channel_id: str, variant_id: str) -> Callable[[int], str]:
        tokens = self._tokens.get((channel_id, variant_id))
        if tokens is None:
            tokens = self._tokens[(channel_id, variant_id)] = self.signer.contact_tokens(
                self._run_key, self._channel_index[channel_id], self._variant_index[variant_id]
            )
        return tokens

    def link(self, channel_id: str, kind: ChannelKind, variant_id: str, token: str) -> str:
        return message_link(
            cta=self.campaign.cta.url,
            tracking_base=self.campaign.tracking.base_url,
            campaign=self.campaign.name,
            channel=channel_id,
            kind=kind,
            variant=variant_id,
            token=token,
            keep_refcode_as=self.campaign.cta.refcode_keep_as,
        )

    def check_key(self, channel_id: str, variant: Variant, contact: Contact) -> tuple[object, ...] | None:
        """What this contact's message on this channel depends on, but for its address and its token's
        characters: the variant, the token's length and the contact fields its holes read. Two contacts
        with the same key get messages that differ only in their tokens, and so break the same rules
        (`Channel.check` reads neither the recipient nor the token's characters): validation checks one
        message per key. None when the channel's message depends on more (a part rendered per recipient,
        a hole that reads a link or a share helper through an expression)."""
        try:
            reads = self._reads[channel_id]
        except KeyError:
            reads = self._reads[channel_id] = self._fields_read(channel_id)
        if reads is None:
            return None
        fields = contact.fields
        return (channel_id, variant.id, contact_bytes(contact.seq), *[fields.get(name) for name in reads])

    def _fields_read(self, channel_id: str) -> tuple[str, ...] | None:
        """The contact fields the channel's holes read, when that is all a message depends on per contact."""
        if self._info(channel_id).adapter.kind is ChannelKind.SOCIAL:
            return None  # a post is rendered once, not per contact
        plans = self._part_plans(channel_id)
        if plans is None:
            return None  # a part rendered per recipient: anything in it may differ
        reads: set[str] = set()
        for _, plan in plans:
            for hole in plan.holes:
                if hole.direct is not None and hole.direct[0] in ("link", "unsubscribe_url", "variant"):
                    continue  # the token (by its length) and the variant are in the key
                if hole.direct is not None and hole.direct[0] == "contact" and hole.direct[1]:
                    reads.add(hole.direct[1])
                elif hole.reads is None:
                    return None
                else:
                    reads.update(hole.reads)
        return tuple(sorted(reads))

    def _part_plans(self, channel_id: str) -> list[tuple[str, PartPlan]] | None:
        """The skeleton plans of the channel's parts that have a template, by part name; None when one of
        them is rendered per recipient."""
        found = []
        for part in self._info(channel_id).adapter.parts:
            if (channel_id, part.name) not in self._templates:
                continue
            plan = self._plans.get((channel_id, part.name))
            if plan is None:
                return None
            found.append((part.name, plan))
        return found

    def render(
        self,
        channel_id: str,
        variant: Variant,
        contact: Contact | None,
        *,
        address: str | None = None,
        full: bool = True,
    ) -> Message:
        """One channel's message for one contact (None: a social post, the same for everyone).

        `full=False` is for the send, to a provider that substitutes values itself (`Channel.substitutes`):
        when the message's parts are shared, those parts are not filled in for the recipient (their `html`
        is None and their `text` empty; `shared` and `values` carry them) and the message is not measured.
        What is sent is what planning rendered in full and checked: the same skeleton and values. When
        every hole reads the data directly, that message is made without a Jinja context (lean.py)."""
        if not full and contact is not None:
            try:
                sender = self._leans[(channel_id, variant.id)]
            except KeyError:
                sender = self._leans[(channel_id, variant.id)] = self._lean(channel_id, variant)
            message = sender.message(contact, address) if sender is not None else None
            if message is not None:
                return message
        info = self._info(channel_id)
        adapter, kind = info.adapter, info.adapter.kind
        per_contact = kind is not ChannelKind.SOCIAL
        contact_id = contact.id if (contact is not None and per_contact) else None
        seq = contact.seq if (contact is not None and per_contact) else None
        token = self.token(channel_id, variant.id, seq)
        link = self.link(channel_id, kind, variant.id, token)
        base = self.campaign.tracking.base_url
        unsubscribe = unsubscribe_link(base, token) if base and kind is ChannelKind.EMAIL else None
        context: dict[str, Any] = {
            "variant": VariantVars(variant.vars, id=variant.id),
            "campaign": self.context_campaign,
            "link": link,
            "channel": info.channel,
        }
        if info.shares:
            context.update(share_helpers(link))
        if kind is ChannelKind.EMAIL:
            # a missing tracking.base_url is reported by the channel's rules, not as an undefined name
            context["unsubscribe_url"] = unsubscribe or ""
            context["postal_address"] = info.postal_address
        if per_contact and contact is not None:
            context["contact"] = ContactFields(contact.fields)
        rendered: dict[str, str] = {}  # parts rendered in full for this recipient
        shapes: dict[str, Shape] = {}  # parts with a skeleton: filled in with `values` below
        values: dict[str, str] = {}
        for part in adapter.parts:
            template = self._templates.get((channel_id, part.name))
            if template is None:
                continue
            plan = self._plans.get((channel_id, part.name))
            if plan is None:
                rendered[part.name] = self._run(template, context, adapter)
                continue
            shape = shapes[part.name] = self._shape(channel_id, part.name, plan, variant, context, adapter)
            holes = plan.by_key
            for key in shape.keys:
                if key not in values:
                    values[key] = holes[key].value(context, lambda t, c: self._run(t, c, adapter))
        if "text" not in rendered and "text" not in shapes and "html" in shapes:
            shape = shapes["text"] = self._derived_text(channel_id, shapes["html"].text)
            for key in shape.keys:
                values[key] = unescaped(values[key[:-2] + "HZ"])
        shareable = not rendered and bool(shapes)  # some part is the recipient's own: sent as it is
        if shareable and not substitutable(values):
            shareable = False  # a value that looks like a key, or too much to substitute: sent as it is
        lean = shareable and not full
        for name, shape in shapes.items():
            if not (lean and name in adapter.substitutes):
                rendered[name] = shape.fill(values)
        html = rendered.get("html")
        text = rendered.get("text")
        if text is None and not (lean and "text" in adapter.substitutes):
            text = _text_from_html(html) if html is not None else ""
        message = Message(
            channel=channel_id,
            provider=adapter.provider,
            kind=adapter.kind,
            variant=variant.id,
            contact_id=contact_id,
            to=address,
            link=link,
            text=(text or "").strip() if adapter.kind is not ChannelKind.EMAIL else (text or ""),
            subject=rendered.get("subject"),
            html=html,
            run=self.run_id,
            token=token,
            unsubscribe=unsubscribe,
            shared={name: shape.text for name, shape in shapes.items()} if shareable else None,
            values=values if shareable else {},
        )
        if not lean:
            message.metrics = adapter.measure(message)
            size = adapter.size(message, info.config)
            message.metrics["length"], message.metrics["limit"] = size if size is not None else (None, None)
        return message

    def _lean(self, channel_id: str, variant: Variant) -> LeanSend | None:
        """How the send makes the channel and variant's messages without Jinja (lean.py), or None: a
        social post, a part rendered per recipient, a hole that is not a direct read of the link, the
        unsubscribe URL (in an email), a contact field or a variant's var, or a skeleton or var whose
        rendering fails (the general way reports it)."""
        info = self._info(channel_id)
        adapter, kind = info.adapter, info.adapter.kind
        if kind is ChannelKind.SOCIAL:
            return None
        constant: dict[str, Any] = {
            "variant": VariantVars(variant.vars, id=variant.id),
            "campaign": self.context_campaign,
            "channel": info.channel,
        }
        if kind is ChannelKind.EMAIL:
            constant["postal_address"] = info.postal_address
        plans = self._part_plans(channel_id)
        if plans is None:
            return None
        sources = LeanSend.sources
        shapes: dict[str, Shape] = {}
        steps: dict[str, Step] = {}
        try:
            for part, plan in plans:
                shape = shapes[part] = self._shape(channel_id, part, plan, variant, constant, adapter)
                for key in shape.keys:
                    hole = plan.by_key.get(key)
                    if hole is None or hole.direct is None or hole.direct[0] not in sources:
                        return None
                    name, attr = hole.direct
                    if (name == "unsubscribe_url" and kind is not ChannelKind.EMAIL) or (
                        attr is None and name in ("contact", "variant")
                    ):
                        return None
                    if name == "variant":
                        value = hole.value(constant, lambda t, c: self._run(t, c, adapter))
                        steps.setdefault(key, (key, CONSTANT, value, False))
                    else:
                        steps.setdefault(key, (key, sources[name], attr or "", hole.escaped))
        except RenderProblem:
            return None
        if "text" not in shapes and "html" in shapes:
            shape = shapes["text"] = self._derived_text(channel_id, shapes["html"].text)
            for key in shape.keys:
                if key[:-2] + "HZ" not in steps:
                    return None
                steps[key] = (key, DERIVED, key[:-2] + "HZ", False)
        base = self.campaign.tracking.base_url
        return LeanSend(
            run=self.run_id,
            channel=channel_id,
            variant=variant.id,
            adapter=adapter,
            shapes=shapes,
            steps=list(steps.values()),
            token=self._contact_tokens(channel_id, variant.id),
            link=partial(click_link, base) if base else partial(self.link, channel_id, kind, variant.id),
            unsubscribe=partial(unsubscribe_link, base) if base and kind is ChannelKind.EMAIL else None,
        )

    def _info(self, channel_id: str) -> _ChannelInfo:
        info = self._infos.get(channel_id)
        if info is None:
            config = self.campaign.channels[channel_id]
            adapter: type[Channel] = channels.get(config.provider)
            sources = [self._source(channel_id, part.name) for part in adapter.parts]
            info = self._infos[channel_id] = _ChannelInfo(
                adapter=adapter,
                config=config,
                channel={"id": channel_id, "provider": adapter.provider, "kind": adapter.kind.value},
                postal_address=getattr(config, "postal_address", None) or "",
                shares=any("share_" in source for source in sources),
            )
        return info

    def _source(self, channel_id: str, part: str) -> str:
        """A part's template source ("" without one); a source that cannot be read counts as using all."""
        template = self._templates.get((channel_id, part))
        if template is None or template.name is None:
            return ""
        env = template.environment
        assert env.loader is not None
        try:
            return env.loader.get_source(env, template.name)[0]
        except jinja2.TemplateError:
            return "share_"

    def _shape(
        self,
        channel_id: str,
        part: str,
        plan: PartPlan,
        variant: Variant,
        context: dict[str, Any],
        adapter: type[Channel],
    ) -> Shape:
        """The part's skeleton, rendered once (once per variant when the variant steers the template)."""
        cache_key = (channel_id, part, variant.id if plan.variant_fixed else None)
        shape = self._shapes.get(cache_key)
        if shape is None:
            names = ("campaign", "channel", "postal_address")
            constant: dict[str, Any] = {k: context[k] for k in names if k in context}
            if plan.variant_fixed:
                constant["variant"] = context["variant"]
            shape = self._shapes[cache_key] = Shape.of(self._run(plan.skeleton, constant, adapter))
        return shape

    def _derived_text(self, channel_id: str, html_skeleton: str) -> Shape:
        """The text part derived from an HTML skeleton (html2text once), keyed for plain values."""
        cache_key = (channel_id, "text<-html", html_skeleton)
        shape = self._shapes.get(cache_key)
        if shape is None:
            shape = self._shapes[cache_key] = Shape.of(text_keys(_text_from_html(html_skeleton)))
        return shape

    def _run(self, template: jinja2.Template, context: Mapping[str, Any], adapter: type[Channel]) -> str:
        try:
            return template.render(context)
        except jinja2.UndefinedError as exc:
            origin, lineno = self._locate(exc.__traceback__, template)
            message, code = explain_undefined(str(exc.message), adapter)
            raise RenderProblem(origin.at(lineno, message), code) from None
        except jinja2.TemplateError as exc:
            origin, lineno = self._locate(exc.__traceback__, template)
            raise RenderProblem(origin.at(lineno, f"template error: {exc}"), "template_error") from None

    def _locate(self, tb: TracebackType | None, template: jinja2.Template) -> tuple[Origin, int | None]:
        """The innermost template frame of a rendering error (Jinja rewrites tracebacks to show them)."""
        found: tuple[Origin, int | None] = (self._origin(template.name or ""), None)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename in self._origins:
                found = (self._origins[filename], tb.tb_lineno)
            tb = tb.tb_next
        return found
