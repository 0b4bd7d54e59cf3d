"""Callbacks, bot against baseline in the same run: a realistic mix over loopback.

    python bench/callbacks.py                 # SQLite
    python bench/callbacks.py --postgres      # PostgreSQL (scratch db via TEST_POSTGRES_URL)
    python bench/callbacks.py --postgres --workers 2   # two server processes (WEB_WORKERS)
    python bench/callbacks.py --bot-code /path/to/checkout   # another version of the bot
                                                             # (stores, serves and counts)

A real `complaintbot serve` subprocess (robot token and key set, the example
directory loaded, tickets stored with their handlers' card copies as dispatch
leaves them, the default log level) and a baseline aiohttp server in its own
process that does what the bot must do at the least: verify, decrypt and parse
the callback, then encrypt and sign a passive reply (the intake API: check the
token, parse the JSON, answer 201).

The mix, per ten requests: two intakes over the API, two `/respond` (one typed,
one a card click), two `/show`, one `/plan`, one `/followup` (every other one
escalates: the third return visit), one `/list`, one `/respond` typed on a
ticket of another dealer. A separate load process sends it, first at a fixed
offered rate (latency timed from each request's scheduled send time, so a
server that falls behind shows it), then at saturation (a fixed number of
connections back to back). Every reply is checked: decrypted, and it must be
the answer its command gives (the ticket's number in it, no refusal, no
apology); a wrong reply counts as a failure.

Bot and baseline run interleaved: each phase is cut into rounds, and each
round is sent to the bot and then to the baseline, so both meet the same
machine. Every figure is printed also as a ratio to the baseline's of the same
run (`…_ratio`). CPU per request is read from /proc (the server's process tree).
Last, the SQL statements of each command (tests/statements.py) are counted on
an in-process copy of the bot over the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calibration import calibration_line
from bench.fill import DEALERS, HANDLER, ORG, fill_tickets, scratch_postgres
from bot.app import create_app
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Status
from bot.ledger import snapshot
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE, load_settings
from bot.wecom.crypto import CallbackCipher, CallbackRefused, SignedQuery
from models import Deadline, SentCard, Staff, Ticket
from tests.statements import count_statements

ROBOT_TOKEN = "BenchRobotToken"
ROBOT_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
API_TOKEN = "bench-api-token-0123456789"
EXE = Path(sys.executable).with_name("complaintbot")
# The mix, one kind per request, repeated.
MIX = ("intake", "respond", "show", "click", "plan", "intake", "followup", "show", "list",
       "respond")
# The kinds that need a responded ticket.
_RESPONDED = {"plan", "followup"}
PLAN = "诉求=更换变速箱 原因=阀体磨损 方案=免费更换阀体并延保一年 接受=是 回访=是"
# What no right answer holds: a refusal, a usage error, an apology.
_WRONG = ("⛔", "❌", "⚠️")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the requests ---------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One request of the mix and what its answer must show."""

    kind: str
    number: int  # the ticket it works on (0 for intake and /list)
    path: str
    params: dict[str, str]
    body: bytes
    headers: dict[str, str]


def _robot(cipher: CallbackCipher, kind: str, number: int, message: dict[str, Any],
           timestamp: str) -> Request:
    query, body = cipher.robot_callback(message, timestamp=timestamp)
    return Request(kind, number, "/wecom/robot", query.as_params(), body,
                   {"Content-Type": "application/json"})


def build_requests(slots: list[tuple[str, int]]) -> list[Request]:
    """The encrypted callbacks (and intake posts) of the mix, stamped now. An
    intake's slot number makes its customer and vehicle unique (no repeat)."""
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")
    timestamp = str(int(time.time()))
    requests = []
    for i, (kind, number) in enumerate(slots):
        dealer = DEALERS[number % 4][0]
        sender = {"userid": HANDLER[dealer]}
        base = {"msgid": uuid.uuid4().hex, "aibotid": "aibench", "chattype": "group",
                "chatid": f"wrGRP-{dealer}", "from": sender,
                "response_url": "http://127.0.0.1:9/response_url"}
        if kind == "intake":
            serial = number
            body = {"customer_name": "李先生", "customer_phone": f"137{serial:08d}",
                    "car_model": "速腾", "plate": f"沪B{serial % 100000:05d}",
                    "vin": f"LSVAU2180N{serial:07d}", "channel": "phone",
                    "description": "空调异响", "dealer_code": DEALERS[serial % 4][0]}
            requests.append(Request(kind, 0, "/api/complaints", {}, json.dumps(body).encode(),
                                    {"Content-Type": "application/json",
                                     "Authorization": f"Bearer {API_TOKEN}"}))
        elif kind == "click":
            event = {"eventtype": "template_card_event", "template_card_event": {
                "card_type": "button_interaction", "event_key": f"respond:{number}",
                "task_id": f"ticket{number}-bench{i}"}}
            requests.append(_robot(cipher, kind, number,
                                   {**base, "msgtype": "event", "event": event}, timestamp))
        else:
            text = {"respond": f"/respond {number} 已联系客户", "show": f"/show {number}",
                    "plan": f"/plan {number} {PLAN}", "list": "/list",
                    "followup": f"/followup {number} 客户确认方案"}[kind]
            requests.append(_robot(cipher, kind, number, {
                **base, "msgtype": "text", "text": {"content": f"@投诉助手 {text}"}}, timestamp))
    return requests


