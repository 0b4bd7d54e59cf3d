"""WeChat Work delivery: unprompted posts into a group (its robot webhook,
else the app-created chat), app messages to one member, and the smart robot's
late replies through a callback's `response_url`.

Written against `WeComSender`, the methods of bot.wecom.client.WeComClient the
outbox needs; its WeComError carries `retryable`, which the outbox honours."""

from __future__ import annotations

from typing import Any, Protocol

from bot.notify import DeliveryError
from bot.render.notices import RenderedMessage
from models import GroupChat, Notification


class WeComSender(Protocol):
    """The outbound WeChat Work calls the outbox makes."""

    async def send_app_markdown(self, userids: list[str], content: str) -> Any: ...

    async def send_app_card(self, userids: list[str], card: dict) -> Any: ...

    async def update_template_card(
        self, userids: list[str], response_code: str, card: dict
    ) -> Any: ...

    async def send_webhook_markdown(self, key: str, content: str) -> Any: ...

    async def send_appchat_markdown(self, chatid: str, content: str) -> Any: ...

    async def post_response_url(self, url: str, body: dict) -> Any: ...


class GroupTransport:
    """Posts markdown into the group whose robot chatid is the recipient."""

    def __init__(self, sender: WeComSender) -> None:
        self.sender = sender

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Through the group's webhook key if it has one, else its app chat id."""
        group = await GroupChat.get_or_none(chatid=notification.recipient)
        if group is None:
            raise DeliveryError(f"unknown group {notification.recipient!r}", retryable=False)
        if group.webhook_key:
            await self.sender.send_webhook_markdown(group.webhook_key, message.markdown)
        elif group.app_chat_id:
            await self.sender.send_appchat_markdown(group.app_chat_id, message.markdown)
        else:
            # Binding the group later (directory import) makes the next try succeed.
            raise DeliveryError(
                f"group {group.chatid} has neither webhook_key nor app_chat_id", retryable=True
            )


class AppTransport:
    """Sends app messages to the member whose userid is the recipient.

    A row written with a ready card (`payload` {"card": …}) sends the card, and
    with a `response_code` too it replaces the card the member clicked."""

    def __init__(self, sender: WeComSender) -> None:
        self.sender = sender

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """One message to one member."""
        userids = [notification.recipient]
        payload = notification.payload or {}
        card = payload.get("card")
        if isinstance(card, dict) and payload.get("response_code"):
            await self.sender.update_template_card(userids, str(payload["response_code"]), card)
        elif isinstance(card, dict):
            await self.sender.send_app_card(userids, card)
        else:
            await self.sender.send_app_markdown(userids, message.markdown)


class RobotTransport:
    """The smart robot's reply to a callback it could not answer in the request
    (`payload` {"markdown", "response_url"}, see webhooks/callback.py). A
    response_url works once, within an hour: a refusal is final."""

    def __init__(self, sender: WeComSender) -> None:
        self.sender = sender

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """POST the markdown to the callback's response_url."""
        url = (notification.payload or {}).get("response_url")
        if not url:
            raise DeliveryError("robot reply without a response_url", retryable=False)
        body = {"msgtype": "markdown", "markdown": {"content": message.markdown}}
        await self.sender.post_response_url(str(url), body)
