"""The database cannot store (issue 13): a full disk, a read-only database, a
SQLite file deleted under the running bot, PostgreSQL gone; and notices the
outbox gave up on.

What a user sees is asserted: /healthz, the intake API's answer, the chat
reply, the process's exit and its one line. A full disk is a small tmpfs and a
read-only database a tmpfs remounted read-only (root ignores file modes), so
those tests need root, as CI has; elsewhere they skip saying so.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.check import check_database
from bot.db import open_database
from bot.intake import Complaint
from bot.settings import load_settings
from bot.storage import STORAGE_MESSAGE
from bot.wecom.emulator import EmulatorError, WeComEmulator
from commands.router import FAILURE
from models import Notification
from models import Ticket as TicketRow
from schedulers.outbox import RetryPolicy, deliver_due
from tests.conftest import (
    POSTGRES_URL,
    ROOT,
    TOKEN,
    start_bot,
)
from tests.test_notify_email import free_port

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOWN = {"status": "error", "database": "down"}
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_", "DATABASE"))}


def complaint() -> dict:
    return Complaint.model_validate({
        "customer_name": "李先生", "customer_phone": "13800000000", "car_model": "速腾",
        "plate": "沪A12345", "vin": "LFV2A21K0A3000001", "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }).model_dump(mode="json")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of the test's own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a full disk, a read-only mount) needs root, as CI has")
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; the file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 512):  # then the last blocks, smaller than a chunk
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def bot_on(database_url, aiohttp_client, emulator: WeComEmulator, clock):
    """The bot (no scheduler) on `database_url`, talking to the emulator."""
    bot, _ = await start_bot(database_url, aiohttp_client, emulator, clock)
    return bot


async def respond(emulator: WeComEmulator, number: int) -> str:
    reply = await emulator.robot_message("sh.zhang", "wrGRP-SH001", f"@投诉助手 /respond {number}")
    return reply["stream"]["content"]


# --- 1: a full disk, a deleted SQLite file ----------------------------------------------


async def test_r1_full_disk_refuses_intake_and_commands_and_recovers_without_restart(
    tmpfs, aiohttp_client, emulator, clock
) -> None:
    bot = await bot_on(f"sqlite://{tmpfs}/cb.sqlite3", aiohttp_client, emulator, clock)
    first = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
    assert first.status == 201
    number = (await first.json())["number"]
    assert (await bot.get("/healthz")).status == 200

    filler = fill(tmpfs)
    health = await bot.get("/healthz")
    assert health.status == 503 and await health.json() == DOWN
    for _ in range(3):  # every try: 503 with Retry-After, never another 5xx
        answer = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
        assert answer.status == 503, await answer.text()
        assert int(answer.headers["Retry-After"]) > 0
    assert await respond(emulator, number) == STORAGE_MESSAGE
    with pytest.raises(EmulatorError, match="HTTP 503"):
        await emulator.app_message("sh.zhang", f"/respond {number}")

    filler.unlink()  # space returns: no restart
    health = await bot.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    again = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
    assert again.status == 201
    reply = await respond(emulator, number)
    assert f"#{number}" in reply and reply not in (STORAGE_MESSAGE, FAILURE)
    assert await TicketRow.all().count() == 2


async def test_r1_a_deleted_or_replaced_sqlite_file_is_noticed_and_nothing_is_acknowledged(
    tmp_path, aiohttp_client, emulator, clock
) -> None:
    path = tmp_path / "cb.sqlite3"
    bot = await bot_on(f"sqlite://{path}", aiohttp_client, emulator, clock)
    first = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
    assert first.status == 201
    number = (await first.json())["number"]
    copy = tmp_path / "copy.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # a backup taken now, with what the WAL holds

    for suffix in ("", "-wal", "-shm"):
        os.remove(f"{path}{suffix}")
    health = await bot.get("/healthz")
    assert health.status == 503 and await health.json() == DOWN  # no path, no cause
    answer = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
    assert answer.status == 503 and answer.headers["Retry-After"]
    assert await respond(emulator, number) == STORAGE_MESSAGE
    with pytest.raises(EmulatorError, match="HTTP 503"):
        await emulator.app_message("sh.zhang", f"/respond {number}")

    copy.rename(path)  # someone restores a copy: another file than the one open
    assert (await bot.get("/healthz")).status == 503
    assert (await bot.post("/api/complaints", json=complaint(), headers=AUTH)).status == 503
    await bot.close()
    # After a restart on the file at the path: nothing claimed to be stored is missing.
    async with open_database(f"sqlite://{path}"):
        assert await TicketRow.all().count() == 1


# --- 2: a read-only database at start ---------------------------------------------------


def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {**ENV, "DATABASE_URL": database_url, "HTTP_PORT": str(free_port()),
           "LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_stops_naming_read_only(database_url: str) -> None:
    for command in ("migrate", "serve"):
        started = time.monotonic()
        done = run_cli(command, database_url=database_url)
        took = time.monotonic() - started
        # Stopping at once, not after a connect or write timeout; loose for a busy machine.
        assert done.returncode != 0 and took < 25, (command, took, done.stderr)
        # The log lines before it ("starting") may precede; the cause is one line.
        causes = [line for line in done.stderr.splitlines() if "read-only" in line]
        assert len(causes) == 1, (command, done.stderr)
        assert causes[0].startswith("complaintbot: database is read-only: "), done.stderr
    checked = run_cli("check", database_url=database_url)  # the cause, for the operator
    assert checked.returncode == 1 and "is read-only" in checked.stdout, checked.stdout


@pytest.mark.slow
def test_r2_a_read_only_sqlite_database_stops_migrate_and_serve_at_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Root writes through file modes: it gets a tmpfs remounted read-only.
    root = os.geteuid() == 0
    folder = request.getfixturevalue("tmpfs") if root else tmp_path / "ro"
    folder.mkdir(exist_ok=True)
    url = f"sqlite://{folder}/cb.sqlite3"
    assert run_cli("migrate", database_url=url).returncode == 0
    if root:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        (folder / "cb.sqlite3").chmod(0o444)
        folder.chmod(0o555)
    try:
        assert_stops_naming_read_only(url)
    finally:
        if not root:
            folder.chmod(0o755)


@pytest.mark.slow
@pytest.mark.postgres
def test_r2_a_read_only_postgres_database_stops_migrate_and_serve_at_once(postgres_url) -> None:
    name = postgres_url.rsplit("/", 1)[1]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    assert run_cli("migrate", database_url=postgres_url).returncode == 0
    asyncio.run(admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    try:
        assert_stops_naming_read_only(postgres_url)
    finally:
        asyncio.run(admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))


# --- 3: the public /healthz names the part, the log and `check` the cause ----------------


class Proxy:
    """A TCP relay to PostgreSQL that can be cut, as a network or server failure."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()


