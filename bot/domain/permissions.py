"""Who may do what to a ticket (PROCESS.md "Who is who", R11, R19, R20, R22).

`check` raises Refused with a reason a person understands; it returns nothing
when the action is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot.domain.enums import OwnerLevel, Role, Source
from bot.domain.ticket import SYSTEM, Actor, Audience, Refused, Ticket


class Action(StrEnum):
    VIEW = "view"
    RESPOND = "respond"
    PLAN = "plan"
    FOLLOWUP = "followup"
    ATTEMPT = "attempt"
    RESOLVE = "resolve"
    CLOSE = "close"
    ESCALATE = "escalate"
    DISPUTE = "dispute"
    DISPUTE_DECIDE = "dispute_decide"
    ASSIGN = "assign"
    REOPEN = "reopen"
    STAGE = "stage"
    COMPENSATE = "compensate"
    MARK_MAJOR = "mark_major"
    FLAG_LEGAL = "flag_legal"
    CONFIRM = "confirm"
    ATTACH = "attach"


_CALL_CENTRE_ONLY = {Action.CLOSE, Action.DISPUTE_DECIDE, Action.CONFIRM}
_OWNER_LEVEL_ONLY = {Action.RESPOND, Action.ASSIGN}
_REGION_OR_HQ = {Action.ESCALATE, Action.REOPEN, Action.STAGE}
_READ_ONLY_ROLES = {Role.BRAND_DIVISION, Role.LEGAL}
# R15: a dealer's manager or GM may hand a ticket their store holds up to the region.
_DEALER_ESCALATORS = {Role.DEALER_MANAGER, Role.DEALER_GM}


# /new: the call centre records what reached it; dealer staff what reached the store.
_STORE_RECORDERS = frozenset({Role.DEALER_STAFF, Role.DEALER_MANAGER, Role.DEALER_GM})
INTAKE_ROLES = frozenset({Role.CALL_CENTRE, Role.ADMIN}) | _STORE_RECORDERS


def intake_door(actor: Actor) -> Source:
    """Which door /new opens for the actor: the call centre's (`Source.CHAT`)
    or, for dealer staff, their store's (`Source.STORE`, 4S-store rules)."""
    if actor.role in (Role.CALL_CENTRE, Role.ADMIN):
        return Source.CHAT
    if actor.role in _STORE_RECORDERS and actor.dealer_code:
        return Source.STORE
    raise Refused("只有呼叫中心或经销商员工可以登记新投诉。")


def in_scope(actor: Actor, ticket: Ticket) -> bool:
    """The actor's dealer, region or HQ is in the ticket's chain of owners."""
    level = actor.level
    if level is OwnerLevel.DEALER:
        return actor.dealer_code == ticket.dealer_code
    if level is OwnerLevel.REGION:
        return actor.region_code == ticket.region_code
    return level is OwnerLevel.HQ


def is_subject(userid: str, ticket: Ticket) -> bool:
    """R22: `userid` is the employee the complaint is about."""
    return bool(ticket.about_staff) and userid == ticket.about_staff


def is_conflicted(actor: Actor, ticket: Ticket) -> bool:
    """R22: the employee the complaint is about."""
    return is_subject(actor.userid, ticket)


def is_about_staff(ticket: Ticket) -> bool:
    """R22: the complaint names an employee, from the directory or by name only."""
    return bool(ticket.about_staff or ticket.about_staff_name)


def group_may_see_details(ticket: Ticket) -> bool:
    """R22: a group chat may show the customer and the complaint, unless the
    complaint is about an employee, who may be in the group: then handlers
    get the details one to one only."""
    return not is_about_staff(ticket)


def may_decide_approval(userid: str, ticket: Ticket) -> bool:
    """R22: whether `userid` may receive, see or decide an approval request of
    the ticket, as its approver or anyone's delegate: never the employee the
    complaint is about."""
    return not is_subject(userid, ticket)


def refuse_subject(actor: Actor, ticket: Ticket) -> None:
    """R22: refuse the employee the complaint is about, in words that do not
    say why (a decision by delegation must not tell whom the complaint is about)."""
    if is_conflicted(actor, ticket):
        number = f"#{ticket.number}" if ticket.number else "该投诉"
        raise Refused(f"您不能审批 {number} 的申请。")


def may_see_customer(actor: Actor, ticket: Ticket) -> bool:
    """R22: the employee complained about never sees the customer's details."""
    return not is_conflicted(actor, ticket)


@dataclass(frozen=True)
class ViewBounds:
    """The tickets `check` lets an actor view, said in stored columns, so a
    list can ask the database for just those: a viewable ticket has the
    values in `same`, and is not about the employee `subject` (R22)."""

    same: dict[str, str] = field(default_factory=dict)
    subject: str | None = None


def view_bounds(actor: Actor) -> ViewBounds:
    """`check(actor, ticket, Action.VIEW)` for every ticket at once (tests
    hold the two to the same answers)."""
    if actor == SYSTEM:
        return ViewBounds()
    level = actor.level
    if level is OwnerLevel.DEALER and actor.dealer_code:
        return ViewBounds({"dealer_code": actor.dealer_code}, actor.userid)
    if level is OwnerLevel.REGION and actor.region_code:
        return ViewBounds({"region_code": actor.region_code}, actor.userid)
    # The call centre, admins, read-only roles and HQ see every ticket.
    return ViewBounds({}, actor.userid)


