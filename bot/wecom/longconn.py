"""The smart robot's long connection (doc 101463): one WebSocket to WeChat Work
instead of the HTTP callback.

Frames are plain JSON `{cmd, headers: {req_id}, body}`. The bot subscribes
with the robot's BotID and Secret (`aibot_subscribe`), pings on an interval,
receives `aibot_msg_callback` / `aibot_event_callback` (the same bodies as
the HTTP callback) and answers each on its `req_id` (`aibot_respond_msg`,
`aibot_respond_update_msg`). Acks carry the request's req_id and an errcode,
no cmd. It may also push (`aibot_send_msg`) into a chat where someone has
already written to the robot.

WeChat Work keeps one live connection per robot; a newer one displaces the
older, which first gets a `disconnected_event`. So:
- among this deployment's replicas only the holder of a lease row connects
  (bot/wecom/lease.py); another takes over once a dead holder's lease expires;
- a displaced connection waits WECOM_ROBOT_DISPLACED_WAIT_SECONDS (and warns)
  before subscribing again, so two deployments of one robot do not take the
  connection from each other in a tight loop;
- any other drop reconnects after a jittered, exponentially growing wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from bot.clock import Clock, utcnow
from bot.settings import Settings
from bot.wecom.client import RateLimited
from bot.wecom.lease import release_lease, take_lease
from bot.wecom.pacing import ROBOT_CHAT_LIMITS, Room, give_back, robot_chat_key, room, take_slot

log = structlog.get_logger(__name__)

SUBSCRIBE = "aibot_subscribe"
PING = "ping"
MSG_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
RESPOND_MSG = "aibot_respond_msg"
RESPOND_UPDATE = "aibot_respond_update_msg"
SEND_MSG = "aibot_send_msg"
DISCONNECTED_EVENT = "disconnected_event"
# A push past the chat's 30 a minute or 1,000 an hour (doc 101463) is refused
# with WeChat Work's rate-limit errcode; then the chat is held for a minute, as
# WeChat Work blocks a call over a per-minute limit for 60 s (doc 90454).
RATE_LIMITED = 45009
RATE_LIMITED_WAIT_SECONDS = 60.0
# The longest wait between two reconnection attempts.
BACKOFF_CAP_SECONDS = 60.0
# How long an answer whose connection dropped waits for the next one.
LATE_ANSWER_WAIT_SECONDS = 120.0

Handler = Callable[[str, dict[str, Any]], Awaitable[tuple[str, dict[str, Any]] | None]]
"""Turns an inbound callback (cmd, body) into the answer (cmd, body) or None."""


class PushRefused(Exception):
    """WeChat Work refused a push (its ack's `errcode`; None: no connection is live)."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


def new_req_id(cmd: str) -> str:
    """A fresh request id for a frame the bot starts."""
    return f"{cmd}_{secrets.token_hex(8)}"


def frame(cmd: str, req_id: str, body: dict[str, Any] | None = None) -> str:
    """One frame as sent on the wire."""
    data: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
    if body is not None:
        data["body"] = body
    return json.dumps(data, ensure_ascii=False)


def lease_name(bot_id: str) -> str:
    """The lease row of robot `bot_id`'s long connection (bot/wecom/lease.py)."""
    return f"robot-long-connection:{bot_id}"


def is_displacement(body: Any) -> bool:
    """True for the event telling this connection a newer one replaced it."""
    event = body.get("event") if isinstance(body, dict) else None
    return isinstance(event, dict) and event.get("eventtype") == DISCONNECTED_EVENT


class RobotConnection:
    """The robot's long connection, held by one replica at a time."""

    def __init__(self, settings: Settings, handler: Handler, *, clock: Clock = utcnow,
                 pace_clock: Clock = utcnow) -> None:
        secret = settings.wecom_robot_secret
        self.url = settings.wecom_robot_ws_url
        self.bot_id = settings.wecom_robot_bot_id
        self._secret = secret.get_secret_value() if secret else ""
        self.ping_seconds = settings.wecom_robot_ping_seconds
        self.reconnect_seconds = settings.wecom_robot_reconnect_seconds
        self.displaced_wait = settings.wecom_robot_displaced_wait_seconds
        self.lease_seconds = settings.wecom_robot_lease_seconds
        self.lease_name = lease_name(self.bot_id)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._handler = handler
        # Real time: leases and backoff run on the wall clock, whatever the app's clock says.
        self._clock = clock
        # The clock sends are counted on: the app's, as for the API client's
        # sends, so the outbox reads the robot's and the webhook's slots alike.
        self._pace_clock = pace_clock
        self._holding = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._live = asyncio.Event()  # set while a subscribed socket is open
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._failures = 0
        # Chats that refused a push: not open to pushes until someone writes to
        # the robot there (kept in memory: after a restart the first push asks again).
        self._closed: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start keeping the lease and, while held, the connection."""
        self._keeper = asyncio.create_task(self._keep_lease(), name="robot-lease")
        self._runner = asyncio.create_task(self._run(), name="robot-long-connection")

    def kill(self) -> None:
        """Stop at once as a crashed process would: the socket goes, the lease
        stays until it expires."""
        for task in (self._keeper, self._runner, *self._tasks):
            if task is not None:
                task.cancel()

    async def stop(self) -> None:
        """Shut down cleanly: close the socket and give the lease up, so another
        replica takes over without waiting for it to expire. The lease task
        gives it up itself: it runs where the ORM is open (the startup's context)."""
        for task in (self._runner, *self._tasks):
            if task is not None:
                task.cancel()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._stopping.set()
        if self._keeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper

    @property
    def holding(self) -> bool:
        """True while this replica holds the lease."""
        return self._holding.is_set()

    @property
    def connected(self) -> bool:
        """True while a subscribed socket is open."""
        return self._ws is not None and not self._ws.closed

    # -- the lease ------------------------------------------------------------

    async def _keep_lease(self) -> None:
        """Take or renew the lease every third of its length; losing it closes
        the socket; a clean stop gives it up."""
        while not self._stopping.is_set():
            try:
                held = await take_lease(self.lease_name, self.holder, self._clock(),
                                        self.lease_seconds)
            except Exception:
                log.exception("wecom_robot_lease_failed")
                held = False
            if held and not self.holding:
                log.info("wecom_robot_lease_taken", holder=self.holder)
                self._holding.set()
            elif not held and self.holding:
                log.warning("wecom_robot_lease_lost", holder=self.holder)
                self._holding.clear()
                if self._ws is not None:
                    await self._ws.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.lease_seconds / 3)
        self._holding.clear()
        try:
            await release_lease(self.lease_name, self.holder)
        except Exception:
            log.exception("wecom_robot_lease_release_failed")

    # -- the connection -------------------------------------------------------

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self._holding.wait()
                try:
                    outcome = await self._connect_once(session)
                except Exception as exc:  # whatever broke, the loop must go on reconnecting
                    outcome = "failed"
                    log.warning("wecom_robot_connect_failed", error=repr(exc))
                finally:
                    self._ws = None
                    self._live.clear()
                    for future in self._acks.values():
                        future.cancel()
                    self._acks.clear()
                if outcome == "displaced":
                    log.warning("wecom_robot_displaced", wait_seconds=self.displaced_wait,
                                hint="another connection took this robot; is a second "
                                "deployment running with the same BotID?")
                    await asyncio.sleep(self.displaced_wait)
                    continue
                delay = self._backoff()
                log.info("wecom_robot_reconnecting", outcome=outcome, wait_seconds=round(delay, 2))
                await asyncio.sleep(delay)

    def _backoff(self) -> float:
        """The next reconnection wait: doubling per failure, capped, with jitter
        so replicas and deployments do not retry in step."""
        base = min(BACKOFF_CAP_SECONDS, self.reconnect_seconds * 2 ** min(self._failures, 16))
        self._failures += 1
        return base * random.uniform(0.5, 1.0)

    async def _connect_once(self, session: aiohttp.ClientSession) -> str:
        """One connection from subscribe to its end; how it ended."""
        async with session.ws_connect(self.url, autoping=True,
                                      timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            req_id = new_req_id(SUBSCRIBE)
            await ws.send_str(frame(SUBSCRIBE, req_id,
                                    {"bot_id": self.bot_id, "secret": self._secret}))
            ack = await asyncio.wait_for(ws.receive_json(), timeout=self.ping_seconds)
            if not isinstance(ack, dict):
                ack = {}
            headers = ack.get("headers")
            if not isinstance(headers, dict) or headers.get("req_id") != req_id or ack.get(
                    "errcode") != 0:
                log.error("wecom_robot_subscribe_refused", errcode=ack.get("errcode"),
                          errmsg=ack.get("errmsg"))
                return "refused"
            if not self.holding:  # lost meanwhile: leave the robot to the new holder
                return "lease_lost"
            self._ws = ws
            self._live.set()
            log.info("wecom_robot_subscribed", bot_id=self.bot_id)
            pinger = asyncio.create_task(self._ping(ws))
            try:
                return await self._read(ws)
            finally:
                pinger.cancel()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                log.warning("wecom_robot_bad_frame")
                continue
            if not isinstance(data, dict):
                continue
            headers = data.get("headers")
            req_id = headers.get("req_id", "") if isinstance(headers, dict) else ""
            cmd = data.get("cmd")
            body = data.get("body")
            if not cmd:
                future = self._acks.pop(req_id, None)
                if future is not None and not future.done():
                    future.set_result(data)
                elif data.get("errcode"):
                    log.warning("wecom_robot_refused_answer", req_id=req_id,
                                errcode=data.get("errcode"), errmsg=data.get("errmsg"))
                continue
            if cmd == EVENT_CALLBACK and is_displacement(body):
                await ws.close()
                return "displaced"
            if cmd == MSG_CALLBACK and isinstance(body, dict):
                self._closed.discard(str(body.get("chatid") or ""))  # someone wrote there
            if cmd in (MSG_CALLBACK, EVENT_CALLBACK) and isinstance(body, dict) and req_id:
                task = asyncio.create_task(self._answer(ws, cmd, req_id, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return "dropped"

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, cmd: str, req_id: str,
                      body: dict[str, Any]) -> None:
        """Apply one callback and answer it on its req_id (on the socket it came
        by); if that socket went meanwhile, push a message's answer into its chat
        once a connection is back (a click's update cannot outlive its 5 s)."""
        try:
            answer = await self._handler(cmd, body)
            if answer is None:
                return
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(frame(answer[0], req_id, answer[1]))
                    return
            if answer[0] == RESPOND_MSG:
                await self._answer_late(body, answer[1])
            else:
                log.warning("wecom_robot_answer_lost", req_id=req_id, cmd=answer[0])
        except Exception:
            log.exception("wecom_robot_callback_failed", req_id=req_id)

    async def _answer_late(self, callback: dict[str, Any], reply: dict[str, Any]) -> None:
        """Push the answer to a message whose connection dropped before it was
        ready: the command was applied, so its answer must reach the chat."""
        group = callback.get("chattype") == "group"
        sender = callback.get("from")
        chatid = callback.get("chatid") if group else (
            sender.get("userid") if isinstance(sender, dict) else None)
        if not chatid:
            return
        if "template_card" in reply:
            message = {"msgtype": "template_card", "template_card": reply["template_card"]}
        else:
            content = reply.get("stream", {}).get("content", "")
            message = {"msgtype": "markdown", "markdown": {"content": content}}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._live.wait(), timeout=LATE_ANSWER_WAIT_SECONDS)
        try:
            await self.push({"chatid": chatid, "chat_type": 2 if group else 1, **message})
        except (PushRefused, TimeoutError, ConnectionError) as exc:
            log.warning("wecom_robot_answer_lost", chatid=chatid, error=str(exc))
            return
        log.info("wecom_robot_answer_pushed_late", chatid=chatid)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Ping on the interval; a ping unanswered for an interval closes the socket."""
        while not ws.closed:
            await asyncio.sleep(self.ping_seconds)
            try:
                await self._request(ws, PING, None, wait=self.ping_seconds)
            except (TimeoutError, ConnectionError):
                log.warning("wecom_robot_ping_unanswered")
                await ws.close()
                return
            self._failures = 0  # the connection proved itself: the next drop waits little

    async def _request(self, ws: aiohttp.ClientWebSocketResponse, cmd: str,
                       body: dict[str, Any] | None, *, wait: float) -> dict[str, Any]:
        """Send a frame the bot starts and wait for its ack."""
        req_id = new_req_id(cmd)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[req_id] = future
        try:
            await ws.send_str(frame(cmd, req_id, body))
            return await asyncio.wait_for(future, timeout=wait)
        finally:
            self._acks.pop(req_id, None)

    # -- pushes ---------------------------------------------------------------

    async def push(self, body: dict[str, Any], *, wait: float = 10.0) -> None:
        """Push one message (`aibot_send_msg` body: chatid, chat_type, msgtype,
        markdown or template_card); PushRefused when not connected or refused."""
        ws = self._ws
        if ws is None or ws.closed:
            raise PushRefused("the long connection is not open")
        ack = await self._request(ws, SEND_MSG, body, wait=wait)
        errcode = ack.get("errcode")
        if errcode != 0:
            raise PushRefused(f"errcode {errcode}: {ack.get('errmsg')}",
                              errcode if isinstance(errcode, int) else None)

    def can_push(self, chatid: str) -> bool:
        """True when group notices for `chatid` go by this connection's push:
        this replica holds the connection and the chat has not refused pushes
        (a chat nobody has written to the robot in). The one rule for which
        way a group is posted to, and so whose limits pace it."""
        return self.connected and chatid not in self._closed

    async def push_room(self, chatid: str) -> Room | None:
        """What the chat's limits (its replies and pushes together) let through
        now, nothing taken; None when its notices cannot go by push (`can_push`)."""
        if not self.can_push(chatid):
            return None
        return await room(robot_chat_key(chatid), ROBOT_CHAT_LIMITS, self._pace_clock())

    async def push_markdown(self, chatid: str, content: str) -> bool:
        """Push markdown into group `chatid` (see `_push_to_group`); RateLimited
        when the chat's limits are reached: the notice waits for its turn."""
        return await self._push_to_group(chatid, {"msgtype": "markdown",
                                                  "markdown": {"content": content}})

    async def push_card(self, chatid: str, card: dict[str, Any]) -> bool:
        """Push a template card (the robot's TemplateCard) into group `chatid`
        (see `_push_to_group`); a click on it comes back as a card event. A
        card is an extra to its notice: no room leaves it out (False)."""
        try:
            return await self._push_to_group(chatid, {"msgtype": "template_card",
                                                      "template_card": card})
        except RateLimited:
            return False

    async def _push_to_group(self, chatid: str, message: dict[str, Any]) -> bool:
        """Push one message into group `chatid` under the chat's limits (30/min,
        1,000/h, replies included, counted by all replicas): RateLimited when
        they are reached (by the bot's count or WeChat Work's 45009); False
        (nothing sent, its slot given back) when the caller should use another
        way: the connection is elsewhere or down, or the chat refused (nobody
        wrote to the robot there; a markdown refusal marks it until someone does)."""
        if not self.can_push(chatid):
            return False
        key, now = robot_chat_key(chatid), self._pace_clock()
        wait = await take_slot(key, ROBOT_CHAT_LIMITS, now)
        if wait > 0:
            raise RateLimited(key, wait)
        try:
            await self.push({"chatid": chatid, "chat_type": 2, **message})
        except PushRefused as exc:
            if exc.errcode == RATE_LIMITED:
                # Its budget is used by sends the bot did not count (another
                # deployment, replies before a restart): the slot stays taken.
                raise RateLimited(key, RATE_LIMITED_WAIT_SECONDS) from exc
            await give_back(key, now)
            if exc.errcode is not None and message["msgtype"] == "markdown":
                self._closed.add(chatid)
            log.info("wecom_robot_push_refused", chatid=chatid, error=str(exc))
            return False
        except ConnectionError as exc:
            await give_back(key, now)
            log.info("wecom_robot_push_refused", chatid=chatid, error=str(exc))
            return False
        except TimeoutError:
            # No ack: it may have arrived, so its slot stays counted.
            log.info("wecom_robot_push_unanswered", chatid=chatid)
            return False
        return True
