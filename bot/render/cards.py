"""WeChat Work template cards (button_interaction) for tickets.

Limits from WECOM.md: `task_id` at most 128 bytes of [0-9A-Za-z_-@], unique per
card instance; at most 6 buttons and 6 horizontal rows. Every card leaves here
checked against them, and never carries the customer's phone or VIN unmasked:
cards are forwarded, screenshotted and shown in groups.

`load_view` reads a stored ticket as people see it (pending deadlines,
dealer's name, who responded); the commands and the outbox build cards from it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.directory import actor_for
from bot.domain.deadlines import Deadline
from bot.domain.enums import Clock
from bot.domain.permissions import Action, group_may_see_details, may, may_see_customer
from bot.domain.ticket import Ticket
from bot.ledger import snapshot
from bot.render.chat import (
    deadline_text,
    owner_text,
    scrub,
    short_time,
    subject_text,
    withheld_text,
)
from bot.render.privacy import mask_phone
from models import RUNNING, Dealer, Staff, TicketEvent
from models import Deadline as DeadlineRow
from models import Ticket as TicketRow

TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
MAX_BUTTONS = 6
MAX_ROWS = 6
RESPOND = "respond"
"""The action of the 处理 button; its key is `respond:NUMBER`."""

# Lengths WeChat Work recommends; longer text is cut with an ellipsis.
_TITLE_DESC = 30
_SUB_TITLE = 112
_ROW_VALUE = 26
_BUTTON_TEXT = 10


_TASK_TICKET = re.compile(r"^ticket(\d+)-")


def new_task_id(number: int, instance: str = "") -> str:
    """A task_id for a new card of ticket `number`: the number and `instance`
    (default a random part), so every card instance differs (a repeated
    task_id is refused, errcode 42014)."""
    return f"ticket{number}-{instance or secrets.token_hex(6)}"


def ticket_of_task(task_id: str) -> int | None:
    """The ticket number a `new_task_id` names; None for any other task_id."""
    match = _TASK_TICKET.match(task_id)
    return int(match.group(1)) if match else None


def respond_key(number: int) -> str:
    """The button key a click on 处理 comes back with."""
    return f"{RESPOND}:{number}"


def ticket_card(
    ticket: Ticket | TicketRow,
    zone: ZoneInfo,
    *,
    task_id: str,
    show_customer: bool,
    deadlines: Sequence[Deadline] = (),
    dealer_name: str = "",
    responder: str = "",
    in_group: bool = False,
    subject: str = "",
    may_respond: bool = True,
) -> dict[str, Any]:
    """A ticket as a button_interaction card.

    While the owner has not responded the card carries a 处理 button (key
    `respond:N`); once responded, or when the ticket is final, the button is
    greyed out with who responded and when (`replace_text`). `show_customer`
    adds the customer's name and masked phone (never for the employee the
    complaint is about, R22). `deadlines` are the pending ones, soonest first.
    A card `in_group` of a complaint about an employee shows nothing of the
    customer, the vehicle or the complaint (R22: that employee may be in the
    group); elsewhere `subject` (see `subject_text`) heads the complaint text.
    A reader who may not respond (`may_respond` False: the ticket moved to
    another level) gets the button greyed out with who holds the ticket."""
    if isinstance(ticket, TicketRow):
        ticket = snapshot(ticket)
    number = ticket.number
    withheld = in_group and not group_may_see_details(ticket)
    rows = []
    if not withheld:
        rows.append(_row("车辆", " ".join(v for v in (ticket.car_model, ticket.plate) if v)))
    if show_customer and not withheld:
        rows.append(_row("客户", f"{ticket.customer_name} {mask_phone(ticket.customer_phone)}"))
    rows.append(_row("经销商", dealer_name or ticket.dealer_code))
    rows.append(_row("状态", f"{ticket.status.label}（{owner_text(ticket)}）"))
    if deadlines:
        rows.append(_row("时限", deadline_text(deadlines[0], zone)))
    if ticket.owner_responded_at is not None:
        rows.append(_row("处理人", f"{responder or '—'} "
                                  f"{short_time(ticket.owner_responded_at, zone)}"))
    card: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": "客户投诉处理"},
        "main_title": {
            "title": f"#{number} {ticket.category.label}",
            "desc": _cut(_title_desc(ticket, zone), _TITLE_DESC),
        },
        "sub_title_text": withheld_text(number) if withheld else _cut(
            (f"被投诉员工：{subject}｜" if subject else "") + scrub(ticket.description, ticket),
            _SUB_TITLE),
        "horizontal_content_list": rows,
        "task_id": task_id,
        "button_list": [{"text": "处理", "style": 1, "key": respond_key(number or 0)}],
    }
    replaced = _replace_text(ticket, zone, responder)
    if not replaced and not may_respond:
        replaced = f"{owner_text(ticket)}，无需您处理"
    if replaced:
        card["replace_text"] = replaced
    check_card(card)
    return card


@dataclass(frozen=True)
class TicketView:
    """A ticket snapshot with its pending deadlines (soonest first), its
    dealer's name, the name of whoever responded (empty if nobody has) and
    the employee the complaint is about (R22, empty if none)."""

    ticket: Ticket
    deadlines: tuple[Deadline, ...]
    dealer_name: str
    responder: str
    subject: str = ""

    def card(
        self, zone: ZoneInfo, *, task_id: str, show_customer: bool, in_group: bool = False,
        may_respond: bool = True,
    ) -> dict[str, Any]:
        """The ticket's template card (`in_group`, `may_respond`: see `ticket_card`)."""
        return ticket_card(
            self.ticket, zone, task_id=task_id, show_customer=show_customer,
            deadlines=self.deadlines, dealer_name=self.dealer_name, responder=self.responder,
            in_group=in_group, subject=self.subject, may_respond=may_respond,
        )


