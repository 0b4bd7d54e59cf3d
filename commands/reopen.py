"""/reopen (重新打开): a closed or staged-closed ticket comes back to its owner
with a fresh clock."""

from __future__ import annotations

from bot.domain.transitions import reopen
from commands.base import Reply
from commands.command import Call, Command, split_number


async def _reopen(call: Call) -> Reply:
    number, reason = split_number(call.args)
    ctx = call.ctx
    return await call.apply(number, lambda t: reopen(t, call.actor, reason, ctx.now))


COMMAND = Command(
    name="reopen",
    alias="重新打开",
    summary="重新打开已结案或阶段性结案的投诉，重新计时（区域、本部或呼叫中心）",
    usage="/reopen 编号 [原因]",
    example="/reopen 4 客户再次来电",
    handler=_reopen,
)
