"""R23: the survey link in the customer's closing SMS, signed for one closing.

A link is PUBLIC_BASE_URL/s/<closing event>.<signature>: the signature, 16
base64url characters (96 bits) of HMAC-SHA256 under SURVEY_SECRET, makes a
link nobody can guess or alter to reach another ticket, while the link stays
short enough for an SMS. What a genuine link may still do (answer once, in
the policy's days, while its ticket stays closed) is the domain's rule
(bot/domain/survey.py), so the token carries no expiry of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from bot.settings import Settings

PATH = "/s/"
_SIGNATURE_CHARS = 16


@dataclass(frozen=True)
class SurveyLinks:
    """Makes and reads survey links; None from `from_settings` when the
    survey is not configured (no public address or no key)."""

    base_url: str
    secret: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> SurveyLinks | None:
        """The links PUBLIC_BASE_URL and SURVEY_SECRET make, or None without both."""
        if not settings.survey_enabled or settings.survey_secret is None:
            return None
        return cls(settings.public_base_url, settings.survey_secret.get_secret_value().encode())

    def token(self, closing_event: int) -> str:
        """The signed token of one closing (the id of its `closed` event)."""
        mac = hmac.new(self.secret, f"survey:{closing_event}".encode(), hashlib.sha256).digest()
        return f"{closing_event}.{base64.urlsafe_b64encode(mac).decode()[:_SIGNATURE_CHARS]}"

    def link(self, closing_event: int) -> str:
        """The address the customer's SMS carries."""
        return f"{self.base_url}{PATH}{self.token(closing_event)}"

    def closing_of(self, token: str) -> int | None:
        """The closing event a token names, or None when this key did not sign it."""
        event, _, _ = token.partition(".")
        if not (event.isascii() and event.isdigit()) or len(event) > 18:
            return None
        # Compared whole and in constant time: "07.…" or a changed signature fail alike.
        if not hmac.compare_digest(self.token(int(event)).encode(), token.encode()):
            return None
        return int(event)
