"""Delivery adapters: e-mail (SMTP), SMS (a provider) and WeChat Work.

Each transport delivers one rendered notification to its one recipient, or
raises. An exception whose `retryable` attribute is False (DeliveryError here,
WeComError from bot.wecom.client) means trying again cannot help; any other
failure is retried by the outbox worker with backoff.

A transport whose recipients have send limits (WeChat Work's) also says how
much `room` a recipient has, so the outbox holds back what would not go out
before it renders anything; the group transport also posts a digest of many
notices in one message (`post_digest`, DIGEST_BYTES at most)."""

from __future__ import annotations

from typing import Protocol

from bot.render.notices import RenderedMessage
from bot.wecom.pacing import Room
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


class PacedTransport(Transport, Protocol):
    """A transport whose recipients take a limited number of messages."""

    async def room(self, recipient: str) -> Room:
        """What the recipient's limits let through now (nothing taken)."""
        ...


class DigestTransport(PacedTransport, Protocol):
    """A paced transport that can merge a recipient's notices into one post."""

    DIGEST_BYTES: int

    async def post_digest(self, recipient: str, markdown: str) -> None:
        """Post one digest to the recipient; raise when it did not go out."""
        ...
