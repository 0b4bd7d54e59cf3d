"""Monthly reports at a national network's scale (R24, issue 16 part 4).

    python bench/report.py                         # SQLite: 1,000 dealers, 100,000 tickets
    python bench/report.py --postgres
    python bench/report.py --dealers 50 --tickets 10000 --seconds 10   # a quick look

First the calibration line (a fixed pure-Python loop). Then, on a fresh
database: the directory of examples/org.yaml plus `--dealers` dealers in
`--regions` regions, each with a bound group (so each is a report audience);
`--tickets` tickets dispatched in the month whose report is due now, spread
over those dealers, 70 % answered (in 1 h, or 3 h every third day), 40 %
resolved and closed with a score; and fresh tickets for callbacks.

In the bench process: the figures of every unit at once (`period_figures`,
the month and the month before), and of the brand and one dealer alone.

Then a real `complaintbot serve` on that database, its monthly report run
started by the start-up catch-up (weekly reports and the outbox held off):
callbacks in bench/callbacks.py's realistic mix (intake, commands, clicks, every
answer checked) at `--rate` per second,
in chunks of `--seconds` (one load process each): `--baseline-chunks` before
the run and as many after it (the baseline), and chunks for as long as the
run lasts. Measured: the run's total time (renderer process seen → every
report stored), callback ack latency p50/p99 without and during the run
(pooled, and the median of the chunks' p99s, which one hiccup of a shared
machine does not decide), the
server's resident memory (idle, and peak during the run) and the renderer
process's peak, read from /proc and as the renderer reports it.

Every line is `name value unit`, and where a baseline of the same run
applies, `ratio=<value / baseline> to=<baseline>`: times against the
calibration loop, latency during the run against latency without it, memory
against the server's idle memory. Targets: callbacks' p99 during the run
within 2x of their p99 without it; the server's peak under 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calibration import calibration_line
from bench.callbacks import (
    API_TOKEN,
    EXE,
    MIX,
    ROBOT_KEY,
    ROBOT_TOKEN,
    free_port,
    prepare,
    run_load,
    wait_ready,
)
from bench.fill import DEALERS, add_dealers, fill_tickets, scratch_postgres
from bot.db import open_database
from bot.domain.enums import Status
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.reports.figures import Limits, Period, Reach, Scope, compute_figures, period_figures
from bot.settings import DEFAULT_POLICY_FILE, load_settings
from models import Deadline, ReportRun, Ticket
from schedulers.reports import audiences, due_period, report_trigger

ZONE = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
_T = TypeVar("_T")


def line(name: str, value: float, unit: str, *, baseline: float | None = None,
         fmt: str = ".3f") -> None:
    """One output line, with its ratio to the run's baseline when there is one."""
    ratio = f" ratio={value / baseline:.2f} to={baseline:{fmt}}" if baseline else ""
    print(f"{name} {value:{fmt}} {unit}{ratio}", flush=True)


# -- the data -----------------------------------------------------------------


def due_month(now: datetime) -> Period:
    """The month whose report the default schedule owes at `now`."""
    period = due_period("monthly", report_trigger(load_settings().report_monthly_cron, ZONE),
                        now, ZONE)
    assert period is not None
    return period


async def fill_month(count: int, month: Period, digest: str, *, first_id: int,
                     dealers: list[tuple[str, str]]) -> None:
    """`count` tickets over the days of `month`, with their handling; their
    clocks finished (a month ago's tickets have no pending deadline)."""
    days = (month.end - month.start).days
    first = first_id
    for day in range(days):
        share = count // days + (1 if day < count % days else 0)
        at = month.start + timedelta(days=day, hours=10)
        await fill_tickets(share, dispatched_at=at, policy_digest=digest, first_id=first,
                           dealers=dealers)
        # 70 % answered (in 1 h, or 3 h every third day), 40 % resolved in 30 h
        # and closed 10 h later with a score; the rest stay open.
        answered, closed = first + share * 7 // 10, first + share * 4 // 10
        await Ticket.filter(id__gte=first, id__lt=answered).update(
            responded_at=at + (3 * H if day % 3 == 0 else H), status=Status.RESPONDED)
        await Ticket.filter(id__gte=first, id__lt=closed).update(
            first_solution_at=at + 20 * H, resolved_at=at + 30 * H, closed_at=at + 40 * H,
            satisfaction=4 + day % 2, status=Status.CLOSED)
        first += share
    await Deadline.filter(ticket_id__gte=first_id).update(state="done", finished_at=month.end)


