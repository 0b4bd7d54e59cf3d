"""The smart robot's callback: GET (URL check) and POST /wecom/robot.

A member @-mentions the robot in a dealer or region group (or writes to it
one-to-one), or clicks a button of a card it posted. The callback is verified,
decrypted, deduplicated on `msgid`, handed to the command router and answered
passively in the same request (a card event comes once and dies after 5 s):
a message with a `stream` (markdown) or a `template_card`, a click with
`update_template_card`. A click answered without a card can only be told
through the callback's `response_url`, which goes through the outbox.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from bot.card_copies import record_copy
from bot.keys import CLOCK, ROBOT_CONNECTION, SETTINGS
from bot.render.cards import robot_card, ticket_of_task
from bot.settings import SettingsError
from bot.storage import STORAGE_MESSAGE
from bot.wecom.crypto import CallbackCipher, CallbackRefused
from bot.wecom.longconn import (
    RESPOND_MSG,
    RESPOND_UPDATE,
    Handler,
    RobotConnection,
)
from bot.wecom.pacing import ROBOT_CHAT_LIMITS, robot_chat_key, take_slot
from commands import router
from commands.base import CardClick, ChatMessage, Reply
from webhooks.callback import (
    applied,
    clean_text,
    context_for,
    enqueue_reply,
    make_cipher,
    needs_claim,
    not_configured,
    read_body,
    refuse,
    run_once,
    signed_query,
    storage_problem,
    strip_mention,
    verify_url,
)
from webhooks.health import storage_refusal
from webhooks.media import MediaRef, with_files

log = structlog.get_logger(__name__)

ENDPOINT = "robot"
ROBOT_CIPHER = web.AppKey("robot_cipher", CallbackCipher)
# The largest stream content WeChat Work takes, in bytes (doc 101031).
STREAM_LIMIT = 20480
_TEXT_LIMIT = 10000


@dataclass(frozen=True)
class RobotCallback:
    """A decrypted robot callback: `event` is None for what the bot ignores
    (stream refreshes, entering the chat); `media` the photos and files an
    image, file or mixed message carries."""

    msgid: str
    response_url: str
    event: ChatMessage | CardClick | None
    media: tuple[MediaRef, ...] = ()


def parse_robot(plaintext: str, robot_name: str) -> RobotCallback:
    """Read a decrypted robot callback; CallbackRefused(400) when malformed."""
    try:
        data = json.loads(plaintext)
    except (ValueError, RecursionError):
        raise CallbackRefused(400, "message is not JSON") from None
    if not isinstance(data, dict):
        raise CallbackRefused(400, "message is not a JSON object")
    msgid = clean_text(data.get("msgid"), limit=128)
    sender = data.get("from")
    userid = clean_text(sender.get("userid") if isinstance(sender, dict) else None, limit=64)
    chatid = data.get("chatid") or None
    if chatid is not None:
        chatid = clean_text(chatid, limit=128)
    response_url = data.get("response_url") or ""
    if not isinstance(response_url, str):
        raise CallbackRefused(400, "malformed response_url")
    msgtype = data.get("msgtype")
    event: ChatMessage | CardClick | None = None
    media: tuple[MediaRef, ...] = ()
    if msgtype in ("text", "mixed"):
        text = strip_mention(_text_of(data, msgtype), robot_name,
                             any_name=data.get("chattype") == "group")
        event = ChatMessage(userid=userid, text=text, channel="robot", chatid=chatid, msgid=msgid)
        if msgtype == "mixed":
            media = tuple(_media_of(item["image"], "image") for item in data["mixed"]["msg_item"]
                          if isinstance(item, dict) and item.get("msgtype") == "image")
    elif msgtype in ("image", "file"):
        event = ChatMessage(userid=userid, text="", channel="robot", chatid=chatid, msgid=msgid)
        media = (_media_of(data.get(msgtype), msgtype),)
    elif msgtype == "event":
        event = _click_of(data.get("event"), userid, chatid)
    return RobotCallback(msgid=msgid, response_url=response_url, event=event, media=media)


def _media_of(item: Any, kind: str) -> MediaRef:
    """The download URL and per-URL aeskey of an image or file."""
    if not isinstance(item, dict):
        raise CallbackRefused(400, f"malformed {kind}")
    url = clean_text(item.get("url"), limit=4096)
    if not url.startswith(("https://", "http://")):
        raise CallbackRefused(400, f"malformed {kind} url")
    aeskey = item.get("aeskey") or ""
    if not isinstance(aeskey, str) or len(aeskey) > 64:
        raise CallbackRefused(400, f"malformed {kind} aeskey")
    name = item.get("filename") or item.get("file_name") or ""
    return MediaRef(kind=kind, url=url, aeskey=aeskey,
                    name=name if isinstance(name, str) else "")


def _text_of(data: dict[str, Any], msgtype: str) -> str:
    """The typed text: text.content, or the text items of a mixed message."""
    if msgtype == "text":
        items = [data]
    else:
        mixed = data.get("mixed")
        items = mixed.get("msg_item") if isinstance(mixed, dict) else None
        if not isinstance(items, list):
            raise CallbackRefused(400, "malformed mixed message")
    parts = []
    for item in items:
        if not isinstance(item, dict) or item.get("msgtype", "text") != "text":
            continue
        text = item.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        if not isinstance(content, str) or len(content) > _TEXT_LIMIT or "\x00" in content:
            raise CallbackRefused(400, "malformed text content")
        parts.append(content)
    return "\n".join(parts)


def _click_of(event: Any, userid: str, chatid: str | None) -> CardClick | None:
    """A button click; event_key and task_id may sit under template_card_event
    or, as some SDKs send them, flat on the event, spelled as the JSON docs
    (event_key), run together (eventkey) or as the XML fields (EventKey)."""
    if not isinstance(event, dict):
        raise CallbackRefused(400, "malformed event")
    if event.get("eventtype") != "template_card_event":
        return None
    nested = event.get("template_card_event")
    fields = {**event, **nested} if isinstance(nested, dict) else event
    return CardClick(
        userid=userid,
        event_key=clean_text(_spelled(fields, "event_key", "eventkey", "EventKey"), limit=1024),
        task_id=clean_text(_spelled(fields, "task_id", "taskid", "TaskId"), limit=128),
        channel="robot",
        chatid=chatid,
    )


def _spelled(fields: dict[str, Any], *names: str) -> Any:
    """The value of the first of `names` present in `fields` (None if none)."""
    return next((fields[name] for name in names if name in fields), None)


def _fit(markdown: str) -> str:
    """Markdown cut to the stream's byte limit."""
    data = markdown.encode()
    if len(data) <= STREAM_LIMIT:
        return markdown
    return data[: STREAM_LIMIT - 3].decode(errors="ignore") + "…"


