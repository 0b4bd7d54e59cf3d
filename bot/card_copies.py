"""The copies of a ticket's card that are out there, and keeping them current.

Every card the bot sends is recorded (`models.SentCard`): the app's cards to
handlers, and the robot's cards in chats. When a change alters a ticket, the
ledger takes `copy_refreshes` in the change's transaction (an approval's
decision calls `refresh_copies`): each app copy that
still holds an unused response_code gets one outbox row (kind "card_update")
that replaces it with the ticket's current card, rendered when it is sent.

WeChat Work's rules shape this (WECOM.md): a response_code works once and for
72 h, and a fresh one arrives only with a click on that copy (`note_click`).
So a copy whose code is used or old cannot be changed; clicking it answers
with the current state. Lest it keep saying 已处理 after the ticket is
resolved or closed, a member whose ticket cards are all stale gets the
ticket's current card afresh (kind "card_fresh") on the changes that end or
restart the work (FRESH_ON), unless they made the change. Robot cards have no
code: only the answer to a click on them can change them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog

from bot.db import fetch_rows, insert_rows
from models import Notification, SentCard, TicketEvent

log = structlog.get_logger(__name__)

CODE_LIFETIME = timedelta(hours=72)
CARD_UPDATE = "card_update"
"""The outbox kind of a card replacement (medium "app")."""

CardChannel = Literal["app", "robot"]
CARD_FRESH = "card_fresh"
"""The outbox kind of a ticket's current card sent anew (medium "app") to a
member whose copies can no longer be updated."""
FRESH_ON = frozenset({"resolved", "closed", "closed_unreachable", "staged_closure_approved",
                      "reopened"})
"""The changes a holder of a stale copy is sent the current card for."""
# Approval cards (bot/render/approvals.py) show a request, not the ticket.
_APPROVAL_TASK = re.compile(r"^ticket\d+-apr\d+-")


async def record_copy(
    *,
    ticket_id: int,
    task_id: str,
    channel: CardChannel,
    userid: str,
    now: datetime,
    response_code: str = "",
    chatid: str = "",
) -> None:
    """Remember one card the bot has just sent (or returned in a chat)."""
    await insert_rows([SentCard(
        ticket_id=ticket_id, task_id=task_id, channel=channel, userid=userid, chatid=chatid,
        response_code=response_code, code_at=now, created_at=now, updated_at=now,
    )])


async def note_click(task_id: str, userid: str, response_code: str, now: datetime) -> bool:
    """Keep the fresh response_code an app click carries on the clicked copy;
    False when the bot has no record of that card for that member."""
    if not response_code:
        return False
    changed = await SentCard.filter(task_id=task_id, userid=userid, channel="app").update(
        response_code=response_code, code_at=now, updated_at=now
    )
    return changed > 0


async def take_code(task_id: str, userid: str, now: datetime) -> str | None:
    """Use up the clicked copy's response_code to answer the click; None when
    the change already used it to update that copy, or it is too old."""
    taken = await _take_codes("task_id = ? AND userid = ?", [task_id, userid], now)
    return taken[0]["spent_code"] if taken else None


async def refresh_copies(
    events: Mapping[int, int], *, now: datetime, task_prefix: str = "",
    kinds: Mapping[int, str] | None = None,
) -> int:
    """Queue the outbox rows of `copy_refreshes` (see there); the number queued."""
    rows = await copy_refreshes(events, now=now, task_prefix=task_prefix, kinds=kinds)
    await insert_rows(rows, on_conflict="DO NOTHING")
    return len(rows)


async def copy_refreshes(
    events: Mapping[int, int], *, now: datetime, task_prefix: str = "",
    kinds: Mapping[int, str] | None = None,
) -> list[Notification]:
    """A card_update for every app copy of the tickets in `events` (ticket
    number → the event that changed it) that can still be updated, using up
    its response_code, and a card_fresh for each member whose ticket cards
    are all stale (see FRESH_ON): outbox rows for the caller to insert (the
    ledger, with the change's notices, in one statement). Call it in the
    transaction of the change, so the update goes out if and only if the
    change is stored. `task_prefix` limits it to the copies of one card (an
    approval request's, bot/approvals.py); `kinds` (ticket number → the
    event's kind), when the caller knows them, saves reading the events back,
    and the copies too when no change is one of FRESH_ON."""
    numbers = list(events)
    condition = f"ticket_id IN ({', '.join('?' * len(numbers))})"
    params: list[Any] = list(numbers)
    if task_prefix:
        condition += " AND substr(task_id, 1, ?) = ?"
        params += [len(task_prefix), task_prefix]
    taken = await _take_codes(condition, params, now)
    rows = [Notification(
        ticket_id=copy["ticket_id"], event_id=events[copy["ticket_id"]], kind=CARD_UPDATE,
        medium="app", audience="card_holder", recipient=copy["userid"],
        dedupe_key=hashlib.sha256(
            f"{CARD_UPDATE}|{copy['id']}|{copy['spent_code']}".encode()).hexdigest(),
        status="pending", next_attempt_at=now, created_at=now,
        payload={"task_id": copy["task_id"], "response_code": copy["spent_code"]},
    ) for copy in taken]
    if not task_prefix and (kinds is None or not FRESH_ON.isdisjoint(kinds.values())):
        updated = {(copy["ticket_id"], copy["userid"]) for copy in taken
                   if not _APPROVAL_TASK.match(copy["task_id"])}
        stale = {(number, userid) for number, userid, task_id in await SentCard.filter(
                     ticket_id__in=numbers, channel="app").values_list(
                     "ticket_id", "userid", "task_id")
                 if not _APPROVAL_TASK.match(task_id)} - updated
        rows += await _fresh_cards(sorted(stale), events, now, kinds)
    return rows


async def _fresh_cards(
    stale: list[tuple[int, str]], events: Mapping[int, int], now: datetime,
    kinds: Mapping[int, str] | None,
) -> list[Notification]:
    """A card_fresh row for each (ticket, member) in `stale` whose change is
    one of FRESH_ON and was not made by that member."""
    if kinds is not None:
        stale = [(number, userid) for number, userid in stale if kinds[number] in FRESH_ON]
    if not stale:
        return []
    changes = {number: (kind, actor) for number, kind, actor in await TicketEvent.filter(
        id__in=[events[number] for number, _ in stale]).values_list("ticket_id", "kind", "actor")}
    rows = []
    for number, userid in stale:
        kind, actor = changes.get(number, ("", ""))
        if kind not in FRESH_ON or actor == userid:
            continue
        dedupe = hashlib.sha256(f"{CARD_FRESH}|{number}|{events[number]}|{userid}".encode())
        rows.append(Notification(
            ticket_id=number, event_id=events[number], kind=CARD_FRESH, medium="app",
            audience="card_holder", recipient=userid, dedupe_key=dedupe.hexdigest(),
            status="pending", next_attempt_at=now, created_at=now, payload={"fresh": kind},
        ))
        log.info("card_copy_stale", ticket=number, userid=userid, change=kind)
    return rows


async def _take_codes(condition: str, params: list[Any], now: datetime) -> list[dict[str, Any]]:
    """Use up the codes of the app copies that match `condition` (SQL with
    `?` placeholders), in one statement; the copies whose code can still
    update them, in the order they were sent (id, ticket_id, userid,
    task_id, and the code as spent_code). An expired code is dropped too (so
    it is looked at once) but not returned. Racing changes and clicks are
    ordered by the row lock: each code is used once."""
    taken = await fetch_rows(
        "UPDATE sent_card SET spent_code = response_code, response_code = '', updated_at = ? "
        f"WHERE channel = 'app' AND response_code <> '' AND {condition} "
        "RETURNING id, ticket_id, userid, task_id, spent_code, code_at", [now, *params])
    sent_at = SentCard._meta.fields_map["code_at"]
    live = []
    for copy in sorted(taken, key=lambda c: c["id"]):
        if now - sent_at.to_python_value(copy["code_at"]) >= CODE_LIFETIME:
            log.info("card_code_expired", ticket=copy["ticket_id"], userid=copy["userid"],
                     code_at=copy["code_at"])
        else:
            live.append(copy)
    return live
