"""The intake API for the call-centre system: POST and GET /api/complaints,
and POST /api/complaints/{number}/attachments (photos and files: multipart,
or base64 in JSON; see `add_attachments`)."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import structlog
from aiohttp import BodyPartReader, web
from tortoise.transactions import in_transaction

from bot.attachments import Attachments, attachments_of
from bot.domain.attachments import FileFacts, FileRefused, accepted_type, size_text
from bot.domain.deadlines import Deadline as PendingClock
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Role
from bot.domain.policy import AttachmentRules
from bot.domain.ticket import Actor, Refused, Ticket
from bot.filestore import FULL_MESSAGE, FileStoreUnavailable
from bot.intake import INVALID, IntakeError, check_complaint, open_complaint, related_numbers
from bot.keys import ATTACHMENTS, CLOCK, LEDGER, SETTINGS
from bot.ledger import snapshot
from models import RUNNING, Attachment, Deadline, Notification, TicketEvent
from models import Ticket as TicketRow
from webhooks.health import storage_guarded

log = structlog.get_logger(__name__)
_readable_json = functools.partial(json.dumps, ensure_ascii=False)

API_ACTOR = Actor(userid="api", role=Role.CALL_CENTRE, name="呼叫中心系统")


def json_answer(body: Any, *, status: int = 200, headers: dict[str, str] | None = None
                ) -> web.Response:
    """An API answer in JSON, its Chinese as it is (not \\u-escaped), for
    whoever reads it with curl or in a log."""
    return web.json_response(body, status=status, headers=headers, dumps=_readable_json)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """An API error: `{"error": message, ...}` with the status."""
    return json_answer({"error": message, **extra}, status=status)


def authorised(request: web.Request) -> web.Response | None:
    """None when the bearer token matches (compared in constant time), else the refusal."""
    token = request.app[SETTINGS].api_token
    if token is None:
        return json_error(503, "投诉接口未启用：请管理员设置 API_TOKEN。")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        log.warning("api_unauthorised", path=request.path, remote=request.remote)
        return json_error(401, "缺少或错误的访问令牌（Authorization: Bearer …）。")
    return None


@storage_guarded
async def create_complaint(request: web.Request) -> web.Response:
    """Accept, classify and dispatch a complaint."""
    if (refusal := authorised(request)) is not None:
        return refusal
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        return json_error(413, f"请求体超过 {limit} 字节的上限。")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        log.info("api_bad_json", error=str(exc))
        return json_error(400, f"请求体不是有效的 JSON（{exc}）。")
    if not isinstance(body, dict):
        return json_error(400, "请求体必须是 JSON 对象。")
    ledger, now, kit = request.app[LEDGER], request.app[CLOCK](), request.app[ATTACHMENTS]
    # Small photos may come with the complaint (within MAX_BODY_BYTES; larger
    # ones go to /attachments): checked and stored before the ticket opens,
    # which opens with them or not at all.
    items = body.pop("attachments", None)
    try:
        checked = await check_complaint(body)
        rules = ledger.policies.current.attachments
        files = await _accept_all(kit, _base64_files(items) if items is not None else [],
                                  rules)
        async with in_transaction():
            outcome = await open_complaint(checked.complaint, ledger, actor=API_ACTOR,
                                           source="api", now=now, dealer=checked.dealer)
            attached = await kit.attach(ledger, outcome.ticket.number, files, actor=API_ACTOR,
                                        source="api", now=now) if files else []
    except FileRefused as exc:
        log.info("api_complaint_attachment_refused", status=exc.status)
        return json_error(exc.status, exc.reason)
    except FileStoreUnavailable as exc:
        return json_error(507 if exc.reason == FULL_MESSAGE else 503, exc.reason)
    except IntakeError as exc:
        log.info("api_complaint_rejected", fields=sorted(exc.fields))
        return json_error(422, INVALID, fields=exc.fields)
    # The answer is what was just stored, known without reading it back: the
    # snapshot, the clocks the ledger set from it, the dispatch event (at
    # `now`) and the files attached (attaching leaves the ticket as it was).
    ticket = outcome.ticket
    policy = await ledger.policies.get(ticket.policy_version)
    # No ticket can link to this one yet: its related are the one it links to.
    related = [ticket.related_to] if ticket.related_to else []
    body = ticket_summary(ticket, created_at=now, related=related,
                          deadlines=pending_deadlines(ticket, policy))
    if files:
        body["attachments"] = [attachment_json(a, request, now) for a in attached]
    return json_answer(body, status=201,
                       headers={"Location": f"/api/complaints/{ticket.number}"})


async def get_complaint(request: web.Request) -> web.Response:
    """A ticket with its history, deadlines and notifications."""
    if (refusal := authorised(request)) is not None:
        return refusal
    number = _ticket_number(request)
    if isinstance(number, web.Response):
        return number
    row = await TicketRow.get_or_none(id=number) if _may_exist(number) else None
    if row is None:
        return _no_ticket(number)
    body = await ticket_json(row)
    now = request.app[CLOCK]()
    body["attachments"] = [attachment_json(a, request, now) for a in await attachments_of(row.id)]
    return json_answer(body)


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def ticket_summary(ticket: Ticket, *, created_at: datetime | None, related: list[int],
                   deadlines: Iterable[Deadline | PendingClock]) -> dict[str, Any]:
    """The API's view of a ticket (the 201 answer, and the start of GET's),
    from its snapshot, when it was created, its related tickets and its
    pending clocks, soonest first."""
    return {
        "number": ticket.number,
        "display": f"#{ticket.number}",
        "category": ticket.category.value,
        "owner": ticket.owner_level.value,
        "status": ticket.status.value,
        "dealer_code": ticket.dealer_code,
        "region_code": ticket.region_code,
        "major": ticket.major,
        "legal": ticket.legal,
        "repeat_of": ticket.repeat_of,
        "related": related,
        "created_at": _iso(created_at),
        "dispatched_at": _iso(ticket.dispatched_at),
        "policy_version": ticket.policy_version,
        "source": ticket.source.value,
        "resolved_on_call": ticket.resolved_on_call,
        "confirmed_at": _iso(ticket.confirmed_at),
        "deadlines": [{"clock": d.clock.value, "due_at": _iso(d.due_at)} for d in deadlines],
    }


async def ticket_json(row: TicketRow) -> dict[str, Any]:
    """The API's view of a stored ticket with its history and notifications."""
    deadlines = await Deadline.filter(ticket_id=row.id, state__in=RUNNING).order_by("due_at")
    # The ticket was created by its first event (intake dispatches at once, the same moment).
    created = await TicketEvent.filter(ticket_id=row.id).order_by("id").first()
    body = ticket_summary(snapshot(row), created_at=created.at if created else None,
                          related=await related_numbers(row.id, row.related_to),
                          deadlines=deadlines)
    fields = (
        "customer_name", "customer_phone", "car_model", "plate", "vin", "channel",
        "description", "flags", "about_staff", "about_staff_name", "about_staff_role",
        "assignee", "responded_at",
        "first_solution_at", "escalated_at", "resolved_at", "closed_at", "followup_count",
        "attempts", "dispute_open", "staged_requests", "reopened_count", "satisfaction",
        "solution", "survey_score", "survey_comment", "survey_answered_at",
    )
    body.update({name: _iso(getattr(row, name)) for name in fields})
    events = await TicketEvent.filter(ticket_id=row.id).order_by("id")
    body["history"] = [
        {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "source": e.source, "data": e.data}
        for e in events
    ]
    notes = await Notification.filter(ticket_id=row.id).order_by("id")
    body["notifications"] = [
        {"kind": n.kind, "medium": n.medium, "audience": n.audience, "recipient": n.recipient,
         "status": n.status, "created_at": _iso(n.created_at)}
        for n in notes
    ]
    return body


