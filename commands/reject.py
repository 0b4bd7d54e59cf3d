"""/reject (驳回), and the 驳回 button of an approval card (R19, R25): a
rejection always records its reason, so the button asks for it."""

from __future__ import annotations

from bot.approvals import decidable
from bot.domain.ticket import Actor, Refused
from bot.render.approvals import request_title
from commands.approve import decide_and_reply, request_on, show_decided
from commands.base import CardClick, Context, Reply
from commands.command import Call, Command, UsageError, split_number


async def _reject(call: Call) -> Reply:
    number, reason = split_number(call.args)
    if not reason:
        raise UsageError("驳回须说明原因。")
    request_id = await request_on(call, number)
    return await decide_and_reply(call.ctx, call.actor, request_id, approve=False,
                                  reason=reason)


async def _click(click: CardClick, ctx: Context, actor: Actor, request_id: int) -> Reply:
    """驳回 on an approval card (key `reject:<request id>`): nothing is decided
    until the reason is sent; a decided request, or someone not its approver,
    gets the same answer as a decision would."""
    try:
        req, _ = await decidable(request_id, actor, now=ctx.now, zone=ctx.zone)
    except Refused:
        await show_decided(request_id, click.task_id, ctx)
        raise
    number = req.ticket_id  # type: ignore[attr-defined]
    return Reply(markdown=f"请回复“/reject {number} 驳回原因”以驳回 #{number} 的"
                          f"{request_title(req)}（驳回须说明原因）。")


COMMAND = Command(
    name="reject",
    alias="驳回",
    summary="驳回待您审批的申请，须说明原因（也可点审批卡片上的“驳回”后回复原因）",
    usage="/reject 编号 原因",
    handler=_reject,
    click=_click,
    example="/reject 1024 协商记录不全，请补充",
)
