"""Intake (R1-R10, R21): validate a new complaint, find an earlier one it
repeats (or, another problem of the same car, is related to), classify it and
dispatch it through the ledger.

Every door comes through `check_complaint`, then `open_complaint`: the
call-centre system's API (webhooks/api.py), an agent's /new in chat and
dealer staff recording a walk-in with /new (commands/new.py): one
validation, one answer per bad field, one classification and dispatch."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

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
from bot.domain.enums import Category, Channel, Flag, Source, Status
from bot.domain.repeat import EarlierComplaint, find_related, find_repeat, normalise_plate
from bot.domain.ticket import Actor, Outcome, Refused
from bot.domain.transitions import dispatch
from bot.ledger import Ledger
from bot.render.privacy import plain
from models import Dealer
from models import Ticket as TicketRow

_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
# A mainland mobile (+86 optional), a landline with its area code (10-12
# digits, perhaps an extension after them), a 400/800 service line, or an
# international number with its +.
_PHONE = re.compile(r"^(?:(?:\+?86)?1[3-9]\d{9}|0\d{9,17}|[48]00\d{7}|\+(?!86)\d{7,15})$")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

INVALID = "投诉信息有误，请按各字段的提示修改"


class IntakeError(Exception):
    """The complaint cannot be accepted; `fields` maps each bad field to why (Chinese)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class Complaint(BaseModel):
    """The body of POST /api/complaints. A field is one line: its type, its
    limits and its Chinese `title`, which every error message names."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_name: Annotated[Text, Field(max_length=64, title="客户姓名")]
    customer_phone: Annotated[Text, Field(max_length=32, title="客户电话")]
    car_model: Annotated[Text, Field(max_length=64, title="车型")]
    plate: Annotated[str, Field(max_length=16, title="车牌号")]
    vin: Annotated[str, Field(max_length=32, title="VIN（车架号）")]
    channel: Annotated[Channel, Field(title="投诉渠道")]
    description: Annotated[Text, Field(max_length=5000, title="投诉内容")]
    dealer_code: Annotated[Text, Field(max_length=32, title="经销商代码")]
    category: Annotated[Category | None, Field(title="类别")] = None
    flags: Annotated[list[Flag], Field(max_length=len(Flag), title="标记")] = []
    about_staff: Annotated[str | None, Field(max_length=64, title="被投诉员工")] = None
    # R22: an employee without a directory account (a sales consultant), by name and role.
    about_staff_name: Annotated[str | None, Field(max_length=64, title="被投诉员工姓名")] = None
    about_staff_role: Annotated[str | None, Field(max_length=64, title="被投诉员工岗位")] = None
    # The call centre settled it on the first call: recorded and closed, never dispatched.
    resolved_on_call: Annotated[bool, Field(title="首次来电即解决")] = False

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL cannot store or compare text containing NUL.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("不能包含 NUL 字符")
        return value

    @field_validator("customer_phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        phone = plain(value)
        if not _PHONE.match(phone):
            raise ValueError("不是有效的电话号码（手机 11 位，座机带区号，境外号码以 + 开头）")
        return phone

    @field_validator("vin")
    @classmethod
    def _vin(cls, value: str) -> str:
        vin = plain(value).upper()
        if vin and not _VIN.match(vin):
            raise ValueError("应为 17 位数字或字母（不含 I、O、Q）")
        return vin

    @field_validator("plate")
    @classmethod
    def _plate(cls, value: str) -> str:
        plate = normalise_plate(unicodedata.normalize("NFKC", value))
        if len(plate) > 16:  # upper-casing can lengthen it: ß -> SS
            raise ValueError("最多 16 个字符")
        return plate

    @model_validator(mode="after")
    def _a_vehicle(self) -> Complaint:
        if not self.vin and not self.plate:
            raise ValueError({"vin": _NO_VEHICLE})
        return self


_NO_VEHICLE = "请填写 VIN（车架号）或车牌号（或两者）"

# Pydantic's error types in Chinese; `{…}` are filled from the error's context.
_MESSAGES = {
    "missing": "为必填项",
    "string_type": "应为文本",
    "string_too_short": "不能为空",
    "string_too_long": "最多 {max_length} 个字符",
    "string_unicode": "含有无效的 Unicode 字符",
    "enum": "应为以下之一：{expected}",
    "list_type": "应为列表",
    "too_long": "最多 {max_length} 项",
    "extra_forbidden": "未知字段",
    "bool_type": "应为 true 或 false（是或否）",
    "bool_parsing": "应为 true 或 false（是或否）",
}


def _message(err: Any) -> str:
    """One pydantic error as a Chinese sentence naming the field."""
    loc = err["loc"]
    info = Complaint.model_fields.get(str(loc[0])) if loc else None
    title = (info.title if info else None) or (str(loc[0]) if loc else "内容")
    if len(loc) > 1:
        title += f"第 {int(loc[1]) + 1} 项" if isinstance(loc[1], int) else f"的 {loc[1]}"
    if err["type"] == "extra_forbidden":
        return f"未知字段“{title}”，请删除"
    if err["type"] == "value_error":
        return f"{title}{err['ctx']['error']}"
    if err["type"] == "enum":
        return f"{title}应为以下之一：{_choices(loc, err)}"
    template = _MESSAGES.get(err["type"], "格式不正确")
    ctx = {k: str(v).replace(" or ", ", ") for k, v in (err.get("ctx") or {}).items()}
    return f"{title}{template.format(**ctx)}"


_ENUMS: dict[str, type[Channel] | type[Category] | type[Flag]] = {
    "channel": Channel, "category": Category, "flags": Flag}


def _choices(loc: Any, err: Any) -> str:
    """The values an enum field takes, each with the label people read (the
    API sends the value, /new may write either): phone（电话）、fax（传真）…"""
    enum = _ENUMS.get(str(loc[0])) if loc else None
    if enum is None:
        return str((err.get("ctx") or {}).get("expected", "")).replace(" or ", ", ")
    return "、".join(f"{member.value}（{member.label}）" for member in enum)


def parse_complaint(body: object) -> Complaint:
    """Validate a decoded JSON body; IntakeError names every bad field at once."""
    if not isinstance(body, dict):
        raise IntakeError({"body": "请求内容必须是 JSON 对象"})
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
            fields.setdefault(name, _message(err))
        # The vehicle rule runs only on an otherwise valid body: say it anyway.
        if not {"vin", "plate"} & set(fields) and not _text(body, "vin") and not _text(
            body, "plate"
        ):
            fields["vin"] = _NO_VEHICLE
        raise IntakeError(fields) from None


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value.strip() if isinstance(value, str) else ""


async def directory_problems(dealer_code: str, about_staff: str | None) -> dict[str, str]:
    """What the directory lacks for a complaint: the dealer, the staff member."""
    return (await _directory(dealer_code, about_staff))[1]


async def _directory(dealer_code: str,
                     about_staff: str | None) -> tuple[Dealer | None, dict[str, str]]:
    """The complaint's dealer (its region joined in one query) and what the
    directory lacks: the dealer, the staff member."""
    problems: dict[str, str] = {}
    dealer = None
    if dealer_code:
        dealer = await Dealer.filter(code=dealer_code).select_related("region").first()
        if dealer is None:
            problems["dealer_code"] = f"经销商代码“{dealer_code}”不存在"
    if about_staff and await actor_for(about_staff) is None:
        problems["about_staff"] = f"名录中没有账号为“{about_staff}”的员工"
    return dealer, problems


@dataclass(frozen=True)
class Checked:
    """A complaint found sound, with its dealer (and region) as the directory
    holds it: opening it need not read the directory again."""

    complaint: Complaint
    dealer: Dealer


async def check_complaint(body: object) -> Checked:
    """parse_complaint plus the directory: IntakeError lists the schema's and
    the directory's problems together, so one answer names every bad field."""
    try:
        complaint = parse_complaint(body)
    except IntakeError as exc:
        if not isinstance(body, dict):
            raise
        known = {
            name: _text(body, name) for name in ("dealer_code", "about_staff")
            if name not in exc.fields  # already refused: not looked up
        }
        exc.fields.update(await directory_problems(known.get("dealer_code", ""),
                                                   known.get("about_staff")))
        raise
    dealer, problems = await _directory(complaint.dealer_code, complaint.about_staff)
    if problems or dealer is None:
        raise IntakeError(problems)
    return Checked(complaint, dealer)


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
            is_open=not Status(r["status"]).is_final,
        )
        for r in rows
    ]


