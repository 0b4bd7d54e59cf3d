"""Callback throughput: encrypted robot callbacks over loopback, bot vs baseline.

    python bench/callbacks.py                 # SQLite
    python bench/callbacks.py --postgres      # PostgreSQL (scratch db via TEST_POSTGRES_URL)
    python bench/callbacks.py --postgres --workers 2   # two server processes (WEB_WORKERS)

A real `complaintbot serve` subprocess (robot token and key set, the example
directory loaded, tickets pre-created) and, in the same run, a baseline aiohttp
server in its own process that only verifies, decrypts, parses and answers
200. A separate load process sends `@投诉助手 /respond N` and `/followup N`
callbacks, each on its own ticket, built with CallbackCipher.robot_callback as
the emulator does: first at a fixed offered rate (default 200/s), then at
saturation (a fixed number of connections sending back to back). Prints, per
server and phase: acknowledged per second, ack latency p50/p99, and for the bot
the commands applied per second (TicketEvents written). Targets (issue 7): ack
throughput at least half the baseline's; p99 below 100 ms at 200/s; at least
300 commands applied per second on SQLite, 500 on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fill import ORG, fill_tickets, group_command, scratch_postgres
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Status
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE
from bot.wecom.crypto import CallbackCipher, CallbackRefused, SignedQuery
from models import Ticket, TicketEvent

ROBOT_TOKEN = "BenchRobotToken"
ROBOT_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
EXE = Path(sys.executable).with_name("complaintbot")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the load process -----------------------------------------------------

def _callbacks(numbers: list[int]) -> list[tuple[dict[str, str], bytes]]:
    """One encrypted callback per ticket: /respond on odd numbers, /followup on even
    (those were stored already responded)."""
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")
    timestamp = str(int(time.time()))
    commands = {n: f"/respond {n}" if n % 2 else f"/followup {n} 客户确认方案" for n in numbers}
    return [group_command(cipher, n, text, timestamp=timestamp, aibotid="aibench")[1:]
            for n, text in commands.items()]


async def _send_all(url: str, callbacks: list, *, rate: float | None, connections: int
                    ) -> dict[str, Any]:
    """Send every callback (at `rate` per second, or back to back over
    `connections` connections); latencies of the 200 answers, and the span."""
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(params: dict[str, str], body: bytes) -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                async with session.post(url, params=params, data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

        begin = time.perf_counter()
        if rate:
            tasks = []
            for i, (params, body) in enumerate(callbacks):
                delay = begin + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(params, body)))
            await asyncio.gather(*tasks)
        else:
            queue = list(reversed(callbacks))

            async def worker() -> None:
                while queue:
                    await one(*queue.pop())

            await asyncio.gather(*(worker() for _ in range(connections)))
        span = time.perf_counter() - begin
    return {"latencies": latencies, "failures": failures, "span": span}


def _load(url: str, numbers: list[int], rate: float | None, connections: int,
          results: multiprocessing.Queue) -> None:
    callbacks = _callbacks(numbers)
    results.put(asyncio.run(_send_all(url, callbacks, rate=rate, connections=connections)))


def run_load(url: str, numbers: list[int], *, rate: float | None, connections: int
             ) -> dict[str, Any]:
    """The load in a separate process, so it does not share a core's event loop."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_load, args=(url, numbers, rate, connections, results))
    process.start()
    outcome = results.get()
    process.join()
    return outcome


# -- the baseline server ----------------------------------------------------

def _baseline(port: int) -> None:
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")

    async def receive(request: web.Request) -> web.Response:
        q = request.query
        query = SignedQuery(msg_signature=q.get("msg_signature", ""),
                            timestamp=q.get("timestamp", ""), nonce=q.get("nonce", ""))
        try:
            message = cipher.decrypt_robot(query, await request.read(), now=datetime.now(UTC))
        except CallbackRefused as exc:
            return web.Response(status=exc.status)
        json.loads(message)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/wecom/robot", receive)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the run ------------------------------------------------------------------

