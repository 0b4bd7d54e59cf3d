"""Approval requests as stored: opening one with the ticket change that asks
for it, and deciding it (R19 staged closure, R25 compensation, delegation).

The approver is a person: the holder of the approving role for the ticket's
dealer or region, else HQ, from the directory. The card goes to the approver
(and to anyone the approver has delegated to) through the outbox, in the same
transaction as the ticket event and the request row; a decision moves the
ticket through the ledger in the same transaction as the request's update,
so a double click, a retry or a race is applied once."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from bot.card_copies import refresh_copies
from bot.directory import recipients_for
from bot.domain.approvals import (
    OpenRequest,
    decide_compensation,
    ended_requests,
    pass_over_subject,
    role_above,
)
from bot.domain.enums import Role
from bot.domain.permissions import may_decide_approval
from bot.domain.ticket import SYSTEM, Actor, Audience, Medium, Outcome, Refused, Ticket
from bot.domain.transitions import decide_staged_closure
from bot.ledger import Ledger, Transition, UnderPolicy, end_requests, snapshot
from bot.render.approvals import (
    approval_task_id,
    decision_text,
    request_card,
    request_title,
    staff_names,
)
from models import ApprovalRequest, Delegation, Notification, Staff, TicketEvent
from models import Ticket as TicketRow

# Who holds an approving role, as the directory's audiences find them.
_ROLE_AUDIENCE = {
    Role.DEALER_GM: Audience.DEALER_LEADERS,
    Role.DEALER_MANAGER: Audience.DEALER_MANAGERS,
    Role.SECOND_LEVEL_MANAGER: Audience.SECOND_LEVEL_MANAGER,
    Role.SENIOR_MANAGER: Audience.SENIOR_MANAGER,
}
# The outbox kind of the card each kind of request sends.
_CARD_KIND = {"staged_closure": "staged_closure_request", "compensation": "compensation_request"}


async def approver_for(role: Role, ticket: Ticket) -> str:
    """The userid of the person holding `role` for the ticket (its dealer, or
    the department owning it: HQ for an HQ ticket, else its region, else HQ);
    Refused when nobody does."""
    audience = _ROLE_AUDIENCE.get(role)
    found = await recipients_for(audience, Medium.APP, ticket) if audience else []
    holder = await Staff.filter(userid__in=found, role=role, active=True).order_by("id").first()
    if holder is None:
        raise Refused(f"#{ticket.number} 找不到{role.label}，无法提交审批，请联系管理员。")
    return holder.userid


async def approver_passing_over(role: Role, ticket: Ticket) -> tuple[Role, str]:
    """The approving role and person for the ticket (see `approver_for`);
    when the employee the complaint is about alone holds `role` there, the
    request passes over them to the next role up (R22)."""
    while True:
        try:
            return role, await approver_for(role, ticket)
        except Refused:
            above = role_above(role)
            if above is None or not ticket.about_staff or not await Staff.exists(
                    userid=ticket.about_staff, role=role, active=True):
                raise
            role = above


async def delegates_of(approver: str, now: datetime) -> list[str]:
    """Who may decide in `approver`'s name at `now`."""
    rows = await Delegation.filter(approver=approver, until__gte=now).order_by("id")
    return list(dict.fromkeys(r.delegate for r in rows))


async def open_request(
    ledger: Ledger,
    number: int,
    transition: Transition | UnderPolicy,
    *,
    kind: str,
    actor: Actor,
    reason: str,
    now: datetime,
    zone: ZoneInfo,
    amount: Decimal | None = None,
) -> tuple[Outcome, ApprovalRequest]:
    """Apply the transition that asks for approval (its data names the
    `approver_role`), store the request and queue its card to the approver
    and their delegates, all in one transaction."""
    async with in_transaction():
        outcome = await ledger.apply(number, transition, actor=actor, source="chat", now=now)
        event = await TicketEvent.filter(ticket_id=number).order_by("-id").first()
        assert event is not None  # ledger.apply just wrote it
        role, approver = await approver_passing_over(
            Role(outcome.data["approver_role"]), outcome.ticket)
        if role.value != outcome.data["approver_role"]:
            await ledger.apply(number, lambda t: pass_over_subject(t, kind, role),
                               actor=SYSTEM, source="chat", now=now)
        req = await ApprovalRequest.create(
            ticket_id=number, kind=kind, requested_by=actor.userid, requested_at=now,
            reason=reason, approver_role=role.value, approver_userid=approver, amount=amount,
        )
        for userid in [approver, *await delegates_of(approver, now)]:
            # R22: a delegate who is the employee complained about gets no card.
            if may_decide_approval(userid, outcome.ticket):
                await _queue_card(req, event, userid, now, zone)
        await _supersede(req, outcome.ticket, event, actor, now)
    return outcome, req


