"""The emulator's side of the smart robot's long connection (doc 101463).

`LongConnectionHub` serves the WebSocket at `/emulator/ws` (point
WECOM_ROBOT_WS_URL there) and speaks the documented frames: it acks
`aibot_subscribe` (refusing a wrong BotID/Secret with 853000 and closing),
acks `ping`, keeps one live connection per robot (a newer subscription first
sends the older a `disconnected_event`, then closes it), delivers member
messages and card clicks as `aibot_msg_callback` / `aibot_event_callback` and
reads the bot's answer on the callback's req_id (a card update must come
within 5 s), and takes pushes (`aibot_send_msg`) only into chats where a
member has written to the robot. Like WeChat Work it counts what the robot
sends into each chat, replies (`aibot_respond_msg`, `aibot_respond_welcome_msg`)
and pushes together, and refuses a message past 30 a minute or 1,000 an hour
in one chat (doc 101463) with errcode 45009.

Tests drive it with `message`, `click`, `drop` (the network cuts the socket)
and `displace` (another deployment subscribes the same robot).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from bot.clock import utcnow
from bot.wecom.schemas import robot_push_problem

if TYPE_CHECKING:
    from bot.wecom.emulator import WeComEmulator

# The errcode seen when a subscription's BotID or Secret is wrong.
BAD_CREDENTIALS = 853000
# A card event's answer must arrive within this many seconds (doc 101463).
UPDATE_WINDOW = 5.0
_ANSWERS = {"aibot_respond_msg", "aibot_respond_update_msg", "aibot_respond_welcome_msg"}
# Answers that are new messages in the chat (a card update changes one already there).
_MESSAGES = {"aibot_respond_msg", "aibot_respond_welcome_msg"}
# What the robot may send into one chat, replies and pushes together (doc 101463),
# and WeChat Work's answer past it.
CHAT_LIMITS = ((30, timedelta(minutes=1)), (1000, timedelta(hours=1)))
RATE_LIMITED = 45009


class HubError(Exception):
    """The bot did not answer as WeChat Work requires (or is not connected)."""


class LongConnectionHub:
    """WeChat Work's long-connection server for one robot."""

    def __init__(self, emulator: WeComEmulator, bot_id: str, secret: str) -> None:
        self.emulator = emulator
        self.bot_id = bot_id
        self.secret = secret
        # Every frame the bot sent, oldest first, with the loop time it came.
        self.frames: list[dict[str, Any]] = []
        # Loop times of accepted subscriptions and of displacements.
        self.subscribed_at: list[float] = []
        self.displaced_at: list[float] = []
        self.pushes: list[dict[str, Any]] = []
        # Pushes refused for the chat's limits.
        self.refused: list[dict[str, Any]] = []
        self._live: web.WebSocketResponse | None = None
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # The chat each pending callback came from, by its req_id.
        self._chat_of: dict[str, str] = {}
        # When the robot's messages went into each chat, in the last hour (emulator clock).
        self._sent: dict[str, deque[datetime]] = {}
        # Chats where a member wrote to the robot: the only ones open to pushes.
        self.open_chats: set[str] = set()

    @property
    def connected(self) -> bool:
        """True while a subscribed connection is open."""
        return self._live is not None and not self._live.closed

    @property
    def pings(self) -> int:
        """How many pings the bot sent."""
        return sum(1 for f in self.frames if f.get("cmd") == "ping")

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """One WebSocket from the bot, from its subscription to its close."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        subscribed = False
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            data["_at"] = asyncio.get_running_loop().time()
            self.frames.append(data)
            cmd = data.get("cmd")
            req_id = data.get("headers", {}).get("req_id", "")
            body = data.get("body") or {}
            if cmd == "aibot_subscribe":
                if body.get("bot_id") != self.bot_id or body.get("secret") != self.secret:
                    await ws.send_json(_ack(req_id, BAD_CREDENTIALS, "invalid bot_id or secret"))
                    await ws.close()
                    break
                await self._take_over(ws)
                subscribed = True
                await ws.send_json(_ack(req_id))
            elif not subscribed:
                await ws.close()
                break
            elif cmd == "ping":
                await ws.send_json(_ack(req_id))
            elif cmd in _ANSWERS:
                future = self._answers.get(req_id)
                if future is None or future.done():
                    await ws.send_json(_ack(req_id, 40008, "unknown or answered req_id"))
                elif cmd in _MESSAGES and not self._counted(self._chat_of.get(req_id, "")):
                    await ws.send_json(_ack(req_id, RATE_LIMITED, "api freq out of limit"))
                    future.set_exception(HubError(f"the reply was refused ({RATE_LIMITED})"))
                else:
                    future.set_result({"cmd": cmd, "body": body})
                    await ws.send_json(_ack(req_id))
            elif cmd == "aibot_send_msg":
                refused = robot_push_problem(body)
                if refused is not None:
                    await ws.send_json(_ack(req_id, refused["errcode"], refused["errmsg"]))
                elif body.get("chatid") not in self.open_chats:
                    await ws.send_json(_ack(req_id, 40058, "chat not open to pushes"))
                elif not self._counted(str(body["chatid"])):
                    self.refused.append(body)
                    await ws.send_json(_ack(req_id, RATE_LIMITED, "api freq out of limit"))
                else:
                    self.pushes.append(body)
                    self.emulator.requests.append({
                        "direction": "api", "path": "ws:aibot_send_msg", "json": body,
                        "answer": _ack(req_id), "time": utcnow().isoformat()})
                    await ws.send_json(_ack(req_id))
            else:
                await ws.send_json(_ack(req_id, 40008, f"unknown cmd {cmd}"))
        if self._live is ws:
            self._live = None
        return ws

    def _counted(self, chat: str) -> bool:
        """Count one message of the robot into `chat` if the chat's limits have
        room; False, nothing counted, when they have not."""
        now = self.emulator._clock()
        sent = self._sent.setdefault(chat, deque())
        while sent and sent[0] <= now - CHAT_LIMITS[-1][1]:
            sent.popleft()
        if any(sum(1 for at in sent if at > now - window) >= count
               for count, window in CHAT_LIMITS):
            return False
        sent.append(now)
        return True

    async def _take_over(self, ws: web.WebSocketResponse) -> None:
        """The newest subscription wins; the older one is told, then closed."""
        old, self._live = self._live, ws
        self.subscribed_at.append(asyncio.get_running_loop().time())
        if old is not None and not old.closed:
            await _displace(old)

    async def close(self, _app: web.Application | None = None) -> None:
        """Close the live connection (the emulator shuts down)."""
        if self._live is not None:
            await self._live.close()

    async def displace(self) -> None:
        """Another deployment subscribed the same robot: the live one is displaced."""
        old, self._live = self._live, None
        if old is None:
            raise HubError("no live connection to displace")
        self.displaced_at.append(asyncio.get_running_loop().time())
        await _displace(old)

    async def drop(self) -> None:
        """The network cuts the live connection (no displacement event)."""
        old, self._live = self._live, None
        if old is None:
            raise HubError("no live connection to drop")
        await old.close()
        for future in self._answers.values():  # their answers can no longer come
            if not future.done():
                future.set_exception(HubError("the connection dropped"))

    async def message(self, userid: str, chatid: str | None, text: str, *,
                      msgid: str | None = None, drop_after: bool = False) -> dict[str, Any]:
        """A member writes `text` to the robot (in group `chatid`, or one-to-one):
        the bot's answer frame `{"cmd", "body"}` on the callback's req_id.
        `drop_after`: the network cuts the connection right behind the message
        (HubError: its answer cannot come on it)."""
        chattype = "group" if chatid else "single"
        body: dict[str, Any] = {
            "msgid": msgid or secrets.token_hex(16), "aibotid": self.emulator.aibotid,
            "chattype": chattype, "from": {"userid": userid}, "msgtype": "text",
            "text": {"content": text},
        }
        if chatid:
            body["chatid"] = chatid
            self.open_chats.add(chatid)
        return await self.deliver("aibot_msg_callback", body, wait=30.0, drop_after=drop_after)

    async def click(self, userid: str, chatid: str | None, task_id: str,
                    event_key: str) -> dict[str, Any]:
        """A member clicks button `event_key` of the robot's card `task_id`:
        the bot's answer, which must come within 5 s."""
        body: dict[str, Any] = {
            "msgid": secrets.token_hex(16), "aibotid": self.emulator.aibotid,
            "chattype": "group" if chatid else "single", "from": {"userid": userid},
            "msgtype": "event",
            "event": {"eventtype": "template_card_event", "template_card_event": {
                "card_type": "button_interaction", "event_key": event_key, "task_id": task_id}},
        }
        if chatid:
            body["chatid"] = chatid
        return await self.deliver("aibot_event_callback", body, wait=UPDATE_WINDOW)

    async def callback(self, message: dict[str, Any]) -> dict[str, Any]:
        """Deliver a robot callback (the HTTP mode's JSON) over the socket, as
        WeChat Work does for a robot in long-connection mode; the answer's body."""
        if message.get("msgtype") == "event":
            answer = await self.deliver("aibot_event_callback", message, wait=UPDATE_WINDOW)
        else:
            if message.get("chatid"):
                self.open_chats.add(message["chatid"])
            answer = await self.deliver("aibot_msg_callback", message, wait=30.0)
        return answer["body"]

    async def deliver(self, cmd: str, body: dict[str, Any], *, wait: float,
                      drop_after: bool = False) -> dict[str, Any]:
        """Send one callback frame on the live connection; the answer to it
        (`drop_after`: see `message`)."""
        ws = self._live
        if ws is None or ws.closed:
            raise HubError("the bot holds no long connection")
        req_id = secrets.token_hex(12)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[req_id] = future
        sender = body.get("from")
        self._chat_of[req_id] = str(body.get("chatid") or (
            sender.get("userid", "") if isinstance(sender, dict) else ""))
        await ws.send_json({"cmd": cmd, "headers": {"req_id": req_id}, "body": body})
        if drop_after:
            await self.drop()
        try:
            answer = await asyncio.wait_for(future, timeout=wait)
        except TimeoutError:
            raise HubError(f"no answer to {cmd} within {wait:.0f} s") from None
        finally:
            self._answers.pop(req_id, None)
            self._chat_of.pop(req_id, None)
        return answer


def _ack(req_id: str, errcode: int = 0, errmsg: str = "ok") -> dict[str, Any]:
    return {"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg}


async def _displace(ws: web.WebSocketResponse) -> None:
    event = {"cmd": "aibot_event_callback",
             "headers": {"req_id": secrets.token_hex(12)},
             "body": {"msgid": secrets.token_hex(16), "msgtype": "event",
                      "event": {"eventtype": "disconnected_event"}}}
    try:
        await ws.send_json(event)
    finally:
        await ws.close()


def mount(emulator: WeComEmulator, app: web.Application, bot_id: str,
          secret: str) -> LongConnectionHub:
    """Serve the long connection at /emulator/ws of the emulator's app."""
    hub = LongConnectionHub(emulator, bot_id, secret)
    app.router.add_get("/emulator/ws", hub.serve)
    app.on_shutdown.append(hub.close)
    return hub