def message_reply(reply: Reply) -> dict[str, Any]:
    """The passive reply to a message: the card, else a finished stream."""
    if reply.card is not None:
        return {"msgtype": "template_card", "template_card": robot_card(reply.card)}
    return {"msgtype": "stream",
            "stream": {"id": secrets.token_hex(8), "finish": True, "content": _fit(reply.markdown)}}


async def _apply(app: web.Application, callback: RobotCallback, now: datetime) -> str:
    """Run the command; the plaintext reply to store and send ("" for none)."""
    event = callback.event
    assert event is not None  # ignored callbacks never get here
    ctx = await context_for(app, event.userid, now)
    if isinstance(event, ChatMessage):
        reply = applied(await router.handle_message(event, ctx))
        task_id = reply.card["task_id"] if reply.card else ""
        number = ticket_of_task(task_id)
        if number is not None:
            # Kept with the app's copies; only a click on it can change it (card_copies).
            await record_copy(ticket_id=number, task_id=task_id, channel="robot",
                              userid=event.userid, chatid=event.chatid or "", now=now)
        return json.dumps(message_reply(reply), ensure_ascii=False)
    reply = applied(await router.handle_click(event, ctx))
    if reply.card is not None:
        answer = {"response_type": "update_template_card",
                  "template_card": robot_card(reply.card)}
        return json.dumps(answer, ensure_ascii=False)
    # A card event can only be answered with a card: say it through response_url.
    if callback.response_url:
        await enqueue_reply(
            endpoint=ENDPOINT, key=callback.msgid, kind="reply", medium="robot",
            recipient=event.chatid or event.userid, now=now,
            payload={"markdown": reply.markdown, "response_url": callback.response_url},
        )
    return ""


async def receive(request: web.Request) -> web.Response:
    """A message or card click from the smart robot."""
    cipher = request.app.get(ROBOT_CIPHER)
    if cipher is None:
        return not_configured(ENDPOINT)
    now = request.app[CLOCK]()
    try:
        query = signed_query(request)
        plaintext = cipher.decrypt_robot(query, await read_body(request), now=now)
        callback = parse_robot(plaintext, request.app[SETTINGS].wecom_robot_name)
    except CallbackRefused as exc:
        return refuse(request, ENDPOINT, exc)
    stored = await answer_callback(request.app, callback, now)
    if stored is None:
        return storage_refusal()  # a click is answered with a card or not at all
    if not stored:
        return web.Response()
    envelope = cipher.robot_reply(json.loads(stored), timestamp=str(int(now.timestamp())),
                                  nonce=query.nonce)
    return web.json_response(envelope)


