"""Several server processes on one machine (WEB_WORKERS, PostgreSQL only).

One process applies a few hundred commands a second, bound by one core; the
database (PostgreSQL) is built for many clients, and replicas already share
it safely (row locks, SKIP LOCKED, claimed outbox rows). So the parent
migrates once, starts the workers, each a full bot on the same port
(SO_REUSEPORT: the kernel spreads connections), and only supervises: a
worker that dies takes the others down and the exit code tells the service
manager to restart the whole, rather than run on with fewer workers unnoticed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog

from bot.db import open_database
from bot.settings import Settings

log = structlog.get_logger(__name__)

# How long workers get to finish their requests and jobs after SIGTERM.
_STOP_SECONDS = 40


def serve_workers(settings: Settings, serve_one: Callable[[Settings], None]) -> int:
    """Run `settings.web_workers` processes of `serve_one` until a signal or a
    worker's death; the exit code is 0 after SIGTERM/SIGINT, else 1."""
    asyncio.run(_migrate(settings.database_url))
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [
        context.Process(target=serve_one, args=(settings,), name=f"worker-{i}", daemon=False)
        for i in range(settings.web_workers)
    ]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("workers_stopping", signal=signal.Signals(signum).name)
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                worker.terminate()  # SIGTERM: aiohttp shuts down gracefully

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    log.info("workers_started", pids=[w.pid for w in workers])
    wait([w.sentinel for w in workers])
    if not stopping:
        dead = [w for w in workers if not w.is_alive()]
        log.error("worker_died", pids=[w.pid for w in dead],
                  exit_codes=[w.exitcode for w in dead])
        stop(signal.SIGTERM, None)
        stopping = False
    for worker in workers:
        worker.join(_STOP_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return 0 if stopping else 1


async def _migrate(database_url: str) -> None:
    async with open_database(database_url):
        pass
