"""WEB_WORKERS: several server processes on one port, on PostgreSQL only.

The parent migrates, starts the workers and supervises: SIGTERM stops them all
(exit 0); a worker that dies takes the rest down with exit 1, so the service
manager restarts the whole rather than run on short-handed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings
from tests.test_crash_restart import Bot
from tests.waiting import GENEROUS, eventually


def test_several_workers_on_sqlite_are_refused() -> None:
    with pytest.raises(SettingsError, match="WEB_WORKERS: .*PostgreSQL"):
        load_settings(database_url="sqlite://x.sqlite3", web_workers=2)
    assert load_settings(database_url="postgres://u@h/db", web_workers=2).web_workers == 2


def _workers(pid: int) -> list[int]:
    """The server processes the parent started (not multiprocessing's helpers)."""
    found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in found
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def _running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_workers_serve_one_port_and_stop_together(postgres_url: str,
                                                            tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_", "HTTP_"))}
    env.update(DATABASE_URL=postgres_url, WEB_WORKERS="2", LOG_FORMAT="json")
    bot = Bot(env, tmp_path, "workers")
    await bot.start()
    assert bot.proc is not None
    # The second worker binds shortly after the first.
    await eventually(lambda: len(_workers(bot.proc.pid)) == 2, what="both workers run")
    workers = _workers(bot.proc.pid)
    # SIGTERM stops both workers and the parent, cleanly.
    bot.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(bot.proc.wait(), GENEROUS) == 0, bot.log.read_text()
    assert not any(_running(w) for w in workers)

    # A worker that dies takes the others down, and the exit code says so.
    await bot.start()
    await eventually(lambda: len(_workers(bot.proc.pid)) == 2, what="both workers run again")
    first, second = _workers(bot.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert await asyncio.wait_for(bot.proc.wait(), GENEROUS) == 1
    assert not _running(second)
    assert "worker_died" in bot.log.read_text()
