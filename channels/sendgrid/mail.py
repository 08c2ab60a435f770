"""SendGrid's checks of a v3 Mail Send request, and the message records an accepted request becomes.

A request is checked as a whole and every problem is reported at once, each with the dotted path of the
offending field, as SendGrid does. An accepted request becomes one record per recipient (to, cc, bcc) of each
personalization, with the personalization's subject and substitutions applied.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clarion.channels.emulation import Record

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_BODY_BYTES = 30 * 1024 * 1024
#: Looks like an address: something, @, and a domain of at least two non-empty labels.
EMAIL = re.compile(r'^[^@\s<>(),;:"\[\]\\]+@[^@\s<>(),;:"\[\]\\.]+(?:\.[^@\s<>(),;:"\[\]\\.]+)+$')


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}


def error(message: str, field: str | None, anchor: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": f"{HELP}#{anchor}" if anchor else None}


def _type_error(expected: str, value: Any, field: str, anchor: str | None = None) -> dict[str, Any]:
    given = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
    return error(f"Invalid type. Expected: {expected}, given: {given}.", field, anchor)


def _string_map(value: Any, field: str, errors: list[dict[str, Any]]) -> dict[str, str]:
    """A JSON object whose values must all be strings (custom_args, substitutions, headers)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(_type_error("object", value, field))
        return {}
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(_type_error("string", item, f"{field}.{key}"))
    return value


def _substitute(text: str | None, substitutions: dict[str, str]) -> str | None:
    if text is None:
        return None
    for key, value in substitutions.items():
        if key in text:
            text = text.replace(key, str(value))
    return text


