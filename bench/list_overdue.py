"""`/list overdue` against the plain `/list` of the same run, among many
tickets most of which are closed (issue 16).

    python bench/list_overdue.py                    # SQLite
    python bench/list_overdue.py --postgres         # PostgreSQL (scratch db via TEST_POSTGRES_URL)
    python bench/list_overdue.py --bot-code DIR     # and another checkout, on the same database

The database holds `--tickets` tickets (bench/fill.py): the oldest closed,
their clocks ended (history); then `--overdue` open ones whose response
clock fell due an hour ago and was not swept yet; then the rest of `--open`,
dispatched 30 minutes ago, no clock due. PostgreSQL is vacuumed and analysed
after the fill, as autovacuum would have done by then; SQLite is left as the
bot leaves it (no ANALYZE).

Each checkout (this one, and `--bot-code`'s) runs in a child process on that
same database: the commands as typed in a dealer's group (张专员, one dealer
of four), in a region's group (何区域, two dealers of four) and in the call
centre's group (every ticket), `/list`, `/list mine` (nothing assigned: the
scope's open tickets read for none) and `/list overdue`, each repeated and
timed in process (the median, wall; with `--bot-code`, each checkout twice,
in the order this, other, other, this, and the two medians averaged), at two
moments: with the overdue ones due, and an hour earlier, when nothing is
due (the usual state while the sweeper keeps up). Prints the calibration
line, then each figure and its ratio to the plain `/list` of the same scope
and checkout, and, with `--bot-code`, each figure of this checkout over the
other's. The fill is most of the run (40 s to 100 s for 100,000 tickets on
each database, depending on the machine's load): `--tickets` fewer for a
shorter one. `--open` as many as `--tickets` is the shape of
bench/callbacks.py (no history, every ticket open).

`--other-without-list-indexes`: the other checkout is measured without the
ticket indexes for /list (LIST_INDEXES, migration 0022), dropped before each
of its runs and built again before each of this one's, so that a checkout
from before the migration runs on its own schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# Last, not first: a child measuring another checkout finds the bot there
# (PYTHONPATH) before this one.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from tortoise import connections

import commands.list
from bench.calibration import calibration_line
from bench.fill import ADMIN_URL, ORG, fill_tickets, scratch_postgres
from bot.db import open_database
from bot.directory import actor_for
from bot.directory_import import import_directory
from bot.domain.enums import Status
from bot.ledger import Ledger
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE
from commands.base import ChatMessage, Context
from commands.router import handle_message

ROOT = Path(__file__).resolve().parent.parent
# (who, group): a dealer's handler in its group, the call centre in its own.
SCOPES = {"dealer": ("sh.zhang", "wrGRP-SH001"), "region": ("east.he", "wrGRP-EAST"),
          "all": ("cc.wang", "wrGRP-CC")}
COMMANDS = ("/list", "/list mine", "/list overdue")
# The indexes migration 0022 added for /list, as tortoise names them.
LIST_INDEXES = {
    "idx_ticket_dealer__5df041": '"ticket" ("dealer_code", "status")',
    "idx_ticket_region__48bf3c": '"ticket" ("region_code", "status")',
}


async def fill(url: str, tickets: int, open_: int, overdue: int) -> datetime:
    """Fill the database; return the moment at which the overdue ones are due."""
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        digest = book.current.digest
        now = datetime.now(UTC).replace(microsecond=0)
        closed = tickets - open_
        await fill_tickets(closed, dispatched_at=now - timedelta(days=60), policy_digest=digest,
                           status=Status.CLOSED, clock_state="ended")
        await fill_tickets(overdue, dispatched_at=now - timedelta(hours=3), policy_digest=digest,
                           first_id=closed + 1)
        await fill_tickets(open_ - overdue, dispatched_at=now - timedelta(minutes=30),
                           policy_digest=digest, first_id=closed + overdue + 1)
        conn = connections.get("default")
        if conn.capabilities.dialect == "postgres":
            async with conn._pool.acquire() as raw:  # VACUUM refuses a transaction
                await raw.execute("VACUUM ANALYZE")
    return now


async def measure(url: str, now: datetime, repeat: int) -> dict[str, Any]:
    """Median wall milliseconds of each (moment, scope, command), in this
    process, with the first line of each answer and where the bot came from."""
    figures: dict[str, Any] = {"code": str(Path(commands.list.__file__).parent.parent)}
    async with open_database(url):
        ledger = Ledger(PolicyBook(load_policy(DEFAULT_POLICY_FILE)))
        zone = ZoneInfo("Asia/Shanghai")
        for moment, at in (("due", now), ("none_due", now - timedelta(minutes=61))):
            for scope, (userid, chatid) in SCOPES.items():
                ctx = Context(actor=await actor_for(userid), ledger=ledger, now=at, zone=zone)
                messages = {text: ChatMessage(userid=userid, text=text, channel="robot",
                                              chatid=chatid, msgid="m1") for text in COMMANDS}
                times: dict[str, list[float]] = {text: [] for text in COMMANDS}
                for round_ in range(repeat + 1):
                    for text, message in messages.items():  # interleaved: same machine load
                        started = time.perf_counter()
                        reply = await handle_message(message, ctx)
                        if round_:  # the first round warms caches and prepared statements
                            times[text].append(time.perf_counter() - started)
                        figures[f"{moment} {scope} {text} first_line"] = reply.markdown.split(
                            "\n", 1)[0]
                for text in COMMANDS:
                    figures[f"{moment} {scope} {text}"] = 1000 * statistics.median(times[text])
    return figures


def run_child(url: str, now: datetime, repeat: int, code: Path) -> dict[str, Any]:
    """`measure` in a child process importing the bot from `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, __file__, "--measure", url, "--at", now.isoformat(),
         "--repeat", str(repeat)], env=env, cwd=code, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"measuring {code} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' figures averaged (the first run's for the answers' lines)."""
    return {key: statistics.mean(run[key] for run in runs) if isinstance(value, float) else value
            for key, value in runs[0].items()}


async def set_list_indexes(url: str, present: bool) -> None:
    """Build LIST_INDEXES (this checkout's schema) or drop them (one from
    before migration 0022)."""
    async with open_database(url, migrate=False):
        conn = connections.get("default")
        for name, on in LIST_INDEXES.items():
            await conn.execute_script(f'CREATE INDEX IF NOT EXISTS "{name}" ON {on}' if present
                                      else f'DROP INDEX IF EXISTS "{name}"')


def report(db: str, label: str, figures: dict[str, Any]) -> None:
    """One line per moment and scope: each command, and its ratio to /list."""
    print(f"list_{db}_{label}_code {figures['code']}", flush=True)
    for moment in ("due", "none_due"):
        for scope in SCOPES:
            plain = figures[f"{moment} {scope} /list"]
            others = ", ".join(
                f"{text} {figures[f'{moment} {scope} {text}']:.1f} ms "
                f"({figures[f'{moment} {scope} {text}'] / plain:.2f} x /list)"
                for text in COMMANDS[1:])
            answers = " / ".join(figures[f"{moment} {scope} {text} first_line"]
                                 for text in COMMANDS)
            print(f"list_{db}_{label}_{moment}_{scope} /list {plain:.1f} ms, {others} | "
                  f"{answers}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help=f"PostgreSQL instead of SQLite (scratch database via {ADMIN_URL})")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--overdue", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--bot-code", type=Path, default=None,
                        help="another checkout, measured on the same database (e.g. main)")
    parser.add_argument("--other-without-list-indexes", action="store_true",
                        help="measure --bot-code without LIST_INDEXES (a checkout before 0022)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child's database URL
    parser.add_argument("--at", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("json", "WARNING")
    if args.measure:
        figures = await measure(args.measure, datetime.fromisoformat(args.at), args.repeat)
        print(json.dumps(figures))
        return
    calibration_line()
    codes = {"this": ROOT} | ({"other": args.bot_code.resolve()} if args.bot_code else {})
    db = "postgres" if args.postgres else "sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_postgres() if args.postgres else nullcontext() as scratch:
            url = scratch or f"sqlite://{tmp}/bench.sqlite3"
            started = time.perf_counter()
            now = await fill(url, args.tickets, args.open, args.overdue)
            print(f"list_{db}_fill {args.tickets} tickets, {args.open} open, {args.overdue} "
                  f"overdue: {time.perf_counter() - started:.1f} s", flush=True)
            # This, other, other, this: neither gains from going first (a
            # cold cache, a machine busier at the start); the two are averaged.
            order = [*codes, *reversed(codes)]
            runs = []
            for label in order:
                if args.other_without_list_indexes:
                    await set_list_indexes(url, present=label == "this")
                runs.append((label, run_child(url, now, args.repeat, codes[label])))
    measured = {label: _mean([figures for ran, figures in runs if ran == label])
                for label in codes}
    for label, figures in measured.items():
        report(db, label, figures)
    if "other" in measured:
        this, other = measured["this"], measured["other"]
        for moment in ("due", "none_due"):
            for scope in SCOPES:
                keys = {text: f"{moment} {scope} {text}" for text in COMMANDS}
                ratios = ", ".join(f"{text} {this[key] / other[key]:.2f} x"
                                   for text, key in keys.items())
                print(f"list_{db}_this_over_other_{moment}_{scope} {ratios}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
