"""The chat page of the local WeChat Work (`complaintbot demo`, served at /dev/).

A person picks a member of the directory and a conversation (a dealer, region,
HQ or call-centre group, or the one-to-one chat with the app), types commands,
clicks card buttons and sees what WeChat Work would show. Nothing is
short-circuited: what the person types reaches the bot as a signed, encrypted
callback sent by `WeComEmulator` over HTTP, and what the page shows is read
back from the emulator's log of the bot's passive replies and API calls.

`mount_chat_page` adds these routes to the emulator's own application, so they
sit beside the emulated `cgi-bin` under the same prefix:

| route | what |
|---|---|
| GET /, /app.js, /style.css | the page, from this folder |
| GET api/config | the robot's @-name, the zone, the intake API's token, dealers, labels |
| GET api/people | the directory's active members: userid, name, role, dealer, region |
| GET api/groups | the group chats: chatid, name, kind |
| POST api/say | `{userid, chatid or null, text}`: to the robot in a group, else to the app |
| POST api/click | `{userid, chatid or null, task_id, key}`: click a card's button |
| GET api/feed?since=N | the chat events from the N-th on, and `next`, the N to ask for next time |
| GET api/media/ID | an image the bot uploaded (media/upload) |

A feed event is `{"chat", "sender", "kind", "via", "time", ...}`: `chat` is a
group's chatid or `app:USERID` for a member's chat with the app; `sender` a
userid or "bot"; `kind` one of text, markdown, card, card_update, click,
image (its `src`: a data: URL of a webhook's image, or api/media/ID). A
card is known by its `task_id` within its chat; a card_update names the card
it changes.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.domain.enums import Category, Channel, OwnerLevel, Status
from bot.settings import Settings
from bot.wecom.emulator import EmulatorError, WeComEmulator
from models import Dealer, GroupChat, Staff

ASSETS = Path(__file__).parent
_BOT = "bot"


def app_chat(userid: str) -> str:
    """The feed's name of a member's one-to-one chat with the app."""
    return f"app:{userid}"


class ChatFeed:
    """The emulator's log (callbacks delivered, API calls received) turned into
    what each chat shows, in order. Only calls WeChat Work accepted count."""

    def __init__(self, emulator: WeComEmulator) -> None:
        self._emulator = emulator
        self._read = 0
        self._lock = asyncio.Lock()
        self.events: list[dict[str, Any]] = []
        # The chat a robot callback came from, by its response_url: late replies go there.
        self._reply_chats: dict[str, str] = {}
        # Button labels by task_id and key, to say which button a member clicked.
        self._buttons: dict[tuple[str, str], str] = {}
        # The app card (task_id) each response_code belongs to: the code of the
        # message that sent it, or the fresh one a click on it carried.
        self._code_tasks: dict[str, str] = {}

    async def since(self, start: int) -> tuple[list[dict[str, Any]], int]:
        """The events from index `start` on, and the index after the last."""
        async with self._lock:
            records = self._emulator.requests[self._read:]
            self._read += len(records)
            bindings = await _group_bindings() if records else {}
            for record in records:
                self._read_record(record, bindings)
        return self.events[max(0, start):], len(self.events)

    def _add(self, chat: str, sender: str, kind: str, via: str, time: str, **fields: Any) -> None:
        if kind == "card":
            card = fields.get("card") or {}
            for button in card.get("button_list") or []:
                self._buttons[(str(card.get("task_id")), str(button.get("key")))] = str(
                    button.get("text", ""))
        self.events.append({"chat": chat, "sender": sender, "kind": kind, "via": via,
                            "time": time, **fields})

    def _read_record(self, record: dict[str, Any], bindings: dict[str, str]) -> None:
        path, time = str(record.get("path", "")), str(record.get("time", ""))
        body = record.get("json")
        if not isinstance(body, dict):
            return
        if record.get("direction") == "callback":
            if path.endswith("/wecom/robot"):
                self._robot_callback(body, record.get("reply") or {}, time)
            elif path.endswith("/wecom/app"):
                self._app_callback(body, time)
            return
        answer = record.get("answer") or {}
        if answer.get("errcode") != 0:
            return
        if "/emulator/response_url/" in path:
            chat = self._reply_chats.get(path.rsplit("/", 1)[-1])
            if chat is not None:
                self._message(chat, "response_url", body, time)
            return
        call = path.split("/cgi-bin/", 1)[-1]
        if call == "message/send":
            card = body.get("template_card")
            if isinstance(card, dict) and answer.get("response_code"):
                self._code_tasks[str(answer["response_code"])] = str(card.get("task_id"))
            for userid in str(body.get("touser", "")).split("|"):
                if userid:
                    self._message(app_chat(userid), "app", body, time)
        elif call == "message/update_template_card":
            update = self._card_update(body)
            for userid in body.get("userids") or []:
                self._add(app_chat(str(userid)), _BOT, "card_update", "app", time, **update)
        elif call == "webhook/send":
            key = str((record.get("query") or {}).get("key", ""))
            self._message(bindings.get(f"hook:{key}", f"hook:{key}"), "webhook", body, time)
        elif call == "ws:aibot_send_msg":  # the robot's push over its long connection
            self._message(str(body.get("chatid", "")), "robot", body, time)
        elif call == "appchat/send":
            chatid = str(body.get("chatid", ""))
            self._message(bindings.get(f"appchat:{chatid}", chatid), "appchat", body, time)

    def _robot_callback(self, message: dict[str, Any], reply: Any, time: str) -> None:
        userid = str((message.get("from") or {}).get("userid", ""))
        chat = str(message.get("chatid") or f"robot:{userid}")
        self._reply_chats[str(message.get("response_url", "")).rsplit("/", 1)[-1]] = chat
        if message.get("msgtype") == "text":
            self._add(chat, userid, "text", "robot", time,
                      text=str((message.get("text") or {}).get("content", "")))
        elif message.get("msgtype") == "event":
            event = message.get("event") or {}
            click = event.get("template_card_event") or event
            self._click(chat, userid, "robot", str(click.get("task_id")),
                        str(click.get("event_key")), time)
        if not isinstance(reply, dict):
            return
        if reply.get("response_type") == "update_template_card":
            card = reply.get("template_card") or {}
            self._add(chat, _BOT, "card_update", "robot", time, task_id=card.get("task_id"),
                      card=card)
            return
        if isinstance(reply.get("stream"), dict):
            self._add(chat, _BOT, "markdown", "robot", time,
                      text=str(reply["stream"].get("content", "")))
        if isinstance(reply.get("template_card"), dict):
            card = reply["template_card"]
            self._add(chat, _BOT, "card", "robot", time, task_id=card.get("task_id"), card=card)

    def _app_callback(self, fields: dict[str, Any], time: str) -> None:
        userid = str(fields.get("FromUserName", ""))
        if fields.get("MsgType") == "text":
            self._add(app_chat(userid), userid, "text", "app", time,
                      text=str(fields.get("Content", "")))
        elif fields.get("Event") == "template_card_event":
            task_id = str(fields.get("TaskId"))
            self._code_tasks[str(fields.get("ResponseCode"))] = task_id
            self._click(app_chat(userid), userid, "app", task_id, str(fields.get("EventKey")),
                        time)

    def _click(self, chat: str, userid: str, via: str, task_id: str, key: str,
               time: str) -> None:
        label = self._buttons.get((task_id, key), key)
        self._add(chat, userid, "click", via, time, task_id=task_id, text=label)

    def _card_update(self, body: dict[str, Any]) -> dict[str, Any]:
        """What message/update_template_card changes, and on which card: the
        whole card, or its buttons' label."""
        task_id = self._code_tasks.get(str(body.get("response_code")))
        card = body.get("template_card")
        if isinstance(card, dict):
            return {"task_id": card.get("task_id") or task_id, "card": card}
        button = body.get("button") if isinstance(body.get("button"), dict) else {}
        return {"task_id": task_id, "replace_name": str(button.get("replace_name", ""))}

    def _message(self, chat: str, via: str, body: dict[str, Any], time: str) -> None:
        """One message the bot sent: text, markdown, a card, or a summary of the rest."""
        msgtype = str(body.get("msgtype", ""))
        content = body.get(msgtype) if isinstance(body.get(msgtype), dict) else {}
        if msgtype in ("text", "markdown", "markdown_v2"):
            kind = "text" if msgtype == "text" else "markdown"
            self._add(chat, _BOT, kind, via, time, text=str(content.get("content", "")))
        elif msgtype == "template_card":
            self._add(chat, _BOT, "card", via, time, task_id=content.get("task_id"),
                      card=content)
        elif msgtype == "textcard":
            text = f"**{content.get('title', '')}**\n{content.get('description', '')}"
            self._add(chat, _BOT, "markdown", via, time, text=text)
        elif msgtype == "image" and (src := self._image_src(content)):
            self._add(chat, _BOT, "image", via, time, src=src)
        else:
            self._add(chat, _BOT, "text", via, time, text=f"[{msgtype}]")


    def _image_src(self, image: dict[str, Any]) -> str:
        """Where the page loads an image from: the webhook's own base64 (a
        report's chart), or an uploaded media_id served by api/media."""
        if image.get("base64"):
            raw = base64.b64decode(str(image["base64"]))
            kind = "png" if raw.startswith(b"\x89PNG") else "jpeg"
            return f"data:image/{kind};base64,{image['base64']}"
        media_id = str(image.get("media_id", ""))
        return f"api/media/{media_id}" if media_id in self._emulator.media else ""


