"""Sweep to delivery: due deadlines of every kind among 10,000 and 100,000 open
tickets, applied by the sweep and sent by the outbox to WeChat Work (the
emulator) and an SMTP server (aiosmtpd).

    python bench/sweep.py                # SQLite
    python bench/sweep.py --postgres     # and PostgreSQL (scratch db via TEST_POSTGRES_URL)

The network is bench/outbox.py's (200 dealers, a group and two handlers each).
Four cohorts of `--per-cohort` complaints are opened through the ledger (their
intake notices counted as sent), aged so that at the sweep a mix of clocks is
due: 3 h old (response), 25 h (response, first solution), 49 h (the same, the
solution e-mail and the follow-up) and 73 h (all of them and the resolution,
which escalates to the region). The other open tickets are filler with two
clocks not yet due (bench/fill.py).

The bot's figure is the time from "due" to "sent": the sweeps
(schedulers.sweeper.sweep, as the scheduler calls it) until nothing is due,
then the scheduler's outbox job every OUTBOX_INTERVAL_SECONDS until no row
waits (bench/outbox.run_bot). The baseline, measured in the same run before
and after the bot (bench/outbox.run_baseline): the same messages, rendered
beforehand, sent straight to fresh peers with the same concurrency, no
database. Prints a calibration line, then per database and size the sweep,
the delivery and the whole, each also as a ratio to the baseline, the CPU per
notice, what the peers received, and the ratio between the two sizes.
Targets (issue 7): under 1 s of sweep per 1,000 due deadlines, the 100k/10k
ratio at most 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench.calibration import calibration_line
from bench.fill import ADMIN_URL, fill_tickets, scratch_postgres
from bench.outbox import (
    CALL_CENTRE,
    DEALERS,
    baseline_bot_baseline,
    baseline_messages,
    cpu,
    network,
)
from bot.db import open_database
from bot.directory_import import import_directory
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE
from models import Deadline, GroupChat, Notification
from schedulers.sweeper import sweep

# Age of each cohort at the sweep, and how many of its clocks are then due.
COHORTS = ((timedelta(hours=3), 1), (timedelta(hours=25), 2),
           (timedelta(hours=49), 4), (timedelta(hours=73), 5))


def with_managers(path: Path) -> Path:
    """bench/outbox.py's network plus whom the later clocks e-mail: a manager
    for each dealer (the solution e-mail) and the region's second-level
    manager (the escalation)."""
    org = yaml.safe_load(path.read_text())
    org["staff"] += [{"userid": f"d{d:04d}.m", "name": f"经理{d}", "role": "dealer_manager",
                      "dealer": f"D{d:04d}", "email": f"m@d{d:04d}.example"}
                     for d in range(DEALERS)]
    org["staff"].append({"userid": "east.lin", "name": "林二级经理",
                         "role": "second_level_manager", "region": "EAST",
                         "email": "east.lin@brand.example"})
    path.write_text(yaml.safe_dump(org, allow_unicode=True))
    return path


async def open_cohorts(ledger: Ledger, now: datetime, per_cohort: int) -> int:
    """Open the cohorts' complaints through the ledger, their intake notices
    counted as delivered; return how many deadlines are due at `now`."""
    due = 0
    for c, (age, clocks) in enumerate(COHORTS):
        for i in range(per_cohort):
            n = c * per_cohort + i
            complaint = Complaint.model_validate({
                "customer_name": "王女士", "customer_phone": f"137{n:08d}", "car_model": "迈腾",
                "plate": f"苏B{n:05d}", "vin": f"LSVCC2A4{n:09d}", "channel": "phone",
                "description": f"空调不制冷，第{n}号车", "dealer_code": f"D{n % DEALERS:04d}"})
            await open_complaint(complaint, ledger, actor=CALL_CENTRE, source="api",
                                 now=now - age)
        due += clocks * per_cohort
    await Notification.filter(status="pending").update(status="sent")
    return due


async def one_size(url: str, name: str, open_tickets: int, per_cohort: int) -> dict[str, float]:
    """Baseline, bot (sweep and delivery), baseline on one database of
    `open_tickets` open tickets; prints the figures and returns them."""
    async with open_database(url):
        with tempfile.TemporaryDirectory() as tmp:
            await import_directory(with_managers(network(Path(tmp) / "org.yaml")))
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        now = datetime.now(UTC).replace(microsecond=0)
        filler = open_tickets - len(COHORTS) * per_cohort
        await fill_tickets(filler, dispatched_at=now - timedelta(minutes=10),
                           policy_digest=book.current.digest,
                           dealers=[(f"D{d:04d}", "EAST") for d in range(DEALERS)])
        ledger = Ledger(book)
        due = await open_cohorts(ledger, now, per_cohort)
        hooks = dict(await GroupChat.all().values_list("chatid", "webhook_key"))

        # The sweep: due → rows.
        before = cpu()
        started = time.perf_counter()
        applied = 0
        while actions := await sweep(ledger, now=now):
            applied += sum(a.result == "applied" for a in actions)
        swept = time.perf_counter() - started
        sweep_cpu = cpu() - before
        assert applied == due, (applied, due)
        assert not await Deadline.filter(state="pending", due_at__lte=now).exists()
        notices = await Notification.filter(status="pending").count()
        by_medium = dict(sorted(Counter(
            await Notification.filter(status="pending").values_list("medium", flat=True))
            .items()))
        messages = await baseline_messages(now)

        # Rows → sent, between two baselines, each phase against fresh peers.
        seconds, cpus, received, statements = await baseline_bot_baseline(messages, hooks)
        undelivered = Notification.filter(status__not_in=("sent", "digested"))
        assert not await undelivered.exists(), await undelivered.values_list("status", "medium")

    base = sum(seconds["baseline"]) / 2
    base_cpu = sum(cpus["baseline"]) / 2
    delivered = seconds["bot"][0]
    whole = swept + delivered
    bot_cpu = sweep_cpu + cpus["bot"][0]
    tag = f"sweep_{name}_{open_tickets}_open"
    lines = [
        f"{tag}_due {due} deadlines ({len(COHORTS)} cohorts of {per_cohort} tickets) → "
        f"{notices} notices {by_medium}",
        f"{tag}_baseline_seconds {base:.2f} s ({seconds['baseline'][0]:.2f} before, "
        f"{seconds['baseline'][1]:.2f} after)",
        f"{tag}_sweep_seconds {swept:.2f} s ({1000 * swept / due:.2f} s per 1,000 due; "
        f"{swept / base:.2f} x baseline)",
        f"{tag}_delivery_seconds {delivered:.2f} s ({delivered / base:.1f} x baseline)",
        f"{tag}_due_to_sent_seconds {whole:.2f} s ({whole / base:.1f} x baseline)",
        f"{tag}_cpu_ms_per_notice sweep {1000 * sweep_cpu / notices:.2f} + delivery "
        f"{1000 * cpus['bot'][0] / notices:.2f} ms, baseline {1000 * base_cpu / notices:.2f} ms; "
        f"ratio {bot_cpu / base_cpu:.1f} x",
        f"{tag}_delivery_sql_statements_per_notice {statements / notices:.2f}",
        f"{tag}_peers bot {received['bot']}; baseline {received['baseline']}",
    ]
    for line in lines:
        print(line, flush=True)
    return {"sweep": swept, "whole": whole, "ratio": whole / base}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help=f"also run on PostgreSQL (scratch database via {ADMIN_URL})")
    parser.add_argument("--sizes", default="10000,100000", help="open tickets per run")
    parser.add_argument("--per-cohort", type=int, default=25,
                        help="complaints in each of the four cohorts of due clocks")
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
                    figures[size] = await one_size(f"sqlite://{tmp}/bench.sqlite3", db, size,
                                                   args.per_cohort)
            else:
                async with scratch_postgres() as url:
                    figures[size] = await one_size(url, db, size, args.per_cohort)
        if len(sizes) == 2:
            small, large = (figures[s] for s in sizes)
            print(f"sweep_{db}_ratio_{sizes[1]}_to_{sizes[0]} sweep "
                  f"{large['sweep'] / small['sweep']:.2f} x, due to sent "
                  f"{large['whole'] / small['whole']:.2f} x, due to sent over baseline "
                  f"{large['ratio'] / small['ratio']:.2f} x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