async def pending_deadlines_of(numbers: list[int]) -> dict[int, list[Deadline]]:
    """The deadlines each ticket runs on, soonest first: those not yet due and
    the overdue ones (swept, still running: models.RUNNING), as the domain's
    `pending_deadlines` of the ticket gives them."""
    found: dict[int, list[Deadline]] = {n: [] for n in numbers}
    # By ticket alone (its unique index): with the state in SQL, SQLite walks
    # every pending deadline by (state, due_at) (bench/sweep.py).
    rows = await DeadlineRow.filter(ticket_id__in=numbers).values_list(
        "ticket_id", "clock", "due_at", "state", "id")
    for number, clock, due_at, state, _ in sorted(rows, key=lambda r: (r[2], r[4])):
        if state in RUNNING:
            found[number].append(Deadline(due_at=due_at, clock=Clock(clock)))
    return found


async def load_view(number: int) -> TicketView | None:
    """The ticket `number` as people see it, or None when there is none."""
    row = await TicketRow.get_or_none(id=number)
    if row is None:
        return None
    ticket = snapshot(row)
    deadlines = (await pending_deadlines_of([number]))[number]
    responder = ""
    if ticket.owner_responded_at is not None:
        event = await TicketEvent.filter(ticket_id=number, kind="responded").order_by("-id").first()
        responder = (event.actor_name or event.actor) if event else ""
    return await view_of(ticket, deadlines, responder)


async def view_of(ticket: Ticket, deadlines: Sequence[Deadline], responder: str) -> TicketView:
    """The view of a ticket in hand with its pending deadlines and responder
    (a change just stored them: no need to read them back); only the dealer's
    name and the subject's are read."""
    dealer = await Dealer.get_or_none(code=ticket.dealer_code)
    names = dict(await Staff.filter(userid=ticket.about_staff).values_list("userid", "name")
                 if ticket.about_staff else [])
    return TicketView(ticket, tuple(deadlines), dealer.name if dealer else "", responder,
                      subject_text(ticket, names))


async def member_card(number: int, zone: ZoneInfo, *, task_id: str, userid: str) -> dict[str, Any]:
    """Ticket `number`'s current card for one member (the app's cards): with
    the customer's name and masked phone unless the member may not see them
    (R22) or is no longer in the directory; its 处理 button live only for a
    member who may respond (a copy refreshed after an escalation is not)."""
    view = await load_view(number)
    if view is None:
        raise LookupError(f"no ticket #{number}")
    actor = await actor_for(userid)
    show = actor is not None and may_see_customer(actor, view.ticket)
    return view.card(zone, task_id=task_id, show_customer=show,
                     may_respond=actor is not None and may(actor, view.ticket, Action.RESPOND))


def robot_card(card: dict[str, Any]) -> dict[str, Any]:
    """`card` (rendered for the app) as the smart robot takes it: its
    TemplateCard has no `replace_text` (doc 101032), so a decided card shows
    its state on a single button instead; the full text stays in its rows
    (状态, 处理人, 审批). A click on that button answers with the current card."""
    card = dict(card)
    replaced = card.pop("replace_text", "")
    if replaced and card.get("button_list"):
        first = card["button_list"][0]
        card["button_list"] = [{"text": _cut(replaced.split("：")[0], _BUTTON_TEXT),
                                "style": 2, "key": first["key"]}]
    return card


def check_card(card: dict[str, Any]) -> None:
    """Raise ValueError when a card breaks one of WeChat Work's limits."""
    problems = []
    task_id = card.get("task_id", "")
    if not TASK_ID.match(task_id):
        problems.append(f"task_id {task_id!r} must be 1-128 bytes of [0-9A-Za-z_-@]")
    if len(card.get("button_list", [])) > MAX_BUTTONS:
        problems.append(f"more than {MAX_BUTTONS} buttons")
    if len(card.get("horizontal_content_list", [])) > MAX_ROWS:
        problems.append(f"more than {MAX_ROWS} horizontal rows")
    if any(len(b["key"].encode()) > 1024 for b in card.get("button_list", [])):
        problems.append("a button key is longer than 1024 bytes")
    if problems:
        raise ValueError("invalid template card: " + "; ".join(problems))


def _replace_text(ticket: Ticket, zone: ZoneInfo, responder: str) -> str:
    if ticket.status.is_final:
        return ticket.status.label
    if ticket.owner_responded_at is None:
        return ""
    at = ticket.owner_responded_at.astimezone(zone).strftime("%H:%M")
    return f"已处理：{responder} {at}" if responder else f"已处理 {at}"


def _title_desc(ticket: Ticket, zone: ZoneInfo) -> str:
    marks = [f"派单 {short_time(ticket.dispatched_at, zone)}"]
    if ticket.major:
        marks.append("重大投诉")
    if ticket.legal:
        marks.append("涉及法律")
    if ticket.repeat_of:
        marks.append(f"重复（#{ticket.repeat_of}）")
    return " · ".join(marks)


def _row(keyname: str, value: str) -> dict[str, str]:
    return {"keyname": keyname, "value": _cut(value or "—", _ROW_VALUE)}


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
