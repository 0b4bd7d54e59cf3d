"""A local WeChat Work: the API the bot calls and the callbacks it receives.

`WeComEmulator` serves the parts of the API complaintbot uses (gettoken,
message/send, message/update_template_card, appchat/send, media/upload,
media/get, webhook/send and the smart robot's response_url) under `/cgi-bin/`,
and the robot's encrypted media downloads (`robot_media_url`), checks
access tokens and the documented limits it knows (a webhook's 20 posts a
minute, markdown lengths), and records every request
in `requests` (also readable as JSON at `GET /emulator/log`). It can be told to fail the next
calls (`fail_next`), to fail every call for a while (`outage` until `restore`)
or to expire its tokens (`expire_tokens`) for fault tests.

Its `robot_message`, `robot_click`, `robot_media`, `app_message`, `app_media`
and `app_click` deliver callbacks to the bot exactly as WeChat Work does:
encrypted and signed with the real crypto, over real HTTP, and they read the
bot's passive reply. A photo or file a member sends is kept as WeChat Work
keeps it: for the app as temporary media behind media/get (3 days), for the
robot behind a URL valid five minutes, AES-256-CBC encrypted with a key of
its own (bot/wecom/media.py).

Every passive reply, card and card update is checked against the documented
schema of its surface (bot/wecom/schemas.py: the robot's or the app's card
fields, types, byte limits, button counts, task_id alphabet): an API call is
answered with the platform's errcode, a refused passive reply raises
`RefusedReply` (the member would see nothing) and is logged with `refused`.

It is a stand-in speaking the documented wire format, for tests and local
play; only `complaintbot demo` (bot/demo.py) mounts it beside the bot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bot.clock import Clock, utcnow
from bot.settings import Settings
from bot.wecom import emulator_ws, schemas
from bot.wecom.crypto import CallbackCipher, cdata
from bot.wecom.emulator_appchat import INVALID_CHATID, AppChats
from bot.wecom.emulator_directory import EmulatedDirectory
from bot.wecom.media import encrypt_media, new_aeskey

_TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
_APP_MSGTYPES = {"text", "markdown", "textcard", "news", "template_card"}
_APPCHAT_MSGTYPES = {"text", "markdown", "textcard", "news", "image", "file"}
_WEBHOOK_MSGTYPES = {"text", "markdown", "markdown_v2", "image", "news", "file", "template_card"}
_TOKEN_LIFETIME = timedelta(seconds=7200)
_RESPONSE_URL_LIFETIME = timedelta(hours=1)
# A response_code works once, within 72 h (WECOM.md).
_CODE_LIFETIME = timedelta(hours=72)
_MEDIA_LIFETIME = timedelta(days=3)
_MEDIA_IMAGE_MAX_BYTES = 10 * 1024 * 1024
# A group robot's webhook takes 20 messages a minute; more are refused (45009).
_WEBHOOK_PER_MINUTE = 20
_APPCHAT_MARKDOWN_MAX_BYTES = 2048
# A robot's media URL works five minutes (the SDK's types/message.ts).
_ROBOT_MEDIA_LIFETIME = timedelta(minutes=5)


_ANSWER_LATE = web.RequestKey("answer_late", float)
# The largest body WeChat Work takes: a 20 MB file upload, with room for its
# form. The bot's own limit (MAX_BODY_BYTES) must not apply where the demo
# mounts the emulator on the bot's server.
_MAX_BODY_BYTES = 24 * 1024 * 1024


@web.middleware
async def _platform_body_limit(request: web.Request, handler: Any) -> web.StreamResponse:
    """Read bodies up to WeChat Work's own limit (a chart is a 2 MB webhook image)."""
    return await handler(request.clone(client_max_size=_MAX_BODY_BYTES))


@web.middleware
async def _answer_late(request: web.Request, handler: Any) -> web.StreamResponse:
    """Hold the answer of a call a fault made late; the call is done already."""
    response = await handler(request)
    if request.get(_ANSWER_LATE):
        await asyncio.sleep(request[_ANSWER_LATE])
    return response