@dataclass
class Network:
    """What the bench filled: the month, the callback tickets, the audiences."""

    month: Period
    callback_numbers: list[int]
    reports: int  # scopes with an audience: the runs the month's report stores


async def fill(url: str, *, dealers: int, regions: int, tickets: int, callbacks: int,
               now: datetime) -> Network:
    """The directory, the month's tickets and the callback tickets."""
    numbers = await prepare(url, callbacks)  # example directory, policy, callback tickets
    month = due_month(now)
    async with open_database(url, migrate=False):
        digest = PolicyBook(load_policy(DEFAULT_POLICY_FILE)).current.digest
        units = await add_dealers(dealers, regions) if dealers else list(DEALERS)
        await fill_month(tickets, month, digest, first_id=len(numbers) + 1, dealers=units)
        reports = len(await audiences())
    return Network(month, numbers, reports)


async def timed(name: str, labels: str, calibration: float, work: Callable[[], Awaitable[_T]]
                ) -> _T:
    started = time.perf_counter()
    result = await work()
    line(f"{name} {labels}", time.perf_counter() - started, "s", baseline=calibration)
    return result


async def figures_in_process(url: str, month: Period, labels: str, calibration: float) -> None:
    """Every unit's figures at once, and the brand's and one dealer's alone."""
    limits = Limits.of(load_policy(DEFAULT_POLICY_FILE))
    async with open_database(url, migrate=False):
        every = await timed("report_monthly_figures_seconds", f"{labels} scope=every_unit",
                            calibration, lambda: period_figures(month, limits, ZONE,
                                                                Reach.everything()))
        brand = await timed("report_monthly_figures_seconds", f"{labels} scope=brand",
                            calibration, lambda: compute_figures(month, Scope("brand"), limits,
                                                                 ZONE))
        assert every.of(Scope("brand")) == brand, "grouped and alone disagree"
        dealer = (await Ticket.all().order_by("-id").first()).dealer_code  # type: ignore[union-attr]
        await timed("report_monthly_figures_seconds", f"{labels} scope=dealer:{dealer}",
                    calibration, lambda: compute_figures(month, Scope("dealer", dealer), limits,
                                                         ZONE))