def check(request: Request, status: int, text: str, cipher: CallbackCipher) -> bool:
    """Whether the answer is the one the request's command gives."""
    if request.kind == "intake":
        return status == 201 and json.loads(text).get("number", 0) > 0
    if status != 200 or not text:
        return False
    reply = cipher.open_robot_reply(json.loads(text), now=datetime.now(UTC))
    if request.kind == "click":
        return reply.get("response_type") == "update_template_card"
    if request.kind == "show":
        card = reply.get("template_card", {})
        return card.get("main_title", {}).get("title", "").startswith(f"#{request.number} ")
    content = reply.get("stream", {}).get("content", "")
    wanted = "#" if request.kind == "list" else f"#{request.number}"
    return wanted in content and not any(mark in content for mark in _WRONG)


# -- the load process -----------------------------------------------------------

async def _send_all(base_url: str, requests: list[Request], *, rate: float | None,
                    connections: int, baseline: bool) -> dict[str, Any]:
    """Send every request (at `rate` per second, or back to back over
    `connections` connections); the latency of each right answer, from its
    scheduled send time, the wrong or failed ones, and the span."""
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")
    latencies: list[float] = []
    wrong: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections if not rate else 0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(request: Request, scheduled: float) -> None:
            try:
                async with session.post(base_url + request.path, params=request.params,
                                        data=request.body, headers=request.headers) as resp:
                    text = await resp.text()
                    status = resp.status
                ok = status in (200, 201) if baseline else check(request, status, text, cipher)
            except (aiohttp.ClientError, ValueError, CallbackRefused):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - scheduled)
            else:
                wrong[request.kind] += 1

        begin = time.perf_counter()
        if rate:
            tasks = []
            for i, request in enumerate(requests):
                scheduled = begin + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(request, scheduled)))
            await asyncio.gather(*tasks)
        else:
            queue = list(reversed(requests))

            async def worker() -> None:
                while queue:
                    await one(queue.pop(), time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(connections)))
        span = time.perf_counter() - begin
    return {"latencies": latencies, "wrong": dict(wrong), "span": span}


def _load(base_url: str, slots: list[tuple[str, int]], rate: float | None,
          connections: int, baseline: bool, results: multiprocessing.Queue) -> None:
    requests = build_requests(slots)
    results.put(asyncio.run(_send_all(base_url, requests, rate=rate, connections=connections,
                                      baseline=baseline)))