class _Mail:
    """One request's top-level fields, checked; `validate_and_expand` reads the personalizations."""

    def __init__(self, payload: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        self.template_id = payload.get("template_id")
        sender = payload.get("from")
        self.sender = ""
        if not isinstance(sender, dict) or not sender.get("email"):
            errors.append(
                error(
                    "The from object must be provided for every email send. It is an object that requires "
                    'an email parameter, but may also contain a name parameter.  e.g. {"email" : '
                    '"example@example.com"}  or {"email" : "example@example.com", "name" : '
                    '"Example Recipient"}.',
                    "from.email",
                    "message.from",
                )
            )
        elif not isinstance(sender["email"], str) or not EMAIL.match(sender["email"]):
            errors.append(
                error("The from email does not contain a valid address.", "from.email", "message.from")
            )
        else:
            self.sender = sender["email"]
        subject = payload.get("subject")
        self.subject = subject if isinstance(subject, str) and subject else None
        self.text, self.html = self._content(payload.get("content"))
        custom_args = payload.get("custom_args")
        if isinstance(
            custom_args, str
        ):  # SendGrid's OpenAPI file types the top-level custom_args as a string
            try:
                custom_args = json.loads(custom_args)
            except ValueError:
                custom_args = None
                errors.append(_type_error("object", "", "custom_args"))
        self.custom_args = _string_map(custom_args, "custom_args", errors)
        self.headers = _string_map(payload.get("headers"), "headers", errors)
        categories = payload.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append(_type_error("array of strings", categories, "categories", "message.categories"))
            categories = []
        elif len(categories) > 10:
            errors.append(error("You may not have more than 10 categories per request.", "categories"))
        self.categories: list[str] = categories
        self.send_at = payload.get("send_at")

    def _content(self, content: Any) -> tuple[str | None, str | None]:
        errors = self.errors
        if content is None or content == []:
            if not self.template_id:
                errors.append(
                    error(
                        "Unless a valid template_id is provided, the content parameter is required. There "
                        "must be at least one defined content block. We typically suggest both text/plain "
                        "and text/html blocks are included, but only one block is required.",
                        "content",
                        "message.content",
                    )
                )
            return None, None
        if not isinstance(content, list):
            errors.append(_type_error("array", content, "content", "message.content"))
            return None, None
        found: dict[str, str] = {}
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                errors.append(_type_error("object", block, f"content.{i}", "message.content"))
                continue
            kind, value = block.get("type"), block.get("value")
            if not isinstance(kind, str) or not kind:
                errors.append(error("The content type is required.", f"content.{i}.type", "message.content"))
            if not isinstance(value, str) or not value:
                errors.append(
                    error(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                        "message.content.value",
                    )
                )
            if isinstance(kind, str) and isinstance(value, str):
                if kind in found and kind in ("text/plain", "text/html"):
                    errors.append(
                        error(
                            "If present, text/plain and text/html may only be provided once.",
                            f"content.{i}.type",
                            "message.content",
                        )
                    )
                if kind == "text/plain" and i != 0:
                    errors.append(
                        error(
                            "The text/plain content type must be first, followed by any other content types.",
                            f"content.{i}.type",
                            "message.content",
                        )
                    )
                found.setdefault(kind, value)
        return found.get("text/plain"), found.get("text/html")


def validate_and_expand(payload: Any, message_id: str, received_at: str) -> tuple[list[Record], list[Any]]:
    """The message records of an accepted request, or the errors SendGrid would answer with."""
    errors: list[dict[str, Any]] = []
    if not isinstance(payload, dict):
        return [], [_type_error("object", payload, "(root)")]
    mail = _Mail(payload, errors)
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
        return [], errors
    if len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            error(
                f"The personalizations field is limited to {MAX_PERSONALIZATIONS} personalizations per API "
                f"request. You have provided {len(personalizations)} personalizations. Please consolidate "
                "your personalizations, or send multiple requests.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
        return [], errors
    records: list[Record] = []
    recipients = 0
    subject_missing = False
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict):
            errors.append(_type_error("object", p, f"personalizations.{i}"))
            continue
        addresses = _addresses(p, i, errors)
        recipients += len(addresses)
        subject = p.get("subject", mail.subject)
        if not (isinstance(subject, str) and subject) and not mail.template_id:
            subject_missing = True
        subs = _string_map(p.get("substitutions"), f"personalizations.{i}.substitutions", errors)
        custom_args = _string_map(p.get("custom_args"), f"personalizations.{i}.custom_args", errors)
        headers = _string_map(p.get("headers"), f"personalizations.{i}.headers", errors)
        if errors or recipients > MAX_RECIPIENTS:
            continue  # nothing will be stored: stop building records, keep collecting errors
        sender = p.get("from")
        common = {
            "from": sender["email"] if isinstance(sender, dict) and sender.get("email") else mail.sender,
            "subject": _substitute(subject, subs) if isinstance(subject, str) else None,
            "text": _substitute(mail.text, subs),
            "html": _substitute(mail.html, subs),
            "custom_args": {**mail.custom_args, **custom_args},
            "tags": mail.categories,
            "categories": mail.categories,
            "headers": {**mail.headers, **headers},
            "send_at": p.get("send_at", mail.send_at),
            "batch_id": payload.get("batch_id"),
            "template_id": mail.template_id,
            "dynamic_template_data": p.get("dynamic_template_data"),
            "status_callback": None,
            "provider_id": message_id,
            "x_message_id": message_id,
            "personalization": i,
            "received_at": received_at,
        }
        for kind, address, name in addresses:
            records.append(
                {"provider": "sendgrid", "to": address, "name": name, "recipient_type": kind, **common}
            )
    if subject_missing:
        errors.append(
            error(
                "The subject is required. You can get around this requirement if you use a template with a "
                "subject defined or if every personalization has a subject defined.",
                "subject",
                "message.subject",
            )
        )
    if recipients > MAX_RECIPIENTS:
        errors.append(
            error(
                f"The total number of recipients must be no more than {MAX_RECIPIENTS}. This includes all "
                "recipients defined within the to, cc, and bcc parameters, across each object that you "
                f"include in the personalizations array. You have provided {recipients}.",
                "personalizations",
                "message.recipient-limit",
            )
        )
    return ([] if errors else records), errors


def _addresses(p: dict[str, Any], i: int, errors: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(kind, address, name) of each recipient of personalization `i`, checking each address."""
    found: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for kind in ("to", "cc", "bcc"):
        entries = p.get(kind)
        field = f"personalizations.{i}.{kind}"
        if entries is None and kind != "to":
            continue
        if not isinstance(entries, list) or (kind == "to" and not entries):
            if kind == "to":
                errors.append(
                    error(
                        "The to array is required for all personalization objects, and must have at least "
                        "one email object with a valid email address.",
                        field,
                        "message.personalizations.to",
                    )
                )
            else:
                errors.append(_type_error("array", entries, field, f"message.personalizations.{kind}"))
            continue
        for j, entry in enumerate(entries):
            if not isinstance(entry, dict):
                errors.append(
                    _type_error("object", entry, f"{field}.{j}", f"message.personalizations.{kind}")
                )
                continue
            address = entry.get("email")
            if not isinstance(address, str) or not address:
                errors.append(
                    error(
                        f"The {kind} email parameter is required.",
                        f"{field}.{j}.email",
                        f"message.personalizations.{kind}",
                    )
                )
            elif not EMAIL.match(address):
                errors.append(
                    error(
                        "Does not contain a valid address.",
                        f"{field}.{j}.email",
                        f"message.personalizations.{kind}",
                    )
                )
            elif address.lower() in seen:
                errors.append(
                    error(
                        "Each email address in the personalization block should be unique between to, cc, "
                        f"and bcc. We found the first duplicate instance of [{address}] in the {field} "
                        "field.",
                        f"{field}.{j}.email",
                        "message.personalizations",
                    )
                )
            else:
                seen.add(address.lower())
                name = entry.get("name")
                found.append((kind, address, name if isinstance(name, str) else None))
    return found