# -- the server and its report run --------------------------------------------


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (empty once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return {k: int(v.split()[0]) / 1024 for k, v in
            (row.split(":", 1) for row in text.splitlines()) if k in ("VmRSS", "VmHWM")}


def renderer_pid(server: int) -> int | None:
    """The server's report renderer (a spawned multiprocessing child), if running.
    It is started from a worker thread: /proc lists children per thread."""
    children = []
    for task in Path(f"/proc/{server}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            return pid
    return None


@dataclass
class ReportRunSeen:
    """What was seen of one report run in a server."""

    seconds: float = 0.0
    server_idle_mb: float = 0.0
    server_peak_mb: float = 0.0
    renderer_peak_mb: float = 0.0  # sampled from /proc
    renderer_reported_mb: float | None = None  # its own ru_maxrss, from the log
    stored: int = 0
    chunks: list[list[float]] = field(default_factory=list)  # callbacks during the run


def server_env(url: str, port: int, catchup_seconds: float, cpu_share: float | None = None
               ) -> dict[str, str]:
    """A server whose start-up catch-up runs the monthly reports only, with the
    outbox held off (delivery is not what is measured) and nothing sent out;
    its renderer's CPU share the setting's default unless given."""
    share = {} if cpu_share is None else {"REPORT_RENDERER_CPU_SHARE": str(cpu_share)}
    return {**os.environ, **share, "DATABASE_URL": url, "HTTP_PORT": str(port),
            "WECOM_ROBOT_TOKEN": ROBOT_TOKEN, "WECOM_ROBOT_AES_KEY": ROBOT_KEY,
            "API_TOKEN": API_TOKEN, "LOG_FORMAT": "json", "REPORT_WEEKLY_CRON": "",
            "REPORT_CATCHUP_DELAY_SECONDS": str(catchup_seconds),
            "OUTBOX_INTERVAL_SECONDS": "3600", "WECOM_API_BASE": "http://127.0.0.1:9/cgi-bin"}


async def _read_log(stream: asyncio.StreamReader, seen: ReportRunSeen) -> None:
    async for raw in stream:
        if b"reports_stored" in raw:
            seen.renderer_reported_mb = json.loads(raw).get("renderer_peak_mb")


async def watch_report_run(url: str, server: int, expected: int, seen: ReportRunSeen,
                           started: asyncio.Event, *, limit_seconds: float = 3600) -> None:
    """From the renderer's start (then `started` is set) until `expected`
    reports are stored: the time, and the peak memory of the server and the
    renderer, sampled every 0.2 s."""
    deadline = time.monotonic() + limit_seconds
    child = None
    while child is None:
        child = renderer_pid(server)
        if time.monotonic() > deadline:
            raise RuntimeError("the report run did not start")
        await asyncio.sleep(0.05)
    started.set()
    began = time.perf_counter()
    async with open_database(url, migrate=False):
        polled = 0.0
        while True:
            seen.renderer_peak_mb = max(seen.renderer_peak_mb,
                                        proc_memory(child).get("VmHWM", 0.0))
            if time.monotonic() - polled > 1:
                polled = time.monotonic()
                seen.stored = await ReportRun.filter(kind="monthly").count()
                if seen.stored >= expected:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen.stored} of {expected} reports stored")
            await asyncio.sleep(0.2)
    seen.seconds = time.perf_counter() - began
    seen.server_peak_mb = proc_memory(server)["VmHWM"]


Chunks = list[list[float]]  # the ack latencies of each load chunk


async def load_chunks(url: str, numbers: list[int], rate: float, seconds: float,
                      more: Callable[[int], bool]) -> Chunks:
    """Callbacks at `rate` in chunks of `seconds` (one load process each),
    taking ticket numbers off `numbers`, while `more(chunks so far)`."""
    chunks: Chunks = []
    per_chunk = max(1, int(rate * seconds))
    while more(len(chunks)):
        if len(numbers) < per_chunk:
            raise RuntimeError("out of callback tickets: raise --max-run-seconds")
        # The callbacks bench's realistic mix, on the tickets `prepare` made for it.
        chunk = [(MIX[n % len(MIX)], n) for n in (numbers.pop(0) for _ in range(per_chunk))]
        outcome = await asyncio.to_thread(run_load, url, chunk, rate=rate, connections=32,
                                          baseline=False)
        assert not outcome["wrong"], outcome["wrong"]
        chunks.append(outcome["latencies"])
    return chunks


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def chunk_p99(chunks: Chunks) -> float:
    """The median of the chunks' p99s: a hiccup of the shared machine in one
    chunk does not decide the figure, a slowdown through the run does."""
    return statistics.median(percentile(chunk, .99) for chunk in chunks)


async def serve_monthly_run(url: str, network: Network, *, rate: float, seconds: float,
                            baseline_chunks: int, cpu_share: float | None = None
                            ) -> tuple[Chunks, ReportRunSeen]:
    """Start the server; callbacks in `baseline_chunks` chunks before its
    report run and as many after it (the baseline), and through the run.
    Returns the baseline's chunks and what was seen of the run."""
    port = free_port()
    seen = ReportRunSeen()
    # The catch-up starts once the chunks before it have surely ended.
    env = server_env(url, port, catchup_seconds=baseline_chunks * (seconds + 5) + 15,
                     cpu_share=cpu_share)
    server = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env,
                                                  stdout=asyncio.subprocess.DEVNULL,
                                                  stderr=asyncio.subprocess.PIPE)
    assert server.stderr is not None  # the log
    reader = asyncio.create_task(_read_log(server.stderr, seen))
    try:
        await wait_ready(port)
        seen.server_idle_mb = proc_memory(server.pid)["VmRSS"]
        target = f"http://127.0.0.1:{port}"
        numbers = list(network.callback_numbers)
        before = await load_chunks(target, numbers, rate, seconds,
                                   lambda done: done < baseline_chunks)
        assert renderer_pid(server.pid) is None, "the run began during the baseline phase"
        started = asyncio.Event()
        watch = asyncio.create_task(watch_report_run(url, server.pid, network.reports, seen,
                                                     started))
        await started.wait()
        seen.chunks = await load_chunks(target, numbers, rate, seconds,
                                        lambda done: not done or not watch.done())
        await watch
        after = await load_chunks(target, numbers, rate, seconds,
                                  lambda done: done < baseline_chunks)
    finally:
        server.terminate()
        await server.wait()
        reader.cancel()
    return before + after, seen