# Files one request may carry.
MAX_FILES = 10
# JSON around the base64 of one file (names, brackets) fits in this much.
_JSON_ROOM = 64 * 1024


def _ticket_number(request: web.Request) -> int | web.Response:
    """The ticket number in the path, or the 400 answer when it is not a number."""
    try:
        return int(request.match_info["number"].lstrip("#"))
    except ValueError:
        return json_error(400, "投诉编号须是正整数。")


def _may_exist(number: int) -> bool:
    """Ticket ids are 32-bit: a larger number cannot exist (and overflows
    PostgreSQL's int)."""
    return 0 < number < 2**31


def _no_ticket(number: int) -> web.Response:
    return json_error(404, f"没有编号为 #{number} 的投诉。")


async def _multipart_files(request: web.Request, rules: AttachmentRules) -> list[tuple[str, bytes]]:
    """The file parts of a multipart body (name, bytes), each read only up to
    the policy's limit: a larger one is refused (413) without reading it all."""
    files: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.filename is None:
            continue  # a form field, not a file
        if len(files) == MAX_FILES:
            raise FileRefused(413, f"一次最多上传 {MAX_FILES} 个文件。")
        chunks, size = [], 0
        while chunk := await part.read_chunk(256 * 1024):
            size += len(chunk)
            if size > rules.max_bytes:
                raise FileRefused(413, f"“{part.filename}”超过单个附件上限 "
                                      f"{size_text(rules.max_bytes)}，未保存。")
            chunks.append(chunk)
        # Some clients (aiohttp's FormData among them) percent-encode a
        # non-ASCII filename instead of sending it as UTF-8.
        files.append((unquote(part.filename), b"".join(chunks)))
    return files