def run_load(base_url: str, slots: list[tuple[str, int]], *, rate: float | None,
             connections: int, baseline: bool) -> dict[str, Any]:
    """The load in a separate process, so it does not share the servers' event loops."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_load, args=(base_url, slots, rate, connections,
                                              baseline, results))
    process.start()
    outcome = results.get()
    process.join()
    return outcome


# -- the baseline server --------------------------------------------------------

def _baseline(port: int) -> None:
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")

    async def receive(request: web.Request) -> web.Response:
        q = request.query
        query = SignedQuery(msg_signature=q.get("msg_signature", ""),
                            timestamp=q.get("timestamp", ""), nonce=q.get("nonce", ""))
        now = datetime.now(UTC)
        try:
            message = json.loads(cipher.decrypt_robot(query, await request.read(), now=now))
        except CallbackRefused as exc:
            return web.Response(status=exc.status)
        content = message.get("text", {}).get("content", "")
        reply = {"msgtype": "stream",
                 "stream": {"id": message["msgid"][:16], "finish": True, "content": content}}
        return web.json_response(cipher.robot_reply(reply, timestamp=str(int(now.timestamp())),
                                                    nonce=query.nonce))

    async def intake(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_TOKEN}":
            return web.json_response({"error": "未授权"}, status=401)
        body = await request.json()
        return web.json_response({"number": 1, "dealer": body.get("dealer_code")}, status=201)

    app = web.Application()
    app.router.add_post("/wecom/robot", receive)
    app.router.add_post("/api/complaints", intake)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- CPU from /proc ---------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process `pid` and its descendants so far."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICKS
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += [child for child, parent in parents.items() if parent == current]
    return sum(times.get(p, 0.0) for p in tree)


# -- the run ----------------------------------------------------------------------

async def prepare(url: str, count: int) -> list[int]:
    """Migrate, load the directory, store `count` tickets as dispatch leaves
    them (each handler of the dealer holding a card copy with a live code);
    those of the kinds in _RESPONDED (by MIX position) stored responded, every
    other /followup ticket on its second return visit, so the next escalates."""
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        now = datetime.now(UTC)
        numbers = await fill_tickets(count, dispatched_at=now - timedelta(minutes=30),
                                     policy_digest=book.current.digest)
        responded = [n for n in numbers if MIX[n % len(MIX)] in _RESPONDED]
        await Ticket.filter(id__in=responded).update(
            status=Status.RESPONDED, responded_at=now - timedelta(minutes=20),
            owner_responded_at=now - timedelta(minutes=20), assignee="")
        escalating = [n for n in numbers if MIX[n % len(MIX)] == "followup" and n % 20 < 10]
        await Ticket.filter(id__in=escalating).update(followup_count=2)
        # The filler stores two clocks; dispatch stores every clock the state sets.
        stored = {(n, clock, due) for n, clock, due in await Deadline.all().values_list(
            "ticket_id", "clock", "due_at")}
        await Deadline.bulk_create([
            Deadline(ticket_id=row.id, clock=d.clock, due_at=d.due_at)
            for row in await Ticket.all()
            for d in pending_deadlines(snapshot(row), book.current)
            if (row.id, d.clock, d.due_at) not in stored], batch_size=5000)
        handlers: dict[str, list[str]] = defaultdict(list)
        for userid, dealer in await Staff.filter(role="dealer_staff").values_list(
                "userid", "dealer__code"):
            handlers[dealer].append(userid)
        await SentCard.bulk_create([
            SentCard(ticket_id=n, task_id=f"ticket{n}-{userid}", channel="app", userid=userid,
                     chatid="", response_code=uuid.uuid4().hex, code_at=now, created_at=now,
                     updated_at=now)
            for n in numbers for userid in handlers[DEALERS[n % 4][0]]], batch_size=5000)
    return numbers


async def wait_ready(port: int) -> None:
    """Until the server on `port` accepts connections (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"server on port {port} did not start")


@dataclass
class Tally:
    """One server's figures over the rounds of a phase."""

    latencies: list[float]
    wrong: Counter[str]
    span: float = 0.0
    cpu: float = 0.0

    def add(self, outcome: dict[str, Any], cpu: float) -> None:
        self.latencies += outcome["latencies"]
        self.wrong.update(outcome["wrong"])
        self.span += outcome["span"]
        self.cpu += cpu

    def figures(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        done = len(lat)
        return {
            "answered_per_second": done / self.span,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(done - 1, int(0.99 * done))],
            "cpu_ms_per_request": 1000 * self.cpu / max(done, 1),
        }


def report(prefix: str, bot: Tally, base: Tally) -> None:
    units = {"answered_per_second": "1/s", "p50_ms": "ms", "p99_ms": "ms",
             "cpu_ms_per_request": "ms"}
    ours, theirs = bot.figures(), base.figures()
    for name, value in ours.items():
        print(f"{prefix}_bot_{name} {value:.2f} {units[name]}")
        print(f"{prefix}_baseline_{name} {theirs[name]:.2f} {units[name]}")
        print(f"{prefix}_{name}_ratio {value / theirs[name]:.2f} bot/baseline")
    print(f"{prefix}_bot_wrong_or_failed {sum(bot.wrong.values())} {dict(bot.wrong)}")
    print(f"{prefix}_baseline_failed {sum(base.wrong.values())}")
    sys.stdout.flush()