async def _group_bindings() -> dict[str, str]:
    """Each group's chatid by its webhook key (`hook:KEY`) and app chat id (`appchat:ID`)."""
    bindings: dict[str, str] = {}
    for group in await GroupChat.all().values("chatid", "webhook_key", "app_chat_id"):
        if group["webhook_key"]:
            bindings[f"hook:{group['webhook_key']}"] = group["chatid"]
        if group["app_chat_id"]:
            bindings[f"appchat:{group['app_chat_id']}"] = group["chatid"]
    return bindings


class _Say(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    userid: str = Field(min_length=1, max_length=64)
    chatid: str | None = Field(None, max_length=128)
    text: str = Field(min_length=1, max_length=4000)


class _Click(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userid: str = Field(min_length=1, max_length=64)
    chatid: str | None = Field(None, max_length=128)
    task_id: str = Field(min_length=1, max_length=128)
    key: str = Field(min_length=1, max_length=1024)


class ChatPage:
    """The page's handlers, bound to one emulator and the bot's settings."""

    def __init__(self, emulator: WeComEmulator, settings: Settings) -> None:
        self.emulator = emulator
        self.settings = settings
        self.feed = ChatFeed(emulator)

    async def index(self, _request: web.Request) -> web.FileResponse:
        """The page itself."""
        return web.FileResponse(ASSETS / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(self, _request: web.Request) -> web.Response:
        """What the page needs to know: the robot's name, the zone, the intake
        API's token, the dealers and the Chinese labels of the API's values."""
        token = self.settings.api_token
        dealers = await Dealer.all().select_related("region").order_by("id")
        return web.json_response({
            "robot_name": self.settings.wecom_robot_name,
            "timezone": self.settings.timezone,
            "api_token": token.get_secret_value() if token else "",
            "dealers": [{"code": d.code, "name": d.name, "region": d.region.name}
                        for d in dealers],
            "channels": [{"value": c.value, "label": c.label} for c in Channel],
            "labels": {e.value: e.label for e in (*Category, *Status, *OwnerLevel)},
        })

    async def people(self, _request: web.Request) -> web.Response:
        """The directory's active members, call centre and dealers first."""
        rows = await Staff.filter(active=True).select_related("dealer", "region").order_by("id")
        return web.json_response([{
            "userid": s.userid, "name": s.name, "role": s.role.value, "role_label": s.role.label,
            "dealer": s.dealer.name if s.dealer else "",
            "region": s.region.name if s.region else "",
        } for s in rows])

    async def groups(self, _request: web.Request) -> web.Response:
        """The group chats the bot serves."""
        rows = await GroupChat.all().order_by("id").values("chatid", "name", "kind")
        return web.json_response(rows)

    async def say(self, request: web.Request) -> web.Response:
        """A member writes: in a group to the robot (the @-name is added when
        missing, as only mentions reach it), else to the app."""
        said, refusal = await _body(request, _Say)
        if refusal is not None:
            return refusal
        assert isinstance(said, _Say)
        try:
            if said.chatid:
                mention = f"@{self.settings.wecom_robot_name}"
                text = said.text if mention in said.text else f"{mention} {said.text}"
                await self.emulator.robot_message(said.userid, said.chatid, text)
            else:
                await self.emulator.app_message(said.userid, said.text)
        except EmulatorError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        return web.json_response({"ok": True})

    async def click(self, request: web.Request) -> web.Response:
        """A member clicks a button: a robot card in a group, else an app card."""
        clicked, refusal = await _body(request, _Click)
        if refusal is not None:
            return refusal
        assert isinstance(clicked, _Click)
        try:
            if clicked.chatid:
                await self.emulator.robot_click(clicked.userid, clicked.chatid, clicked.task_id,
                                                clicked.key)
            else:
                await self.emulator.app_click(clicked.userid, clicked.task_id, clicked.key)
        except EmulatorError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        return web.json_response({"ok": True})

    async def media(self, request: web.Request) -> web.Response:
        """An image the bot uploaded (media/upload), by its media_id."""
        raw = self.emulator.media.get(request.match_info["media_id"])
        if raw is None:
            return web.json_response({"error": "no such media"}, status=404)
        kind = "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg"
        return web.Response(body=raw, content_type=kind)

    async def events(self, request: web.Request) -> web.Response:
        """The chat events from `since` on."""
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        events, following = await self.feed.since(since)
        return web.json_response({"events": events, "next": following})


async def _body(
    request: web.Request, model: type[BaseModel]
) -> tuple[BaseModel | None, web.Response | None]:
    try:
        return model.model_validate(await request.json()), None
    except ValueError as exc:  # bad JSON, or a ValidationError
        detail = exc.errors() if isinstance(exc, ValidationError) else str(exc)
        return None, web.json_response({"error": "invalid request", "detail": str(detail)},
                                       status=400)


def _asset(name: str) -> Any:
    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(ASSETS / name, headers={"Cache-Control": "no-cache"})

    return serve


def mount_chat_page(emulator: WeComEmulator, settings: Settings) -> ChatPage:
    """Add the page and its JSON API to the emulator's application."""
    page = ChatPage(emulator, settings)
    router = emulator.app.router
    router.add_get("/", page.index)
    for name in ("app.js", "style.css"):
        router.add_get(f"/{name}", _asset(name))
    router.add_get("/api/config", page.config)
    router.add_get("/api/people", page.people)
    router.add_get("/api/groups", page.groups)
    router.add_get("/api/feed", page.events)
    router.add_get("/api/media/{media_id}", page.media)
    router.add_post("/api/say", page.say)
    router.add_post("/api/click", page.click)
    return page