async def _json_files(request: web.Request, rules: AttachmentRules) -> list[tuple[str, bytes]]:
    """The files of a JSON body: `{"name", "content_base64"}` or
    `{"files": [{"name", "content_base64"}, ...]}`, the body read only up to
    what one file at the policy's limit needs in base64."""
    limit = rules.max_bytes * 4 // 3 + _JSON_ROOM
    raw = bytearray()
    while chunk := await request.content.read(256 * 1024):
        raw.extend(chunk)
        if len(raw) > limit:
            raise FileRefused(413, f"请求过大：单个附件上限 {size_text(rules.max_bytes)}"
                                  "（base64 编码后约大三分之一）。")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise FileRefused(400, "请求体不是有效的 JSON。") from None
    return _base64_files(body.get("files") if isinstance(body, dict) and "files" in body
                         else [body])


def _base64_files(items: Any) -> list[tuple[str, bytes]]:
    """The files of a JSON list `[{"name", "content_base64"}, ...]` (name, bytes)."""
    if not isinstance(items, list) or not items or len(items) > MAX_FILES:
        raise FileRefused(422, f"请提供 1 至 {MAX_FILES} 个文件："
                              '{"name": "文件名", "content_base64": "…"}。')
    files = []
    for index, item in enumerate(items, 1):
        content = item.get("content_base64") if isinstance(item, dict) else None
        name = item.get("name", "") if isinstance(item, dict) else ""
        if not isinstance(content, str) or not isinstance(name, str):
            raise FileRefused(422, f"第 {index} 个文件缺少 content_base64（文件内容的 base64）"
                                  "或 name 不是文字。")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise FileRefused(422, f"第 {index} 个文件的 content_base64 不是有效的 base64。"
                             ) from None
        files.append((name, data))
    return files


async def _accept_all(kit: Attachments, files: list[tuple[str, bytes]],
                      rules: AttachmentRules) -> list[FileFacts]:
    """Check every file (size, type by content), then store them: one refused
    file refuses them all before any is stored."""
    for name, data in files:
        accepted_type(data, rules, name)
    return [await kit.accept(data, name, rules) for name, data in files]


@storage_guarded
async def add_attachments(request: web.Request) -> web.Response:
    """Attach photos and files to a ticket: multipart/form-data (every part
    with a filename is a file) or JSON with base64. Each file is checked
    (size, type by content) before any is stored; 201 lists the ticket's new
    attachments with signed links."""
    if (refusal := authorised(request)) is not None:
        return refusal
    number = _ticket_number(request)
    if isinstance(number, web.Response):
        return number
    if not (_may_exist(number) and await TicketRow.exists(id=number)):
        return _no_ticket(number)
    ledger, attachments, now = request.app[LEDGER], request.app[ATTACHMENTS], request.app[CLOCK]()
    rules = ledger.policies.current.attachments
    try:
        if request.content_type == "multipart/form-data":
            files = await _multipart_files(request, rules)
        elif request.content_type == "application/json":
            files = await _json_files(request, rules)
        else:
            raise FileRefused(415, "请用 multipart/form-data 上传文件，"
                                   "或用 JSON 提交 base64 内容。")
        if not files:
            raise FileRefused(422, "请求里没有文件。")
        facts = await _accept_all(attachments, files, rules)
        rows = await attachments.attach(ledger, number, facts, actor=API_ACTOR, source="api",
                                        now=now)
    except FileRefused as exc:
        log.info("api_attachment_refused", ticket=number, status=exc.status)
        return json_error(exc.status, exc.reason)
    except FileStoreUnavailable as exc:
        return json_error(507 if exc.reason == FULL_MESSAGE else 503, exc.reason)
    except Refused as exc:
        return json_error(409, exc.reason)
    body = {"number": number, "attachments": [attachment_json(r, request, now) for r in rows]}
    return json_answer(body, status=201)


def attachment_json(row: Attachment, request: web.Request, now: datetime) -> dict[str, Any]:
    """One attachment as the API shows it, with a signed link (null while
    ATTACHMENTS_SECRET is unset) valid for the policy's link lifetime."""
    rules = request.app[LEDGER].policies.current.attachments
    return {"id": row.id, "name": row.name, "content_type": row.content_type, "size": row.size,
            "sha256": row.sha256, "uploaded_by": row.uploaded_by, "source": row.source,
            "uploaded_at": _iso(row.uploaded_at),
            "url": request.app[ATTACHMENTS].link(row, now, rules)}


def setup(app: web.Application) -> None:
    app.router.add_post("/api/complaints", create_complaint)
    app.router.add_get("/api/complaints/{number}", get_complaint)
    app.router.add_post("/api/complaints/{number}/attachments", add_attachments)