async def open_complaint(
    complaint: Complaint, ledger: Ledger, *, actor: Actor, source: Source | str, now: datetime,
    dealer: Dealer | None = None,
) -> Outcome:
    """Dispatch a validated complaint (or, resolved on the call, record it
    closed); IntakeError names what the directory lacks, or why it cannot be
    closed on the call. `source` is the door it came in by (api, chat, store);
    `dealer` is the one check_complaint found (the directory then is not read
    again), else it is looked up here."""
    door = Source(source)
    if dealer is None:
        dealer, problems = await _directory(complaint.dealer_code, complaint.about_staff)
        if problems or dealer is None:
            raise IntakeError(problems)
    policy = ledger.policies.current
    earlier = await _earlier_complaints(complaint)
    repeat = find_repeat(
        vin=complaint.vin,
        plate=complaint.plate,
        description=complaint.description,
        earlier=earlier,
        policy=policy,
        now=now,
    )
    related = find_related(vin=complaint.vin, plate=complaint.plate, earlier=earlier,
                           repeat=repeat, policy=policy, now=now)
    flags = frozenset(complaint.flags)
    classification = classify(
        channel=complaint.channel,
        flags=flags,
        description=complaint.description,
        explicit=complaint.category,
        is_repeat=repeat is not None,
        policy=policy,
    )
    try:
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
            related_to=related.number if related else None,
            classification=classification,
            policy=policy,
            now=now,
            source=door,
            resolved_on_call=complaint.resolved_on_call,
        )
    except Refused as exc:  # only a first-call resolution can be refused here
        raise IntakeError({"resolved_on_call": exc.reason}) from None
    return await ledger.open(outcome, actor=actor, source=door.value, now=now)


async def related_numbers(number: int, related_to: int | None) -> list[int]:
    """The tickets linked to this one as related (R6: the same vehicle, another
    problem), both ways: the one it links to and those that link to it."""
    later = await TicketRow.filter(related_to=number).order_by("id").values_list("id", flat=True)
    return sorted({*([related_to] if related_to else []), *later})
