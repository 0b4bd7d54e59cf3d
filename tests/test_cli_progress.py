"""Long CLI commands show progress on a terminal and nothing else when their
output is piped (issue 13, item 10)."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from datetime import timedelta

from bot.db import open_database
from bot.directory_import import import_directory
from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE
from tests.conftest import ORG, ROOT, T0
from tests.factories import CALL_CENTRE
from tests.test_outbox import complaint


def _seed(url: str) -> None:
    async def run() -> None:
        async with open_database(url):
            await import_directory(ORG)
            book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
            await book.store_current()
            await open_complaint(complaint(), Ledger(book), actor=CALL_CENTRE, source="api",
                                 now=T0)

    asyncio.run(run())


def _sweep(env: dict[str, str], tty: bool) -> str:
    """`complaintbot sweep` three days on, its stdout a terminal or a pipe."""
    args = [sys.executable, "-m", "bot.cli", "sweep", "--at",
            (T0 + timedelta(days=3)).isoformat()]
    if not tty:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=60, check=True)
        return done.stdout
    parent, child = pty.openpty()
    process = subprocess.Popen(args, stdout=child, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(parent)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_r10_sweep_shows_progress_on_a_terminal_only(tmp_path):
    url = f"sqlite://{tmp_path}/cb.sqlite3"
    _seed(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_"))}
    env.update(DATABASE_URL=url, LOG_LEVEL="WARNING")
    on_terminal = _sweep(env, tty=True)
    assert "sweep: " in on_terminal and "\x1b[K" in on_terminal
    assert "deadline(s) due at" in on_terminal
    # Piped (cron, scripts): the result lines only. Nothing is left to sweep by now.
    piped = _sweep(env, tty=False)
    assert "sweep: " not in piped and "\x1b" not in piped
    assert piped.splitlines()[-1].startswith("0 deadline(s) due at")
