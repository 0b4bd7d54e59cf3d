"""/dispute (异议): within 24 h of dispatch the dealer says the ticket is not
theirs or not a complaint; the call centre verifies (R11)."""

from __future__ import annotations

from bot.domain.transitions import dispute
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number, ticket_policy


async def _dispute(call: Call) -> Reply:
    number, reason = split_number(call.args)
    if not reason:
        raise UsageError("提出异议须说明原因。")
    ctx = call.ctx
    policy = await ticket_policy(ctx, number)
    return await call.apply(number, lambda t: dispute(t, call.actor, reason, policy, ctx.now))


COMMAND = Command(
    name="dispute",
    alias="异议",
    summary="对派单提出异议（派错经销商、不属于投诉），由呼叫中心核实（R11：派单后 24 小时内）",
    usage="/dispute 编号 原因",
    example="/dispute 2 该车在杭州西湖店购买和维修，派错经销商",
    handler=_dispute,
)
