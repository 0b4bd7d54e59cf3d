"""/show (查看): a ticket in full, as markdown and as a card with its 处理 button."""

from __future__ import annotations

from bot.approvals import approved_compensations
from bot.attachments import attachments_of
from bot.domain.approvals import yuan
from bot.domain.permissions import Action, check, group_may_see_details, may_see_customer
from bot.domain.ticket import Refused
from bot.intake import related_numbers
from bot.render.approvals import staff_names
from bot.render.attachments import attachments_markdown, card_links
from bot.render.cards import load_view, new_task_id
from bot.render.chat import render_ticket, short_time, subject_text
from bot.render.notices import duration_text
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number
from models import Attachment


async def _show(call: Call) -> Reply:
    number, rest = split_number(call.args)
    if rest:
        raise UsageError(f"无法识别“{rest}”。")
    view = await load_view(number)
    if view is None:
        raise Refused(f"没有编号为 #{number} 的投诉。")
    check(call.actor, view.ticket, Action.VIEW)  # R22: the employee complained about is refused
    zone = call.ctx.zone
    # R22: in a group, a complaint about an employee shows nothing of the
    # customer or the complaint; one to one, handlers read whom it is about.
    ticket = view.ticket
    subject = subject_text(ticket, await staff_names([ticket.about_staff]))
    markdown = render_ticket(
        ticket, zone,
        reveal=not call.in_group and may_see_customer(call.actor, ticket),
        deadlines=view.deadlines, dealer_name=view.dealer_name, responder=view.responder,
        in_group=call.in_group, subject=subject,
    )
    card = view.card(zone, task_id=new_task_id(number),
                     show_customer=may_see_customer(call.actor, ticket),
                     in_group=call.in_group)
    # R25: approved compensations belong to the ticket as people see it.
    granted = [f"赔偿 {yuan(r.amount)} 已批准（{short_time(r.decided_at, zone)}）"
               for r in await approved_compensations(number)]
    if granted:
        markdown += "".join(f"\n> {line}" for line in granted)
        card["sub_title_text"] = "；".join(granted) + "｜" + card["sub_title_text"]
    # R6: other problems of the same vehicle, linked both ways (not repeats).
    related = await related_numbers(number, view.ticket.related_to)
    if related:
        numbers = "、".join(f"#{n}" for n in related)
        markdown += f"\n> 关联投诉（同一车辆的其他问题）：{numbers}"
        card["sub_title_text"] = f"关联 {numbers}｜" + card["sub_title_text"]
    # R22: a group never sees a complaint about an employee's files, not even their names.
    if not call.in_group or group_may_see_details(ticket):
        rows = await attachments_of(number)
        if rows:
            markdown += _with_attachments(call, number, rows, card)
    return Reply(markdown=markdown, card=card)


def _with_attachments(call: Call, number: int, rows: list[Attachment], card: dict) -> str:
    """The attachments block of the markdown, with signed links; the card
    gets their count and links to the newest three."""
    kit = call.ctx.attachments
    rules = call.ctx.ledger.policies.current.attachments
    links = {row.id: kit.link(row, call.ctx.now, rules) if kit else None for row in rows}
    card["sub_title_text"] = f"附件 {len(rows)} 个｜" + card["sub_title_text"]
    jumps = card_links(rows, links)
    if jumps:
        card["jump_list"] = jumps
    return attachments_markdown(number, rows, links, call.ctx.zone,
                                lifetime_text=duration_text(rules.link_lifetime))


COMMAND = Command(
    name="show",
    alias="查看",
    summary="查看投诉详情和处理卡片（群内客户电话、VIN 脱敏）",
    usage="/show 编号",
    handler=_show,
    reads_only=True,
)
