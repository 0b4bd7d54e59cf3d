"""The one way in for every change to a ticket.

A chat command, an API call and a due deadline all end here: load the ticket
under a row lock, call a pure domain function, and store the new snapshot,
one history event, the deadlines the new state sets and the outbox rows of
the notices, all in one transaction. Nothing here sends anything.

A command changes one ticket; the clock changes many at once (`apply_many`):
the same steps, with each step's statements shared by the whole batch (one
deadline read, one roster of recipients, one outbox insert), which is what
keeps a sweep near a millisecond per deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from tortoise import connections

from bot.card_copies import copy_refreshes
from bot.crisis import (
    CRISIS_KIND,
    CRISIS_MEDIUM,
    CRISIS_MEMBERS_KIND,
    crisis_joiners,
    crisis_notices,
)
from bot.db import fetch_rows, insert_rows, transaction
from bot.directory import Roster, fallback_group
from bot.domain.approvals import OpenRequest, ended_requests, ending_reason
from bot.domain.calendar import first_attempt
from bot.domain.deadlines import Deadline as DomainDeadline
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import FINAL_STATUSES, Clock, Flag, Slot
from bot.domain.policy import Policy
from bot.domain.ticket import (
    Actor,
    Audience,
    ContactAttempt,
    Medium,
    Notice,
    Outcome,
    Refused,
    Solution,
    Ticket,
)
from bot.domain.transitions import note_legal_mentions
from bot.policy_book import PolicyBook
from models import RUNNING, ApprovalRequest, Deadline, Notification, TicketEvent
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

Transition = Callable[[Ticket], Outcome]

# Snapshot fields stored under another name or in another shape.
_SPECIAL = {"number", "policy_version", "flags", "attempts", "solution"}
_FIELDS = [f.name for f in dataclasses.fields(Ticket) if f.name not in _SPECIAL]
# Tickets whose clocks are mended in one transaction (`Ledger.mend_clocks`).
_MEND_BATCH = 200


class NotFound(Refused):
    """No ticket with that number."""


def snapshot(row: TicketRow) -> Ticket:
    """The pure snapshot of a stored ticket."""
    values: dict[str, Any] = {name: getattr(row, name) for name in _FIELDS}
    values["number"] = row.id
    values["policy_version"] = row.policy_id  # type: ignore[attr-defined]
    values["flags"] = frozenset(Flag(f) for f in row.flags)
    values["attempts"] = tuple(
        ContactAttempt(at=datetime.fromisoformat(a["at"]), slot=Slot(a["slot"]))
        for a in row.attempts
    )
    values["solution"] = Solution(**row.solution) if row.solution else None
    return Ticket(**values)


def _row_values(ticket: Ticket) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(ticket, name) for name in _FIELDS}
    values["policy_id"] = ticket.policy_version
    values["flags"] = sorted(f.value for f in ticket.flags)
    values["attempts"] = [{"at": a.at.isoformat(), "slot": a.slot.value} for a in ticket.attempts]
    values["solution"] = dataclasses.asdict(ticket.solution) if ticket.solution else None
    return values


async def _save_changes(row: TicketRow, before: Ticket, after: Ticket) -> None:
    """Write only the columns the change touched: every column in the UPDATE
    would rewrite every index entry of the row (plate, VIN, dealer, status …),
    the cost that grows with the number of tickets stored."""
    old, new = _row_values(before), _row_values(after)
    changed = {name: value for name, value in new.items() if old[name] != value}
    if changed:
        row.update_from_dict(changed)
        await row.save(update_fields=list(changed))


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


@dataclass(frozen=True)
class UnderPolicy:
    """A transition that needs the policy its ticket was opened under (its
    clocks and windows): the ledger finds the policy while it holds the row."""

    transition: Callable[[Ticket, Policy], Outcome]


@dataclass(frozen=True)
class Change:
    """One transition of one ticket. `cause` names the deadline (clock, due
    time) when the clock makes the change, so its notices are keyed by it."""

    number: int
    transition: Transition | UnderPolicy
    cause: tuple[Clock, datetime] | None = None


@dataclass
class _Applied:
    row: TicketRow
    before: Ticket
    outcome: Outcome
    cause: tuple[Clock, datetime] | None
    policy: Policy


class Ledger:
    """Applies transitions to stored tickets. One instance per process."""

    def __init__(self, policies: PolicyBook) -> None:
        self.policies = policies

    async def open(
        self, outcome: Outcome, *, actor: Actor, source: str, now: datetime
    ) -> Outcome:
        """Store a new ticket from a dispatch outcome; the result carries its number."""
        async with transaction():
            row = TicketRow(**_row_values(outcome.ticket))
            [stored] = await insert_rows([row], returning=("id",))
            row.id = stored["id"]
            outcome = dataclasses.replace(
                outcome, ticket=dataclasses.replace(outcome.ticket, number=row.id)
            )
            policy = await self.policies.get(outcome.ticket.policy_version)
            await self._store([_Applied(row, outcome.ticket, outcome, None, policy)],
                              actor=actor, source=source, now=now)
        log.info("ticket_dispatched", ticket=row.id, category=row.category.value, source=source)
        return outcome

    async def apply(
        self,
        number: int,
        transition: Transition | UnderPolicy,
        *,
        actor: Actor,
        source: str,
        now: datetime,
        cause: tuple[Clock, datetime] | None = None,
    ) -> Outcome:
        """Apply one transition to ticket `number` atomically; Refused leaves it as it was."""
        # Whatever is logged while the ticket changes (notices, card copies) names it.
        with structlog.contextvars.bound_contextvars(ticket=number):
            results = await self.apply_many([Change(number, transition, cause)], actor=actor,
                                            source=source, now=now)
        result = results.get(number)
        if result is None:
            raise NotFound(f"没有编号为 #{number} 的投诉。")
        if isinstance(result, Refused):
            raise result
        return result

    async def apply_many(
        self,
        changes: Sequence[Change],
        *,
        actor: Actor,
        source: str,
        now: datetime,
    ) -> dict[int, Outcome | Refused]:
        """Apply changes to distinct tickets in one transaction (the sweep's
        batches; a single command is a batch of one): each ticket's outcome, or
        the Refused that left it as it was. A ticket that does not exist is
        missing from the result."""
        numbers = [c.number for c in changes]
        if len(set(numbers)) != len(numbers):
            raise ValueError("one change per ticket per batch")
        results: dict[int, Outcome | Refused] = {}
        async with transaction():
            rows = {row.id: row for row in await _locked(numbers)}
            applied: list[_Applied] = []
            for change in changes:
                row = rows.get(change.number)
                if row is None:
                    continue
                before = snapshot(row)
                policy = await self.policies.get(before.policy_version)
                step = change.transition
                try:
                    if isinstance(step, UnderPolicy):
                        outcome = step.transition(before, policy)
                    else:
                        outcome = step(before)
                except Refused as refused:
                    results[change.number] = refused
                    continue
                outcome = note_legal_mentions(before, outcome, policy)
                applied.append(_Applied(row, before, outcome, change.cause, policy))
                results[change.number] = outcome
            if applied:
                await self._store(applied, actor=actor, source=source, now=now, update=True)
        for done in applied:
            log.info("ticket_changed", ticket=done.row.id, change=done.outcome.event,
                     actor=actor.userid, source=source, status=done.outcome.ticket.status.value)
        return results

    async def mend_clocks(self, *, now: datetime) -> list[int]:
        """Make each open ticket that runs a fired clock run exactly the clocks
        its state implies; the tickets mended. A database swept before
        migration 0021 kept fired clocks running after their ticket moved past
        them, and they showed as overdue (/list, cards, the API) until the
        ticket's next change of clocks. Run at start-up; a ticket that cannot
        be read is logged and left as it is."""
        finished = [status.value for status in FINAL_STATUSES]
        numbers = [row["ticket_id"] for row in await fetch_rows(
            "SELECT DISTINCT d.ticket_id FROM deadline d JOIN ticket t ON t.id = d.ticket_id "
            f"WHERE d.state = 'applied' AND t.status NOT IN ({', '.join('?' * len(finished))}) "
            "ORDER BY d.ticket_id", finished)]
        mended: list[int] = []
        for start in range(0, len(numbers), _MEND_BATCH):
            part = numbers[start:start + _MEND_BATCH]
            async with transaction():
                # The tickets locked first: a change of one meanwhile would
                # make the clocks read before it stale.
                rows = await _locked(part)
                running: dict[int, set[tuple[Clock, datetime]]] = {}
                for number, clock, due_at in await Deadline.filter(
                        ticket_id__in=part, state__in=RUNNING).values_list(
                        "ticket_id", "clock", "due_at"):
                    running.setdefault(number, set()).add((Clock(clock), due_at))
                moved = {}
                for row in rows:
                    try:
                        ticket = snapshot(row)
                        wanted = pending_deadlines(ticket, await self.policies.get(
                            ticket.policy_version))
                    except Exception:  # one unreadable row does not stop the rest
                        log.exception("clocks_unreadable", ticket=row.id)
                        continue
                    held = running.get(row.id, set())
                    if {(w.clock, w.due_at) for w in wanted} != held:
                        moved[row.id] = ([DomainDeadline(due_at, clock) for clock, due_at in held],
                                         wanted)
                await self._reconcile_deadlines(moved, now)
            mended += sorted(moved)
        if mended:
            log.warning("clocks_mended", tickets=mended)
        return mended

    async def _store(
        self, applied: list[_Applied], *, actor: Actor, source: str, now: datetime,
        update: bool = False,
    ) -> None:
        """Write what the outcomes say: snapshots, one event each, the deadlines
        they set, their notices and the refresh of cards already sent."""
        if update:
            for done in applied:
                await _save_changes(done.row, done.before, done.outcome.ticket)
        events = {done.row.id: TicketEvent(
            ticket_id=done.row.id, at=now, kind=done.outcome.event, actor=actor.userid,
            actor_name=actor.name, source=source, data=done.outcome.data,
        ) for done in applied}
        # One event per ticket: the ticket tells which id is whose.
        for stored in await insert_rows(list(events.values()), returning=("id", "ticket_id")):
            events[stored["ticket_id"]].id = stored["id"]
        wanted = {d.row.id: pending_deadlines(d.outcome.ticket, d.policy) for d in applied}
        if update:
            # The stored clocks are those of the snapshot before: a change that
            # leaves its clocks as they were has none to reconcile.
            held = {d.row.id: pending_deadlines(d.before, d.policy) for d in applied}
            await self._reconcile_deadlines(
                {number: (held[number], deadlines) for number, deadlines in wanted.items()
                 if deadlines != held[number]}, now)
            await self._end_requests(applied, actor=actor, now=now)
        else:
            await insert_rows([
                Deadline(ticket_id=number, clock=d.clock, due_at=d.due_at)
                for number, deadlines in wanted.items() for d in deadlines])
        rows = await self._notices(applied, events, now, opened=not update)
        # Cards already sent for a changed ticket show the change (bot/card_copies.py).
        changed = {d.row.id: events[d.row.id] for d in applied
                   if update and d.outcome.ticket != d.before}
        if changed:
            rows += await copy_refreshes({number: e.id for number, e in changed.items()},
                                         now=now,
                                         kinds={number: e.kind for number, e in changed.items()})
        await insert_rows(rows, on_conflict="DO NOTHING")

    async def _reconcile_deadlines(
        self,
        moved: dict[int, tuple[Iterable[DomainDeadline], Iterable[DomainDeadline]]],
        now: datetime,
    ) -> None:
        """Store exactly each ticket's wanted set, given (held, wanted): the
        set the snapshot before the change runs on, and the one after. Cancel
        the pending that are not wanted and end the applied (overdue) ones,
        re-arm the cancelled and ended that are wanted again (a staged closure
        rejected: the clocks it held run on), add the new, keep the rest (so
        nothing due fires twice). Written without reading the rows: the held
        set is what the last change stored (models.Deadline.state)."""
        if not moved:
            return
        keys = {number: {(w.clock, w.due_at) for w in wanted}
                for number, (_, wanted) in moved.items()}
        held = {number: {(h.clock, h.due_at) for h in had} for number, (had, _) in moved.items()}
        # Raw SQL: the ORM takes milliseconds to build these ORs of keys.
        if any(held[number] - keys[number] for number in moved):
            numbers = list(moved)
            kept, params = _keys_sql([(number, clock, due_at) for number in numbers
                                      for clock, due_at in keys[number]])
            # A swept one the ticket no longer runs on is no longer overdue: ended.
            await fetch_rows(
                "UPDATE deadline SET state = CASE state WHEN 'pending' THEN 'cancelled' "
                "ELSE 'ended' END, finished_at = CASE state WHEN 'pending' THEN ? "
                "ELSE finished_at END WHERE state IN ('pending', 'applied') "
                f"AND ticket_id IN ({', '.join('?' * len(numbers))})"
                + (f" AND NOT ({kept})" if kept else ""), [now, *numbers, *params])
        # New ones inserted; one stored before is re-armed (cancelled → pending,
        # ended → applied), and an applied or refused one left as it is.
        await insert_rows(
            [Deadline(ticket_id=number, clock=clock, due_at=due_at) for number in moved
             for clock, due_at in sorted(keys[number] - held[number], key=lambda k: k[1])],
            on_conflict="(ticket_id, clock, due_at) DO UPDATE SET state = CASE deadline.state "
                        "WHEN 'cancelled' THEN 'pending' WHEN 'ended' THEN 'applied' "
                        "ELSE deadline.state END, finished_at = CASE deadline.state "
                        "WHEN 'cancelled' THEN NULL ELSE deadline.finished_at END")

    async def _end_requests(self, applied: list[_Applied], *, actor: Actor,
                            now: datetime) -> None:
        """Cancel the open approval requests the changes end (closed, reopened,
        moved to another owner or handler: bot/domain/approvals.py). Their
        cards follow with the ticket's (`copy_refreshes`), and a later
        decision is refused. The ticket rows are locked, and a decision locks
        its ticket first, so a request is decided or cancelled, never both."""
        ending = [d for d in applied if ending_reason(d.before, d.outcome.ticket)]
        if not ending:
            return
        pending: dict[int, list[OpenRequest]] = {d.row.id: [] for d in ending}
        for req_id, number, kind in await ApprovalRequest.filter(
                ticket_id__in=list(pending), status="open").values_list("id", "ticket_id", "kind"):
            pending[number].append(OpenRequest(req_id, kind))
        for done in ending:
            ended = ended_requests(done.before, done.outcome.ticket, pending[done.row.id])
            await end_requests(ended, actor=actor, now=now)

    async def _notices(
        self, applied: list[_Applied], events: dict[int, TicketEvent], now: datetime,
        *, opened: bool = False,
    ) -> list[Notification]:
        """One outbox row per notice and recipient, routed from one roster,
        and the crisis group's rows of a major ticket (R8, bot/crisis.py)."""
        noticed = [d.outcome.ticket for d in applied if d.outcome.notices]
        if not noticed:
            return []
        roster = await Roster.load(noticed)
        rows: list[Notification] = []
        for done in applied:
            number, event = done.row.id, events[done.row.id]
            cause = done.cause
            origin = f"{cause[0].value}@{cause[1].isoformat()}" if cause else f"event{event.id}"
            ticket = done.outcome.ticket
            routed: list[tuple[Notice, str]] = []
            lost: list[Notice] = []
            for notice in done.outcome.notices:
                recipients = roster.recipients(notice.audience, notice.medium, ticket)
                if not recipients:
                    log.warning("notice_unroutable", ticket=number, kind=notice.kind,
                                audience=notice.audience.value, medium=notice.medium.value)
                    if notice.audience is not Audience.CUSTOMER:
                        lost.append(notice)
                routed.extend((notice, recipient) for recipient in recipients or [""])
            # R20: what nobody can receive goes to the region's group (else HQ's,
            # else the call centre's) as one notice naming who was missed; the
            # unroutable rows stay, for /healthz and the region's /list.
            fallback = fallback_group(roster, ticket, {n.audience for n in lost})
            if lost and fallback is not None:
                audience, chatids = fallback
                routed.extend((Notice("unroutable", audience, Medium.GROUP), chatid)
                              for chatid in chatids)
            for notice, recipient in routed:
                rows.append(
                    Notification(
                        ticket_id=number,
                        event_id=event.id,
                        kind=notice.kind,
                        medium=notice.medium.value,
                        audience=notice.audience.value,
                        recipient=recipient,
                        # An unroutable row per audience, not one for all of them.
                        dedupe_key=_dedupe_key(
                            number, origin, notice.kind,
                            recipient or f"unroutable:{notice.audience.value}", notice.medium
                        ),
                        status="pending" if recipient else "unroutable",
                        # Quiet hours hold e-mails and nudges back (bot/domain/calendar.py).
                        next_attempt_at=first_attempt(
                            now, notice.medium, done.policy.calendar,
                            caused_by_deadline=cause is not None),
                        created_at=now,
                    )
                )
            rows.extend(_crisis_rows(done, event, origin, roster, opened=opened, now=now))
        return rows