class EmulatorError(Exception):
    """The bot answered a callback with something WeChat Work would not accept."""


class RefusedReply(EmulatorError):
    """A passive reply WeChat Work would refuse (bot/wecom/schemas.py): the
    member sees nothing. `refusal` is the platform's {"errcode", "errmsg"}."""

    def __init__(self, refusal: dict[str, Any]) -> None:
        super().__init__(f"WeChat Work refuses the reply: {refusal}")
        self.refusal = refusal


@dataclass(frozen=True)
class Fault:
    """How to spoil one API call: an HTTP status, an errcode, and/or a delay.
    With a status or errcode the call is refused (after the delay); a delay
    alone answers late but does the call, as an overloaded WeChat Work may
    (unless the server cancels the handler of a caller who hung up, as
    aiohttp's test server does)."""

    status: int | None = None
    errcode: int | None = None
    delay: float = 0.0
    # Do the call, then hold the answer this long: past the caller's timeout,
    # the call happened but its answer is lost (the case retries must survive).
    answer_late: float = 0.0


class WeComEmulator:
    """WeChat Work as the bot sees it, configured with the bot's own settings."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.corp_id = settings.wecom_corp_id
        self.agent_id = settings.wecom_agent_id
        self._secret = settings.wecom_secret.get_secret_value() if settings.wecom_secret else ""
        self.app_cipher = CallbackCipher(
            settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id,
            max_skew=settings.wecom_callback_max_skew,
        )
        self.robot_cipher = CallbackCipher(
            settings.wecom_robot_token, settings.wecom_robot_aes_key, "",
            max_skew=settings.wecom_callback_max_skew,
        )
        self.aibotid = "aib-emulated"
        self._robot_aes_key = settings.wecom_robot_aes_key
        self._clock = clock
        self.url = ""
        self.bot_url = ""
        # Everything the bot sent and every callback delivered, oldest first.
        self.requests: list[dict[str, Any]] = []
        # Members that exist; None accepts any userid.
        self.known_users: set[str] | None = None
        self._tokens: dict[str, Any] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._task_ids: set[str] = set()
        self._response_urls: dict[str, dict[str, Any]] = {}
        # Temporary media uploaded (media/upload): media_id -> when it expires.
        self._media: dict[str, Any] = {}
        # The bytes of each uploaded image, by media_id: the chat page shows them.
        self.media: dict[str, bytes] = {}
        # Each webhook key's accepted posts in the last minute, oldest first.
        self._webhook_posts: dict[str, deque[Any]] = {}
        # What members sent: app media (media_id) and robot downloads (id).
        self._sent_media: dict[str, dict[str, Any]] = {}
        self._robot_files: dict[str, dict[str, Any]] = {}
        self._faults: deque[Fault] = deque()
        self._outage: deque[Fault] = deque()
        self._session: aiohttp.ClientSession | None = None
        self.app = web.Application(middlewares=[_platform_body_limit, _answer_late],
                                   client_max_size=_MAX_BODY_BYTES)
        self.app[EMULATOR] = self
        self.app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        self.app.router.add_post("/cgi-bin/message/send", self._message_send)
        self.app.router.add_post("/cgi-bin/message/update_template_card", self._update_card)
        self.app.router.add_post("/cgi-bin/appchat/send", self._appchat_send)
        self.app.router.add_post("/cgi-bin/media/upload", self._media_upload)
        self.app.router.add_get("/cgi-bin/media/get", self._media_get)
        self.app.router.add_get("/emulator/robot_media/{id}", self._robot_media)
        self.app.router.add_post("/cgi-bin/webhook/send", self._webhook_send)
        self.app.router.add_post("/emulator/response_url/{id}", self._response_url)
        self.app.router.add_get("/emulator/log", self._log)
        robot_secret = settings.wecom_robot_secret
        self.ws = emulator_ws.mount(self, self.app, settings.wecom_robot_bot_id,
                                    robot_secret.get_secret_value() if robot_secret else "")
        self.appchats = AppChats.mount(self)
        self.directory = EmulatedDirectory(self)  # 通讯录: bot/wecom/emulator_directory.py
        self.app.on_cleanup.append(self._cleanup)

    # -- control -----------------------------------------------------------

    def connect(self, *, own_url: str, bot_url: str) -> None:
        """Where the emulator itself is served (for response_urls) and where the bot is."""
        self.url = own_url.rstrip("/")
        self.bot_url = bot_url.rstrip("/")

    def fail_next(
        self, count: int = 1, *, status: int | None = None, errcode: int | None = None,
        delay: float = 0.0, answer_late: float = 0.0,
    ) -> None:
        """Spoil the next `count` API calls (gettoken excepted): answer HTTP
        `status`, or errcode `errcode`, after waiting `delay` seconds; or do
        the call and answer `answer_late` seconds later."""
        self._faults.extend([Fault(status=status, errcode=errcode, delay=delay,
                                   answer_late=answer_late)] * count)

    def outage(self, *faults: Fault) -> None:
        """Spoil every API call (gettoken excepted) until `restore`, with each
        of `faults` in turn (5xx, errcode 45009, slow answers ...). Calls
        queued by `fail_next` go first."""
        self._outage = deque(faults)

    def restore(self) -> None:
        """End the outage: calls are answered normally again."""
        self._outage = deque()

    def expire_tokens(self) -> None:
        """Make every access token handed out so far expired (errcode 42001)."""
        for token in self._tokens:
            self._tokens[token] = self._clock() - timedelta(seconds=1)

    def sent(self, path: str) -> list[dict[str, Any]]:
        """The recorded requests to one API path, e.g. "message/send"."""
        return [r for r in self.requests if r["path"] == f"/cgi-bin/{path}"]

    # -- the API -----------------------------------------------------------

    async def _gettoken(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("corpid") != self.corp_id:
            return self._answer(request, None, {"errcode": 40013, "errmsg": "invalid corpid"})
        if not self._secret or query.get("corpsecret") != self._secret:
            return self._answer(request, None, {"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self._clock() + _TOKEN_LIFETIME
        answer = {"errcode": 0, "errmsg": "ok", "access_token": token,
                  "expires_in": int(_TOKEN_LIFETIME.total_seconds())}
        return self._answer(request, None, answer)

    async def _message_send(self, request: web.Request) -> web.Response:
        body, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        if body.get("agentid") != self.agent_id:
            return self._answer(request, body, {"errcode": 40056, "errmsg": "invalid agentid"})
        msgtype = body.get("msgtype")
        if msgtype not in _APP_MSGTYPES or not isinstance(body.get(msgtype), dict):
            return self._answer(request, body, {"errcode": 40008, "errmsg": "invalid message type"})
        userids = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u for u in userids if self.known_users is None or u in self.known_users]
        invalid = [u for u in userids if u not in valid]
        if not valid:
            return self._answer(request, body, {"errcode": 81013,
                                                "errmsg": "user & party & tag all invalid"})
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                  "msgid": secrets.token_hex(8)}
        if msgtype == "template_card":
            card = body["template_card"]
            problem = self._card_problem(card)
            if problem is not None:
                return self._answer(request, body, problem)
            self._task_ids.add(card["task_id"])
            code = secrets.token_hex(16)
            self._cards[code] = {"userids": valid, "task_id": card["task_id"], "used": False,
                                 "issued": self._clock()}
            answer["response_code"] = code
        return self._answer(request, body, answer)

    async def _update_card(self, request: web.Request) -> web.Response:
        body, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        if body.get("agentid") != self.agent_id:
            return self._answer(request, body, {"errcode": 40056, "errmsg": "invalid agentid"})
        card = self._cards.get(str(body.get("response_code")))
        if card is None or card["used"] or self._clock() - card["issued"] >= _CODE_LIFETIME:
            return self._answer(request, body, {"errcode": 40035,
                                                "errmsg": "invalid, used or expired response_code"})
        if (problem := schemas.app_update_problem(body)) is not None:
            return self._answer(request, body, problem)
        card["used"] = True
        return self._answer(request, body, {"errcode": 0, "errmsg": "ok", "invaliduser": []})

    async def _appchat_send(self, request: web.Request) -> web.Response:
        body, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        if not body.get("chatid"):
            return self._answer(request, body, {"errcode": 86003, "errmsg": "invalid chatid"})
        if body["chatid"] not in self.appchats.chats:  # only groups the app created
            return self._answer(request, body, {"errcode": INVALID_CHATID,
                                                "errmsg": "chatid invalid"})
        if body.get("msgtype") not in _APPCHAT_MSGTYPES:
            return self._answer(request, body, {"errcode": 40008, "errmsg": "invalid message type"})
        content = str((body.get("markdown") or {}).get("content", ""))
        if body["msgtype"] == "markdown" and len(content.encode()) > _APPCHAT_MARKDOWN_MAX_BYTES:
            return self._answer(request, body, {"errcode": 40058, "errmsg": "content too long"})
        if body["msgtype"] in ("image", "file"):
            media_id = str((body.get(body["msgtype"]) or {}).get("media_id", ""))
            if self._media.get(media_id, self._clock()) <= self._clock():
                return self._answer(request, body, {"errcode": 40007,
                                                    "errmsg": "invalid media_id"})
        return self._answer(request, body, {"errcode": 0, "errmsg": "ok"})

    async def _media_upload(self, request: web.Request) -> web.Response:
        """Temporary media (3 days), multipart field `media`; recorded without
        its bytes: type, filename, size and md5 (the bytes are in `media`)."""
        form = await request.post()
        media = form.get("media")
        raw = b""
        if isinstance(media, web.FileField):
            # Closed here: aiohttp closes the files of the request it made,
            # not those of the clone _platform_body_limit hands on.
            with media.file:
                raw = media.file.read()
        body = {"type": request.query.get("type"), "filename": getattr(media, "filename", ""),
                "size": len(raw), "md5": hashlib.md5(raw).hexdigest()}
        _, refusal = await self._checked(request, body=body)
        if refusal is not None:
            return refusal
        if body["type"] != "image" or not raw or len(raw) > _MEDIA_IMAGE_MAX_BYTES:
            return self._answer(request, body, {"errcode": 40009, "errmsg": "invalid image size"})
        if not raw.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            return self._answer(request, body, {"errcode": 40009,
                                                "errmsg": "invalid image: only png or jpg"})
        media_id = f"media-{secrets.token_urlsafe(16)}"
        self._media[media_id] = self._clock() + _MEDIA_LIFETIME
        self.media[media_id] = raw
        return self._answer(request, body, {
            "errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
            "created_at": str(int(self._clock().timestamp()))})

    def add_media(self, data: bytes, filename: str, content_type: str) -> str:
        """Keep what a member sent the app, as temporary media for 3 days; its media_id."""
        media_id = f"sent-{secrets.token_urlsafe(16)}"
        self._sent_media[media_id] = {"data": data, "filename": filename,
                                      "content_type": content_type,
                                      "expires_at": self._clock() + _MEDIA_LIFETIME}
        return media_id

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        """media/get: the file with its type and name in the headers, as an
        HTTP download; an unknown or expired media_id answers errcode 40007."""
        media_id = request.query.get("media_id", "")
        _, refusal = await self._checked(request, body={"media_id": media_id})
        if refusal is not None:
            return refusal
        media = self._sent_media.get(media_id)
        if media is None or media["expires_at"] <= self._clock():
            return self._answer(request, {"media_id": media_id},
                                {"errcode": 40007, "errmsg": "invalid media_id"})
        self._record(request, {"media_id": media_id}, {"size": len(media["data"])})
        name = media["filename"]
        return web.Response(body=media["data"], headers={
            "Content-Type": media["content_type"] or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{quote(name)}"; '
                                   f"filename*=UTF-8''{quote(name)}"})

    def robot_media_url(self, data: bytes, *, per_url_key: bool = True) -> tuple[str, str]:
        """Keep what a member sent the robot behind a URL valid five minutes,
        encrypted with a new key of its own (as the long connection sends it)
        or, without `per_url_key`, with the robot's EncodingAESKey; the URL
        and the key given with it ("" for the EncodingAESKey)."""
        aeskey = new_aeskey() if per_url_key else ""
        ident = secrets.token_urlsafe(16)
        self._robot_files[ident] = {
            "data": encrypt_media(data, aeskey or self._robot_aes_key),
            "expires_at": self._clock() + _ROBOT_MEDIA_LIFETIME}
        return f"{self.url}/emulator/robot_media/{ident}", aeskey

    async def _robot_media(self, request: web.Request) -> web.Response:
        """A robot media download: the encrypted bytes, or 404 once expired."""
        stored = self._robot_files.get(request.match_info["id"])
        if stored is None or stored["expires_at"] <= self._clock():
            self._record(request, None, {"http_status": 404})
            return web.Response(status=404, text="expired")
        self._record(request, None, {"size": len(stored["data"])})
        return web.Response(body=stored["data"], content_type="application/octet-stream")

    async def _webhook_send(self, request: web.Request) -> web.Response:
        body, refusal = await self._checked(request, token=False)
        if refusal is not None:
            return refusal
        if not request.query.get("key"):
            return self._answer(request, body, {"errcode": 93000, "errmsg": "invalid webhook url"})
        msgtype = body.get("msgtype")
        if msgtype not in _WEBHOOK_MSGTYPES or not isinstance(body.get(msgtype), dict):
            return self._answer(request, body, {"errcode": 40008, "errmsg": "invalid message type"})
        content = body[msgtype].get("content", "")
        if msgtype.startswith("markdown") and len(str(content).encode()) > 4096:
            return self._answer(request, body, {"errcode": 40058, "errmsg": "content too long"})
        if msgtype == "image" and (problem := self._image_problem(body["image"])):
            return self._answer(request, body, problem)
        posts = self._webhook_posts.setdefault(request.query["key"], deque())
        while posts and posts[0] <= self._clock() - timedelta(minutes=1):
            posts.popleft()
        if len(posts) >= _WEBHOOK_PER_MINUTE:
            return self._answer(request, body, {"errcode": 45009,
                                                "errmsg": "api freq out of limit"})
        posts.append(self._clock())
        return self._answer(request, body, {"errcode": 0, "errmsg": "ok"})

    @staticmethod
    def _image_problem(image: dict[str, Any]) -> dict[str, Any] | None:
        """Why a webhook image would be refused: not base64, over 2 MB, the md5
        not that of the decoded bytes, or not a PNG or JPG."""
        try:
            raw = base64.b64decode(str(image.get("base64", "")), validate=True)
        except (binascii.Error, ValueError):
            return {"errcode": 40009, "errmsg": "invalid image: base64"}
        if not raw or len(raw) > 2 * 1024 * 1024:
            return {"errcode": 40009, "errmsg": "invalid image size"}
        if hashlib.md5(raw).hexdigest() != image.get("md5"):
            return {"errcode": 40009, "errmsg": "invalid image: md5 mismatch"}
        if not raw.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            return {"errcode": 40009, "errmsg": "invalid image: only png or jpg"}
        return None

    async def _response_url(self, request: web.Request) -> web.Response:
        body, refusal = await self._checked(request, token=False)
        if refusal is not None:
            return refusal
        target = self._response_urls.get(request.match_info["id"])
        if target is None or target["used"] or target["expires_at"] < self._clock():
            return self._answer(request, body, {"errcode": 40035,
                                                "errmsg": "response_url unknown, used or expired"})
        if (problem := schemas.response_url_problem(body, target["chattype"])) is not None:
            return self._answer(request, body, problem)
        target["used"] = True
        return self._answer(request, body, {"errcode": 0, "errmsg": "ok"})

    async def _log(self, request: web.Request) -> web.Response:
        try:
            since = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        return web.json_response({"requests": self.requests[since:], "next": len(self.requests)})

    async def _checked(
        self, request: web.Request, *, token: bool = True, body: Any = None
    ) -> tuple[dict[str, Any], web.Response | None]:
        """The JSON body (or the `body` read otherwise, a multipart upload's),
        and the refusal when a fault, the token or the body says so."""
        if body is None:
            try:
                body = await request.json()
            except ValueError:
                body = None
        fault = None
        if self._faults:
            fault = self._faults.popleft()
        elif self._outage:
            fault = self._outage[0]
            self._outage.rotate(-1)
        if fault is not None:
            # A refusal is recorded as the call arrives: the caller may hang up
            # before a slow one is answered.
            if fault.status is not None:
                self._record(request, body, {"http_status": fault.status})
                await asyncio.sleep(fault.delay)
                return {}, web.Response(status=fault.status, text="emulated failure")
            if fault.errcode is not None:
                answer = {"errcode": fault.errcode, "errmsg": "emulated failure"}
                self._record(request, body, answer)
                await asyncio.sleep(fault.delay)
                return {}, web.json_response(answer)
            await asyncio.sleep(fault.delay)
            if fault.answer_late:
                request[_ANSWER_LATE] = fault.answer_late
        if token:
            given = request.query.get("access_token")
            if not given:
                return {}, self._answer(request, body, {"errcode": 41001,
                                                        "errmsg": "access_token missing"})
            if given not in self._tokens:
                return {}, self._answer(request, body, {"errcode": 40014,
                                                        "errmsg": "invalid access_token"})
            if self._tokens[given] <= self._clock():
                return {}, self._answer(request, body, {"errcode": 42001,
                                                        "errmsg": "access_token expired"})
        if not isinstance(body, dict):
            return {}, self._answer(request, body, {"errcode": 47001,
                                                    "errmsg": "data format error"})
        return body, None

    def _card_problem(self, card: Any) -> dict[str, Any] | None:
        if not isinstance(card, dict) or not _TASK_ID.match(str(card.get("task_id", ""))):
            return {"errcode": 40035, "errmsg": "task_id: 1-128 bytes of [0-9A-Za-z_-@]"}
        if card["task_id"] in self._task_ids:
            return {"errcode": 42014, "errmsg": "task_id already used"}
        return schemas.card_problem(card, "app")

    def _answer(self, request: web.Request, body: Any, answer: dict[str, Any]) -> web.Response:
        self._record(request, body, answer)
        return web.json_response(answer)

    def _record(self, request: web.Request, body: Any, answer: dict[str, Any]) -> None:
        # The query of gettoken holds the secret: keep it out of the log.
        query = {} if request.path.endswith("gettoken") else {
            k: v for k, v in request.query.items() if k != "access_token"
        }
        self.requests.append({
            "direction": "api", "path": request.path, "query": query, "json": body,
            "answer": answer, "time": self._clock().isoformat(),
        })

    # -- callbacks to the bot ----------------------------------------------

    async def robot_message(
        self, userid: str, chatid: str | None, text: str, *, msgid: str | None = None
    ) -> dict[str, Any]:
        """A member @-mentions the robot in group `chatid` (None: its one-to-one
        chat) with `text`; the bot's decrypted passive reply ({} when empty)."""
        chattype = "group" if chatid else "single"
        message: dict[str, Any] = {
            "msgid": msgid or secrets.token_hex(16),
            "aibotid": self.aibotid,
            "chattype": chattype,
            "from": {"userid": userid},
            "response_url": self._new_response_url(chattype),
            "msgtype": "text",
            "text": {"content": text},
        }
        if chatid:
            message["chatid"] = chatid
        return await self.deliver_robot(message)

    async def robot_click(
        self, userid: str, chatid: str | None, task_id: str, event_key: str, *,
        names: tuple[str, str] = ("event_key", "task_id"), flat: bool = False,
    ) -> dict[str, Any]:
        """A member clicks button `event_key` on the robot's card `task_id`.
        `names` spells the two fields and `flat` puts them on `event` itself,
        as some peers and SDKs do (WECOM.md)."""
        chattype = "group" if chatid else "single"
        click = {"card_type": "button_interaction", names[0]: event_key, names[1]: task_id}
        message: dict[str, Any] = {
            "msgid": secrets.token_hex(16),
            "create_time": int(self._clock().timestamp()),
            "aibotid": self.aibotid,
            "chattype": chattype,
            "from": {"userid": userid},
            "response_url": self._new_response_url(chattype),
            "msgtype": "event",
            "event": ({"eventtype": "template_card_event", **click} if flat else
                      {"eventtype": "template_card_event", "template_card_event": click}),
        }
        if chatid:
            message["chatid"] = chatid
        return await self.deliver_robot(message)

    async def robot_media(
        self, userid: str, chatid: str | None, files: list[bytes], *, text: str = "",
        kind: str = "image", per_url_key: bool = True,
    ) -> dict[str, Any]:
        """A member sends photos to the robot: one to one an `image` (or, with
        kind "file", a `file`) message; in group `chatid` a `mixed` message of
        `text` (which must @-mention the robot) and the images. Each is behind
        its own encrypted URL (`robot_media_url`). The bot's decrypted reply."""
        chattype = "group" if chatid else "single"
        items = []
        for data in files:
            url, aeskey = self.robot_media_url(data, per_url_key=per_url_key)
            items.append({"url": url, **({"aeskey": aeskey} if aeskey else {})})
        message: dict[str, Any] = {
            "msgid": secrets.token_hex(16), "aibotid": self.aibotid, "chattype": chattype,
            "from": {"userid": userid}, "response_url": self._new_response_url(chattype),
        }
        if chatid or text or len(items) > 1:
            parts = [{"msgtype": "text", "text": {"content": text}}] if text else []
            parts += [{"msgtype": "image", "image": item} for item in items]
            message.update(msgtype="mixed", mixed={"msg_item": parts})
        else:
            message.update(msgtype=kind, **{kind: items[0]})
        if chatid:
            message["chatid"] = chatid
        return await self.deliver_robot(message)

    async def deliver_robot(self, message: dict[str, Any]) -> dict[str, Any]:
        """Post one robot callback as WeChat Work does; the decrypted reply."""
        if self.ws.connected:  # long-connection mode: the callback goes by the socket
            reply = await self.ws.callback(message)
            self._record_callback("ws:/wecom/robot", message, reply)
            return reply
        timestamp = str(int(self._clock().timestamp()))
        query, body = self.robot_cipher.robot_callback(message, timestamp=timestamp)
        text = await self._post("/wecom/robot", query.as_params(), body, "application/json")
        reply: dict[str, Any] = {}
        if text:
            envelope = json.loads(text)
            if envelope.get("nonce") != query.nonce:
                raise EmulatorError("the reply does not carry the callback's nonce")
            reply = self.robot_cipher.open_robot_reply(envelope, now=self._clock())
        refusal = None
        if reply:
            refusal = schemas.robot_reply_problem(message, reply)
        self._record_callback("/wecom/robot", message, reply, refusal)
        if refusal is not None:
            raise RefusedReply(refusal)
        return reply

    async def app_message(self, userid: str, text: str, *, msgid: int | None = None) -> str:
        """A member writes `text` to the app; the bot's raw answer (normally "")."""
        fields = {
            "ToUserName": self.corp_id, "FromUserName": userid,
            "CreateTime": int(self._clock().timestamp()), "MsgType": "text", "Content": text,
            "MsgId": msgid or secrets.randbelow(10**18), "AgentID": self.agent_id,
        }
        return await self.deliver_app(fields)

    async def app_media(self, userid: str, data: bytes, *, filename: str = "photo.jpg",
                        content_type: str = "image/jpeg", kind: str = "image") -> str:
        """A member sends a photo (kind "image") or a file ("file") to the app:
        kept as temporary media, the callback carries its MediaId. The bot's
        raw answer (normally "")."""
        media_id = self.add_media(data, filename, content_type)
        fields: dict[str, Any] = {
            "ToUserName": self.corp_id, "FromUserName": userid,
            "CreateTime": int(self._clock().timestamp()), "MsgType": kind,
            "MediaId": media_id, "MsgId": secrets.randbelow(10**18), "AgentID": self.agent_id,
        }
        if kind == "image":
            fields["PicUrl"] = f"{self.url}/emulator/pic/{media_id}"
        return await self.deliver_app(fields)

    async def app_click(
        self, userid: str, task_id: str, event_key: str, response_code: str | None = None
    ) -> str:
        """A member clicks button `event_key` of the app's card `task_id`. As in
        WeChat Work the click carries a fresh ResponseCode for that card (one is
        made up unless `response_code` is given)."""
        if response_code is None:
            response_code = secrets.token_hex(16)
            self._cards[response_code] = {"userids": [userid], "task_id": task_id,
                                          "used": False, "issued": self._clock()}
        fields = {
            "ToUserName": self.corp_id, "FromUserName": userid,
            "CreateTime": int(self._clock().timestamp()), "MsgType": "event",
            "Event": "template_card_event", "EventKey": event_key, "TaskId": task_id,
            "CardType": "button_interaction", "ResponseCode": response_code,
            "AgentID": self.agent_id,
        }
        return await self.deliver_app(fields)

    async def deliver_app(self, fields: dict[str, Any]) -> str:
        """Post one app callback (these XML fields) as WeChat Work does; the raw answer."""
        xml = "<xml>" + "".join(
            f"<{name}>{cdata(value) if isinstance(value, str) else value}</{name}>"
            for name, value in fields.items()
        ) + "</xml>"
        timestamp = str(int(self._clock().timestamp()))
        query, body = self.app_cipher.app_callback(xml, agent_id=self.agent_id,
                                                   timestamp=timestamp)
        text = await self._post("/wecom/app", query.as_params(), body, "text/xml")
        self._record_callback("/wecom/app", fields, text)
        return text

    async def _post(
        self, path: str, params: dict[str, str], body: bytes, content_type: str
    ) -> str:
        """POST a callback to the bot; its answer, which must be HTTP 200."""
        if not self.bot_url:
            raise EmulatorError("call connect(own_url=..., bot_url=...) first")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            self.bot_url + path, params=params, data=body,
            headers={"Content-Type": content_type},
        ) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise EmulatorError(f"the bot answered {path} with HTTP {resp.status}: {text}")
            return text

    def _new_response_url(self, chattype: str) -> str:
        ident = secrets.token_urlsafe(16)
        self._response_urls[ident] = {"chattype": chattype, "used": False,
                                      "expires_at": self._clock() + _RESPONSE_URL_LIFETIME}
        return f"{self.url}/emulator/response_url/{ident}"

    def _record_callback(
        self, path: str, message: Any, reply: Any, refusal: dict[str, Any] | None = None
    ) -> None:
        entry = {"direction": "callback", "path": path, "json": message, "reply": reply,
                 "time": self._clock().isoformat()}
        if refusal is not None:
            entry["refused"] = refusal
        self.requests.append(entry)

    async def _cleanup(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


EMULATOR = web.AppKey("wecom_emulator", WeComEmulator)


def create_emulator(settings: Settings, *, clock: Clock = utcnow) -> web.Application:
    """The emulator's aiohttp application; its `WeComEmulator` is `app[EMULATOR]`."""
    return WeComEmulator(settings, clock=clock).app
