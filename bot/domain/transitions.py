"""The process as pure functions: (ticket, actor, policy, now, ...) -> Outcome.

Every change to a ticket, whether it comes from a chat command, the intake
API or a due deadline, goes through one of these functions. Each checks the
permission and the state, then returns the new snapshot, one history event
and the notices the change causes (PROCESS.md "Who gets told what").
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.classification import Classification, has_legal_keyword
from bot.domain.enums import Category, Channel, Clock, Flag, OwnerLevel, Role, Slot, Source, Status
from bot.domain.permissions import Action, check, is_conflicted, refuse_subject
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

_ESCALATION = {Category.GENERAL: Category.ESCALATED, Category.ESCALATED: Category.IMPORTANT}
_OWNER_GROUP = {
    OwnerLevel.DEALER: Audience.DEALER_GROUP,
    OwnerLevel.REGION: Audience.REGION_GROUP,
    OwnerLevel.HQ: Audience.HQ_GROUP,
}
_OWNER_HANDLERS = {
    OwnerLevel.DEALER: Audience.DEALER_HANDLERS,
    OwnerLevel.REGION: Audience.REGION_HANDLERS,
    OwnerLevel.HQ: Audience.HQ_HANDLERS,
}
_OVERDUE_MANAGER = {
    OwnerLevel.DEALER: Audience.DEALER_MANAGERS,
    OwnerLevel.REGION: Audience.SECOND_LEVEL_MANAGER,
    OwnerLevel.HQ: Audience.SENIOR_MANAGER,
}
_APPROVER_AUDIENCE = {
    Role.SECOND_LEVEL_MANAGER: Audience.SECOND_LEVEL_MANAGER,
    Role.SENIOR_MANAGER: Audience.SENIOR_MANAGER,
}


def _n(kind: str, audience: Audience, medium: Medium) -> Notice:
    return Notice(kind=kind, audience=audience, medium=medium)


def _label(ticket: Ticket) -> str:
    return f"#{ticket.number}" if ticket.number else "该投诉"


def _require_open(ticket: Ticket) -> None:
    if ticket.status.is_final:
        raise Refused(
            f"{_label(ticket)} 当前状态为「{ticket.status.label}」，"
            "如需继续处理请先重新打开（/reopen）。"
        )
    if ticket.status is Status.STAGED_CLOSURE_PENDING:
        raise Refused(f"{_label(ticket)} 正在阶段性结案审批中，审批结束前不能操作。")


def _require_response(ticket: Ticket) -> None:
    if ticket.owner_responded_at is None:
        raise Refused(f"{_label(ticket)} 尚未响应，请先响应（/respond）。")


def major_notices(ticket: Ticket) -> tuple[Notice, ...]:
    """R8 and R9: dealer leaders at once by card and e-mail, brand division and
    legal by e-mail, and an alert in the dealer's and region's groups."""
    return (
        _n("major_alert", Audience.DEALER_LEADERS, Medium.APP),
        _n("major_alert", Audience.DEALER_LEADERS, Medium.EMAIL),
        _n("major_alert", Audience.DEALER_GROUP, Medium.GROUP),
        _n("major_alert", Audience.REGION_GROUP, Medium.GROUP),
        _n("major_warning", Audience.BRAND_AND_LEGAL, Medium.EMAIL),
    )


def _owner_arrival_notices(ticket: Ticket) -> tuple[Notice, ...]:
    """A ticket arriving at a region or HQ owner: notice, handler cards, managers."""
    level = ticket.owner_level
    notices = [
        _n("escalated", Audience.DEALER_GROUP, Medium.GROUP),
        _n("escalated", Audience.REGION_GROUP, Medium.GROUP),
        _n("escalated", _OWNER_HANDLERS[level], Medium.APP),
        _n("escalated", _OVERDUE_MANAGER[level], Medium.EMAIL),
    ]
    if level is OwnerLevel.HQ:
        notices.insert(2, _n("escalated", Audience.HQ_GROUP, Medium.GROUP))
    return tuple(notices)


# --- intake -------------------------------------------------------------------


def dispatch(
    *,
    customer_name: str,
    customer_phone: str,
    car_model: str,
    plate: str,
    vin: str,
    channel: Channel,
    description: str,
    dealer_code: str,
    region_code: str,
    flags: frozenset[Flag],
    about_staff: str | None,
    repeat_of: int | None,
    classification: Classification,
    policy: Policy,
    now: datetime,
    about_staff_name: str | None = None,
    about_staff_role: str | None = None,
    related_to: int | None = None,
    source: Source = Source.API,
    resolved_on_call: bool = False,
) -> Outcome:
    """R10: a classified complaint is dispatched; the customer is told it is accepted.
    The employee complained about (R22) is `about_staff` when in the directory,
    else named by `about_staff_name` and `about_staff_role`. `related_to` links
    another problem of the same vehicle (not a repeat, R6).

    `source` is the door it came in by: a store's own record (`Source.STORE`)
    is told to the call centre at once, which must confirm it. A complaint
    `resolved_on_call` (the call centre settled it on the first call) is
    recorded and closed at once, never dispatched: nobody is told."""
    ticket = Ticket(
        number=None,
        customer_name=customer_name,
        customer_phone=customer_phone,
        car_model=car_model,
        plate=plate,
        vin=vin,
        channel=channel,
        description=description,
        dealer_code=dealer_code,
        region_code=region_code,
        category=classification.category,
        owner_level=classification.owner_level,
        status=Status.DISPATCHED,
        policy_version=policy.digest,
        dispatched_at=now,
        owner_since=now,
        escalated_at=now if classification.category is not Category.GENERAL else None,
        flags=flags,
        major=classification.major,
        major_since=now if classification.major else None,
        legal=classification.legal,
        about_staff=about_staff,
        about_staff_name=about_staff_name,
        about_staff_role=about_staff_role,
        repeat_of=repeat_of,
        related_to=related_to,
        source=source,
        resolved_on_call=resolved_on_call,
    )
    data = {
        "category": ticket.category.value,
        "owner_level": ticket.owner_level.value,
        "reasons": list(classification.reasons),
        "repeat_of": repeat_of,
        "related_to": related_to,
    }
    if resolved_on_call:
        return _resolved_on_call(ticket, data, source, now)
    notices = [
        _n("accepted", Audience.CUSTOMER, Medium.SMS),
        _n("dispatched", Audience.DEALER_GROUP, Medium.GROUP),
    ]
    if ticket.owner_level is OwnerLevel.DEALER:
        notices.append(_n("dispatched", Audience.DEALER_HANDLERS, Medium.APP))
    else:
        notices.extend(n for n in _owner_arrival_notices(ticket) if n not in notices)
    if ticket.major:
        notices.extend(major_notices(ticket))
    if ticket.legal:
        notices.append(_n("legal_flag", Audience.LEGAL, Medium.EMAIL))
    if source is Source.STORE:
        notices.append(_n("store_reported", Audience.CALL_CENTRE_GROUP, Medium.GROUP))
    return Outcome(ticket, "dispatched", data, tuple(dict.fromkeys(notices)))


def _resolved_on_call(
    ticket: Ticket, data: dict[str, object], source: Source, now: datetime
) -> Outcome:
    """A first-call resolution: stored closed. Only a general complaint that
    is not major can be settled so (R3: a dealer handles what the first call
    could not settle; R4, R5 and R7 complaints must reach their owner)."""
    if source is Source.STORE:
        raise Refused("首次来电即解决只适用于呼叫中心受理的投诉；门店登记的投诉请正常处理。")
    if ticket.category is not Category.GENERAL or ticket.major:
        kind = "重大投诉" if ticket.major else ticket.category.label
        raise Refused(f"这是{kind}，必须派单处理，不能按首次来电即解决结案。")
    closed = replace(ticket, status=Status.CLOSED, responded_at=now, closed_at=now)
    # R26: legal still hears of a complaint that names legal action.
    notices = (_n("legal_flag", Audience.LEGAL, Medium.EMAIL),) if ticket.legal else ()
    return Outcome(closed, "resolved_on_call", data, notices)


# --- the dealer's work (R12-R16) -------------------------------------------------


def respond(ticket: Ticket, actor: Actor, note: str, now: datetime) -> Outcome:
    """R12/R17: the owner has contacted the customer; the system stamps the time."""
    check(actor, ticket, Action.RESPOND)
    _require_open(ticket)
    if ticket.owner_responded_at is not None:
        raise Refused(f"{_label(ticket)} 已经响应过了，无需重复响应。")
    updated = replace(
        ticket,
        status=Status.RESPONDED if ticket.status is Status.DISPATCHED else ticket.status,
        owner_responded_at=now,
        responded_at=ticket.responded_at or now,
        assignee=ticket.assignee or actor.userid,
    )
    late = now - ticket.owner_since
    return Outcome(updated, "responded", {"note": note, "minutes": int(late.total_seconds() // 60)})


def first_solution(ticket: Ticket, actor: Actor, solution: Solution, now: datetime) -> Outcome:
    """R13: demand, cause, proposed solution, acceptance, return visit."""
    check(actor, ticket, Action.PLAN)
    _require_open(ticket)
    _require_response(ticket)
    if ticket.status is Status.RESOLVED:
        raise Refused(f"{_label(ticket)} 已处理完毕，等待呼叫中心回访。")
    revised = ticket.owner_solution_at is not None
    updated = replace(
        ticket,
        status=Status.SOLUTION_PROPOSED if not revised else ticket.status,
        solution=solution,
        owner_solution_at=ticket.owner_solution_at or now,
        first_solution_at=ticket.first_solution_at or now,
    )
    data = {
        "demand": solution.demand,
        "cause": solution.cause,
        "solution": solution.solution,
        "customer_accepts": solution.customer_accepts,
        "return_visit": solution.return_visit,
    }
    return Outcome(updated, "solution_revised" if revised else "first_solution", data)


def propose_solution(
    ticket: Ticket, actor: Actor, solution: Solution, policy: Policy, now: datetime
) -> Outcome:
    """R13 with R15/R5 (/plan): the solution is stored; when the customer does
    not accept it, whoever can act hears of it, as `policy.no_agreement` says:
    the ticket escalates at once, or the region gets a notice and a clock."""
    outcome = first_solution(ticket, actor, solution, now)
    if solution.customer_accepts:
        if outcome.ticket.no_agreement_at is None:
            return outcome
        return replace(outcome, ticket=replace(outcome.ticket, no_agreement_at=None))
    reason = "客户不接受方案（R15）"
    data = {**outcome.data, "no_agreement": True, "reason": reason}
    if ticket.category is Category.IMPORTANT:
        # Nobody above HQ to hand it to: HQ's group is told.
        notices = (_n("no_agreement", Audience.HQ_GROUP, Medium.GROUP),)
        return Outcome(outcome.ticket, outcome.event, data, notices)
    if policy.no_agreement.action == "escalate" or ticket.owner_level is not OwnerLevel.DEALER:
        escalation = _escalate(outcome.ticket, reason, now)
        return Outcome(escalation.ticket, outcome.event, {**data, "escalated": True},
                       escalation.notices)
    if ticket.no_agreement_at is not None:  # the region is deciding already
        return Outcome(outcome.ticket, outcome.event, data)
    waiting = replace(outcome.ticket, no_agreement_at=now)
    notices = (
        _n("no_agreement", Audience.REGION_GROUP, Medium.GROUP),
        _n("no_agreement", Audience.REGION_HANDLERS, Medium.APP),
        _n("no_agreement", Audience.DEALER_GROUP, Medium.GROUP),
    )
    return Outcome(waiting, outcome.event, {**data, "region_decides": True}, notices)


def followup(
    ticket: Ticket, actor: Actor, note: str, policy: Policy, now: datetime
) -> Outcome:
    """R14: a return visit; the one that takes the count above the limit escalates."""
    check(actor, ticket, Action.FOLLOWUP)
    _require_open(ticket)
    _require_response(ticket)
    count = ticket.followup_count + 1
    updated = replace(
        ticket,
        followup_count=count,
        status=Status.FOLLOWING_UP if ticket.status is not Status.RESOLVED else ticket.status,
    )
    if count > policy.followup_escalate_above and ticket.category is Category.GENERAL:
        reason = f"回访次数 {count} 次，超过 {policy.followup_escalate_above} 次（R14）"
        escalation = _escalate(updated, reason, now)
        data = {"note": note, "count": count, "escalated": True, "reason": reason}
        return Outcome(escalation.ticket, "followup", data, escalation.notices)
    return Outcome(updated, "followup", {"note": note, "count": count})


def slot_of(moment: datetime, policy: Policy, zone: ZoneInfo) -> Slot:
    """The contact slot (morning, afternoon, evening) a moment falls in, locally."""
    hour = moment.astimezone(zone).hour
    for name, (start, end) in policy.unreachable.slots.items():
        if start <= hour < end:
            return Slot(name)
    raise Refused(f"{hour} 点不在任何联系时段内，请检查策略文件的 unreachable.slots。")


def attempt(
    ticket: Ticket, actor: Actor, slot: Slot, policy: Policy, now: datetime
) -> Outcome:
    """R16: a failed contact attempt; enough of them in distinct slots within
    the window close the ticket as unreachable."""
    check(actor, ticket, Action.ATTEMPT)
    _require_open(ticket)
    attempts = (*ticket.attempts, ContactAttempt(at=now, slot=slot))
    rule = policy.unreachable
    recent = [a for a in attempts if now - a.at <= rule.window]
    slots = {a.slot for a in recent}
    updated = replace(ticket, attempts=attempts)
    data = {"slot": slot.value, "recent": len(recent), "slots": sorted(s.value for s in slots)}
    if len(recent) >= rule.attempts and len(slots) >= rule.distinct_slots:
        closed = replace(updated, status=Status.CLOSED_UNREACHABLE, closed_at=now)
        notices = (_n("closed_unreachable", _OWNER_GROUP[ticket.owner_level], Medium.GROUP),)
        return Outcome(closed, "closed_unreachable", data, notices)
    return Outcome(updated, "contact_attempt", data)


def resolve(ticket: Ticket, actor: Actor, note: str, now: datetime) -> Outcome:
    """R23: the dealer is done; the call centre has its callback to make."""
    check(actor, ticket, Action.RESOLVE)
    _require_open(ticket)
    _require_response(ticket)
    if ticket.owner_solution_at is None:
        raise Refused(f"{_label(ticket)} 还没有提交首次方案（/plan），不能标记为已处理。")
    if ticket.status is Status.RESOLVED:
        raise Refused(f"{_label(ticket)} 已标记为已处理，等待呼叫中心回访。")
    updated = replace(ticket, status=Status.RESOLVED, resolved_at=now)
    notices = (_n("resolved", Audience.CALL_CENTRE_GROUP, Medium.GROUP),)
    return Outcome(updated, "resolved", {"note": note}, notices)


def close(
    ticket: Ticket, actor: Actor, satisfaction: int, note: str, now: datetime
) -> Outcome:
    """R15/R23: the call centre's callback confirms the solution and closes."""
    check(actor, ticket, Action.CLOSE)
    _require_open(ticket)
    if ticket.responded_at is None:
        raise Refused(f"{_label(ticket)} 尚未响应，不能结案。")
    if not 1 <= satisfaction <= 5:
        raise Refused("满意度须为 1 到 5 之间的整数。")
    updated = replace(ticket, status=Status.CLOSED, closed_at=now, satisfaction=satisfaction)
    notices = [
        _n("closed", Audience.CUSTOMER, Medium.SMS),
        _n("closed", Audience.DEALER_GROUP, Medium.GROUP),
    ]
    if ticket.owner_level is not OwnerLevel.DEALER:
        notices.append(_n("closed", Audience.REGION_GROUP, Medium.GROUP))
    return Outcome(updated, "closed", {"satisfaction": satisfaction, "note": note}, tuple(notices))


