"""/respond (响应), and the 处理 button on a ticket card: the owner has
contacted the customer and confirmed the demand (R12, R17)."""

from __future__ import annotations

from bot.domain.deadlines import pending_deadlines
from bot.domain.permissions import Action, check, may_see_customer
from bot.domain.ticket import Actor, Refused
from bot.domain.transitions import respond
from bot.render.cards import load_view, view_of
from bot.render.chat import render_outcome
from commands.base import CardClick, Context, Reply
from commands.command import Command, text_command


async def _click(click: CardClick, ctx: Context, actor: Actor, number: int) -> Reply:
    """处理 on a card: respond, and answer with the same card (same task_id)
    showing who responded. A stale card (already responded, closed, not this
    person's) gets its current state and the reason."""
    try:
        outcome = await ctx.ledger.apply(
            number, lambda t: respond(t, actor, "", ctx.now),
            actor=actor, source="chat", now=ctx.now,
        )
    except Refused as exc:
        view = await load_view(number)
        if view is None:
            raise
        try:
            check(actor, view.ticket, Action.VIEW)
        except Refused:
            return Reply(markdown=f"⛔ {exc.reason}")
        card = view.card(ctx.zone, task_id=click.task_id,
                         show_customer=may_see_customer(actor, view.ticket),
                         in_group=click.chatid is not None)
        return Reply(markdown=f"ℹ️ {exc.reason}", card=card)
    # The card from the change itself: the ledger stored these clocks, and the responder.
    ticket = outcome.ticket
    policy = await ctx.ledger.policies.get(ticket.policy_version)
    view = await view_of(ticket, pending_deadlines(ticket, policy), actor.name or actor.userid)
    card = view.card(ctx.zone, task_id=click.task_id, show_customer=True,
                     in_group=click.chatid is not None)
    return Reply(markdown=render_outcome(outcome, actor, ctx.zone, now=ctx.now), card=card)


COMMAND = Command(
    name="respond",
    alias="响应",
    summary="已联系客户、确认诉求，标记响应（R12：派单后 2 小时内）",
    usage="/respond 编号 [说明]",
    example="/respond 1 已电话联系客户，确认诉求",
    handler=text_command(respond),
    click=_click,
)
