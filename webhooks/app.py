"""The self-built app's callback: GET (URL check) and POST /wecom/app.

A member writes a command to the app one-to-one, or clicks a button of a card
the app sent (an approval card, a new ticket's 处理 card). The callback is
verified, decrypted, parsed with wechatpy, deduplicated (messages on MsgId,
events on sender and CreateTime) and applied by the command router. WeChat
Work retries after 5 s, so the answer is an empty 200 at once and the reply
goes out by API through the outbox: a markdown or card message (kind "reply"),
or, for a click, an update of the clicked card with its ResponseCode (kind
"card_update"); see webhooks/callback.py for the rows. A click's ResponseCode
is kept on the bot's record of the card (bot/card_copies.py): a click that
changes the ticket updates every copy of its card, this one included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.parsers.expat import ExpatError

import structlog
from aiohttp import web
from wechatpy.enterprise import parse_message

from bot.card_copies import note_click, take_code
from bot.keys import CLOCK, SETTINGS
from bot.wecom.crypto import CallbackCipher, CallbackRefused
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
    verify_url,
)
from webhooks.health import storage_refusal
from webhooks.media import MediaRef, with_files

log = structlog.get_logger(__name__)

ENDPOINT = "app"
APP_CIPHER = web.AppKey("app_cipher", CallbackCipher)
_TEXT_LIMIT = 10000


@dataclass(frozen=True)
class AppCallback:
    """A decrypted app callback: `key` identifies it for deduplication;
    `event` is None for what the bot ignores (voice, entering the app);
    `media` the photo or file an image or file message carries."""

    key: str
    event: ChatMessage | CardClick | None
    media: tuple[MediaRef, ...] = ()


def parse_app(plaintext: str) -> AppCallback:
    """Read a decrypted app callback; CallbackRefused(400) when malformed."""
    try:
        message = parse_message(plaintext)
    except (ExpatError, KeyError, TypeError, AttributeError, ValueError):
        raise CallbackRefused(400, "message is not WeChat Work XML") from None
    # wechatpy 1.8 knows no template_card_event: its raw fields are in _data.
    data = getattr(message, "_data", None)
    if not isinstance(data, dict):
        raise CallbackRefused(400, "message is not WeChat Work XML")
    userid = clean_text(data.get("FromUserName"), limit=64)
    msgtype = str(data.get("MsgType", "")).lower()
    if msgtype == "text":
        msgid = clean_text(data.get("MsgId"), limit=64)
        content = data.get("Content") or ""  # an empty element parses as None
        if not isinstance(content, str) or len(content) > _TEXT_LIMIT or "\x00" in content:
            raise CallbackRefused(400, "malformed text content")
        text = ChatMessage(userid=userid, text=content.strip(), channel="app", msgid=msgid)
        return AppCallback(key=f"msg:{msgid}", event=text)
    if msgtype in ("image", "file"):
        msgid = clean_text(data.get("MsgId"), limit=64)
        name = data.get("FileName") or data.get("Title") or ""
        ref = MediaRef(kind=msgtype, media_id=clean_text(data.get("MediaId"), limit=256),
                       name=name if isinstance(name, str) else "")
        sent = ChatMessage(userid=userid, text="", channel="app", msgid=msgid)
        return AppCallback(key=f"msg:{msgid}", event=sent, media=(ref,))
    if msgtype == "event" and data.get("Event") == "template_card_event":
        created = clean_text(data.get("CreateTime"), limit=20)
        click = CardClick(
            userid=userid,
            event_key=clean_text(data.get("EventKey"), limit=1024),
            task_id=clean_text(data.get("TaskId"), limit=128),
            channel="app",
            response_code=clean_text(data.get("ResponseCode"), limit=256),
        )
        # Sender and time identify an event; the button tells two clicks in one second apart.
        button = hashlib.sha256(f"{click.task_id}|{click.event_key}".encode()).hexdigest()[:16]
        return AppCallback(key=f"evt:{userid}:{created}:{button}", event=click)
    return AppCallback(key="", event=None)


async def _apply(app: web.Application, callback: AppCallback, now: datetime) -> str:
    """Run the command and queue its reply; the reply as stored for the record."""
    event = callback.event
    assert event is not None  # ignored callbacks never get here
    ctx = await context_for(app, event.userid, now)
    if isinstance(event, ChatMessage):
        reply = applied(await router.handle_message(event, ctx))
        await _enqueue_message(callback.key, event.userid, reply, now)
        return json.dumps({"markdown": reply.markdown, "card": reply.card}, ensure_ascii=False)
    recorded = await note_click(event.task_id, event.userid, event.response_code, now)
    reply = applied(await router.handle_click(event, ctx))
    if reply.card is None:
        await _enqueue_message(callback.key, event.userid, reply, now)
    else:
        # A change already queued this copy's update with the click's code;
        # otherwise (refused, or a card the bot has no record of) answer here.
        code = (await take_code(event.task_id, event.userid, now) if recorded
                else event.response_code)
        if code:
            await enqueue_reply(
                endpoint=ENDPOINT, key=callback.key, kind="card_update", medium="app",
                recipient=event.userid, now=now,
                payload={"markdown": reply.markdown, "card": reply.card, "response_code": code},
            )
    return json.dumps({"markdown": reply.markdown, "card": reply.card}, ensure_ascii=False)


async def _enqueue_message(key: str, userid: str, reply: Reply, now: datetime) -> None:
    payload: dict[str, Any] = {"markdown": reply.markdown}
    if reply.card is not None:
        payload["card"] = reply.card
    await enqueue_reply(endpoint=ENDPOINT, key=key, kind="reply", medium="app",
                        recipient=userid, payload=payload, now=now)


async def receive(request: web.Request) -> web.Response:
    """A message or card click from the app: 200 at once, the reply by API."""
    cipher = request.app.get(APP_CIPHER)
    if cipher is None:
        return not_configured(ENDPOINT)
    now = request.app[CLOCK]()
    try:
        plaintext = cipher.decrypt_app(signed_query(request), await read_body(request), now=now)
        callback = parse_app(plaintext)
    except CallbackRefused as exc:
        return refuse(request, ENDPOINT, exc)
    event = callback.event
    if event is None:
        log.info("wecom_callback_ignored", endpoint=ENDPOINT)
        return web.Response()
    problem = await storage_problem(request.app)
    if problem is None:
        try:
            if callback.media:
                assert isinstance(event, ChatMessage)
                event = await with_files(request.app, ENDPOINT, callback.key, event,
                                         callback.media)
                callback = dataclasses.replace(callback, event=event)
            _, duplicate = await run_once(
                ENDPOINT, callback.key, now, lambda: _apply(request.app, callback, now),
                claim=needs_claim(event))
        except Exception as exc:
            log.exception("wecom_callback_failed", endpoint=ENDPOINT, key=callback.key,
                          userid=event.userid)
            problem = await storage_problem(request.app, exc)
            if problem is None:
                try:
                    await _enqueue_message(callback.key, event.userid,
                                           Reply(markdown=router.FAILURE), now)
                except Exception:
                    log.exception("wecom_callback_failed", endpoint=ENDPOINT,
                                  key=callback.key, userid=event.userid)
                    # Not even the apology could be stored: let WeChat Work retry.
                    return storage_refusal()
        else:
            if duplicate:
                log.info("wecom_callback_duplicate", endpoint=ENDPOINT, key=callback.key)
            problem = await storage_problem(request.app)  # applied into a lost file?
    if problem is not None:
        # The reply could only be stored where the command failed to be: let
        # WeChat Work retry (the outbox stays paused while the file is lost).
        log.error("storage_refused", endpoint=ENDPOINT, key=callback.key, error=problem)
        return storage_refusal()
    return web.Response()


async def check_url(request: web.Request) -> web.Response:
    """WeChat Work's URL check when the callback URL is saved."""
    return await verify_url(request, request.app.get(APP_CIPHER), ENDPOINT, request.app[CLOCK]())


def setup(app: web.Application) -> None:
    """Mount /wecom/app (the cipher comes from the settings; unset answers 503)."""
    cipher = make_cipher(app[SETTINGS], endpoint=ENDPOINT)
    if cipher is not None:
        app[APP_CIPHER] = cipher
    app.router.add_get("/wecom/app", check_url)
    app.router.add_post("/wecom/app", receive)
