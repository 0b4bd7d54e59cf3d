"""The process policy: one YAML file, parsed into a frozen, validated object.

The policy's identity is the hash of its parsed content, so two files that say
the same thing are the same policy, and any edit makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.domain.enums import Category, Channel, Clock, Flag, OwnerLevel, Role

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days"}


class PolicyError(Exception):
    """The policy file is unreadable or invalid; the message names the field."""


def parse_duration(value: Any) -> timedelta:
    """Turn '30m', '2h' or '3d' into a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (write for example 30m, 2h or 3d)")
    return timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, used when a policy is stored."""
    minutes = int(value.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def parse_clock_time(value: Any) -> time:
    """Turn '09:00' into a time of day ('24:00' is not one: end a day at '23:59')."""
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"not a time of day: {value!r} (write for example 09:00)") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def longer_than_zero(value: timedelta) -> timedelta:
    """Refuse a duration of zero or less (a window that is always shut)."""
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(longer_than_zero)]


def known_zone(value: str) -> str:
    """Accept an IANA zone name such as Asia/Shanghai, refuse anything else."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (example: Asia/Shanghai)") from None
    return value


ZoneName = Annotated[str, AfterValidator(known_zone)]
ClockTime = Annotated[time, BeforeValidator(parse_clock_time)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeneralClocks(_Frozen):
    response: Duration
    first_solution: Duration
    solution_email: Duration
    followup: Duration
    resolution: Duration


class OwnerClocks(_Frozen):
    response: Duration
    solution_email: Duration


class Clocks(_Frozen):
    general: GeneralClocks
    escalated: OwnerClocks
    important: OwnerClocks
    callback: Duration


class Unreachable(_Frozen):
    attempts: int = Field(ge=1)
    distinct_slots: int = Field(ge=1)
    window: Duration
    slots: dict[str, tuple[int, int]]


class Classification(_Frozen):
    escalated_channels: frozenset[Channel]
    important_channels: frozenset[Channel]
    escalated_flags: frozenset[Flag]
    important_flags: frozenset[Flag]
    major_channels: frozenset[Channel]
    major_flags: frozenset[Flag]
    legal_keywords: tuple[str, ...]
    # R26: a complaint through these channels is flagged to legal (R2: a law firm).
    legal_channels: frozenset[Channel] = frozenset({Channel.LAW_FIRM})


class RepeatRule(_Frozen):
    lookback: Duration
    min_similarity: float = Field(ge=0, le=1)
    open_ticket_is_repeat: bool


class StagedClosure(_Frozen):
    approvers: tuple[Role, ...] = Field(min_length=1)
    decision_reminder: Duration


class NoAgreement(_Frozen):
    """R15/R5: what follows when the customer does not accept the solution.

    `escalate`: the ticket goes up one level at once. `notify`: a dealer's
    ticket stays, the region is told and must decide (escalate, or have the
    dealer agree a new plan) within `decide_within`, else it escalates then."""

    action: Literal["escalate", "notify"] = "escalate"
    decide_within: Duration = timedelta(hours=24)


class CompensationBand(_Frozen):
    up_to: Decimal | None
    role: Role


# The largest amount approval_request.amount (NUMERIC(12,2)) can hold.
AMOUNT_CEILING = Decimal("9999999999.99")


class CommandLimits(_Frozen):
    """Upper bounds of what a command may ask for; beyond them it is refused
    with the reason (a typo such as 10000000000 must not reach an approver)."""

    compensation: Decimal = Field(default=Decimal(1_000_000), gt=0, le=AMOUNT_CEILING)
    delegation: PositiveDuration = timedelta(days=90)


class Leavers(_Frozen):
    """Directory sync: what becomes of a ticket assigned to someone who left.

    `pool`: the assignee is cleared, the owner's handlers pick it up again.
    `colleague`: the first active colleague (by userid) who may handle it for
    its owner takes it, else the pool. The region's group is told either way."""

    reassign: Literal["pool", "colleague"] = "pool"


class Survey(_Frozen):
    """R23: the satisfaction survey the customer answers from the closing SMS.

    The link works for `valid_for` after the ticket closed, once. A score at
    or below `low_score` tells the dealer's managers and the region, and with
    `low_score_reopens` also reopens the ticket for its owner."""

    valid_for: PositiveDuration = timedelta(days=7)
    low_score: int = Field(default=2, ge=1, le=5)
    low_score_reopens: bool = False


class AttachmentRules(_Frozen):
    """Photos and files on a ticket: the largest accepted (bytes, each), how
    long a signed download link works, and how long a photo sent without a
    ticket number waits for `/attach 编号` from the same person in the same chat."""

    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    link_lifetime: PositiveDuration = timedelta(hours=24)
    pending_window: PositiveDuration = timedelta(minutes=10)


class QuietHours(_Frozen):
    """The nightly window in which e-mails and group nudges wait (local times)."""

    enabled: bool = False
    start: ClockTime = time(21)
    end: ClockTime = time(8)


def _nine_to_six() -> dict[str, tuple[time, time] | None]:
    day = (time(9), time(18))
    return {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": None, "sun": None}


class BusinessCalendar(_Frozen):
    """When the brand works: hours per weekday, the Chinese statutory holidays
    and make-up working days, and quiet hours. Off by default: clocks then run
    around the clock and notices go out at once."""

    enabled: bool = False
    timezone: ZoneName = "Asia/Shanghai"
    working_hours: dict[str, tuple[ClockTime, ClockTime] | None] = Field(
        default_factory=_nine_to_six
    )
    statutory_holidays: bool = True
    makeup_day_hours: tuple[ClockTime, ClockTime] = (time(9), time(18))
    working_time_clocks: frozenset[Clock] = frozenset(
        {Clock.FIRST_SOLUTION, Clock.SOLUTION_EMAIL, Clock.RESOLUTION}
    )
    quiet_hours: QuietHours = QuietHours()

    @field_validator("working_hours")
    @classmethod
    def _weekdays(
        cls, value: dict[str, tuple[time, time] | None]
    ) -> dict[str, tuple[time, time] | None]:
        unknown = sorted(set(value) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"unknown weekday {unknown[0]!r} (use {', '.join(WEEKDAYS)})")
        if not any(value.values()):
            raise ValueError("at least one weekday needs working hours")
        return {day: value.get(day) for day in WEEKDAYS}

    @model_validator(mode="after")
    def _hours_in_order(self) -> BusinessCalendar:
        spans = [*self.working_hours.values(), self.makeup_day_hours]
        if any(span is not None and span[0] >= span[1] for span in spans):
            raise ValueError("working hours must start before they end, within one day")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The zone the working hours and quiet hours are read in."""
        return ZoneInfo(self.timezone)

    def hours_on(self, weekday: int) -> tuple[time, time] | None:
        """The working hours of a weekday (0 is Monday), None when closed."""
        return self.working_hours[WEEKDAYS[weekday]]


class Policy(_Frozen):
    """Every configurable number of the process (see bot/policy.yaml)."""

    version: str
    clocks: Clocks
    dispute_window: Duration
    followup_escalate_above: int = Field(ge=0)
    unreachable: Unreachable
    classification: Classification
    repeat: RepeatRule
    owner_level: dict[Category, OwnerLevel]
    staged_closure: StagedClosure
    compensation: tuple[CompensationBand, ...] = Field(min_length=1)
    major_warning: Duration
    # A complaint the store recorded itself: the call centre confirms it within this.
    store_confirm: Duration = timedelta(hours=24)
    no_agreement: NoAgreement = NoAgreement()
    calendar: BusinessCalendar = BusinessCalendar()
    limits: CommandLimits = CommandLimits()
    leavers: Leavers = Leavers()
    survey: Survey = Survey()
    attachments: AttachmentRules = AttachmentRules()

    def document(self) -> dict[str, Any]:
        """The policy as plain JSON-able data, the form in which it is stored."""

        def plain(value: Any) -> Any:
            if isinstance(value, timedelta):
                return format_duration(value)
            if isinstance(value, time):
                return value.strftime("%H:%M")
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if isinstance(value, frozenset | set):
                return sorted(plain(v) for v in value)
            if isinstance(value, Decimal):
                return str(value)
            return value

        return plain(self.model_dump(mode="python"))

    @property
    def digest(self) -> str:
        """A short hash of the content: the key under which the policy is stored."""
        canonical = json.dumps(self.document(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def policy_from_document(document: dict[str, Any]) -> Policy:
    """Validate a policy document (parsed YAML or a stored copy)."""
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"invalid policy: {problems}") from None