def check(actor: Actor, ticket: Ticket, action: Action) -> None:
    """Refuse the action unless the process lets this actor take it."""
    number = f"#{ticket.number}" if ticket.number else "该投诉"
    if actor == SYSTEM:
        return
    if is_conflicted(actor, ticket):
        # R22, in words that do not say why: the reply may be read in a group.
        raise Refused(f"按规定您不能处理或查看 {number}。")
    if (action is Action.STAGE and ticket.owner_level is OwnerLevel.DEALER
            and actor.role is not Role.ADMIN):
        # R19 is a rule of escalated and important complaints: the call centre,
        # which may do most things, may not stage one its dealer still holds.
        raise Refused(f"{number} 仍由经销商负责：阶段性结案只适用于区域或本部负责的投诉（R19）。")
    if actor.role in (Role.CALL_CENTRE, Role.ADMIN):
        return
    if action in _CALL_CENTRE_ONLY:
        raise Refused(f"只有呼叫中心可以执行此操作（{number}）。")
    if actor.role in _READ_ONLY_ROLES:
        # Legal may flag a ticket for itself (R26) wherever it sits.
        if action is Action.VIEW or (action is Action.FLAG_LEGAL and actor.role is Role.LEGAL):
            return
        raise Refused(f"{actor.role.label}只能查看投诉，不能处理（{number}）。")
    if not in_scope(actor, ticket):
        raise Refused(_out_of_scope(actor, ticket, number))
    level = actor.level
    if (action is Action.ESCALATE and level is OwnerLevel.DEALER
            and actor.role in _DEALER_ESCALATORS):
        if ticket.owner_level is not OwnerLevel.DEALER:
            raise Refused(f"{number} 已不在经销商处理阶段，经销商不能再升级。")
        return
    if action in _REGION_OR_HQ and level is OwnerLevel.DEALER:
        raise Refused(f"只有区域或本部可以执行此操作（{number}）。")
    if action is Action.DISPUTE and level is not OwnerLevel.DEALER:
        raise Refused(f"只有被派单的经销商可以提出异议（{number}，R11）。")
    if action in _OWNER_LEVEL_ONLY and level is not ticket.owner_level:
        raise Refused(
            f"{number} 当前由{ticket.owner_level.label}负责，"
            f"此操作须由{ticket.owner_level.label}执行。"
        )
    if action is Action.STAGE and level is not ticket.owner_level:
        raise Refused(f"只有负责该投诉的{ticket.owner_level.label}可以申请阶段性结案（R19）。")


# Who stands for an audience when a notice asks "may they do it?": a member of
# the group or role the notice goes to, sitting where the ticket is.
_AUDIENCE_ROLE = {
    Audience.DEALER_GROUP: Role.DEALER_STAFF,
    Audience.DEALER_HANDLERS: Role.DEALER_STAFF,
    Audience.DEALER_MANAGERS: Role.DEALER_MANAGER,
    Audience.DEALER_LEADERS: Role.DEALER_MANAGER,
    Audience.REGION_GROUP: Role.REGION_STAFF,
    Audience.REGION_HANDLERS: Role.REGION_STAFF,
    Audience.SECOND_LEVEL_MANAGER: Role.SECOND_LEVEL_MANAGER,
    Audience.SENIOR_MANAGER: Role.SENIOR_MANAGER,
    Audience.HQ_GROUP: Role.HQ_STAFF,
    Audience.HQ_HANDLERS: Role.HQ_STAFF,
    Audience.CALL_CENTRE_GROUP: Role.CALL_CENTRE,
    Audience.CALL_CENTRE_AGENTS: Role.CALL_CENTRE,
    Audience.BRAND_AND_LEGAL: Role.BRAND_DIVISION,
    Audience.LEGAL: Role.LEGAL,
}
_DEALER_AUDIENCES = {Audience.DEALER_GROUP, Audience.DEALER_HANDLERS,
                     Audience.DEALER_MANAGERS, Audience.DEALER_LEADERS}
_REGION_AUDIENCES = {Audience.REGION_GROUP, Audience.REGION_HANDLERS}


def audience_may(audience: Audience | str, ticket: Ticket, action: Action) -> bool:
    """Whether the people a notice goes to may take `action` on the ticket,
    by the very rule (`check`) their commands meet: a notice asks for an action
    only of those who may take it (issue 12 item 2). The customer, an
    assignee and a name of no audience (a row with ready content) are not
    asked here (False)."""
    role = _AUDIENCE_ROLE.get(audience)  # a StrEnum: its value finds it too
    if role is None:
        return False
    audience = Audience(audience)
    dealer = ticket.dealer_code if audience in _DEALER_AUDIENCES else None
    region = ticket.region_code if dealer or audience in _REGION_AUDIENCES else None
    # A member of a regional manager audience sits in the ticket's region.
    if role in (Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER):
        region = ticket.region_code
    stand_in = Actor(userid=f"audience:{audience.value}", role=role,
                     dealer_code=dealer, region_code=region)
    return may(stand_in, ticket, action)


def may(actor: Actor, ticket: Ticket, action: Action) -> bool:
    """Whether `check` lets the actor take the action (for what is shown, not done)."""
    try:
        check(actor, ticket, action)
    except Refused:
        return False
    return True


def _out_of_scope(actor: Actor, ticket: Ticket, number: str) -> str:
    if actor.level is OwnerLevel.DEALER:
        return f"{number} 不属于您所在的经销商，不能操作。"
    return f"{number} 不属于您所在的区域，不能操作。"
