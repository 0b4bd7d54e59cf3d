"""/new (新投诉): record a complaint in chat, through the same validation,
classification and dispatch as POST /api/complaints (bot.intake.check_complaint,
then open_complaint).

A call-centre agent, in their group or the app, names the dealer (经销商=).
Dealer staff record a walk-in or a call to the store in their dealer group:
the ticket is that dealer's, its source is `store`, and the call centre is
told at once and confirms it (/confirm). 已解决=是 records a complaint the
call centre settled on the first call: closed at once, never dispatched."""

from __future__ import annotations

import re

import structlog

from bot.domain.enums import Channel, Flag, Source
from bot.domain.permissions import INTAKE_ROLES, intake_door
from bot.domain.ticket import Refused
from bot.intake import INVALID, IntakeError, check_complaint, open_complaint
from bot.render.chat import render_outcome
from commands.base import Reply
from commands.command import Call, Command, UsageError, keyed_fields, parse_yes_no

log = structlog.get_logger(__name__)

# The field of the intake API each key of /new fills: the Chinese key first
# (the one replies name), then the other spellings accepted.
_SPELLINGS = {
    "customer_name": ("客户", "name"), "customer_phone": ("电话", "phone"),
    "car_model": ("车型", "model"), "plate": ("车牌", "plate"), "vin": ("VIN", "车架号"),
    "channel": ("渠道", "channel"), "dealer_code": ("经销商", "dealer"),
    "description": ("描述", "description"), "flags": ("标记", "flags"),
    "resolved_on_call": ("已解决", "resolved"),
    # R22: the employee complained about, by directory account, else by name and post.
    "about_staff": ("被投诉员工", "staff"), "about_staff_name": ("被投诉人", "staff_name"),
    "about_staff_role": ("被投诉人岗位", "staff_role"),
}
_KEYS = {spelling: name for name, spellings in _SPELLINGS.items() for spelling in spellings}
_SEPARATORS = re.compile(r"[、,，;；\s]+")


def _choice(value: str, enum: type[Channel] | type[Flag]) -> str:
    """An enum value written as its value (phone) or its label (电话); anything
    else is passed on as typed, for the intake to name as wrong."""
    for member in enum:
        if value.lower() == member.value or value == member.label:
            return member.value
    return value


def complaint_body(fields: dict[str, str], door: Source) -> dict[str, object]:
    """The intake API's body from the fields of /new. A store's record is a
    walk-in unless 渠道= says otherwise; a vehicle needs a VIN or a plate,
    so a missing one is empty."""
    body: dict[str, object] = {"plate": "", "vin": "", **fields}
    if door is Source.STORE:
        body.setdefault("channel", Channel.WALK_IN.value)
    if "channel" in fields:
        body["channel"] = _choice(fields["channel"], Channel)
    if "flags" in fields:
        body["flags"] = [_choice(f, Flag) for f in _SEPARATORS.split(fields["flags"]) if f]
    if "resolved_on_call" in fields:
        try:
            body["resolved_on_call"] = parse_yes_no(fields["resolved_on_call"], "已解决")
        except UsageError:  # the intake names it with the other bad fields
            body["resolved_on_call"] = fields["resolved_on_call"]
    return body


def refusal_text(fields: dict[str, str]) -> str:
    """Every bad field at once, each with the key to correct."""
    lines = [f"❌ {INVALID}，投诉未登记："]
    for name, message in fields.items():
        typed = _SPELLINGS.get(name.split(".")[0])
        lines.append(f"- {message}" + (f"（{typed[0]}=）" if typed else ""))
    return "\n".join(lines)


async def _store_dealer(call: Call) -> str:
    """The dealer a store's record belongs to: the dealer group it is typed
    in, which must be the recorder's own; one to one, the recorder's dealer."""
    own = call.actor.dealer_code or ""
    group = await call.bound_group()
    if group is not None and group.dealer is not None and group.dealer.code != own:
        raise Refused(f"本群属于{group.dealer.name}（{group.dealer.code}），"
                      "您只能在本店的投诉群登记投诉。")
    return own


async def _new(call: Call) -> Reply:
    door = intake_door(call.actor)
    fields = keyed_fields(call.args, _KEYS)
    if not fields:
        raise UsageError("请按 字段=内容 填写投诉信息。")
    if door is Source.STORE:
        dealer = await _store_dealer(call)
        given = fields.get("dealer_code", "")
        if given and given.upper() != dealer.upper():
            raise UsageError(f"门店登记的投诉属于本店（{dealer}），请删去 经销商={given}。")
        fields["dealer_code"] = dealer
    ctx = call.ctx
    try:
        checked = await check_complaint(complaint_body(fields, door))
        outcome = await open_complaint(checked.complaint, ctx.ledger, actor=call.actor,
                                       source=door, now=ctx.now, dealer=checked.dealer)
    except IntakeError as exc:
        log.info("chat_complaint_rejected", fields=sorted(exc.fields), userid=call.actor.userid)
        return Reply(markdown=refusal_text(exc.fields))
    # The dealer the check found names it in the reply: not read again.
    found = checked.dealer
    names = {found.code: f"{found.name}（{found.code}）"}
    return Reply(markdown=render_outcome(outcome, call.actor, ctx.zone, now=ctx.now,
                                         names=names))


COMMAND = Command(
    name="new",
    alias="新投诉",
    summary="登记新投诉：呼叫中心写明经销商；经销商员工在本店群登记到店或来电投诉，"
            "由呼叫中心确认；已解决=是 表示首次来电即解决，直接结案不派单",
    usage="/new 客户=… 电话=… 车型=… 车牌=…|VIN=… 渠道=… 经销商=… 描述=… "
          "[标记=…] [被投诉员工=账号] [已解决=是|否]",
    example="/new 客户=李先生 电话=13812345678 车型=速腾 车牌=沪A12345 渠道=电话 "
            "经销商=SH001 描述=变速箱顿挫，多次维修未解决",
    handler=_new,
    roles=INTAKE_ROLES,
)
