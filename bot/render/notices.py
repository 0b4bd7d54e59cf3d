"""Outbox notifications as people read them: group and app markdown, e-mail
(subject, plain text, HTML) and the customer's SMS.

One Jinja2 template per kind and medium family under `templates/`:
`markdown/<kind>.md.j2` and `email/<kind>.j2` (blocks `subject` and `body`);
a kind without its own template falls back to `_generic`. The SMS is the
provider's registered template: its parameters are those its entry in
bot/sms_templates.py names, in that order. Every message names
the ticket (#1024); the customer's phone and VIN are masked in all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from bot.crisis import CRISIS_MEDIUM
from bot.directory import AUDIENCE_LABELS
from bot.domain.deadlines import Deadline
from bot.domain.enums import Clock, Role
from bot.domain.permissions import Action, audience_may, group_may_see_details
from bot.domain.ticket import Medium
from bot.ledger import snapshot
from bot.render.cards import pending_deadlines_of
from bot.render.chat import scrub, subject_text, withheld_text
from bot.render.privacy import local_time, mask_phone, mask_vin
from bot.sms_templates import SMS_TEMPLATES
from models import Dealer, Notification, Region, ReportRun, Staff, TicketEvent
from models import Ticket as TicketRow

SHANGHAI = ZoneInfo("Asia/Shanghai")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


class _Lenient(dict):
    """Event data and pending deadlines: what one cause records another may not,
    so a missing key reads as empty (templates stay strict about the rest)."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class Attachment:
    """A file an e-mail carries."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RenderedMessage:
    """One notification in every form its media need; `image` is posted into a
    group instead of the markdown, `attachments` go with the e-mail."""

    subject: str
    text: str
    html: str
    markdown: str
    sms_params: dict[str, str] = field(default_factory=dict)
    image: bytes | None = None
    attachments: tuple[Attachment, ...] = ()


REPORT_TITLES = {"weekly": "投诉周报", "monthly": "投诉月报"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def render_report(run_id: int, part: str) -> RenderedMessage:
    """A scheduled report's part (schedulers/reports.py): "markdown" for a
    group, "image" (the chart) for a group, "workbook" for an e-mail with the
    XLSX attached and the summary in its body."""
    run = await ReportRun.get(id=run_id)
    title = REPORT_TITLES[run.kind]
    subject = f"【{title}】{run.period} {run.scope_name}"
    if part == "image":
        return RenderedMessage(subject=subject, text="", html="", markdown="",
                               image=bytes(run.chart_png))
    if part != "workbook":
        return RenderedMessage(subject=subject, text=run.markdown, html="",
                               markdown=run.markdown)
    # The group's markdown, read as plain text: no headings, quotes or bold.
    summary = "\n".join(line.removeprefix("### ").removeprefix("> ").replace("**", "")
                        for line in run.markdown.splitlines())
    context = {"subject": subject, "title": title, "period": run.period,
               "scope_name": run.scope_name, "summary": summary}
    filename = f"{title}-{run.period}-{run.scope_code or '全品牌'}.xlsx"
    return RenderedMessage(
        subject=subject,
        text=_env.get_template("email/report.txt.j2").render(context).strip() + "\n",
        html=_env.get_template("email/report.html.j2").render(context),
        markdown=run.markdown,
        attachments=(Attachment(filename, XLSX, bytes(run.workbook_xlsx)),),
    )


def duration_text(span: timedelta) -> str:
    """A span as people say it: 2 天 3 小时, 45 分钟, 不足 1 分钟."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "不足 1 分钟"
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} 天" if days else "", f"{hours} 小时" if hours else "",
             f"{minutes} 分钟" if minutes and not days else ""]
    return " ".join(p for p in parts if p)


def _template(family: str, kind: str, suffix: str) -> jinja2.Template:
    return _env.select_template([f"{family}/{kind}{suffix}", f"{family}/_generic{suffix}"])


def _block(template: jinja2.Template, name: str, context: dict[str, Any]) -> str:
    return "".join(template.blocks[name](template.new_context(context))).strip()


