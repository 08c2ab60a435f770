"""Derive the schema fixtures from the providers' published OpenAPI files (see README.md beside this file).

python tests/channels/schemas/derive.py SENDGRID_OAI_CHECKOUT TWILIO_OAI_CHECKOUT SENDGRID_COMMIT TWILIO_COMMIT
"""

import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sgc, twc = sys.argv[3], sys.argv[4]
ms = json.loads(Path(sys.argv[1] + "/spec/paths/mail_send/mail_send.json").read_text())
comps = json.loads(Path(sys.argv[1] + "/spec/components/schemas.json").read_text())
tw = json.loads(Path(sys.argv[2] + "/spec/json/twilio_api_v2010.json").read_text())
DROP = ("description", "example", "examples")


def resolver(lookup):
    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node and len(node) == 1:
                return resolve(copy.deepcopy(lookup(node["$ref"])))
            return {k: resolve(v) for k, v in node.items() if not (k in DROP and not isinstance(v, dict))}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve


def sg_lookup(ref):
    assert ref.startswith("../../components/schemas.json#/"), ref
    return comps[ref.split("#/")[1]]


def tw_lookup(ref):
    assert ref.startswith("#/components/schemas/"), ref
    return tw["components"]["schemas"][ref.rsplit("/", 1)[1]]


schema = resolver(sg_lookup)(ms["mail_send"]["post"]["requestBody"]["content"]["application/json"]["schema"])
out = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$comment": "The request body of POST /v3/mail/send, from SendGrid's published OpenAPI file "
    f"(github.com/sendgrid/sendgrid-oai, commit {sgc}, oas_v3.json -> spec/paths/mail_send/mail_send.json, "
    "its $refs inlined from spec/components/schemas.json; descriptions and examples dropped, nothing else changed). "
    "Regenerate with tests/channels/schemas/README.md.",
    **schema,
}
(HERE / "sendgrid_mail_send.json").write_text(json.dumps(out, indent=1))
path = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
post = tw["paths"][path]["post"]
schema = resolver(tw_lookup)(post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"])
out = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$comment": "The form body of Twilio's Messages create (POST "
    + path
    + "), from Twilio's published OpenAPI "
    f"file (github.com/twilio/twilio-oai, commit {twc}, spec/json/twilio_api_v2010.json, CreateMessageRequest; "
    "$refs inlined; descriptions and examples dropped, nothing else changed). Form fields arrive as strings: "
    "the test converts each to the type the schema names before validating. "
    "Regenerate with tests/channels/schemas/README.md.",
    **schema,
}
(HERE / "twilio_messages_create.json").write_text(json.dumps(out, indent=1))
