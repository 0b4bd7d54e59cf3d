"""A stored ticket with what people need to read it besides the snapshot: its
pending deadlines, its dealer's name and who responded. Used by /show, /list
and the card buttons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.deadlines import Deadline
from bot.domain.enums import Clock
from bot.domain.ticket import Ticket
from bot.ledger import snapshot
from bot.render.cards import ticket_card
from models import Deadline as DeadlineRow
from models import Dealer, TicketEvent
from models import Ticket as TicketRow


@dataclass(frozen=True)
class TicketView:
    """A ticket snapshot with its pending deadlines (soonest first), its
    dealer's name and the name of whoever responded (empty if nobody has)."""

    ticket: Ticket
    deadlines: tuple[Deadline, ...]
    dealer_name: str
    responder: str

    def card(self, zone: ZoneInfo, *, task_id: str, show_customer: bool) -> dict[str, Any]:
        """The ticket's template card."""
        return ticket_card(
            self.ticket, zone, task_id=task_id, show_customer=show_customer,
            deadlines=self.deadlines, dealer_name=self.dealer_name, responder=self.responder,
        )


async def pending_deadlines_of(numbers: list[int]) -> dict[int, list[Deadline]]:
    """Pending deadlines of each ticket, soonest first."""
    found: dict[int, list[Deadline]] = {n: [] for n in numbers}
    rows = await DeadlineRow.filter(ticket_id__in=numbers, state="pending").order_by(
        "due_at", "id"
    ).values_list("ticket_id", "clock", "due_at")
    for number, clock, due_at in rows:
        found[number].append(Deadline(due_at=due_at, clock=Clock(clock)))
    return found


async def dealer_names() -> dict[str, str]:
    """Dealer code to name, for every dealer."""
    return dict(await Dealer.all().values_list("code", "name"))


async def load_view(number: int) -> TicketView | None:
    """The ticket `number` as people see it, or None when there is none."""
    row = await TicketRow.get_or_none(id=number)
    if row is None:
        return None
    ticket = snapshot(row)
    deadlines = (await pending_deadlines_of([number]))[number]
    dealer = await Dealer.get_or_none(code=ticket.dealer_code)
    responder = ""
    if ticket.owner_responded_at is not None:
        event = await TicketEvent.filter(ticket_id=number, kind="responded").order_by("-id").first()
        responder = (event.actor_name or event.actor) if event else ""
    return TicketView(ticket, tuple(deadlines), dealer.name if dealer else "", responder)
