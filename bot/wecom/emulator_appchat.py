"""The emulator's app-created groups: `appchat/create` and `appchat/update`
(members added) as WeChat Work checks them.

Kept apart from bot/wecom/emulator.py, which registers it (`AppChats.mount`).
A group records its name, owner and members; `appchat/send` stays the
emulator's own."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bot.wecom.emulator import WeComEmulator

_CHATID = re.compile(r"^[0-9A-Za-z]{1,32}$")
_USERLIST = (2, 2000)
_NAME_MAX = 50

# Error codes of appchat/create (global error code table).
INVALID_CHATID = 86001
INVALID_NAME = 86004
INVALID_OWNER = 86005
INVALID_MEMBER_COUNT = 86006
INVALID_MEMBER = 86216
CHAT_EXISTS = 86215


class AppChats:
    """The groups the app created, by chatid: {"name", "owner", "userlist"}."""

    def __init__(self, emulator: WeComEmulator) -> None:
        self.emulator = emulator
        self.chats: dict[str, dict[str, Any]] = {}

    @classmethod
    def mount(cls, emulator: WeComEmulator) -> AppChats:
        """Serve appchat/create on `emulator`; the registry it fills."""
        chats = cls(emulator)
        emulator.app.router.add_post("/cgi-bin/appchat/create", chats.create)
        emulator.app.router.add_post("/cgi-bin/appchat/update", chats.update)
        return chats

    def adopt(self, chatid: str, userlist: list[str], name: str = "") -> None:
        """A group the app created before (outside this run), so it may post there."""
        self.chats[chatid] = {"name": name, "owner": userlist[0], "userlist": list(userlist)}

    def posts(self, chatid: str) -> list[str]:
        """The markdown posted into one group (appchat/send), oldest first."""
        return [r["json"]["markdown"]["content"] for r in self.emulator.sent("appchat/send")
                if r["json"].get("chatid") == chatid and r["answer"].get("errcode") == 0
                and r["json"].get("msgtype") == "markdown"]

    async def create(self, request: web.Request) -> web.Response:
        """appchat/create {name, owner?, userlist, chatid?}; answers the chatid."""
        emulator = self.emulator
        body, refusal = await emulator._checked(request)
        if refusal is not None:
            return refusal
        problem = self._problem(body)
        if problem is not None:
            return emulator._answer(request, body, problem)
        chatid = str(body.get("chatid") or "") or f"wr{secrets.token_hex(12)}"
        userlist = list(dict.fromkeys(body["userlist"]))
        self.chats[chatid] = {"name": str(body.get("name", ""))[:_NAME_MAX],
                              "owner": body.get("owner") or userlist[0],
                              "userlist": userlist}
        return emulator._answer(request, body, {"errcode": 0, "errmsg": "ok", "chatid": chatid})

    async def update(self, request: web.Request) -> web.Response:
        """appchat/update {chatid, add_user_list?, …}: members added (one
        already there stays once); only a group this app created."""
        emulator = self.emulator
        body, refusal = await emulator._checked(request)
        if refusal is not None:
            return refusal
        chat = self.chats.get(str(body.get("chatid") or ""))
        if chat is None:
            return emulator._answer(request, body, {"errcode": INVALID_CHATID,
                                                    "errmsg": "chatid invalid"})
        added = body.get("add_user_list", [])
        if not isinstance(added, list) or not all(isinstance(u, str) and u for u in added):
            return emulator._answer(request, body, {"errcode": INVALID_MEMBER,
                                                    "errmsg": "invalid add_user_list"})
        known = emulator.known_users
        if known is not None and not set(added) <= known:
            return emulator._answer(request, body, {
                "errcode": INVALID_MEMBER,
                "errmsg": f"invalid userid {sorted(set(added) - known)[0]}"})
        members = list(dict.fromkeys([*chat["userlist"], *added]))
        if len(members) > _USERLIST[1]:
            return emulator._answer(request, body, {"errcode": INVALID_MEMBER_COUNT,
                                                    "errmsg": "at most 2000 members"})
        chat["userlist"] = members
        return emulator._answer(request, body, {"errcode": 0, "errmsg": "ok"})

    def _problem(self, body: dict[str, Any]) -> dict[str, Any] | None:
        userlist = body.get("userlist")
        if not isinstance(userlist, list) or not all(
                isinstance(u, str) and u for u in userlist):
            return {"errcode": INVALID_MEMBER, "errmsg": "invalid userlist"}
        members = set(userlist)
        if not _USERLIST[0] <= len(members) <= _USERLIST[1]:
            return {"errcode": INVALID_MEMBER_COUNT,
                    "errmsg": "userlist: 2 to 2000 members"}
        known = self.emulator.known_users
        if known is not None and not members <= known:
            return {"errcode": INVALID_MEMBER,
                    "errmsg": f"invalid userid {sorted(members - known)[0]}"}
        owner = body.get("owner")
        if owner is not None and owner not in members:
            return {"errcode": INVALID_OWNER, "errmsg": "owner not in userlist"}
        if not isinstance(body.get("name", ""), str):
            return {"errcode": INVALID_NAME, "errmsg": "invalid name"}
        chatid = body.get("chatid")
        if chatid is not None and chatid != "":
            if not isinstance(chatid, str) or not _CHATID.match(chatid):
                return {"errcode": INVALID_CHATID,
                        "errmsg": "chatid: at most 32 of [0-9A-Za-z]"}
            if chatid in self.chats:
                return {"errcode": CHAT_EXISTS, "errmsg": "chatid already exists"}
        return None