async def count_per_command(url: str, slots: list[tuple[str, int]], db: str) -> None:
    """The SQL statements (and CPU) of each kind of request, counted on an
    in-process copy of the bot over the same database."""
    configure_logging("json", "WARNING")  # its lines would mix with the figures
    settings = load_settings(database_url=url, api_token=API_TOKEN,
                             wecom_robot_token=ROBOT_TOKEN, wecom_robot_aes_key=ROBOT_KEY)
    server = TestServer(create_app(settings, scheduler=False))
    await server.start_server()
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")
    statements: dict[str, list[int]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    try:
        async with aiohttp.ClientSession() as session:
            for request in build_requests(slots):
                async with count_statements() as counted:
                    started = time.process_time()
                    async with session.post(server.make_url(request.path),
                                            params=request.params, data=request.body,
                                            headers=request.headers) as resp:
                        ok = check(request, resp.status, await resp.text(), cipher)
                    cpu[request.kind].append(time.process_time() - started)
                if not ok:
                    raise RuntimeError(f"wrong answer to {request.kind} {request.number}")
                statements[request.kind].append(counted.total)
                if os.environ.get("BENCH_SQL"):
                    print(request.kind, counted.listing(), sep="\n", file=sys.stderr)
    finally:
        await server.close()
    for kind in sorted(statements):
        print(f"callbacks_{db}_statements_{kind} {statistics.mean(statements[kind]):.1f} "
              f"per request")
    mix = [statistics.mean(statements[kind]) for kind in MIX]
    print(f"callbacks_{db}_statements_mix {statistics.mean(mix):.1f} per request")
    # One request at a time, the client's side (encrypting, checking) included:
    # which kinds cost what, not a figure to compare with the load phases'.
    for kind in sorted(cpu):
        print(f"callbacks_{db}_inprocess_cpu_ms_{kind} {1000 * statistics.median(cpu[kind]):.2f}"
              " ms")
    sys.stdout.flush()


def _against(code: Path) -> int:
    """Run this bench, as it is, against another checkout's bot: a copy of the
    bench (with the statement counter and the example directory) beside that
    checkout's packages, so the tickets are stored, served and counted by the
    same version: a version with an older schema cannot read what this one
    stores."""
    argv = sys.argv[1:]
    at = argv.index("--bot-code")
    del argv[at:at + 2]
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        shutil.copytree(here / "bench", root / "bench")
        (root / "tests").mkdir()
        (root / "tests" / "__init__.py").touch()
        shutil.copy(here / "tests" / "statements.py", root / "tests")
        (root / "examples").symlink_to(here / "examples")
        env = {**os.environ, "PYTHONPATH": str(code.resolve())}
        return subprocess.call([sys.executable, str(root / "bench" / "callbacks.py"), *argv],
                               env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="store on PostgreSQL")
    parser.add_argument("--rate", type=float, default=100, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=12, help="length of the fixed-rate phase")
    parser.add_argument("--saturation", type=int, default=2400, help="requests at saturation")
    parser.add_argument("--connections", type=int, default=32, help="connections at saturation")
    parser.add_argument("--rounds", type=int, default=4, help="bot/baseline alternations per phase")
    parser.add_argument("--counted", type=int, default=5, help="requests of each kind counted")
    parser.add_argument("--workers", type=int, default=1,
                        help="bot server processes (WEB_WORKERS; PostgreSQL only)")
    parser.add_argument("--bot-code", type=Path, default=None,
                        help="run the bench against this checkout of the bot (to compare versions)")
    args = parser.parse_args()
    if args.bot_code:
        sys.exit(_against(args.bot_code))
    asyncio.run(_bench(args))


async def _bench(args: argparse.Namespace) -> None:
    calibration_line()
    fixed = int(args.rate * args.seconds)
    counted = args.counted * len(MIX)
    async with AsyncExitStack() as stack:
        if args.postgres:
            url = await stack.enter_async_context(scratch_postgres())
        else:
            url = f"sqlite://{stack.enter_context(tempfile.TemporaryDirectory())}/bench.sqlite3"
        db = "postgres" if args.postgres else "sqlite"
        if args.workers > 1:
            db += f"_{args.workers}workers"
        numbers = await prepare(url, fixed + args.saturation + counted)
        slots = [(MIX[n % len(MIX)], n) for n in numbers]
        bot_port, base_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        env.update(DATABASE_URL=url, HTTP_PORT=str(bot_port), API_TOKEN=API_TOKEN,
                   WECOM_ROBOT_TOKEN=ROBOT_TOKEN, WECOM_ROBOT_AES_KEY=ROBOT_KEY,
                   LOG_FORMAT="json", WEB_WORKERS=str(args.workers))
        bot = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
        baseline = multiprocessing.get_context("spawn").Process(target=_baseline,
                                                               args=(base_port,))
        baseline.start()
        try:
            await wait_ready(bot_port)
            await wait_ready(base_port)
            phases = [("rate", slots[:fixed], args.rate),
                      ("saturation", slots[fixed:fixed + args.saturation], None)]
            for phase, batch, rate in phases:
                bot_tally, base_tally = Tally([], Counter()), Tally([], Counter())
                size = -(-len(batch) // args.rounds)
                for start in range(0, len(batch), size):
                    part = batch[start:start + size]
                    for target, pid, tally, is_base in (
                            (bot_port, bot.pid, bot_tally, False),
                            (base_port, baseline.pid, base_tally, True)):
                        before = cpu_seconds(pid)
                        outcome = await asyncio.to_thread(
                            run_load, f"http://127.0.0.1:{target}", part,
                            rate=rate, connections=args.connections, baseline=is_base)
                        tally.add(outcome, cpu_seconds(pid) - before)
                report(f"callbacks_{db}_{phase}", bot_tally, base_tally)
        finally:
            bot.terminate()
            await bot.wait()
            baseline.terminate()
            baseline.join(10)
        await count_per_command(url, slots[fixed + args.saturation:], db)


if __name__ == "__main__":
    main()
