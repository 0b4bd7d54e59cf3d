"""/major (重大): the store or region judges a complaint major (R7); the
dealer's leaders, brand division and legal are told (R8, R9)."""

from __future__ import annotations

from bot.domain.transitions import mark_major
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number


async def _major(call: Call) -> Reply:
    number, reason = split_number(call.args)
    if not reason:
        raise UsageError("请说明判定为重大投诉的原因。")
    ctx = call.ctx
    return await call.apply(number, lambda t: mark_major(t, call.actor, reason, ctx.now))


COMMAND = Command(
    name="major",
    alias="重大投诉",
    summary="标记为重大投诉，立即通知经销商负责人、总经理、品牌事业部和法务部（R7–R9）",
    usage="/major 编号 原因",
    handler=_major,
    example="/major 1024 客户在展厅闹事",
)
