"""Sweep cost: 1,000 due deadlines among 10,000 and among 100,000 open tickets.

    python bench/sweep.py                # SQLite
    python bench/sweep.py --postgres     # and PostgreSQL (scratch db via TEST_POSTGRES_URL)

Each open ticket has two pending clocks; 1,000 of the tickets are 1 h past
their response deadline. The time is that of the sweeps (schedulers.sweeper.
sweep, as the scheduler calls it) until nothing is due: every breach recorded
through the ledger with its events and outbox rows; delivery is not included.
Prints `sweep_<db>_<open>_seconds <value> s` per run and the 100k/10k ratio.
Targets (issue 7): under 1 s per 1,000 due actions, ratio at most 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calibration import calibration_line
from bench.fill import ADMIN_URL, ORG, fill_tickets, scratch_postgres
from bot.db import open_database
from bot.directory_import import import_directory
from bot.ledger import Ledger
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE
from models import Deadline
from schedulers.sweeper import sweep

DUE = 1000


async def sweep_seconds(url: str, open_tickets: int) -> float:
    """Seconds to sweep `DUE` due deadlines among `open_tickets` open tickets."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        digest = book.current.digest
        await fill_tickets(DUE, dispatched_at=now - timedelta(hours=3), policy_digest=digest)
        await fill_tickets(open_tickets - DUE, dispatched_at=now - timedelta(minutes=10),
                           policy_digest=digest, first_id=DUE + 1)
        ledger = Ledger(book)
        applied = 0
        started = time.perf_counter()
        while actions := await sweep(ledger, now=now):
            applied += sum(a.result == "applied" for a in actions)
        elapsed = time.perf_counter() - started
        assert applied == DUE, applied
        assert await Deadline.filter(state="applied").count() == DUE
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help=f"also run on PostgreSQL (scratch database via {ADMIN_URL})")
    parser.add_argument("--sizes", default="10000,100000", help="open tickets per run")
    args = parser.parse_args()
    calibration_line()
    configure_logging("json", "WARNING")  # a log line per action would time the terminal
    sizes = [int(s) for s in args.sizes.split(",")]
    databases = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    for db in databases:
        figures = {}
        for size in sizes:
            if db == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    figures[size] = await sweep_seconds(f"sqlite://{tmp}/bench.sqlite3", size)
            else:
                async with scratch_postgres() as url:
                    figures[size] = await sweep_seconds(url, size)
            print(f"sweep_{db}_{size}_open_seconds_per_{DUE}_due {figures[size]:.3f} s",
                  flush=True)
        if len(sizes) == 2:
            ratio = figures[sizes[1]] / figures[sizes[0]]
            print(f"sweep_{db}_ratio_{sizes[1]}_to_{sizes[0]} {ratio:.2f} x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
