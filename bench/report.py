"""Monthly report cost over many tickets (R24, issue 6).

    python bench/report.py                          # SQLite, 100,000 tickets
    python bench/report.py --postgres --sizes 100000,1000000
    python bench/report.py --render                 # also the ticket list, workbook, chart

All N tickets are dispatched in the reported month (2026-02, spread over its
days and the four example dealers): the heaviest cohort N tickets can make.
Per day a share is answered (within or after the 2 h limit), resolved and
closed with a satisfaction score, so every figure has rows to aggregate.
Timed: `compute_figures` of the brand (the month, the month before and the
regions ranked, as the scheduled report computes it) and of one dealer; with
--render the ticket list, the eight months' volumes, the XLSX workbook and the
PNG chart of the brand.

One line per figure, `name key=value ... seconds`, e.g.
`report_monthly_figures_seconds tickets=100000 backend=sqlite scope=brand 0.83`.
Target: the brand's figures under 2 s at 100,000 tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fill import ADMIN_URL, ORG, fill_tickets, scratch_postgres
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Status
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.reports.figures import (
    Limits,
    Scope,
    compute_figures,
    parse_period,
    ticket_list,
    volume_history,
)
from bot.reports.render import chart, workbook
from bot.settings import DEFAULT_POLICY_FILE
from models import Ticket

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 2 March 09:00 in Shanghai
H = timedelta(hours=1)


async def fill_month(count: int, digest: str) -> None:
    """`count` tickets over the 28 days of 2026-02, with their handling."""
    month = parse_period("monthly", "2026-02", NOW, ZONE)
    days = (month.end - month.start).days
    first = 1
    for day in range(days):
        share = count // days + (1 if day < count % days else 0)
        at = month.start + timedelta(days=day, hours=10)
        await fill_tickets(share, dispatched_at=at, policy_digest=digest, first_id=first)
        # 70 % answered (in 1 h, or 3 h every third day), 40 % resolved in 30 h
        # and closed 10 h later with a score; the rest stay open.
        answered, closed = first + share * 7 // 10, first + share * 4 // 10
        await Ticket.filter(id__gte=first, id__lt=answered).update(
            responded_at=at + (3 * H if day % 3 == 0 else H), status=Status.RESPONDED)
        await Ticket.filter(id__gte=first, id__lt=closed).update(
            first_solution_at=at + 20 * H, resolved_at=at + 30 * H, closed_at=at + 40 * H,
            satisfaction=4 + day % 2, status=Status.CLOSED)
        first += share


async def timed(name: str, labels: str, work) -> object:
    started = time.perf_counter()
    result = await work()
    print(f"{name} {labels} {time.perf_counter() - started:.3f}", flush=True)
    return result


async def run(url: str, backend: str, count: int, render: bool) -> None:
    """Fill, then time each figure of the 2026-02 report."""
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        await fill_month(count, book.current.digest)
        limits = Limits.of(book.current)
        month = parse_period("monthly", None, NOW, ZONE)
        labels = f"tickets={count} backend={backend}"
        brand = await timed("report_monthly_figures_seconds", f"{labels} scope=brand",
                            lambda: compute_figures(month, Scope("brand"), limits, ZONE))
        assert brand.received == count, brand.received  # type: ignore[attr-defined]
        await timed("report_monthly_figures_seconds", f"{labels} scope=dealer:SH001",
                    lambda: compute_figures(month, Scope("dealer", "SH001"), limits, ZONE))
        if render:
            tickets = await timed("report_monthly_ticket_list_seconds", f"{labels} scope=brand",
                                  lambda: ticket_list(month, Scope("brand")))

            async def book_bytes() -> bytes:
                return await asyncio.to_thread(workbook, brand, tickets, ZONE)

            async def png() -> bytes:
                return chart(brand, history)  # type: ignore[arg-type]

            history = await timed("report_monthly_history_seconds", f"{labels} scope=brand",
                                  lambda: volume_history(month, Scope("brand"), ZONE))
            await timed("report_monthly_workbook_seconds", f"{labels} scope=brand", book_bytes)
            await timed("report_monthly_chart_seconds", f"{labels} scope=brand", png)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help=f"also run on PostgreSQL (scratch database via {ADMIN_URL})")
    parser.add_argument("--sizes", default="100000", help="tickets per run, comma-separated")
    parser.add_argument("--render", action="store_true",
                        help="also time the ticket list, the workbook and the chart")
    args = parser.parse_args()
    configure_logging("json", "WARNING")
    for backend in ["sqlite", "postgres"] if args.postgres else ["sqlite"]:
        for size in (int(s) for s in args.sizes.split(",")):
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    await run(f"sqlite://{tmp}/bench.sqlite3", backend, size, args.render)
            else:
                async with scratch_postgres() as url:
                    await run(url, backend, size, args.render)


if __name__ == "__main__":
    asyncio.run(main())
