"""/assign (指派): hand the ticket to a person who may act on it (R20)."""

from __future__ import annotations

from bot.directory import actor_for
from bot.domain.ticket import Refused
from bot.domain.transitions import assign
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number


async def _assign(call: Call) -> Reply:
    number, rest = split_number(call.args)
    userid = rest.lstrip("@").strip()
    if not userid or " " in userid:
        raise UsageError("请给出一位被指派人的企业微信账号（例如 @sh.chen）。")
    assignee = await actor_for(userid)
    if assignee is None:
        raise Refused(f"找不到成员 {userid}（或已停用），#{number} 未指派。")
    ctx = call.ctx
    return await call.apply(
        number, lambda t: assign(t, call.actor, assignee, ctx.now),
        names={assignee.userid: assignee.display},
    )


COMMAND = Command(
    name="assign",
    alias="指派",
    summary="把投诉指派给有权处理的同事（R20：谁接手谁负责）",
    usage="/assign 编号 @账号",
    example="/assign 3 @sh.chen",
    handler=_assign,
)
