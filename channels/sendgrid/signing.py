"""The sandbox's SendGrid Event Webhook signing key: ECDSA P-256, as SendGrid signs its event batches.

SendGrid shows the public half as base64 DER (SubjectPublicKeyInfo) under Mail Settings; that is exactly what
`public_key` returns and what sendgrid's `EventWebhook(public_key=...)` verifies with.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class EventSigner:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        """The X-Twilio-Email-Event-Webhook-Signature of `body` sent at `timestamp`."""
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()