async def _supersede(
    req: ApprovalRequest, ticket: Ticket, event: TicketEvent, actor: Actor, now: datetime
) -> None:
    """The new request `req` ends the older open ones of its kind: cancelled,
    their cards updated where their codes allow."""
    number: int = req.ticket_id  # type: ignore[attr-defined]
    pending = [OpenRequest(i, k) for i, k in await ApprovalRequest.filter(
        ticket_id=number, status="open").values_list("id", "kind")]
    ended = ended_requests(ticket, ticket, pending, opened=OpenRequest(req.id, req.kind))
    await end_requests(ended, actor=actor, now=now)
    for old in ended:
        await refresh_copies({number: event.id}, now=now,
                             task_prefix=f"ticket{number}-apr{old}-")


async def _queue_card(
    req: ApprovalRequest, event: TicketEvent, userid: str, now: datetime, zone: ZoneInfo
) -> None:
    """The card to one member: the ledger's app notice to them becomes the
    card (so they get one message, not two), else a row of its own."""
    kind = _CARD_KIND[req.kind]
    task_id = approval_task_id(event.ticket_id, req.id)  # type: ignore[attr-defined]
    card = await request_card(req, zone, task_id=task_id)
    names = await staff_names([req.requested_by])
    markdown = (f"**#{event.ticket_id} {request_title(req)}**（"  # type: ignore[attr-defined]
                f"{names.get(req.requested_by, req.requested_by)}）\n原因：{req.reason}")
    payload = {"markdown": markdown, "card": card}
    changed = await Notification.filter(
        event_id=event.id, kind=kind, medium=Medium.APP.value, recipient=userid,
        status="pending",
    ).update(payload=payload)
    if changed:
        return
    dedupe = hashlib.sha256(f"approval|{req.id}|card|{userid}".encode()).hexdigest()
    await Notification.bulk_create([Notification(
        ticket_id=event.ticket_id, event_id=event.id,  # type: ignore[attr-defined]
        kind=kind, medium=Medium.APP.value, audience="approver", recipient=userid,
        dedupe_key=dedupe, status="pending", next_attempt_at=now, created_at=now,
        payload=payload,
    )], ignore_conflicts=True)


async def _on_behalf_of(req: ApprovalRequest, actor: Actor, now: datetime) -> str | None:
    """None when the actor is the approver, the approver's userid when the
    actor is their delegate; Refused for anyone else (R19: only the person
    holding the role decides), and for the employee the complaint is about,
    whoever delegated to them (R22), in the same words."""
    ticket = snapshot(await TicketRow.get(id=req.ticket_id))  # type: ignore[attr-defined]
    if may_decide_approval(actor.userid, ticket):
        if actor.userid == req.approver_userid:
            return None
        if actor.userid in await delegates_of(req.approver_userid, now):
            return req.approver_userid
    names = await staff_names([req.approver_userid])
    approver = names.get(req.approver_userid, req.approver_userid)
    raise Refused(f"#{req.ticket_id} 的{request_title(req)}须由 {approver} 审批，"  # type: ignore[attr-defined]
                  "您不能操作。")


