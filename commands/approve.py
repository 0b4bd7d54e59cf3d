"""/approve (批准), and the 批准 button of an approval card (R19, R25): the
approver, or their delegate, approves an open request."""

from __future__ import annotations

from bot.approvals import cancelled_text, decide, open_requests_for
from bot.card_copies import refresh_copies
from bot.domain.ticket import Actor, Refused
from bot.render.approvals import decision_text, request_card, request_title, staff_names
from commands.base import CardClick, Context, Reply
from commands.command import Call, Command, split_number
from models import ApprovalRequest, TicketEvent


async def decide_and_reply(
    ctx: Context, actor: Actor, request_id: int, *, approve: bool, reason: str,
    task_id: str | None = None,
) -> Reply:
    """Decide request `request_id` and answer with what was decided; with
    `task_id` (a click) the answer carries the clicked card as it now stands."""
    try:
        req, _ = await decide(ctx.ledger, request_id, actor, approve=approve, reason=reason,
                              now=ctx.now, zone=ctx.zone)
    except Refused:
        if task_id:
            await show_decided(request_id, task_id, ctx)
        raise
    names = await staff_names([req.decided_by, req.decided_on_behalf_of])
    markdown = (f"#{req.ticket_id} 的{request_title(req)}"  # type: ignore[attr-defined]
                f"{decision_text(req, ctx.zone, names)}")
    if reason:
        markdown += f"\n> 意见：{reason}"
    card = await request_card(req, ctx.zone, task_id=task_id) if task_id else None
    return Reply(markdown=("✅ " if approve else "↩️ ") + markdown, card=card)


async def show_decided(request_id: int, task_id: str, ctx: Context) -> None:
    """A click on the card of a request no longer open (decided by command,
    or cancelled, while the card's code was used up): the click's fresh code
    replaces the card with its state, so it stops offering the buttons."""
    req = await ApprovalRequest.get_or_none(id=request_id)
    if req is None or req.status == "open":
        return
    number: int = req.ticket_id  # type: ignore[attr-defined]
    event = await TicketEvent.filter(ticket_id=number).order_by("-id").first()
    if event is not None:
        await refresh_copies({number: event.id}, now=ctx.now, task_prefix=task_id)


async def request_on(call: Call, number: int) -> int:
    """The open request on ticket `number` the caller may decide (the oldest);
    refused, saying why, when the caller's last one was cancelled."""
    found = await open_requests_for(number, call.actor, call.ctx.now)
    if not found:
        cancelled = await open_requests_for(number, call.actor, call.ctx.now,
                                            status="cancelled")
        if cancelled:
            raise Refused(cancelled_text(cancelled[-1]))
        raise Refused(f"#{number} 没有待您审批的申请。")
    return found[0].id


async def _approve(call: Call) -> Reply:
    number, note = split_number(call.args)
    request_id = await request_on(call, number)
    return await decide_and_reply(call.ctx, call.actor, request_id, approve=True, reason=note)


async def _click(click: CardClick, ctx: Context, actor: Actor, request_id: int) -> Reply:
    """批准 on an approval card (key `approve:<request id>`)."""
    return await decide_and_reply(ctx, actor, request_id, approve=True, reason="",
                                  task_id=click.task_id)


COMMAND = Command(
    name="approve",
    alias="批准",
    summary="批准待您审批的阶段性结案或赔偿申请（也可点审批卡片上的“批准”）",
    usage="/approve 编号 [意见]",
    handler=_approve,
    click=_click,
    example="/approve 1024 同意",
)
