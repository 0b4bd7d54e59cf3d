"""What the two WeChat Work callback endpoints (webhooks/robot.py and
webhooks/app.py) share: reading and refusing a signed request, and running a
command exactly once.

Replies that cannot travel in the HTTP answer are outbox rows
(`models.Notification` without ticket or event, audience "sender", content
ready in `payload`), delivered by the outbox worker with
`bot.wecom.client.WeComClient`:

| medium | kind | recipient | payload | call |
|---|---|---|---|---|
| app | reply | userid | `{"markdown"}` | `send_app_markdown` |
| app | reply | userid | `{"markdown", "card"}` | `send_app_card` |
| app | card_update | userid | `{"markdown", "card", "response_code"}` | `update_template_card` |
| robot | reply | chatid or userid | `{"markdown", "response_url"}` | `post_response_url(url, {"msgtype": "markdown", "markdown": {"content"}})` |
"""  # noqa: E501

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web
from tortoise.transactions import in_transaction

from bot.db import fetch_rows
from bot.directory import actor_for
from bot.keys import ATTACHMENTS, LEDGER, SETTINGS, STORAGE
from bot.metrics import CALLBACK_REFUSALS, CALLBACKS
from bot.settings import Settings, SettingsError
from bot.storage import storage_fault
from bot.wecom.crypto import CallbackCipher, CallbackRefused, SignedQuery
from commands import router
from commands.base import CardClick, ChatMessage, Context, Reply
from models import Notification, ProcessedCallback

log = structlog.get_logger(__name__)

# The longest dedupe key stored as it is; longer ones are stored as their hash.
_KEY_LIMIT = 200
# Processed callbacks deleted per statement when old ones are forgotten.
_FORGET_BATCH = 1000


def make_cipher(settings: Settings, *, endpoint: str) -> CallbackCipher | None:
    """The endpoint's cipher, None while its Token and EncodingAESKey are unset."""
    if endpoint == "robot":
        token, aes_key, receive_id = (settings.wecom_robot_token, settings.wecom_robot_aes_key, "")
        names = "WECOM_ROBOT_TOKEN / WECOM_ROBOT_AES_KEY"
    else:
        token, aes_key, receive_id = (settings.wecom_token, settings.wecom_aes_key,
                                      settings.wecom_corp_id)
        names = "WECOM_TOKEN / WECOM_AES_KEY / WECOM_CORP_ID"
    if not (token or aes_key):
        return None
    if endpoint == "app" and not receive_id:
        raise SettingsError(f"invalid configuration:\n  {names}: WECOM_CORP_ID is empty")
    try:
        return CallbackCipher(token, aes_key, receive_id, max_skew=settings.wecom_callback_max_skew)
    except ValueError as exc:
        raise SettingsError(f"invalid configuration:\n  {names}: {exc}") from None


def signed_query(request: web.Request) -> SignedQuery:
    """The signature, timestamp and nonce of a callback's query string."""
    query = request.query
    missing = [n for n in ("msg_signature", "timestamp", "nonce") if not query.get(n)]
    if missing:
        raise CallbackRefused(400, f"missing query parameter {', '.join(missing)}")
    return SignedQuery(msg_signature=query["msg_signature"], timestamp=query["timestamp"],
                       nonce=query["nonce"])


async def read_body(request: web.Request) -> bytes:
    """The request body, refused when larger than MAX_BODY_BYTES."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise CallbackRefused(413, "body too large") from None


def refuse(request: web.Request, endpoint: str, exc: CallbackRefused) -> web.Response:
    """Log and answer a refused callback; nothing of it is stored."""
    CALLBACKS.labels(endpoint=endpoint, outcome="refused").inc()
    CALLBACK_REFUSALS.labels(endpoint=endpoint, reason=exc.reason).inc()
    log.warning("wecom_callback_refused", endpoint=endpoint, reason=exc.reason,
                status=exc.status, remote=request.remote)
    return web.json_response({"error": exc.reason}, status=exc.status)


def not_configured(endpoint: str) -> web.Response:
    """The answer while the endpoint's callback secrets are not set."""
    CALLBACKS.labels(endpoint=endpoint, outcome="unconfigured").inc()
    log.warning("wecom_callback_unconfigured", endpoint=endpoint)
    return web.json_response({"error": f"the {endpoint} callback is not configured"}, status=503)


async def verify_url(request: web.Request, cipher: CallbackCipher | None, endpoint: str,
                     now: datetime) -> web.Response:
    """Answer WeChat Work's URL check: the decrypted echostr as plain text."""
    if cipher is None:
        return not_configured(endpoint)
    try:
        echo = cipher.verify_url(signed_query(request), request.query.get("echostr", ""), now=now)
    except CallbackRefused as exc:
        return refuse(request, endpoint, exc)
    CALLBACKS.labels(endpoint=endpoint, outcome="url_verified").inc()
    log.info("wecom_url_verified", endpoint=endpoint)
    return web.Response(text=echo)


async def storage_problem(app: web.Application, exc: BaseException | None = None) -> str | None:
    """Why a callback's command could not be (or was not really) stored: the
    error `exc` says so, or the database fails its probe, or (with no error)
    the SQLite file was deleted or replaced meanwhile; None when storage is fine."""
    storage = app[STORAGE]
    if exc is None:
        return storage.file_problem()
    return storage_fault(exc) or await storage.probe()


def clean_text(value: Any, *, limit: int) -> str:
    """A string field of a callback, refused when missing, too long or holding
    NUL (PostgreSQL cannot store it)."""
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise CallbackRefused(400, "malformed message field")
    return value


