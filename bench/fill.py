"""Many open tickets, fast: bulk inserts straight into the tables, for benchmarks.

The filler tickets are what the ledger would have stored for a general
complaint dispatched at `dispatched_at` and not yet answered: status
dispatched, owner the dealer, two clocks pending (response at +2 h, first
solution at +24 h). Going through the ledger would take minutes for 100,000;
the benchmarks measure the work on top of them, not their creation.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from bot.domain.enums import Category, Channel, Clock, OwnerLevel, Status
from bot.wecom.crypto import CallbackCipher
from models import Deadline, Dealer, GroupChat, Region, Ticket

ROOT = Path(__file__).resolve().parent.parent
ORG = ROOT / "examples" / "org.yaml"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
DEALERS = (("SH001", "EAST"), ("HZ001", "EAST"), ("BJ001", "NORTH"), ("TJ001", "NORTH"))
# A handler of each dealer in examples/org.yaml, who may work its tickets.
HANDLER = {"SH001": "sh.zhang", "HZ001": "hz.sun", "BJ001": "bj.liu", "TJ001": "tj.zhao"}
_BATCH = 5000


async def fill_tickets(count: int, *, dispatched_at: datetime, policy_digest: str,
                       first_id: int = 1,
                       dealers: Sequence[tuple[str, str]] = DEALERS,
                       status: Status = Status.DISPATCHED,
                       clock_state: str = "pending") -> list[int]:
    """Insert `count` general complaints dispatched at `dispatched_at`, in
    `status`, with their two clocks in `clock_state` (by default open and
    pending; closed and "ended" is history: the rows once their clocks
    fired and the ticket closed, migration 0021), taking turns over `dealers` ((dealer,
    region) codes); returns their numbers."""
    numbers: list[int] = []
    for start in range(first_id, first_id + count, _BATCH):
        ids = range(start, min(start + _BATCH, first_id + count))
        await Ticket.bulk_create([
            Ticket(id=i, customer_name="李先生", customer_phone=f"139{i:08d}", car_model="速腾",
                   plate=f"沪A{i % 100000:05d}", vin=f"LFV2A21K6A{i:07d}", channel=Channel.PHONE,
                   description="变速箱顿挫，多次维修未解决",
                   dealer_code=dealers[i % len(dealers)][0],
                   region_code=dealers[i % len(dealers)][1], category=Category.GENERAL,
                   owner_level=OwnerLevel.DEALER, status=status,
                   policy_id=policy_digest, dispatched_at=dispatched_at,
                   owner_since=dispatched_at)
            for i in ids
        ])
        await Deadline.bulk_create([
            Deadline(ticket_id=i, clock=clock, due_at=dispatched_at + after, state=clock_state)
            for i in ids
            for clock, after in ((Clock.RESPONSE, timedelta(hours=2)),
                                 (Clock.FIRST_SOLUTION, timedelta(hours=24)))
        ])
        numbers.extend(ids)
    await _advance_sequence(first_id + count)
    return numbers


async def add_dealers(count: int, regions: int) -> list[tuple[str, str]]:
    """A national network on top of examples/org.yaml: `count` dealers (D0000…)
    in `regions` regions (R00…), each with a bound group, as report audiences.
    Returns their (dealer, region) codes."""
    made = [Region(code=f"R{r:02d}", name=f"第{r}区域") for r in range(regions)]
    await Region.bulk_create(made)
    by_code = {r.code: r for r in await Region.filter(code__in=[m.code for m in made])}
    codes = [(f"D{d:04d}", f"R{d % regions:02d}") for d in range(count)]
    await Dealer.bulk_create([Dealer(code=d, name=f"第{d[1:]}号经销商", region=by_code[r])
                              for d, r in codes])
    dealer_ids = dict(await Dealer.filter(code__in=[d for d, _ in codes]).values_list(
        "code", "id"))
    await GroupChat.bulk_create(
        [GroupChat(chatid=f"wrGRP-{d}", name=d, kind="dealer", dealer_id=dealer_ids[d],
                   webhook_key=f"hook-{d.lower()}") for d, _ in codes]
        + [GroupChat(chatid=f"wrGRP-{r.code}", name=r.code, kind="region", region=r,
                     webhook_key=f"hook-{r.code.lower()}") for r in by_code.values()])
    return codes


async def _advance_sequence(next_id: int) -> None:
    """PostgreSQL's serial does not see explicit ids: move it past them."""
    from tortoise import connections

    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        await conn.execute_query(
            f"SELECT setval(pg_get_serial_sequence('ticket', 'id'), {next_id})")


@asynccontextmanager
async def scratch_postgres(admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one run (created through `admin_url`'s
    server, dropped at the end); yields its URL."""
    name = f"cbbench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def group_command(cipher: CallbackCipher, number: int, text: str, *, timestamp: str,
                  aibotid: str) -> tuple[str, dict[str, str], bytes]:
    """A filler ticket's handler typing `@投诉助手 text` in its dealer's group, as
    WeChat Work's encrypted robot callback: (msgid, query parameters, body)."""
    dealer = DEALERS[number % 4][0]
    message = {
        "msgid": uuid.uuid4().hex, "aibotid": aibotid, "chattype": "group",
        "chatid": f"wrGRP-{dealer}", "from": {"userid": HANDLER[dealer]},
        "response_url": "http://127.0.0.1:9/response_url", "msgtype": "text",
        "text": {"content": f"@投诉助手 {text}"},
    }
    query, body = cipher.robot_callback(message, timestamp=timestamp)
    return message["msgid"], query.as_params(), body