MARKDOWN, EMAIL, SMS = "markdown", "email", "sms"
ALL_PARTS = frozenset({MARKDOWN, EMAIL, SMS})
_PARTS_OF_MEDIUM = {Medium.EMAIL.value: frozenset({EMAIL}), Medium.SMS.value: frozenset({SMS})}


def parts_for(medium: str) -> frozenset[str]:
    """The forms a medium's transport reads: an e-mail its subject, text and
    HTML, an SMS its params, every chat medium its markdown."""
    return _PARTS_OF_MEDIUM.get(medium, frozenset({MARKDOWN}))


@dataclass
class Prefetched:
    """What the notices of a batch read, loaded with one query per table
    rather than six queries per notice (schedulers/outbox.py renders a round's
    rows from one)."""

    tickets: dict[int, TicketRow]
    events: dict[int, TicketEvent]
    dealers: dict[str, str]
    regions: dict[str, str]
    names: dict[str, str]
    pending: dict[int, list[Deadline]]  # soonest first

    @classmethod
    async def load(cls, notifications: list[Notification]) -> Prefetched:
        """The tickets, events, dealer and region names, staff names and
        pending deadlines of `notifications`."""
        numbers = {n.ticket_id for n in notifications  # type: ignore[attr-defined]
                   if n.ticket_id is not None}  # type: ignore[attr-defined]
        event_ids = {n.event_id for n in notifications  # type: ignore[attr-defined]
                     if n.event_id is not None}  # type: ignore[attr-defined]
        tickets = {t.id: t for t in await TicketRow.filter(id__in=numbers)} if numbers else {}
        events = {e.id: e for e in await TicketEvent.filter(id__in=event_ids)} \
            if event_ids else {}
        people = {u for t in tickets.values() for u in (t.assignee, t.about_staff) if u}
        dealer_codes = {t.dealer_code for t in tickets.values() if t.dealer_code}
        region_codes = {t.region_code for t in tickets.values() if t.region_code}
        pending = await pending_deadlines_of(list(tickets)) if tickets else {}
        return cls(
            tickets=tickets, events=events,
            dealers=dict(await Dealer.filter(code__in=dealer_codes).values_list("code", "name"))
            if dealer_codes else {},
            regions=dict(await Region.filter(code__in=region_codes).values_list("code", "name"))
            if region_codes else {},
            names=dict(await Staff.filter(userid__in=people).values_list("userid", "name"))
            if people else {},
            pending=pending,
        )


async def _context(notification: Notification, zone: ZoneInfo, now: datetime | None,
                   found: Prefetched) -> dict:
    number = notification.ticket_id  # type: ignore[attr-defined]
    row = found.tickets.get(number) or await TicketRow.get(id=number)
    ticket = snapshot(row)
    event = found.events.get(notification.event_id)  # type: ignore[attr-defined]
    data = _Lenient(event.data if event else {})
    event_at = event.at if event else notification.created_at
    names = found.names
    pending = found.pending.get(row.id, [])
    deadline = None
    if "clock" in data and "due_at" in data:
        due_at = datetime.fromisoformat(data["due_at"])
        deadline = {
            "label": Clock(data["clock"]).label,
            "due": local_time(due_at, zone),
            "late": duration_text((now or event_at) - due_at),
        }
    # R22: the employee complained about may read the group; the people told
    # one to one (never that employee, bot/directory.py) read whom it is about.
    # A crisis group (R8) is a group: the same is withheld there.
    in_group = notification.medium in (Medium.GROUP.value, CRISIS_MEDIUM)
    return {
        "kind": notification.kind,
        "number": ticket.number,
        "withheld": withheld_text(ticket.number)
        if in_group and not group_may_see_details(ticket) else "",
        "about_staff": "" if in_group else subject_text(ticket, names),
        "ticket": ticket,
        "category": ticket.category.label,
        "owner": ticket.owner_level.label,
        "status": ticket.status.label,
        "channel": ticket.channel.label,
        "flags": "、".join(sorted(f.label for f in ticket.flags)),
        "phone": mask_phone(ticket.customer_phone),
        "vin": mask_vin(ticket.vin),
        "dealer_name": found.dealers.get(ticket.dealer_code, ticket.dealer_code),
        "region_name": found.regions.get(ticket.region_code, ticket.region_code),
        "assignee_name": names.get(ticket.assignee or "", ticket.assignee or ""),
        "data": data,
        "actor": (event.actor_name or event.actor) if event else "",
        "event_at": local_time(event_at, zone),
        "dispatched_at": local_time(ticket.dispatched_at, zone),
        "deadline": deadline,
        "due": _Lenient({d.clock.value: local_time(d.due_at, zone) for d in pending}),
        "approver": Role(data["approver_role"]).label if data.get("approver_role") else "",
        # What the readers of this notice may do, by the rule their commands
        # meet: an instruction line is shown only to those who may follow it.
        "may": _may(notification.audience, ticket),
        "in_group": in_group,
        "missed": await _missed(notification) if notification.kind == "unroutable" else "",
    }


