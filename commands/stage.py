"""/stage (阶段性结案): the owning region or HQ asks to close a hard case in
stages (R19); the approver gets a card with 批准 / 驳回."""

from __future__ import annotations

from bot.approvals import open_request
from bot.domain.transitions import request_staged_closure
from bot.ledger import UnderPolicy
from bot.render.chat import render_outcome
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number


async def _stage(call: Call) -> Reply:
    number, reason = split_number(call.args)
    if not reason:
        raise UsageError("请说明申请阶段性结案的原因。")
    ctx = call.ctx
    outcome, req = await open_request(
        ctx.ledger, number,
        UnderPolicy(lambda t, policy: request_staged_closure(t, call.actor, reason, policy,
                                                            ctx.now)),
        kind="staged_closure", actor=call.actor, reason=reason, now=ctx.now, zone=ctx.zone,
    )
    text = render_outcome(outcome, call.actor, ctx.zone, now=ctx.now)
    return Reply(markdown=f"{text}\n审批卡片已发送给审批人（审批单 {req.id}）。")


COMMAND = Command(
    name="stage",
    alias="阶段性结案",
    summary="申请阶段性结案（先告一段落，以后可重新打开），由二级经理（第二次起高级经理）审批（R19，区域或本部）",
    usage="/stage 编号 原因",
    handler=_stage,
    example="/stage 1024 客户要求全额退车，已三次协商未果",
)
