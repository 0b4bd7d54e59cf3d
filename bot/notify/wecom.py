"""WeChat Work delivery: unprompted posts into a group (its robot webhook,
else the app-created chat), app messages to one member, and the smart robot's
late replies through a callback's `response_url`.

Written against `WeComSender`, the methods of bot.wecom.client.WeComClient the
outbox needs; its WeComError carries `retryable`, which the outbox honours."""

from __future__ import annotations

from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from bot.card_copies import CARD_FRESH, CARD_UPDATE, record_copy
from bot.clock import Clock, utcnow
from bot.crisis import CHAT_EXISTS, CRISIS_KIND, CRISIS_MEMBERS_KIND, crisis_members, crisis_name
from bot.directory import Roster
from bot.domain.permissions import Action, audience_may
from bot.ledger import snapshot
from bot.notify import DeliveryError
from bot.render.approvals import card_for_task as approval_card_for_task
from bot.render.cards import load_view, member_card, new_task_id, robot_card, ticket_of_task
from bot.render.chat import render_ticket
from bot.render.notices import SHANGHAI, RenderedMessage
from bot.wecom.client import WeComError
from bot.wecom.pacing import Room
from models import GroupChat, Notification, SentCard
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

TASK_ID_USED = 42014
"""WeChat Work's answer to a card whose task_id it has seen (WECOM.md)."""

CARD_KINDS = frozenset({"dispatched", "escalated", "assigned"})
"""App notices that ask the member to act on the ticket: sent as its card with
the 处理 button rather than as markdown."""


class WeComSender(Protocol):
    """The outbound WeChat Work calls the outbox makes."""

    async def send_app_markdown(self, userids: list[str], content: str) -> Any: ...

    async def send_app_card(self, userids: list[str], card: dict) -> Any: ...

    async def update_template_card(
        self, userids: list[str], response_code: str, card: dict
    ) -> Any: ...

    async def send_webhook_markdown(self, key: str, content: str) -> Any: ...

    async def send_webhook_image(self, key: str, image: bytes) -> Any: ...

    async def send_appchat_markdown(self, chatid: str, content: str) -> Any: ...

    async def send_appchat_image(self, chatid: str, image: bytes) -> Any: ...

    async def create_appchat(self, name: str, owner: str, userlist: list[str],
                             chatid: str) -> Any: ...

    async def update_appchat(self, chatid: str, add_user_list: list[str]) -> Any: ...

    async def post_response_url(self, url: str, body: dict) -> Any: ...

    async def webhook_room(self, key: str) -> Room: ...

    async def appchat_room(self, chatid: str) -> Room: ...

    async def member_room(self, userid: str) -> Room: ...


class RobotPusher(Protocol):
    """The smart robot's long connection, able to push into a chat (bot/wecom/longconn.py)."""

    async def push_room(self, chatid: str) -> Room | None: ...

    async def push_markdown(self, chatid: str, content: str) -> bool: ...

    async def push_card(self, chatid: str, card: dict[str, Any]) -> bool: ...