def strip_mention(text: str, robot_name: str, *, any_name: bool = False) -> str:
    """The text without the robot's @name, wherever it was typed, trimmed.

    With `any_name` (a group callback, which arrives only because the robot
    was @-mentioned), when the configured name is not in the text (the robot
    was renamed in the console) the leading @-mention, else the trailing one,
    is taken for the robot's, whatever its name: only one is stripped, so
    `/assign 1 @zhang @机器人` keeps its assignee."""
    # WeChat Work follows a mention with a space or a U+2005 (four-per-em space);
    # line breaks around it are kept, they may separate a command's fields.
    if robot_name and "@" + robot_name in text:
        text = re.sub(r"[ \t\u2005]*@" + re.escape(robot_name) + r"[ \t\u2005]*", " ", text)
    elif any_name:
        text = _LEADING_MENTION.sub("", text, count=1) if _LEADING_MENTION.match(text) \
            else _TRAILING_MENTION.sub("", text, count=1)
    return text.strip()


_LEADING_MENTION = re.compile(r"^[ \t\u2005]*@[^\s\u2005]+[ \t\u2005]*")
_TRAILING_MENTION = re.compile(r"[ \t\u2005]*@[^\s\u2005]+[ \t\u2005]*$")


async def context_for(app: web.Application, userid: str, now: datetime) -> Context:
    """The handler's context; `actor` is None when the directory does not know `userid`."""
    return Context(actor=await actor_for(userid), ledger=app[LEDGER], now=now,
                   zone=app[SETTINGS].zone, attachments=app[ATTACHMENTS])


async def run_once(
    endpoint: str, key: str, now: datetime, apply: Callable[[], Awaitable[str]], *,
    claim: bool = True,
) -> tuple[str, bool]:
    """Apply a callback once: claim `key` and run `apply` in one transaction,
    storing what it returns (the reply). Returns that reply and False, or, for
    a duplicate, the reply stored the first time and True. An exception rolls
    the claim back with the rest, so a failed callback can be retried.
    Without `claim` (a command that changes nothing: `Command.reads_only`)
    `apply` just runs, and a copy of the callback answers afresh."""
    # Every log line written while the callback is applied (the command, the
    # ticket change) names it, so one grep finds a callback's whole story.
    with structlog.contextvars.bound_contextvars(endpoint=endpoint, msgid=key):
        try:
            if claim:
                response, duplicate = await _claimed(endpoint, key, now, apply)
            else:
                response, duplicate = await apply(), False
        except Exception:
            CALLBACKS.labels(endpoint=endpoint, outcome="failed").inc()
            raise
    # A read-only command is "answered": unclaimed, a WeChat Work retry of it
    # is answered again and cannot be told from the first.
    outcome = "duplicate" if duplicate else "applied" if claim else "answered"
    CALLBACKS.labels(endpoint=endpoint, outcome=outcome).inc()
    return response, duplicate


async def _claimed(
    endpoint: str, key: str, now: datetime, apply: Callable[[], Awaitable[str]]
) -> tuple[str, bool]:
    """`apply` under the claim of `key` (see `run_once`)."""
    if len(key) > _KEY_LIMIT:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    async with in_transaction():
        # The claim comes first, in the transaction of the command: a copy
        # of the callback that arrives meanwhile waits for this one (the
        # key is unique) and then finds it claimed, so nothing is applied
        # twice, and a duplicate costs one statement, not a whole command.
        claimed = await fetch_rows(
            "INSERT INTO processed_callback (endpoint, key, received_at, response) "
            "VALUES (?, ?, ?, '') ON CONFLICT (endpoint, key) DO NOTHING RETURNING id",
            [endpoint, key, now])
        if not claimed:
            [stored] = await fetch_rows(
                "SELECT response FROM processed_callback WHERE endpoint = ? AND key = ?",
                [endpoint, key])
            return stored["response"], True
        response = await apply()
        await fetch_rows("UPDATE processed_callback SET response = ? WHERE id = ?",
                         [response, claimed[0]["id"]])
    return response, False


def needs_claim(event: ChatMessage | CardClick) -> bool:
    """Whether applying the event needs the callback's claim (`run_once`):
    all but a typed command that changes nothing."""
    return not (isinstance(event, ChatMessage) and router.reads_only(event))


def applied(reply: Reply) -> Reply:
    """The reply of a command that was applied; a command that failed raises
    its error again, so `run_once` rolls back whatever it wrote before failing."""
    if reply.failure is not None:
        raise reply.failure
    return reply


async def forget_callbacks(*, before: datetime) -> int:
    """Delete the callbacks received before `before` (their keys and replies);
    returns how many. WeChat Work redelivers within seconds, so a callback
    that old never comes again and its row only fills the table. Deleted in
    batches: a long DELETE would hold SQLite's one write lock."""
    deleted = 0
    while True:
        ids = await ProcessedCallback.filter(received_at__lt=before).order_by("id").limit(
            _FORGET_BATCH).values_list("id", flat=True)
        if not ids:
            return deleted
        deleted += await ProcessedCallback.filter(id__in=ids).delete()


async def enqueue_reply(
    *, endpoint: str, key: str, kind: str, medium: str, recipient: str,
    payload: dict[str, Any], now: datetime,
) -> None:
    """Write one reply to the outbox (see the table above). The dedupe key
    names the callback, so a retried callback never sends its reply twice."""
    dedupe = hashlib.sha256(f"{endpoint}|{key}|{kind}|{recipient}".encode()).hexdigest()
    await Notification.bulk_create(
        [Notification(kind=kind, medium=medium, audience="sender", recipient=recipient,
                      dedupe_key=dedupe, status="pending", next_attempt_at=now,
                      created_at=now, payload=payload)],
        ignore_conflicts=True,
    )
