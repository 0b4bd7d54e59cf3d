"""The emulator's address book (通讯录): departments, members and tags, served
as WeChat Work's documented JSON (errcode/errmsg, access_token checked like
every other emulated call), for directory sync tests and the demo.

    department/list?id=          {"department": [{id, name, parentid, order}]}
    user/list?department_id=&fetch_child=   {"userlist": [member, ...]}
    user/list_id  POST {cursor, limit}      {"next_cursor", "dept_user": [{userid, department}]}
    user/get?userid=             member fields at the top level
    tag/list                     {"taglist": [{tagid, tagname}]}
    tag/get?tagid=               {"tagname", "userlist": [{userid, name}], "partylist": []}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bot.wecom.emulator import WeComEmulator

_PAGE_MAX = 10000  # user/list_id answers at most this many per page


class EmulatedDirectory:
    """The members, departments and tags the emulated corp has; tests edit them
    in place (`add_department`, `add_member`, `remove_member`, `tag`)."""

    def __init__(self, emulator: WeComEmulator) -> None:
        self._emulator = emulator
        self.departments: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "总部", "parentid": 0, "order": 1}}
        self.members: dict[str, dict[str, Any]] = {}
        self.tags: dict[int, dict[str, Any]] = {}
        router = emulator.app.router
        router.add_get("/cgi-bin/department/list", self._department_list)
        router.add_get("/cgi-bin/user/list", self._user_list)
        router.add_post("/cgi-bin/user/list_id", self._user_list_id)
        router.add_get("/cgi-bin/user/get", self._user_get)
        router.add_get("/cgi-bin/tag/list", self._tag_list)
        router.add_get("/cgi-bin/tag/get", self._tag_get)

    # -- control -----------------------------------------------------------

    def add_department(self, dept_id: int, name: str, parentid: int = 1) -> None:
        """Create (or rename) a department under `parentid`."""
        self.departments[dept_id] = {"id": dept_id, "name": name, "parentid": parentid,
                                     "order": dept_id}

    def add_member(self, userid: str, name: str, departments: list[int], **fields: Any) -> None:
        """Create or replace a member; `fields` are e.g. email, mobile, position, status."""
        self.members[userid] = {"userid": userid, "name": name, "department": departments,
                                "position": "", "mobile": "", "email": "", "status": 1,
                                "enable": 1, **fields}

    def remove_member(self, userid: str) -> None:
        """The member is deleted from the corp (someone who left)."""
        self.members.pop(userid, None)
        for tag in self.tags.values():
            tag["userlist"].discard(userid)

    def tag(self, tagid: int, tagname: str, userids: list[str]) -> None:
        """Create the tag if need be and put `userids` on it."""
        tag = self.tags.setdefault(tagid, {"tagname": tagname, "userlist": set()})
        tag["tagname"] = tagname
        tag["userlist"].update(userids)

    # -- the API -----------------------------------------------------------

    def _subtree(self, root: int) -> set[int]:
        found, frontier = {root}, [root]
        while frontier:
            parent = frontier.pop()
            children = [d for d, dept in self.departments.items() if dept["parentid"] == parent]
            found.update(children)
            frontier.extend(children)
        return found

    async def _refused(self, request: web.Request, body: Any = None) -> tuple[dict, Any]:
        # GET calls carry no body: an empty one passes the emulator's checks.
        return await self._emulator._checked(request, body={} if body is None else body)

    def _ok(self, request: web.Request, body: Any, answer: dict[str, Any]) -> web.Response:
        return self._emulator._answer(request, body, {"errcode": 0, "errmsg": "ok", **answer})

    def _error(self, request: web.Request, body: Any, errcode: int, errmsg: str) -> web.Response:
        return self._emulator._answer(request, body, {"errcode": errcode, "errmsg": errmsg})

    async def _department_list(self, request: web.Request) -> web.Response:
        body, refusal = await self._refused(request)
        if refusal is not None:
            return refusal
        root = request.query.get("id", "")
        if root and (not root.isdigit() or int(root) not in self.departments):
            return self._error(request, body, 60123, "invalid party id")
        ids = self._subtree(int(root)) if root else set(self.departments)
        return self._ok(request, body, {"department": [self.departments[d] for d in sorted(ids)]})

    async def _user_list(self, request: web.Request) -> web.Response:
        body, refusal = await self._refused(request)
        if refusal is not None:
            return refusal
        dept = request.query.get("department_id", "")
        if not dept.isdigit() or int(dept) not in self.departments:
            return self._error(request, body, 60123, "invalid party id")
        wanted = self._subtree(int(dept)) if request.query.get("fetch_child") == "1" \
            else {int(dept)}
        users = [m for m in self.members.values() if wanted & set(m["department"])]
        return self._ok(request, body, {"userlist": sorted(users, key=lambda m: m["userid"])})

    async def _user_list_id(self, request: web.Request) -> web.Response:
        body, refusal = await self._emulator._checked(request)
        if refusal is not None:
            return refusal
        cursor, limit = body.get("cursor") or "0", body.get("limit", _PAGE_MAX)
        if not str(cursor).isdigit() or not isinstance(limit, int) or not 1 <= limit <= _PAGE_MAX:
            return self._error(request, body, 40058, "invalid cursor or limit")
        userids = sorted(self.members)
        start = int(cursor)
        page = userids[start:start + limit]
        following = start + limit
        return self._ok(request, body, {
            "next_cursor": str(following) if following < len(userids) else "",
            "dept_user": [{"userid": u, "department": d} for u in page
                          for d in self.members[u]["department"]],
        })

    async def _user_get(self, request: web.Request) -> web.Response:
        body, refusal = await self._refused(request)
        if refusal is not None:
            return refusal
        member = self.members.get(request.query.get("userid", ""))
        if member is None:
            return self._error(request, body, 60111, "userid not found")
        return self._ok(request, body, member)

    async def _tag_list(self, request: web.Request) -> web.Response:
        body, refusal = await self._refused(request)
        if refusal is not None:
            return refusal
        return self._ok(request, body, {"taglist": [
            {"tagid": t, "tagname": tag["tagname"]} for t, tag in sorted(self.tags.items())]})

    async def _tag_get(self, request: web.Request) -> web.Response:
        body, refusal = await self._refused(request)
        if refusal is not None:
            return refusal
        tagid = request.query.get("tagid", "")
        tag = self.tags.get(int(tagid)) if tagid.isdigit() else None
        if tag is None:
            return self._error(request, body, 40068, "invalid tagid")
        return self._ok(request, body, {
            "tagname": tag["tagname"], "partylist": [],
            "userlist": [{"userid": u, "name": self.members[u]["name"]}
                         for u in sorted(tag["userlist"]) if u in self.members],
        })