class GroupTransport:
    """Posts markdown, or a message's image (a report's chart), into the group
    whose robot chatid is the recipient; and digests of a busy group's notices."""

    # Markdown in a group: 4,096 bytes through a webhook, 2,048 through
    # appchat/send; a digest fits either.
    DIGEST_BYTES = 2048

    def __init__(self, sender: WeComSender, *, pusher: RobotPusher | None = None,
                 zone: ZoneInfo = SHANGHAI, clock: Clock = utcnow) -> None:
        self.sender = sender
        self.pusher = pusher
        self.zone = zone
        self.clock = clock
        self._groups: dict[str, GroupChat] = {}

    async def prepare(self, recipients: set[str]) -> None:
        """Read the bindings of a round's groups in one query (re-read each
        round: a directory import may have changed them)."""
        self._groups = {g.chatid: g for g in await GroupChat.filter(chatid__in=recipients)}

    async def _group(self, chatid: str) -> GroupChat:
        group = self._groups.get(chatid) or await GroupChat.get_or_none(chatid=chatid)
        if group is None:
            raise DeliveryError(f"unknown group {chatid!r}", retryable=False)
        return group

    async def room(self, recipient: str) -> Room:
        """Room under the limits of the way `deliver` posts into the group now:
        the robot's push where its long connection can push into the chat (the
        chat's limits, its replies included), else its webhook's, else its app
        chat's. So the outbox paces the group, and finds it busy, by the
        channel its posts actually take. An unknown or unbound group has room
        for the one try that records why it cannot be posted to."""
        group = self._groups.get(recipient) or await GroupChat.get_or_none(chatid=recipient)
        if group is not None and self.pusher is not None:
            pushed = await self.pusher.push_room(group.chatid)
            if pushed is not None:
                return pushed
        if group is not None and group.webhook_key:
            return await self.sender.webhook_room(group.webhook_key)
        if group is not None and group.app_chat_id:
            return await self.sender.appchat_room(group.app_chat_id)
        return Room(free=1)

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Markdown by the robot's push where its long connection can (this
        replica holds it, the chat is open to pushes; its limits reached, the
        notice waits: RateLimited), else through the group's webhook key if it
        has one, else its app chat id (an image goes one of these two ways,
        uploaded as media first for the app chat)."""
        group = await self._group(notification.recipient)
        image = message.image
        if image is None and self.pusher is not None and await self.pusher.push_markdown(
            group.chatid, message.markdown
        ):
            # Pushed by the smart robot itself (long-connection mode): a notice
            # asking the group to act is followed by the card with 处理.
            await self._push_card(notification, self.pusher, group.chatid)
            return
        if group.webhook_key:
            if image is not None:
                await self.sender.send_webhook_image(group.webhook_key, image)
            else:
                await self.sender.send_webhook_markdown(group.webhook_key, message.markdown)
        elif group.app_chat_id:
            if image is not None:
                await self.sender.send_appchat_image(group.app_chat_id, image)
            else:
                await self.sender.send_appchat_markdown(group.app_chat_id, message.markdown)
        else:
            # Binding the group later (directory import) makes the next try succeed.
            raise DeliveryError(
                f"group {group.chatid} has neither webhook_key nor app_chat_id", retryable=True
            )

    async def post_digest(self, recipient: str, markdown: str) -> None:
        """Post a digest into the group, the way a notice goes."""
        await self.deliver(Notification(recipient=recipient, medium="group", kind="digest"),
                           RenderedMessage(subject="", text="", html="", markdown=markdown))

    async def _push_card(self, notification: Notification, pusher: RobotPusher,
                         chatid: str) -> None:
        """The ticket's card after a CARD_KINDS notice, if the group may respond.
        The notice itself has gone: a card the chat's limits or the connection
        refuse now is left out (the notice says how to respond by command)."""
        number: int | None = notification.ticket_id  # type: ignore[attr-defined]
        if notification.kind not in CARD_KINDS or number is None:
            return
        view = await load_view(number)
        if view is None or not audience_may(notification.audience, view.ticket, Action.RESPOND):
            return
        # The task_id is the row's, as for the app's cards (a retry is a repeat).
        task_id = new_task_id(number, f"n{notification.id}")
        card = robot_card(view.card(self.zone, task_id=task_id, show_customer=False,
                                    in_group=True))
        if await pusher.push_card(chatid, card):
            await record_copy(ticket_id=number, task_id=task_id, channel="robot", userid="",
                              chatid=chatid, now=self.clock())


class AppTransport:
    """Sends app messages to the member whose userid is the recipient.

    A notice of CARD_KINDS goes out as the ticket's current card. A row written
    with a ready card (`payload` {"card": …}) sends that card, and with a
    `response_code` too it replaces the card the member clicked. A card_update
    of a ticket (bot/card_copies.py, `payload` {"task_id", "response_code"})
    replaces that copy with the ticket's card as it is now; a card_fresh sends
    that card anew (the member's copies are stale). Every card sent is
    recorded with its response_code, so later changes can update it."""

    def __init__(self, sender: WeComSender, *, zone: ZoneInfo = SHANGHAI,
                 clock: Clock = utcnow) -> None:
        self.sender = sender
        self.zone = zone
        self.clock = clock

    async def room(self, recipient: str) -> Room:
        """Room under the member's app-message limits."""
        return await self.sender.member_room(recipient)

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """One message to one member."""
        userid = notification.recipient
        number: int | None = notification.ticket_id  # type: ignore[attr-defined]
        payload = notification.payload or {}
        card = payload.get("card")
        code = str(payload.get("response_code") or "")
        if notification.kind == CARD_UPDATE and number is not None and not card:
            task_id = str(payload["task_id"])
            # An approval card shows its request; any other card, the ticket.
            card = await approval_card_for_task(task_id, self.zone) or await member_card(
                number, self.zone, task_id=task_id, userid=userid)
            await self.sender.update_template_card([userid], code, card)
        elif isinstance(card, dict) and code:
            await self.sender.update_template_card([userid], code, card)
        elif isinstance(card, dict):
            await self._send_card(userid, card, ticket_of_task(str(card.get("task_id", ""))))
        elif (notification.kind in CARD_KINDS or notification.kind == CARD_FRESH) \
                and number is not None:
            # The task_id is the row's: a retry of a send that reached WeChat
            # Work (its answer lost) is refused as a repeat, not shown twice.
            card = await member_card(number, self.zone,
                                     task_id=new_task_id(number, f"n{notification.id}"),
                                     userid=userid)
            await self._send_card(userid, card, number)
        else:
            await self.sender.send_app_markdown([userid], message.markdown)

    async def _send_card(self, userid: str, card: dict, number: int | None) -> None:
        try:
            answer = await self.sender.send_app_card([userid], card)
        except WeComError as exc:
            if exc.errcode != TASK_ID_USED:
                raise
            # An earlier try delivered this very card and its answer was lost
            # (a timeout, a crash): delivered, but its response_code went with
            # the answer, so later changes cannot update this copy.
            log.warning("card_already_delivered", task_id=card["task_id"], userid=userid)
            answer = {}
            if await SentCard.exists(task_id=card["task_id"]):
                return
        if number is not None:
            code = answer.get("response_code", "") if isinstance(answer, dict) else ""
            await record_copy(ticket_id=number, task_id=card["task_id"], channel="app",
                              userid=userid, response_code=str(code), now=self.clock())


class CrisisTransport:
    """R8: a major ticket's crisis group (bot/crisis.py). The `crisis_group`
    row creates the group, stores its chatid on the ticket and posts the facts
    and the ticket card; a `crisis_members` row adds people to it; any other
    row posts its notice there. Both wait for the group to exist."""

    def __init__(self, sender: WeComSender, *, zone: ZoneInfo = SHANGHAI) -> None:
        self.sender = sender
        self.zone = zone

    async def room(self, recipient: str) -> Room:
        """Room under the limits of the app chat (its creation posts twice)."""
        return await self.sender.appchat_room(recipient)

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Create the group, or post into it."""
        number: int = notification.ticket_id  # type: ignore[attr-defined]
        row = await TicketRow.get(id=number)
        chatid = notification.recipient
        if notification.kind != CRISIS_KIND:
            if row.crisis_chatid != chatid:
                # Its creation is queued before it and retried: this waits its turn.
                raise DeliveryError(f"crisis group of #{number} not created yet",
                                    retryable=True)
            if notification.kind == CRISIS_MEMBERS_KIND:
                joiners = list((notification.payload or {}).get("add_user_list", []))
                await self.sender.update_appchat(chatid, joiners)
                log.info("crisis_group_joined", ticket=number, chatid=chatid, members=joiners)
            else:
                await self.sender.send_appchat_markdown(chatid, message.markdown)
            return
        if row.crisis_chatid != chatid:
            await self._create(row, chatid)
        # Facts, then the card (a group the app made takes no template_card).
        await self.sender.send_appchat_markdown(chatid, message.markdown)
        view = await load_view(number)
        if view is not None:
            card = render_ticket(view.ticket, self.zone, reveal=False,
                                 deadlines=view.deadlines, dealer_name=view.dealer_name,
                                 responder=view.responder, in_group=True)
            await self.sender.send_appchat_markdown(chatid, card)

    async def _create(self, row: TicketRow, chatid: str) -> None:
        ticket = snapshot(row)
        members = crisis_members(await Roster.load([ticket]), ticket)
        if len(members) < 2:
            # The directory may gain them: retried until the row is given up.
            raise DeliveryError(f"crisis group of #{row.id} has {len(members)} member(s); "
                                "WeChat Work needs at least 2", retryable=True)
        try:
            await self.sender.create_appchat(crisis_name(row.id), members[0], members, chatid)
        except WeComError as exc:
            if exc.errcode != CHAT_EXISTS:
                raise
            # An earlier try (its answer lost) or another replica made it.
            log.warning("crisis_group_exists", ticket=row.id, chatid=chatid)
        await TicketRow.filter(id=row.id).update(crisis_chatid=chatid)
        log.info("crisis_group_created", ticket=row.id, chatid=chatid, members=len(members))


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
