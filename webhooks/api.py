"""The intake API for the call-centre system: POST and GET /api/complaints."""

from __future__ import annotations

import hmac
import json
from typing import Any

import structlog
from aiohttp import web

from bot.domain.enums import Role
from bot.domain.ticket import Actor
from bot.intake import INVALID, IntakeError, check_complaint, open_complaint, related_numbers
from bot.keys import CLOCK, LEDGER, SETTINGS
from models import Deadline, Notification, TicketEvent
from models import Ticket as TicketRow
from webhooks.health import storage_guarded

log = structlog.get_logger(__name__)

API_ACTOR = Actor(userid="api", role=Role.CALL_CENTRE, name="呼叫中心系统")


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """An API error: `{"error": message, ...}` with the status."""
    return web.json_response({"error": message, **extra}, status=status)


def authorised(request: web.Request) -> web.Response | None:
    """None when the bearer token matches (compared in constant time), else the refusal."""
    token = request.app[SETTINGS].api_token
    if token is None:
        return json_error(503, "the intake API is disabled: set API_TOKEN")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        log.warning("api_unauthorised", path=request.path, remote=request.remote)
        return json_error(401, "missing or wrong bearer token")
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
        return json_error(413, f"body larger than {limit} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        log.info("api_bad_json", error=str(exc))
        return json_error(400, f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return json_error(400, "body must be a JSON object")
    try:
        complaint = await check_complaint(body)
        outcome = await open_complaint(
            complaint,
            request.app[LEDGER],
            actor=API_ACTOR,
            source="api",
            now=request.app[CLOCK](),
        )
    except IntakeError as exc:
        log.info("api_complaint_rejected", fields=sorted(exc.fields))
        return json_error(422, INVALID, fields=exc.fields)
    ticket = outcome.ticket
    row = await TicketRow.get(id=ticket.number)
    body = await ticket_json(row)
    return web.json_response(body, status=201, headers={"Location": f"/api/complaints/{row.id}"})


async def get_complaint(request: web.Request) -> web.Response:
    """A ticket with its history, deadlines and notifications."""
    if (refusal := authorised(request)) is not None:
        return refusal
    try:
        number = int(request.match_info["number"].lstrip("#"))
    except ValueError:
        return json_error(400, "the ticket number must be an integer")
    # Ticket ids are 32-bit: a larger number cannot exist (and overflows PostgreSQL's int).
    row = await TicketRow.get_or_none(id=number) if 0 < number < 2**31 else None
    if row is None:
        return json_error(404, f"no ticket #{number}")
    return web.json_response(await ticket_json(row, full=True))


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


async def ticket_json(row: TicketRow, *, full: bool = False) -> dict[str, Any]:
    """The API's view of a ticket; `full` adds history and notifications."""
    deadlines = await Deadline.filter(ticket_id=row.id, state="pending").order_by("due_at")
    # The ticket was created by its first event (intake dispatches at once, the same moment).
    created = await TicketEvent.filter(ticket_id=row.id).order_by("id").first()
    body: dict[str, Any] = {
        "number": row.id,
        "display": f"#{row.id}",
        "category": row.category.value,
        "owner": row.owner_level.value,
        "status": row.status.value,
        "dealer_code": row.dealer_code,
        "region_code": row.region_code,
        "major": row.major,
        "legal": row.legal,
        "repeat_of": row.repeat_of,
        "related": await related_numbers(row.id, row.related_to),
        "created_at": _iso(created.at if created else None),
        "dispatched_at": _iso(row.dispatched_at),
        "policy_version": row.policy_id,  # type: ignore[attr-defined]
        "deadlines": [{"clock": d.clock.value, "due_at": _iso(d.due_at)} for d in deadlines],
    }
    if not full:
        return body
    fields = (
        "customer_name", "customer_phone", "car_model", "plate", "vin", "channel",
        "description", "flags", "about_staff", "about_staff_name", "about_staff_role",
        "assignee", "responded_at",
        "first_solution_at", "escalated_at", "resolved_at", "closed_at", "followup_count",
        "attempts", "dispute_open", "staged_requests", "reopened_count", "satisfaction",
        "solution",
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


def setup(app: web.Application) -> None:
    app.router.add_post("/api/complaints", create_complaint)
    app.router.add_get("/api/complaints/{number}", get_complaint)
