"""The pure values the domain works on: a ticket snapshot, the actor, and what a
transition returns. No I/O, no clock: `now` always comes in as an argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.domain.enums import Category, Channel, Flag, OwnerLevel, Role, Slot, Source, Status


class Refused(Exception):
    """A transition the rules forbid. `reason` is Chinese, for the person who asked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """Who asks for a change. `level` follows from where the person sits."""

    userid: str
    role: Role
    name: str = ""
    dealer_code: str | None = None
    region_code: str | None = None

    @property
    def level(self) -> OwnerLevel | None:
        """Dealer, region or HQ; None for the call centre and staff functions."""
        if self.role in (Role.CALL_CENTRE, Role.ADMIN, Role.BRAND_DIVISION, Role.LEGAL):
            return None
        if self.dealer_code:
            return OwnerLevel.DEALER
        if self.region_code:
            return OwnerLevel.REGION
        return OwnerLevel.HQ

    @property
    def display(self) -> str:
        return self.name or self.userid


SYSTEM = Actor(userid="system", role=Role.ADMIN, name="系统")
"""The bot itself, acting when a deadline falls due."""


@dataclass(frozen=True)
class ContactAttempt:
    at: datetime
    slot: Slot


@dataclass(frozen=True)
class Solution:
    """The first-solution fields of R13."""

    demand: str
    cause: str
    solution: str
    customer_accepts: bool
    return_visit: bool


@dataclass(frozen=True)
class Ticket:
    """A snapshot of one complaint ticket with every field of R1."""

    number: int | None
    customer_name: str
    customer_phone: str
    car_model: str
    plate: str
    vin: str
    channel: Channel
    description: str
    dealer_code: str
    region_code: str
    category: Category
    owner_level: OwnerLevel
    status: Status
    policy_version: str
    dispatched_at: datetime
    owner_since: datetime
    flags: frozenset[Flag] = frozenset()
    major: bool = False
    major_since: datetime | None = None
    major_acknowledged_at: datetime | None = None
    legal: bool = False
    about_staff: str | None = None
    # R22: an employee named without a directory account (a sales consultant).
    about_staff_name: str | None = None
    about_staff_role: str | None = None
    repeat_of: int | None = None
    related_to: int | None = None
    assignee: str | None = None
    responded_at: datetime | None = None
    first_solution_at: datetime | None = None
    owner_responded_at: datetime | None = None
    owner_solution_at: datetime | None = None
    escalated_at: datetime | None = None
    no_agreement_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    followup_count: int = 0
    attempts: tuple[ContactAttempt, ...] = ()
    dispute_open: bool = False
    staged_requests: int = 0
    status_before_stage: Status | None = None
    stage_requested_at: datetime | None = None
    stage_approver: Role | None = None
    reopened_count: int = 0
    # The score of record: the call centre's at /close, replaced by the
    # customer's own when they answer the survey (R23).
    satisfaction: int | None = None
    solution: Solution | None = None
    # R23: the customer's last survey answer (kept when the ticket reopens).
    survey_score: int | None = None
    survey_comment: str | None = None
    survey_answered_at: datetime | None = None
    # The door it came in by; a store's own record waits for the call centre's confirmation.
    source: Source = Source.API
    confirmed_at: datetime | None = None
    # Settled on the first call: recorded and closed, never dispatched.
    resolved_on_call: bool = False


class Audience(StrEnum):
    """Who a notice is for; the ledger turns it into addresses from the directory."""

    CUSTOMER = "customer"
    DEALER_GROUP = "dealer_group"
    REGION_GROUP = "region_group"
    HQ_GROUP = "hq_group"
    CALL_CENTRE_GROUP = "call_centre_group"
    CALL_CENTRE_AGENTS = "call_centre_agents"
    DEALER_HANDLERS = "dealer_handlers"
    DEALER_MANAGERS = "dealer_managers"
    DEALER_LEADERS = "dealer_leaders"
    REGION_HANDLERS = "region_handlers"
    HQ_HANDLERS = "hq_handlers"
    SECOND_LEVEL_MANAGER = "second_level_manager"
    SENIOR_MANAGER = "senior_manager"
    BRAND_AND_LEGAL = "brand_and_legal"
    LEGAL = "legal"
    ASSIGNEE = "assignee"


class Medium(StrEnum):
    GROUP = "group"
    APP = "app"
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True)
class Notice:
    """One message the change causes, before recipients are known."""

    kind: str
    audience: Audience
    medium: Medium


@dataclass(frozen=True)
class Outcome:
    """What a transition did: the new snapshot, one history event, the notices."""

    ticket: Ticket
    event: str
    data: dict[str, Any] = field(default_factory=dict)
    notices: tuple[Notice, ...] = ()
