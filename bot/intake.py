"""Intake (R1-R10, R21): validate a new complaint, find an earlier one it
repeats, classify it and dispatch it through the ledger."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from tortoise.expressions import Q

from bot.directory import actor_for
from bot.domain.classification import classify
from bot.domain.enums import Category, Channel, Flag, Status
from bot.domain.repeat import EarlierComplaint, find_repeat, normalise_plate
from bot.domain.ticket import Actor, Outcome
from bot.domain.transitions import dispatch
from bot.ledger import Ledger
from models import Dealer
from models import Ticket as TicketRow

_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")
_FINAL = [s for s in Status if s.is_final]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class IntakeError(Exception):
    """The complaint cannot be accepted; `fields` maps each bad field to why."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class Complaint(BaseModel):
    """The body of POST /api/complaints."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_name: Annotated[Text, Field(max_length=64)]
    customer_phone: Annotated[Text, Field(max_length=32)]
    car_model: Annotated[Text, Field(max_length=64)]
    plate: Annotated[str, Field(max_length=16)]
    vin: Annotated[str, Field(max_length=17)]
    channel: Channel
    description: Annotated[Text, Field(max_length=5000)]
    dealer_code: Annotated[Text, Field(max_length=32)]
    category: Category | None = None
    flags: Annotated[list[Flag], Field(max_length=len(Flag))] = []
    about_staff: Annotated[str, Field(max_length=64)] | None = None
    # R22: an employee without a directory account (a sales consultant), by name and role.
    about_staff_name: Annotated[str, Field(max_length=64)] | None = None
    about_staff_role: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL cannot store or compare text containing NUL.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _vehicle_and_phone(self) -> Complaint:
        problems: dict[str, str] = {}
        phone = re.sub(r"[\s\-()]", "", self.customer_phone)
        if not _PHONE.match(phone):
            problems["customer_phone"] = "must be a phone number (digits, optional leading +)"
        self.customer_phone = phone
        self.vin = self.vin.upper()
        if self.vin and not _VIN.match(self.vin):
            problems["vin"] = "must be 17 characters, digits and letters except I, O, Q"
        self.plate = normalise_plate(self.plate)
        if len(self.plate) > 16:  # upper-casing can lengthen it: ß -> SS
            problems["plate"] = "must be at most 16 characters"
        if not self.vin and not self.plate:
            problems["vin"] = "give the VIN or the plate (or both)"
        if problems:
            raise ValueError(problems)
        return self


def parse_complaint(body: object) -> Complaint:
    """Validate a decoded JSON body, with one message per bad field."""
    if not isinstance(body, dict):
        raise IntakeError({"body": "must be a JSON object"})
    try:
        return Complaint.model_validate(body)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, ValueError) and isinstance(ctx_error.args[0], dict):
                fields.update(ctx_error.args[0])
                continue
            name = ".".join(str(p) for p in err["loc"]) or "body"
            fields.setdefault(name, err["msg"])
        raise IntakeError(fields) from None


async def _earlier_complaints(complaint: Complaint) -> list[EarlierComplaint]:
    match = Q()
    if complaint.vin:
        match |= Q(vin=complaint.vin)
    if complaint.plate:
        match |= Q(plate=complaint.plate)
    rows = await TicketRow.filter(match).order_by("-id").limit(50).values(
        "id", "vin", "plate", "description", "dispatched_at", "status"
    )
    return [
        EarlierComplaint(
            number=r["id"],
            vin=r["vin"],
            plate=r["plate"],
            description=r["description"],
            dispatched_at=r["dispatched_at"],
            is_open=r["status"] not in _FINAL,
        )
        for r in rows
    ]


async def open_complaint(
    complaint: Complaint, ledger: Ledger, *, actor: Actor, source: str, now: datetime
) -> Outcome:
    """Dispatch a validated complaint; IntakeError names what the directory lacks."""
    dealer = await Dealer.get_or_none(code=complaint.dealer_code).prefetch_related("region")
    if dealer is None:
        raise IntakeError({"dealer_code": f"no dealer with code {complaint.dealer_code!r}"})
    if complaint.about_staff and await actor_for(complaint.about_staff) is None:
        raise IntakeError({"about_staff": f"no staff member with userid {complaint.about_staff!r}"})
    policy = ledger.policies.current
    repeat = find_repeat(
        vin=complaint.vin,
        plate=complaint.plate,
        description=complaint.description,
        earlier=await _earlier_complaints(complaint),
        policy=policy,
        now=now,
    )
    flags = frozenset(complaint.flags)
    classification = classify(
        channel=complaint.channel,
        flags=flags,
        description=complaint.description,
        explicit=complaint.category,
        is_repeat=repeat is not None,
        policy=policy,
    )
    outcome = dispatch(
        customer_name=complaint.customer_name,
        customer_phone=complaint.customer_phone,
        car_model=complaint.car_model,
        plate=complaint.plate,
        vin=complaint.vin,
        channel=complaint.channel,
        description=complaint.description,
        dealer_code=dealer.code,
        region_code=dealer.region.code,
        flags=flags,
        about_staff=complaint.about_staff or None,
        about_staff_name=complaint.about_staff_name or None,
        about_staff_role=complaint.about_staff_role or None,
        repeat_of=repeat.number if repeat else None,
        classification=classification,
        policy=policy,
        now=now,
    )

    return await ledger.open(outcome, actor=actor, source=source, now=now)