async def _locked(numbers: Sequence[int]) -> list[TicketRow]:
    """The tickets, their rows locked until the transaction ends (PostgreSQL;
    SQLite has one writer), read in id order so that two batches sharing
    tickets cannot deadlock. Raw SQL: building the query took the ORM more
    CPU than reading the row."""
    if not numbers:
        return []  # "IN ()" is an error on PostgreSQL (a batch another replica holds)
    ids = ", ".join(str(int(n)) for n in numbers)
    lock = " FOR NO KEY UPDATE" if connections.get("default").capabilities.dialect == "postgres" \
        else ""
    return await TicketRow.raw(f'SELECT * FROM "ticket" WHERE "id" IN ({ids}) ORDER BY "id"{lock}')


def _keys_sql(keys: Sequence[tuple[int, Clock, datetime]]) -> tuple[str, list[Any]]:
    """SQL matching the deadline rows with one of these (ticket, clock, due
    time) keys, and its parameters, converted as the ORM stores them."""
    due_at = Deadline._meta.fields_map["due_at"]
    params = [value for number, clock, due in keys
              for value in (number, clock.value, due_at.to_db_value(due, Deadline))]
    return " OR ".join(["(ticket_id = ? AND clock = ? AND due_at = ?)"] * len(keys)), params


def _crisis_rows(done: _Applied, event: TicketEvent, origin: str, roster: Roster, *,
                 opened: bool, now: datetime) -> list[Notification]:
    """R8: the outbox rows of the ticket's crisis group. Its creation is
    keyed by the ticket alone: one group per ticket, whatever is retried.
    People the change brings to the ticket join it first, then its posts."""
    number, ticket = done.row.id, done.outcome.ticket
    before = None if opened else done.before
    wanted = crisis_notices(before, ticket, done.outcome.notices)
    joiners = crisis_joiners(roster, before, ticket)
    if joiners:
        wanted.insert(1, (CRISIS_MEMBERS_KIND, wanted[0][1]))
    rows = []
    for kind, chatid in wanted:
        key = (_dedupe_key(number, CRISIS_KIND) if kind == CRISIS_KIND
               else _dedupe_key(number, origin, kind, chatid, CRISIS_MEDIUM))
        rows.append(Notification(
            ticket_id=number, event_id=event.id, kind=kind, medium=CRISIS_MEDIUM,
            audience=CRISIS_KIND, recipient=chatid, dedupe_key=key, status="pending",
            next_attempt_at=now, created_at=now,
            payload={"add_user_list": joiners} if kind == CRISIS_MEMBERS_KIND else None))
    return rows


async def end_requests(ended: dict[int, str], *, actor: Actor, now: datetime) -> None:
    """Mark open approval requests (id → reason) cancelled by `actor`'s change
    at `now`; a request decided meanwhile is left as decided."""
    for req_id, reason in ended.items():
        await ApprovalRequest.filter(id=req_id, status="open").update(
            status="cancelled", decided_by=actor.userid, decided_at=now, decision_reason=reason)
        log.info("approval_cancelled", request=req_id, reason=reason)
