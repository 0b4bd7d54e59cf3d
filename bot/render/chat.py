"""Chat markdown for people: what a change did (rendered from its Outcome), a
ticket in full (/show) and in one line (/list).

One renderer for every command, so a reply reads the same whoever caused the
change. Chinese first, the ticket number in every message; the customer's
phone and VIN appear unmasked only where the caller says so (one-to-one chats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.deadlines import Deadline
from bot.domain.enums import Category, OwnerLevel, Slot, Source, Status
from bot.domain.permissions import group_may_see_details
from bot.domain.ticket import Actor, Outcome, Ticket
from bot.render.privacy import mask_phone, mask_vin, phone_pattern, plain, vin_pattern

# Events whose message needs nothing but a headline.
_HEADLINES = {
    "staged_closure_requested": "📝 {n} 已申请阶段性结案，等待审批（R19）",
    "staged_closure_approved": "🔒 {n} 阶段性结案已批准",
    "staged_closure_rejected": "↩️ {n} 阶段性结案申请已驳回，继续处理",
    "marked_major": "🚨 {n} 已标记为重大投诉（R7）",
    "major_acknowledged": "✅ {n} 已确认重大投诉预警（R9）",
    "legal_flagged": "⚖️ {n} 已标记为涉及法律诉讼，已提示法务（R26）",
    "deadline_breached": "⏰ {n} 处理时限已到",
    "staff_left": "👋 {n} 处理人或审批人已离职，已通知区域",
    "approval_passed_over": "↗️ {n} 审批人是被投诉员工本人，审批已转给上一级",
}


def short_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """03-02 09:45 in the configured zone."""
    return moment.astimezone(zone).strftime("%m-%d %H:%M") if moment else "—"

def scrub(text: str, ticket: Ticket) -> str:
    """Free text (a complaint, a note) with the customer's phone and VIN masked
    wherever someone typed them into it, in whatever width or with whatever
    separators (see bot.render.privacy)."""
    # The cheap test first: the patterns are built (and compiled: more tickets
    # than the re module caches) per ticket, and most text holds neither.
    flat = plain(text).upper()
    if plain(ticket.customer_phone).lstrip("+")[-5:] in flat and (
            phone := phone_pattern(ticket.customer_phone)) is not None:
        text = phone.sub(mask_phone(ticket.customer_phone), text)
    if ticket.vin and plain(ticket.vin).upper() in flat and (
            vin := vin_pattern(ticket.vin)) is not None:
        text = vin.sub(mask_vin(ticket.vin), text)
    return text


def withheld_text(number: int | None) -> str:
    """What a group reads instead of the customer and the complaint of a
    complaint about an employee (R22)."""
    return f"客户信息和投诉内容仅在单聊中提供，处理人请私聊机器人发送 /show {number} 查看。"


def subject_text(ticket: Ticket, names: Mapping[str, str]) -> str:
    """The employee the complaint is about, as handlers read it one to one
    (R22): 陈专员（sh.chen）, or 王顾问（销售顾问） without a directory account;
    empty when the complaint names nobody. `names` maps userids to names."""
    if ticket.about_staff:
        name = names.get(ticket.about_staff, "")
        return f"{name}（{ticket.about_staff}）" if name else ticket.about_staff
    if ticket.about_staff_name:
        role = f"（{ticket.about_staff_role}）" if ticket.about_staff_role else ""
        return f"{ticket.about_staff_name}{role}"
    return ""


def deadline_text(deadline: Deadline, zone: ZoneInfo) -> str:
    """响应 03-02 11:00: a pending deadline as people read it."""
    return f"{deadline.clock.label} {short_time(deadline.due_at, zone)}"


def owner_text(ticket: Ticket) -> str:
    """Who holds the ticket now: 经销商负责, 区域负责, 本部负责."""
    return f"{ticket.owner_level.label}负责"


def render_outcome(
    outcome: Outcome,
    actor: Actor,
    zone: ZoneInfo,
    *,
    now: datetime,
    names: Mapping[str, str] | None = None,
) -> str:
    """The chat reply to a change: a headline with who and when, then details."""
    ticket, data = outcome.ticket, outcome.data
    names = names or {}
    n = f"#{ticket.number}"
    who = f"{actor.display}，{short_time(now, zone)}"
    lines: list[str]
    match outcome.event:
        case "dispatched":
            dealer = names.get(ticket.dealer_code, ticket.dealer_code)
            lines = [f"📨 {n} 已受理：{ticket.category.label}，派至{dealer}，"
                     f"{owner_text(ticket)}（{who}）"]
            if ticket.repeat_of:
                lines.append(f"> 同一车辆此前投诉过同一问题（#{ticket.repeat_of}），"
                             "按重复投诉升级处理。")
            if ticket.source is Source.STORE:
                lines.append("已通知呼叫中心确认这条门店登记的投诉。")
        case "resolved_on_call":
            lines = [f"✅ {n} 已记录：首次来电即解决，已结案，不派单（{who}）"]
        case "store_confirmed":
            lines = [f"✅ {n} 呼叫中心已确认这条门店登记的投诉（{who}）"]
        case "responded":
            lines = [f"✅ {n} 已响应（{who}，用时 {data['minutes']} 分钟）"]
        case "first_solution" | "solution_revised":
            verb = "已提交首次方案" if outcome.event == "first_solution" else "已修改方案"
            lines = [
                f"✅ {n} {verb}（{who}）",
                f"> 诉求：{data['demand']}",
                f"> 原因：{data['cause']}",
                f"> 方案：{data['solution']}",
                f"> 客户接受：{_yes_no(data['customer_accepts'])} · "
                f"回访：{_yes_no(data['return_visit'])}",
            ]
            if data.get("escalated"):
                lines.append(f"⬆️ {data['reason']}，已升级为{ticket.category.label}，"
                             f"转{ticket.owner_level.label}负责。")
            elif data.get("region_decides"):
                lines.append(f"⚠️ {data['reason']}，已通知区域决定是否升级。")
            elif data.get("no_agreement"):
                lines.append(f"⚠️ {data['reason']}，已通知本部。")
        case "followup":
            lines = [f"✅ {n} 已记录第 {data['count']} 次回访（{who}）"]
            if data.get("escalated"):
                lines.append(f"⬆️ {data['reason']}，已升级为{ticket.category.label}，"
                             f"转{ticket.owner_level.label}负责。")
        case "contact_attempt":
            lines = [f"📞 {n} 已记录联系未果：{Slot(data['slot']).label}"
                     f"（近期第 {data['recent']} 次，已覆盖时段：{_slots(data['slots'])}）"]
        case "closed_unreachable":
            lines = [f"🔒 {n} 联系未果 {data['recent']} 次，覆盖时段{_slots(data['slots'])}，"
                     f"已按无法联系结案（R16，{who}）"]
        case "resolved":
            lines = [f"✅ {n} 经销商已处理完毕，等待呼叫中心回访（{who}）"]
        case "closed":
            lines = [f"🔒 {n} 已结案（{who}，满意度 {data['satisfaction']} 分）"]
        case "escalated":
            lines = [
                f"⬆️ {n} 已升级为{Category(data['to']).label}，转{ticket.owner_level.label}负责"
                f"（{who}）",
                *_reason(data),
            ]
        case "disputed":
            lines = [f"❓ {n} 已提出异议，等待呼叫中心核实（{who}）", *_reason(data)]
        case "dispute_rejected":
            lines = [f"↩️ {n} 异议不成立，处理时限照常计算（{who}）"]
        case "dispute_upheld" if data.get("cancelled"):
            lines = [f"✅ {n} 异议成立，投诉已撤销（{who}）"]
        case "dispute_upheld":
            dealer = data["to_dealer"]
            lines = [f"✅ {n} 异议成立，已改派至{names.get(dealer, dealer)}，重新计时（{who}）"]
        case "assigned":
            assignee = data["assignee"]
            lines = [f"👤 {n} 已指派给{names.get(assignee, assignee)}（{who}）"]
        case "reopened":
            lines = [f"🔓 {n} 已重新打开，回到{ticket.status.label}，重新计时（{who}）"]
            lines += _reason(data)
        case event:
            headline = _HEADLINES.get(event, "✅ {n} 已更新：" + event)
            lines = [f"{headline.format(n=n)}（{who}）", *_reason(data)]
    if data.get("note"):
        lines.append(f"> 说明：{data['note']}")
    if data.get("legal_flagged"):
        lines.append("⚖️ 内容涉及法律诉讼，已提示法务（R26）。")
    return "\n".join(scrub(line, ticket) for line in lines)


def render_ticket(
    ticket: Ticket,
    zone: ZoneInfo,
    *,
    reveal: bool,
    deadlines: Sequence[Deadline] = (),
    dealer_name: str = "",
    responder: str = "",
    in_group: bool = False,
    subject: str = "",
) -> str:
    """A ticket in full for /show. `reveal` shows the phone and VIN unmasked
    (one-to-one chats only, never for the employee complained about). In a
    group (`in_group`) a complaint about an employee shows nothing of the
    customer, the vehicle or the complaint (R22); `subject` names that
    employee for a handler one to one."""
    withheld = in_group and not group_may_see_details(ticket)
    phone = ticket.customer_phone if reveal else mask_phone(ticket.customer_phone)
    vehicle = [ticket.car_model, ticket.plate]
    if ticket.vin:
        vehicle.append(f"VIN {ticket.vin if reveal else mask_vin(ticket.vin)}")
    lines = [
        f"**#{ticket.number} {ticket.category.label}** · {ticket.status.label}",
        f"> 负责：{_owner_place(ticket, dealer_name)}",
    ]
    if not withheld:
        lines += [f"> 客户：{ticket.customer_name} {phone}",
                  f"> 车辆：{' · '.join(v for v in vehicle if v)}"]
    if subject and not in_group:
        lines.append(f"> 被投诉员工：{subject}")
    lines.append(f"> 派单：{short_time(ticket.dispatched_at, zone)}（{ticket.channel.label}）")
    if ticket.owner_responded_at:
        lines.append(f"> 响应：{responder or '—'} {short_time(ticket.owner_responded_at, zone)}")
    if deadlines:
        lines.append(f"> 时限：{'；'.join(deadline_text(d, zone) for d in deadlines)}")
    marks = _marks(ticket)
    if marks:
        lines.append(f"> 标记：{'、'.join(marks)}")
    if ticket.followup_count or ticket.attempts:
        lines.append(f"> 回访 {ticket.followup_count} 次 · 联系未果 {len(ticket.attempts)} 次")
    if ticket.solution and not withheld:
        lines.append(f"> 方案：{ticket.solution.solution}"
                     f"（客户接受：{_yes_no(ticket.solution.customer_accepts)}）")
    if ticket.survey_score is not None:
        # R23: the customer's own answer; their words are withheld like the complaint's.
        comment = ticket.survey_comment if ticket.survey_comment and not withheld else ""
        answered = short_time(ticket.survey_answered_at, zone)
        lines.append(f"> 客户评价：{ticket.survey_score} 星（{answered}）"
                     + (f"：{scrub(comment, ticket)}" if comment else ""))
    if withheld:
        lines.append(withheld_text(ticket.number))
    else:
        description = ticket.description if reveal else scrub(ticket.description, ticket)
        lines.append(f"投诉内容：{description}")
    return "\n".join(lines)


@dataclass(frozen=True)
class TicketLine:
    """What a /list line shows of a ticket: read as just these columns."""

    number: int
    category: Category
    status: Status
    dealer_code: str
    car_model: str


def render_ticket_line(
    ticket: TicketLine,
    zone: ZoneInfo,
    *,
    now: datetime,
    dealer_name: str = "",
    next_deadline: Deadline | None = None,
) -> str:
    """One ticket in a /list answer."""
    parts = [f"#{ticket.number} {ticket.category.label}", ticket.status.label,
             dealer_name or ticket.dealer_code, ticket.car_model]
    if next_deadline is not None:
        late = " ⚠️逾期" if next_deadline.due_at <= now else ""
        parts.append(deadline_text(next_deadline, zone) + late)
    return "- " + " · ".join(parts)


def _owner_place(ticket: Ticket, dealer_name: str) -> str:
    dealer = f"{dealer_name}（{ticket.dealer_code}）" if dealer_name else ticket.dealer_code
    if ticket.owner_level is OwnerLevel.DEALER:
        return f"经销商 {dealer}"
    if ticket.owner_level is OwnerLevel.REGION:
        return f"区域 {ticket.region_code}（经销商 {dealer}）"
    return f"本部（经销商 {dealer}）"


def _marks(ticket: Ticket) -> list[str]:
    marks = []
    if ticket.major:
        marks.append("重大投诉")
    if ticket.legal:
        marks.append("涉及法律")
    if ticket.repeat_of:
        marks.append(f"重复投诉（原 #{ticket.repeat_of}）")
    if ticket.source is Source.STORE:
        confirmed = "呼叫中心已确认" if ticket.confirmed_at else "待呼叫中心确认"
        marks.append(f"门店登记（{confirmed}）")
    if ticket.resolved_on_call:
        marks.append("首次来电即解决")
    if ticket.dispute_open:
        marks.append("异议待核实")
    if ticket.status is Status.STAGED_CLOSURE_PENDING:
        marks.append("阶段性结案审批中")
    return marks


def _reason(data: Mapping[str, object]) -> list[str]:
    return [f"> 原因：{data['reason']}"] if data.get("reason") else []


def _yes_no(value: bool) -> str:
    return "是" if value else "否"


def _slots(values: Sequence[str]) -> str:
    return "、".join(Slot(v).label for v in values)