async def answer_callback(app: web.Application, callback: RobotCallback,
                          now: datetime) -> str | None:
    """Apply a robot callback once (deduplicated on msgid; the command and its
    answer in one transaction) and return its answer as JSON: "" for none,
    None for a click the storage refused (it can only be left unanswered).
    Both modes use it: the HTTP callback and the long connection."""
    event = callback.event
    if event is None:
        log.info("wecom_callback_ignored", endpoint=ENDPOINT, msgid=callback.msgid)
        return ""
    problem = await storage_problem(app)
    if problem is None:
        try:
            if callback.media:
                assert isinstance(event, ChatMessage)
                event = await with_files(app, ENDPOINT, callback.msgid, event, callback.media)
                callback = dataclasses.replace(callback, event=event)
            stored, duplicate = await run_once(
                ENDPOINT, callback.msgid, now, lambda: _apply(app, callback, now),
                claim=needs_claim(event))
        except Exception as exc:
            log.exception("wecom_callback_failed", endpoint=ENDPOINT, msgid=callback.msgid,
                          userid=event.userid)
            problem = await storage_problem(app, exc)
            # Only a message can be answered with text; a failed click stays as it was.
            stored = ""
            if isinstance(event, ChatMessage) and problem is None:
                stored = json.dumps(message_reply(Reply(markdown=router.FAILURE)))
        else:
            if duplicate:
                log.info("wecom_callback_duplicate", endpoint=ENDPOINT, msgid=callback.msgid)
            problem = await storage_problem(app)  # applied into a lost file?
    if problem is not None:
        log.error("storage_refused", endpoint=ENDPOINT, msgid=callback.msgid, error=problem)
        if not isinstance(event, ChatMessage):
            return None
        stored = json.dumps(message_reply(Reply(markdown=STORAGE_MESSAGE)), ensure_ascii=False)
    return stored


async def check_url(request: web.Request) -> web.Response:
    """WeChat Work's URL check when the callback URL is saved."""
    return await verify_url(request, request.app.get(ROBOT_CIPHER), ENDPOINT,
                            request.app[CLOCK]())


def long_connection_handler(app: web.Application) -> Handler:
    """What the long connection does with an inbound callback: the body is the
    HTTP callback's JSON, applied the same way (answer_callback); the answer
    goes back on the callback's req_id, a card as `aibot_respond_update_msg`."""

    async def handle(cmd: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        now = app[CLOCK]()
        try:
            callback = parse_robot(json.dumps(body), app[SETTINGS].wecom_robot_name)
        except CallbackRefused as exc:
            log.warning("wecom_callback_refused", endpoint=ENDPOINT, reason=exc.reason, cmd=cmd)
            return None
        stored = await answer_callback(app, callback, now)
        if not stored:
            return None
        answer = json.loads(stored)
        chatid = callback.event.chatid if callback.event is not None else None
        if chatid:
            # Replies and pushes share a chat's limits: a reply uses up a push's room.
            await take_slot(robot_chat_key(chatid), ROBOT_CHAT_LIMITS, now)
        if answer.get("response_type") == "update_template_card":
            return RESPOND_UPDATE, answer
        return RESPOND_MSG, answer

    return handle


async def _long_connection(app: web.Application) -> AsyncIterator[None]:
    """Keep the robot's long connection (WECOM_ROBOT_MODE=long_connection)."""
    connection = app[ROBOT_CONNECTION]
    connection.start()
    yield
    await connection.stop()


def setup(app: web.Application) -> None:
    """Mount /wecom/robot (the cipher comes from the settings; unset answers 503)
    and, in long-connection mode, keep the WebSocket instead."""
    settings = app[SETTINGS]
    if settings.wecom_robot_mode == "long_connection":
        if not (settings.wecom_robot_bot_id and settings.wecom_robot_secret):
            raise SettingsError("invalid configuration:\n  WECOM_ROBOT_MODE: long_connection "
                                "needs WECOM_ROBOT_BOT_ID and WECOM_ROBOT_SECRET")
        # Made now so the outbox (started earlier) can push through it.
        app[ROBOT_CONNECTION] = RobotConnection(settings, long_connection_handler(app),
                                                pace_clock=lambda: app[CLOCK]())
        app.cleanup_ctx.append(_long_connection)  # after the database's: it needs the ORM
    cipher = make_cipher(settings, endpoint=ENDPOINT)
    if cipher is not None:
        app[ROBOT_CIPHER] = cipher
    app.router.add_get("/wecom/robot", check_url)
    app.router.add_post("/wecom/robot", receive)