async def decidable(
    request_id: int, actor: Actor, *, now: datetime, zone: ZoneInfo, lock: bool = False
) -> tuple[ApprovalRequest, str | None]:
    """The open request `request_id` and on whose behalf `actor` would decide
    it (None: their own); Refused for anyone but the approver or their
    delegate, and for a request already decided (saying who decided, when).
    With `lock` (inside a transaction) the request row is locked."""
    query = ApprovalRequest.select_for_update(no_key=True) if lock else ApprovalRequest
    req = await query.get_or_none(id=request_id)
    if req is None:
        raise Refused(f"没有编号为 {request_id} 的审批申请。")
    on_behalf_of = await _on_behalf_of(req, actor, now)
    if req.status == "cancelled":
        raise Refused(cancelled_text(req))
    if req.status != "open":
        names = await staff_names([req.decided_by, req.decided_on_behalf_of])
        raise Refused(f"#{req.ticket_id} 的{request_title(req)}"  # type: ignore[attr-defined]
                      f"已处理（{decision_text(req, zone, names)}），无需再次操作。")
    return req, on_behalf_of


def cancelled_text(req: ApprovalRequest) -> str:
    """Why a cancelled request can no longer be decided (with the ticket number)."""
    return (f"#{req.ticket_id} 的{request_title(req)}已撤销"  # type: ignore[attr-defined]
            f"（{req.decision_reason}），不能再审批。")


async def decide(
    ledger: Ledger,
    request_id: int,
    actor: Actor,
    *,
    approve: bool,
    reason: str,
    now: datetime,
    zone: ZoneInfo,
) -> tuple[ApprovalRequest, Outcome]:
    """Approve or reject an open request: the ticket change and the request's
    decision in one transaction; refused as `decidable` says, and a rejection
    without a reason."""
    async with in_transaction():
        # The ticket's row first, as every change of the ticket locks it: a
        # close that cancels the request and this decision cannot interleave.
        tickets = await ApprovalRequest.filter(id=request_id).values_list(
            "ticket_id", flat=True)
        await TicketRow.filter(id__in=tickets).select_for_update(no_key=True)
        req, on_behalf_of = await decidable(request_id, actor, now=now, zone=zone, lock=True)
        if not approve and not reason.strip():
            raise Refused("驳回须说明原因。")
        role = Role(req.approver_role)

        def transition(ticket: Ticket) -> Outcome:
            if req.kind == "compensation":
                return decide_compensation(
                    ticket, actor, approve=approve, amount=Decimal(req.amount),
                    approver_role=role, requested_by=req.requested_by, reason=reason, now=now,
                    on_behalf_of=on_behalf_of)
            return decide_staged_closure(
                ticket, actor, approve=approve, requested_by=req.requested_by, reason=reason,
                now=now, on_behalf_of=on_behalf_of, approver_role=role)

        # The card update that the ticket change queues renders the request as
        # decided: record the decision first, in the same transaction.
        req.status = "approved" if approve else "rejected"
        req.decided_by, req.decided_on_behalf_of = actor.userid, on_behalf_of
        req.decided_at, req.decision_reason = now, reason
        await req.save()
        number: int = req.ticket_id  # type: ignore[attr-defined]
        outcome = await ledger.apply(number, transition, actor=actor, source="chat", now=now)
        if req.kind == "compensation":
            # The ticket itself did not change, so the ledger updated no card:
            # the request's cards follow its decision.
            event = await TicketEvent.filter(ticket_id=number).order_by("-id").first()
            assert event is not None  # ledger.apply just wrote it
            await refresh_copies({number: event.id}, now=now,
                                 task_prefix=f"ticket{number}-apr{req.id}-")
    return req, outcome


async def open_requests_for(
    number: int, actor: Actor, now: datetime, *, status: str = "open"
) -> list[ApprovalRequest]:
    """The open requests on ticket `number` that `actor` may decide, oldest
    first (with `status`, those of `actor`'s that are in that state); none for
    the employee the complaint is about (R22)."""
    row = await TicketRow.get_or_none(id=number)
    if row is not None and not may_decide_approval(actor.userid, snapshot(row)):
        return []
    approvers = [actor.userid, *await Delegation.filter(
        delegate=actor.userid, until__gte=now).values_list("approver", flat=True)]
    return await ApprovalRequest.filter(
        ticket_id=number, status=status, approver_userid__in=approvers).order_by("id")


async def approved_compensations(number: int) -> list[ApprovalRequest]:
    """R25: the compensations approved on ticket `number`, in order."""
    return await ApprovalRequest.filter(
        ticket_id=number, kind="compensation", status="approved").order_by("id")
