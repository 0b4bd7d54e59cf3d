"""Delivery adapters: e-mail (SMTP), SMS (a provider) and WeChat Work.

Each transport delivers one rendered notification to its one recipient, or
raises. An exception whose `retryable` attribute is False (DeliveryError here,
WeComError from bot.wecom.client) means trying again cannot help; any other
failure is retried by the outbox worker with backoff."""

from __future__ import annotations

from typing import Protocol

from bot.render.notices import RenderedMessage
from models import Notification


class DeliveryError(Exception):
    """A delivery failed; `retryable` says whether a later try may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Transport(Protocol):
    """Delivers notifications of one medium (group, app, email or sms)."""

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Send `message` to `notification.recipient`; raise when it did not go out."""
        ...
