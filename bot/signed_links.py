"""Signed, expiring links to one attachment: `/files/{token}`.

The token is `{attachment id}.{expiry, unix seconds}.{signature}`, the
signature an HMAC-SHA256 (ATTACHMENTS_SECRET) of the purpose, id and expiry,
base64url without padding. Anyone holding a link may fetch that one file
until it expires; changing any part of it breaks the signature. Nothing is
stored per link, so every replica checks links alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

_TOKEN = re.compile(r"^(\d{1,19})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")
_PURPOSE = b"complaintbot-attachment"


class LinkForged(Exception):
    """The token was not made with this secret (or was changed): 403."""


class LinkExpired(Exception):
    """A genuine token past its expiry: 410."""


def _signature(secret: bytes, attachment_id: int, expires: int) -> str:
    mac = hmac.new(secret, b"%s|%d|%d" % (_PURPOSE, attachment_id, expires), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def sign(secret: bytes, attachment_id: int, expires_at: datetime) -> str:
    """A token for attachment `attachment_id`, valid until `expires_at`."""
    expires = int(expires_at.timestamp())
    return f"{attachment_id}.{expires}.{_signature(secret, attachment_id, expires)}"


def verify(secret: bytes, token: str, now: datetime) -> int:
    """The attachment id a token grants at `now`; LinkForged or LinkExpired."""
    match = _TOKEN.match(token)
    if match is None:
        raise LinkForged(token[:64])
    attachment_id, expires, given = int(match.group(1)), int(match.group(2)), match.group(3)
    if not hmac.compare_digest(given, _signature(secret, attachment_id, expires)):
        raise LinkForged(token[:64])
    if now >= datetime.fromtimestamp(expires, UTC):
        raise LinkExpired(token[:64])
    return attachment_id