async def prepare(url: str, count: int) -> list[int]:
    """Migrate, load the directory, store `count` tickets (even ones responded)."""
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        now = datetime.now(UTC)
        numbers = await fill_tickets(count, dispatched_at=now - timedelta(minutes=30),
                                     policy_digest=book.current.digest)
        await Ticket.filter(id__in=[n for n in numbers if n % 2 == 0]).update(
            status=Status.RESPONDED, responded_at=now - timedelta(minutes=20),
            owner_responded_at=now - timedelta(minutes=20))
    return numbers


async def applied(url: str) -> int:
    async with open_database(url, migrate=False):
        return await TicketEvent.filter(kind__in=["responded", "followup"]).count()


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


def report(name: str, outcome: dict[str, Any], commands: int | None) -> None:
    lat = sorted(outcome["latencies"])
    acked = len(lat)
    print(f"{name}_acked_per_second {acked / outcome['span']:.0f} 1/s")
    print(f"{name}_ack_p50_ms {1000 * statistics.median(lat):.1f} ms")
    print(f"{name}_ack_p99_ms {1000 * lat[min(acked - 1, int(0.99 * acked))]:.1f} ms")
    print(f"{name}_failed {outcome['failures']} callbacks")
    if commands is not None:
        print(f"{name}_commands_applied_per_second {commands / outcome['span']:.0f} 1/s")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="store on PostgreSQL")
    parser.add_argument("--rate", type=float, default=200, help="offered callbacks per second")
    parser.add_argument("--seconds", type=float, default=10, help="length of the fixed-rate phase")
    parser.add_argument("--saturation", type=int, default=3000, help="callbacks at saturation")
    parser.add_argument("--connections", type=int, default=32, help="connections at saturation")
    parser.add_argument("--workers", type=int, default=1,
                        help="bot server processes (WEB_WORKERS; PostgreSQL only)")
    args = parser.parse_args()
    fixed = int(args.rate * args.seconds)
    async with AsyncExitStack() as stack:
        if args.postgres:
            url = await stack.enter_async_context(scratch_postgres())
        else:
            url = f"sqlite://{stack.enter_context(tempfile.TemporaryDirectory())}/bench.sqlite3"
        db = "postgres" if args.postgres else "sqlite"
        if args.workers > 1:
            db += f"_{args.workers}workers"
        numbers = await prepare(url, fixed + args.saturation)
        bot_port, base_port = free_port(), free_port()
        env = {**os.environ, "DATABASE_URL": url, "HTTP_PORT": str(bot_port),
               "WECOM_ROBOT_TOKEN": ROBOT_TOKEN, "WECOM_ROBOT_AES_KEY": ROBOT_KEY,
               "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING", "WEB_WORKERS": str(args.workers)}
        bot = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL)
        baseline = multiprocessing.get_context("spawn").Process(target=_baseline,
                                                               args=(base_port,))
        baseline.start()
        try:
            await wait_ready(bot_port)
            await wait_ready(base_port)
            phases = [("rate", numbers[:fixed], args.rate),
                      ("saturation", numbers[fixed:], None)]
            for phase, batch, rate in phases:
                before = await applied(url)
                outcome = await asyncio.to_thread(
                    run_load, f"http://127.0.0.1:{bot_port}/wecom/robot", batch,
                    rate=rate, connections=args.connections)
                report(f"callbacks_{db}_bot_{phase}", outcome, await applied(url) - before)
                outcome = await asyncio.to_thread(
                    run_load, f"http://127.0.0.1:{base_port}/wecom/robot", batch,
                    rate=rate, connections=args.connections)
                report(f"callbacks_baseline_{phase}", outcome, None)
        finally:
            bot.terminate()
            await bot.wait()
            baseline.terminate()
            baseline.join(10)


if __name__ == "__main__":
    asyncio.run(main())
