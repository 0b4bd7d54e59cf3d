"""/ack (确认预警): brand division management or legal confirm they have the
warning of a major complaint (R9), which stops its reminder."""

from __future__ import annotations

from bot.domain.transitions import acknowledge_major
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number


async def _ack(call: Call) -> Reply:
    number, rest = split_number(call.args)
    if rest:
        raise UsageError(f"无法识别“{rest}”。")
    ctx = call.ctx
    return await call.apply(number, lambda t: acknowledge_major(t, call.actor, ctx.now))


COMMAND = Command(
    name="ack",
    alias="确认预警",
    summary="确认已收到重大投诉预警（R9，品牌事业部管理部或法务部）",
    usage="/ack 编号",
    handler=_ack,
    example="/ack 1024",
)