def print_run(labels: str, calibration: float, without: Chunks, seen: ReportRunSeen) -> None:
    """The run's figures, each with its ratio to the run's own baseline."""
    line(f"report_monthly_run_seconds {labels}", seen.seconds, "s", baseline=calibration)
    line(f"report_monthly_run_ms_per_report {labels} reports={seen.stored}",
         1000 * seen.seconds / seen.stored, "ms", baseline=1000 * calibration, fmt=".1f")
    pooled = [x for chunk in without for x in chunk]
    during = [x for chunk in seen.chunks for x in chunk]
    base = {"p50": percentile(pooled, .5), "p99": percentile(pooled, .99),
            "chunk_p99": chunk_p99(without)}
    run = {"p50": percentile(during, .5), "p99": percentile(during, .99),
           "chunk_p99": chunk_p99(seen.chunks)}
    for name in base:
        line(f"callbacks_ack_{name}_ms {labels} report=none n={len(pooled)}",
             1000 * base[name], "ms", fmt=".1f")
        line(f"callbacks_ack_{name}_ms {labels} report=running n={len(during)}",
             1000 * run[name], "ms", baseline=1000 * base[name], fmt=".1f")
    line(f"server_rss_idle_mb {labels}", seen.server_idle_mb, "MB", fmt=".0f")
    line(f"server_rss_peak_mb {labels}", seen.server_peak_mb, "MB",
         baseline=seen.server_idle_mb, fmt=".0f")
    line(f"renderer_rss_peak_mb {labels} source=proc", seen.renderer_peak_mb, "MB",
         baseline=seen.server_idle_mb, fmt=".0f")
    if seen.renderer_reported_mb is not None:
        line(f"renderer_rss_peak_mb {labels} source=log", seen.renderer_reported_mb, "MB",
             baseline=seen.server_idle_mb, fmt=".0f")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--dealers", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=10)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20, help="offered callbacks per second")
    parser.add_argument("--seconds", type=float, default=30, help="length of a load chunk")
    parser.add_argument("--baseline-chunks", type=int, default=2,
                        help="load chunks before the report run, and as many after it")
    parser.add_argument("--cpu-share", type=float, default=None,
                        help="REPORT_RENDERER_CPU_SHARE of the server (default: its default)")
    parser.add_argument("--max-run-seconds", type=float, default=900,
                        help="callback tickets made for a report run this long")
    args = parser.parse_args()
    calibration = calibration_line()
    configure_logging("json", "WARNING")
    backend = "postgres" if args.postgres else "sqlite"
    share = args.cpu_share or load_settings().report_renderer_cpu_share
    labels = f"backend={backend} dealers={args.dealers} tickets={args.tickets}"
    async with AsyncExitStack() as stack:
        if args.postgres:
            url = await stack.enter_async_context(scratch_postgres())
        else:
            url = f"sqlite://{stack.enter_context(tempfile.TemporaryDirectory())}/bench.sqlite3"
        callbacks = int(args.rate * (2 * args.baseline_chunks * args.seconds
                                     + args.max_run_seconds + args.seconds))
        network = await fill(url, dealers=args.dealers, regions=args.regions,
                             tickets=args.tickets, callbacks=callbacks, now=datetime.now(UTC))
        await figures_in_process(url, network.month, labels, calibration)
        without, seen = await serve_monthly_run(url, network, rate=args.rate,
                                                seconds=args.seconds,
                                                baseline_chunks=args.baseline_chunks,
                                                cpu_share=share)
        print_run(f"{labels} cpu_share={share:g}", calibration, without, seen)


if __name__ == "__main__":
    asyncio.run(main())