async def _missed(notification: Notification) -> str:
    """R20: who the notices of the same change could not reach."""
    rows = await Notification.filter(
        event_id=notification.event_id,  # type: ignore[attr-defined]
        status="unroutable").values_list("audience", flat=True)
    # Audience is a StrEnum: the stored value finds its label.
    return "、".join(AUDIENCE_LABELS.get(a, a) for a in dict.fromkeys(rows))


_ASKED = (Action.RESPOND, Action.PLAN, Action.ESCALATE, Action.REOPEN)


def _may(audience: str, ticket: Any) -> dict[str, bool]:
    return {action.value: audience_may(audience, ticket, action) for action in _ASKED}


async def render(
    notification: Notification, *, zone: ZoneInfo = SHANGHAI, now: datetime | None = None,
    prefetched: Prefetched | None = None, parts: frozenset[str] = ALL_PARTS,
) -> RenderedMessage:
    """Render a notification from its ticket and the event that caused it.

    Times are shown in `zone`; a deadline nudge says how late it is as of `now`
    (default: when the breach was recorded). A row written with ready content
    (`payload`, e.g. {"markdown": …} or a card) is passed through as it is; one
    naming a report run renders that report's part. `prefetched` holds what a
    batch of rows reads (loaded for this row alone without it); only the
    `parts` asked for are rendered (parts_for a medium), the others are empty."""
    if notification.payload is not None and "report_run" in notification.payload:
        return await render_report(int(notification.payload["report_run"]),
                                   str(notification.payload.get("part", "markdown")))
    if notification.payload is not None:
        markdown = str(notification.payload.get("markdown", ""))
        return RenderedMessage(subject="", text=markdown, html="", markdown=markdown)
    context = await _context(notification, zone, now,
                             prefetched or await Prefetched.load([notification]))
    kind = notification.kind
    ticket = context["ticket"]
    subject = text = html = markdown = ""
    sms_params: dict[str, str] = {}
    # Free text (the complaint, a note, a reason) may hold the phone or VIN as
    # someone typed it: mask them in everything a group, card or mailbox shows.
    if EMAIL in parts:
        email = _template("email", kind, ".j2")
        subject = " ".join(_block(email, "subject", context).split())
        body = _block(email, "body", context)
        layout = {**context, "subject": subject, "body": body}
        subject = scrub(subject, ticket)
        text = scrub(_env.get_template("email/layout.txt.j2").render(layout).strip() + "\n",
                     ticket)
        html = scrub(_env.get_template("email/layout.html.j2").render(layout), ticket)
    if MARKDOWN in parts:
        markdown = scrub(_template("markdown", kind, ".md.j2").render(context).strip(), ticket)
    if SMS in parts:
        sms = SMS_TEMPLATES.get(kind)
        sms_params = sms.values(context) if sms else {}
    return RenderedMessage(subject=subject, text=text, html=html, markdown=markdown,
                           sms_params=sms_params)