# --- escalation, disputes, ownership -------------------------------------------


def _escalate(ticket: Ticket, reason: str, now: datetime) -> Outcome:
    target = _ESCALATION.get(ticket.category)
    if target is None:
        raise Refused(f"{_label(ticket)} 已是重要投诉，无法再升级。")
    level = OwnerLevel.REGION if target is Category.ESCALATED else OwnerLevel.HQ
    updated = replace(
        ticket,
        category=target,
        owner_level=level,
        status=Status.DISPATCHED,
        owner_since=now,
        escalated_at=now,
        owner_responded_at=None,
        owner_solution_at=None,
        no_agreement_at=None,
        assignee=None,
    )
    data = {"from": ticket.category.value, "to": target.value, "reason": reason}
    return Outcome(updated, "escalated", data, _owner_arrival_notices(updated))


def escalate(ticket: Ticket, actor: Actor, reason: str, now: datetime) -> Outcome:
    """R4/R5: hand the ticket up one level (general to region, escalated to HQ)."""
    check(actor, ticket, Action.ESCALATE)
    _require_open(ticket)
    if not reason.strip():
        raise Refused("升级须说明原因。")
    return _escalate(ticket, reason, now)


def dispute(
    ticket: Ticket, actor: Actor, reason: str, policy: Policy, now: datetime
) -> Outcome:
    """R11: within the window the dealer may say the ticket is not theirs."""
    check(actor, ticket, Action.DISPUTE)
    _require_open(ticket)
    if ticket.owner_level is not OwnerLevel.DEALER:
        raise Refused(f"{_label(ticket)} 已不在经销商处理阶段，不能提出异议。")
    if now - ticket.dispatched_at > policy.dispute_window:
        hours = int(policy.dispute_window.total_seconds() // 3600)
        raise Refused(f"{_label(ticket)} 派单已超过 {hours} 小时，不能再提出异议（R11）。")
    if ticket.dispute_open:
        raise Refused(f"{_label(ticket)} 已有待核实的异议。")
    if not reason.strip():
        raise Refused("提出异议须说明原因。")
    updated = replace(ticket, dispute_open=True)
    notices = (_n("disputed", Audience.CALL_CENTRE_GROUP, Medium.GROUP),)
    return Outcome(updated, "disputed", {"reason": reason}, notices)


def decide_dispute(
    ticket: Ticket,
    actor: Actor,
    uphold: bool,
    now: datetime,
    *,
    new_dealer: tuple[str, str] | None = None,
) -> Outcome:
    """R11: the call centre upholds (reassign to `new_dealer` (code, region) or
    cancel) or rejects (the clock runs on as before) a dispute."""
    check(actor, ticket, Action.DISPUTE_DECIDE)
    if not ticket.dispute_open:
        raise Refused(f"{_label(ticket)} 没有待核实的异议。")
    if not uphold:
        updated = replace(ticket, dispute_open=False)
        notices = (_n("dispute_rejected", Audience.DEALER_GROUP, Medium.GROUP),)
        return Outcome(updated, "dispute_rejected", {}, notices)
    if new_dealer is None:
        updated = replace(ticket, dispute_open=False, status=Status.CANCELLED, closed_at=now)
        notices = (_n("dispute_upheld", Audience.DEALER_GROUP, Medium.GROUP),)
        return Outcome(updated, "dispute_upheld", {"cancelled": True}, notices)
    dealer_code, region_code = new_dealer
    updated = replace(
        ticket,
        dispute_open=False,
        dealer_code=dealer_code,
        region_code=region_code,
        status=Status.DISPATCHED,
        owner_since=now,
        owner_responded_at=None,
        owner_solution_at=None,
        no_agreement_at=None,
        assignee=None,
    )
    notices = (
        _n("dispute_upheld", Audience.DEALER_GROUP, Medium.GROUP),
        _n("dispatched", Audience.DEALER_GROUP, Medium.GROUP),
        _n("dispatched", Audience.DEALER_HANDLERS, Medium.APP),
    )
    data = {"from_dealer": ticket.dealer_code, "to_dealer": dealer_code}
    return Outcome(updated, "dispute_upheld", data, notices)


def assign(ticket: Ticket, actor: Actor, assignee: Actor, now: datetime) -> Outcome:
    """R20: hand the ticket to a person who may act on it for its owner: the
    assigned card carries the 处理 (respond) button, so someone at another
    level (HQ for a dealer's ticket, a dealer for the region's) is refused."""
    check(actor, ticket, Action.ASSIGN)
    _require_open(ticket)
    try:
        check(assignee, ticket, Action.RESPOND)
    except Refused as exc:
        if is_conflicted(assignee, ticket):
            # R22: the reason would tell the manager whom the complaint is about.
            raise Refused(f"不能指派给 {assignee.display}：其无权处理 {_label(ticket)}，"
                          "请指派其他同事。") from None
        raise Refused(f"不能指派给 {assignee.display}：{exc.reason}") from None
    updated = replace(ticket, assignee=assignee.userid)
    notices = (_n("assigned", Audience.ASSIGNEE, Medium.APP),)
    return Outcome(updated, "assigned", {"assignee": assignee.userid}, notices)


def reopen(ticket: Ticket, actor: Actor, reason: str, now: datetime) -> Outcome:
    """A closed or staged-closed ticket comes back to its owner with a fresh clock."""
    check(actor, ticket, Action.REOPEN)
    if not ticket.status.is_final:
        raise Refused(f"{_label(ticket)} 仍在处理中（{ticket.status.label}），无需重新打开。")
    data = {"reason": reason, "from": ticket.status.value}
    return Outcome(reopened(ticket, now), "reopened", data, (reopened_notice(ticket),))


def reopened(ticket: Ticket, now: datetime) -> Ticket:
    """A final ticket back with its owner, its clocks starting again at `now`."""
    return replace(
        ticket,
        status=Status.DISPATCHED,
        owner_since=now,
        owner_responded_at=None,
        owner_solution_at=None,
        no_agreement_at=None,
        resolved_at=None,
        closed_at=None,
        satisfaction=None,
        reopened_count=ticket.reopened_count + 1,
    )


def reopened_notice(ticket: Ticket) -> Notice:
    """The owner's group hears that the ticket is back."""
    return _n("reopened", _OWNER_GROUP[ticket.owner_level], Medium.GROUP)


def confirm_store(ticket: Ticket, actor: Actor, note: str, now: datetime) -> Outcome:
    """4S-store rules: the call centre confirms a complaint the store recorded
    itself (a walk-in, a call to the store); its confirmation clock ends."""
    check(actor, ticket, Action.CONFIRM)
    if ticket.source is not Source.STORE:
        raise Refused(f"{_label(ticket)} 不是门店登记的投诉，无需确认。")
    if ticket.confirmed_at is not None:
        raise Refused(f"{_label(ticket)} 已经确认过了，无需重复确认。")
    updated = replace(ticket, confirmed_at=now)
    notices = (_n("store_confirmed", Audience.DEALER_GROUP, Medium.GROUP),)
    return Outcome(updated, "store_confirmed", {"note": note}, notices)


def mark_major(ticket: Ticket, actor: Actor, reason: str, now: datetime) -> Outcome:
    """R7: the store judges a complaint major; R8/R9 notices go out."""
    check(actor, ticket, Action.MARK_MAJOR)
    if ticket.major:
        raise Refused(f"{_label(ticket)} 已是重大投诉。")
    updated = replace(ticket, major=True, major_since=now)
    return Outcome(updated, "marked_major", {"reason": reason}, major_notices(updated))


# --- legal (R26) ------------------------------------------------------------------

# The event data people write themselves: a note, a reason, the plan's fields.
_FREE_TEXT = ("note", "reason", "demand", "cause", "solution")


def flag_legal(ticket: Ticket, actor: Actor, reason: str, now: datetime) -> Outcome:
    """R26 (/legal): someone who works the ticket flags it to legal by hand."""
    check(actor, ticket, Action.FLAG_LEGAL)
    if ticket.legal:
        raise Refused(f"{_label(ticket)} 已提示法务，无需重复标记。")
    updated = replace(ticket, legal=True)
    notices = (_n("legal_flag", Audience.LEGAL, Medium.EMAIL),)
    return Outcome(updated, "legal_flagged", {"reason": reason}, notices)


def note_legal_mentions(before: Ticket, outcome: Outcome, policy: Policy) -> Outcome:
    """R26 after intake: a change whose note (or reason, or plan) names legal
    action flags a ticket not yet flagged, and legal is told. The ledger runs
    this once for every change, so no command has to remember it."""
    if before.legal or outcome.ticket.legal:
        return outcome
    texts = [str(outcome.data.get(key) or "") for key in _FREE_TEXT]
    if not any(has_legal_keyword(text, policy) for text in texts):
        return outcome
    notices = (*outcome.notices, _n("legal_flag", Audience.LEGAL, Medium.EMAIL))
    return replace(outcome, ticket=replace(outcome.ticket, legal=True),
                   data={**outcome.data, "legal_flagged": True}, notices=notices)


# --- staged closure (R19) ------------------------------------------------------


def staged_closure_approver(ticket: Ticket, policy: Policy) -> Role:
    """R19: the n-th request goes to the n-th approver role (the last repeats)."""
    approvers = policy.staged_closure.approvers
    return approvers[min(ticket.staged_requests, len(approvers) - 1)]


def request_staged_closure(
    ticket: Ticket, actor: Actor, reason: str, policy: Policy, now: datetime
) -> Outcome:
    """R19: the owning region or HQ asks to close a hard case in stages."""
    check(actor, ticket, Action.STAGE)
    _require_open(ticket)
    if not reason.strip():
        raise Refused("申请阶段性结案须说明原因。")
    approver = staged_closure_approver(ticket, policy)
    updated = replace(
        ticket,
        status=Status.STAGED_CLOSURE_PENDING,
        status_before_stage=ticket.status,
        stage_requested_at=now,
        stage_approver=approver,
        staged_requests=ticket.staged_requests + 1,
    )
    audience = _APPROVER_AUDIENCE.get(approver, Audience.SENIOR_MANAGER)
    notices = (
        _n("staged_closure_request", audience, Medium.APP),
        _n("staged_closure_request", audience, Medium.EMAIL),
    )
    data = {"reason": reason, "approver_role": approver.value, "request": updated.staged_requests}
    return Outcome(updated, "staged_closure_requested", data, notices)


def decide_staged_closure(
    ticket: Ticket,
    actor: Actor,
    *,
    approve: bool,
    requested_by: str,
    reason: str,
    now: datetime,
    on_behalf_of: str | None = None,
    approver_role: Role | None = None,
) -> Outcome:
    """R19: only the holder of the approving role decides, never the requester
    nor the employee the complaint is about (R22). `approver_role` is the role
    the request went to when it passed over that employee (default: the
    ticket's stage approver)."""
    refuse_subject(actor, ticket)
    if ticket.status is not Status.STAGED_CLOSURE_PENDING:
        raise Refused(f"{_label(ticket)} 没有待审批的阶段性结案申请（可能已被处理）。")
    if actor.userid == requested_by:
        raise Refused("不能审批自己提交的申请。")
    approver_role = approver_role or ticket.stage_approver or Role.SENIOR_MANAGER
    if actor.role is not approver_role and on_behalf_of is None:
        raise Refused(f"此申请须由{approver_role.label}审批。")
    previous = ticket.status_before_stage or Status.DISPATCHED
    if approve:
        updated = replace(ticket, status=Status.STAGED_CLOSED, closed_at=now)
        event = "staged_closure_approved"
    else:
        updated = replace(ticket, status=previous)
        event = "staged_closure_rejected"
    updated = replace(
        updated, status_before_stage=None, stage_requested_at=None, stage_approver=None
    )
    notices = (_n(event, _OWNER_GROUP[ticket.owner_level], Medium.GROUP),)
    data = {"reason": reason, "on_behalf_of": on_behalf_of, "approver_role": approver_role.value}
    return Outcome(updated, event, data, notices)


# --- the clock -------------------------------------------------------------------


def deadline_due(
    ticket: Ticket, clock: Clock, due_at: datetime, policy: Policy, now: datetime
) -> Outcome:
    """What happens when a pending deadline falls due (R12-R18, R9, R19, R23,
    and the call centre's confirmation of a store's record).

    The breach is recorded at its true time (`due_at`), whenever the sweep runs."""
    group = _OWNER_GROUP[ticket.owner_level]
    data = {"clock": clock.value, "due_at": due_at.isoformat()}
    notices: tuple[Notice, ...]
    if clock is Clock.RESPONSE:
        notices = (
            _n("response_overdue", group, Medium.GROUP),
            _n("response_overdue", _OWNER_HANDLERS[ticket.owner_level], Medium.EMAIL),
        )
    elif clock is Clock.FIRST_SOLUTION or clock is Clock.FOLLOWUP:
        notices = (_n(f"{clock.value}_overdue", group, Medium.GROUP),)
    elif clock is Clock.SOLUTION_EMAIL:
        notices = (
            _n("solution_overdue", group, Medium.GROUP),
            _n("solution_overdue", _OVERDUE_MANAGER[ticket.owner_level], Medium.EMAIL),
        )
    elif clock is Clock.RESOLUTION:
        days = policy.clocks.general.resolution.days
        outcome = _escalate(ticket, f"派单 {days} 天未解决（R15）", now)
        merged = {**data, **outcome.data}
        return Outcome(outcome.ticket, "deadline_breached", merged, outcome.notices)
    elif clock is Clock.NO_AGREEMENT:
        hours = int(policy.no_agreement.decide_within.total_seconds() // 3600)
        outcome = _escalate(ticket, f"客户不接受方案，区域 {hours} 小时内未决定（R15）", now)
        return Outcome(outcome.ticket, "deadline_breached", {**data, **outcome.data},
                       outcome.notices)
    elif clock is Clock.CALLBACK:
        notices = (_n("callback_overdue", Audience.CALL_CENTRE_GROUP, Medium.GROUP),)
    elif clock is Clock.STORE_CONFIRM:
        notices = (
            _n("store_confirm_overdue", Audience.CALL_CENTRE_GROUP, Medium.GROUP),
            _n("store_confirm_overdue", Audience.CALL_CENTRE_AGENTS, Medium.EMAIL),
        )
    elif clock is Clock.STAGED_DECISION:
        approver = ticket.stage_approver or Role.SENIOR_MANAGER
        audience = _APPROVER_AUDIENCE.get(approver, Audience.SENIOR_MANAGER)
        notices = (_n("staged_decision_overdue", audience, Medium.EMAIL),)
    else:
        notices = (_n("major_warning_overdue", Audience.BRAND_AND_LEGAL, Medium.EMAIL),)
    return Outcome(ticket, "deadline_breached", data, notices)


def acknowledge_major(ticket: Ticket, actor: Actor, now: datetime) -> Outcome:
    """R9: brand division or legal confirm they have the major-complaint warning."""
    if actor.role not in (Role.BRAND_DIVISION, Role.LEGAL, Role.ADMIN, Role.CALL_CENTRE):
        raise Refused("只有品牌事业部管理部或法务部可以确认重大投诉预警。")
    if not ticket.major or ticket.major_acknowledged_at is not None:
        raise Refused(f"{_label(ticket)} 没有待确认的重大投诉预警。")
    updated = replace(ticket, major_acknowledged_at=now)
    return Outcome(updated, "major_acknowledged", {})