@pytest.mark.postgres
async def test_r3_healthz_names_the_database_but_not_the_cause(
    postgres_url, aiohttp_client, emulator, clock, capsys
) -> None:
    host_port, name = postgres_url.rsplit("@", 1)[1].rsplit("/", 1)
    host, port = host_port.split(":")
    proxy = Proxy(host, int(port))
    relay_port = await proxy.start()
    relayed = f"{postgres_url.rsplit('@', 1)[0]}@127.0.0.1:{relay_port}/{name}"
    bot = await bot_on(relayed, aiohttp_client, emulator, clock)
    assert (await bot.get("/healthz")).status == 200

    proxy.cut()
    health = await bot.get("/healthz")
    assert health.status == 503
    assert await health.json() == DOWN
    logged = capsys.readouterr()
    assert "healthz_database_down" in logged.out + logged.err
    answer = await bot.post("/api/complaints", json=complaint(), headers=AUTH)
    assert answer.status == 503 and answer.headers["Retry-After"]

    await proxy.start(relay_port)  # the server is back: no restart of the bot
    try:
        health = await bot.get("/healthz")
        assert health.status == 200, await health.text()
        assert (await bot.post("/api/complaints", json=complaint(), headers=AUTH)).status == 201
    finally:
        await bot.close()
        proxy.cut()
    # `complaintbot check` (its own ORM context: after the bot's) gives the cause.
    finding = await check_database(load_settings(database_url=relayed))
    assert finding.status == "fail" and f"127.0.0.1', {relay_port}" in finding.detail


# --- 6: dead letters are seen, retried for a day first --------------------------------


class Down:
    """A WeChat Work that answers nothing but errors."""

    async def deliver(self, notification, message) -> None:
        raise ConnectionError("WeChat Work unreachable")


async def test_r6_a_notice_is_retried_for_a_day_by_default_before_it_is_dead(client) -> None:
    created = await client.post("/api/complaints", json=complaint(), headers=AUTH)
    assert created.status == 201
    row = await Notification.filter(medium="group").first()
    assert row is not None
    retry = RetryPolicy.from_settings(load_settings())
    now = row.created_at
    while row.status != "dead":
        await deliver_due({"group": Down()}, now=now, retry=retry)
        await row.refresh_from_db()
        if row.status == "pending":
            now = row.next_attempt_at
        assert now - row.created_at < timedelta(days=3), "never given up"
    assert now - row.created_at >= timedelta(hours=24)


async def test_r6_dead_notices_show_on_healthz_metrics_and_in_the_admins_chat(
    database_url, aiohttp_client, emulator, clock
) -> None:
    bot = await bot_on(database_url, aiohttp_client, emulator, clock)
    assert (await bot.post("/api/complaints", json=complaint(), headers=AUTH)).status == 201
    number = (await TicketRow.first()).id
    row = await Notification.filter(medium="group").first()
    await Notification.filter(id=row.id).update(status="dead", tries=30,
                                                last_error="HTTPError: 502 Bad Gateway")

    health = await bot.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["status"] == "degraded"
    assert body["dead_notifications"] == 1
    metrics = await (await bot.get("/metrics")).text()
    assert 'complaintbot_outbox_depth{medium="group",status="dead"} 1.0' in metrics

    listed = (await emulator.robot_message("admin", None, "/outbox"))["stream"]["content"]
    assert f"编号 {row.id}" in listed and f"#{number}" in listed and "502" in listed
    refused = (await emulator.robot_message("sh.zhang", None, "/outbox"))["stream"]["content"]
    assert refused.startswith("⛔") and str(row.id) not in refused
    retried = (await emulator.robot_message("admin", None, f"发送队列 重试 {row.id}"))
    assert "已重新排队" in retried["stream"]["content"]
    await row.refresh_from_db()
    assert row.status == "pending" and row.tries == 0
    assert (await (await bot.get("/healthz")).json())["status"] == "ok"
    empty = (await emulator.robot_message("admin", None, "发送队列"))["stream"]["content"]
    assert empty.startswith("✅ 没有发送失败的通知")
