"""Shared fixtures: the policy, the database on SQLite and PostgreSQL, the app.

PostgreSQL tests use TEST_POSTGRES_URL (default: the local server's `test`
database) only to create and drop a scratch database of their own. Without a
server they skip, except under CI=true, where a missing PostgreSQL fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from tortoise import connections

from bot.app import create_app
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.policy import Policy
from bot.ledger import Ledger
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import DEFAULT_POLICY_FILE, Settings, load_settings
from bot.wecom.emulator import WeComEmulator

ROOT = Path(__file__).resolve().parent.parent
ORG = ROOT / "examples" / "org.yaml"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
TOKEN = "test-token-0123456789"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(DEFAULT_POLICY_FILE)


async def _postgres_available() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} unreachable: {exc}"
    await conn.close()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> AsyncIterator[str]:
    """A scratch PostgreSQL database for this test session, dropped at the end."""
    problem = asyncio.run(_postgres_available())
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true requires PostgreSQL)")
        pytest.skip(problem)
    name = f"cbtest_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_postgres() -> None:
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename NOT LIKE 'tortoise_%'"
    )
    tables = ", ".join(f'"{r["tablename"]}"' for r in rows)
    if tables:
        await conn.execute_script(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file with no rows: each test starts from a copy,
    since migrating a new file takes seconds (tests/test_migrations.py covers
    migrating itself)."""
    path = tmp_path_factory.mktemp("template") / "complaintbot.sqlite3"

    async def migrate() -> None:
        async with open_database(f"sqlite://{path}"):
            conn = connections.get("default")
            _, rows = await conn.execute_query(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'tortoise%' AND name NOT LIKE 'sqlite_%'")
            for row in rows:  # the start-up's heartbeat
                await conn.execute_script(f'DELETE FROM "{row["name"]}"')
            await conn.execute_script("DELETE FROM sqlite_sequence")

    asyncio.run(migrate())
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite (a file) and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "complaintbot.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite://{path}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """An open, migrated, empty database with the example directory loaded."""
    async with open_database(database_url):
        if database_url.startswith("postgres"):
            await _truncate_postgres()
        await import_directory(ORG)
        yield database_url


@pytest.fixture
async def ledger(db: str, policy: Policy) -> Ledger:
    book = PolicyBook(policy)
    await book.store_current()
    return Ledger(book)


@pytest.fixture
def clock() -> list[datetime]:
    """A settable clock: tests move time by assigning clock[0]."""
    return [T0]


@pytest.fixture
async def client(database_url: str, aiohttp_client, clock, tmp_path):
    """The bot's HTTP app on a real server, its database migrated and loaded."""
    if database_url.startswith("postgres"):
        async with open_database(database_url):
            await _truncate_postgres()
    settings = load_settings(database_url=database_url, api_token=TOKEN, max_body_bytes=16384)
    app = create_app(settings, clock=lambda: clock[0])
    test_client = await aiohttp_client(app)
    await import_directory(ORG)
    return test_client


# -- WeChat Work: the emulator, and the bot wired to it ----------------------

WECOM_SECRETS = {
    "wecom_corp_id": "wwcorp0123456789",
    "wecom_agent_id": 1000002,
    "wecom_secret": "app-secret-0123456789",
    "wecom_token": "AppCallbackToken",
    "wecom_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "wecom_robot_token": "RobotCallbackToken",
    "wecom_robot_aes_key": "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut",
    "wecom_robot_bot_id": "aib-emulated-bot",
    "wecom_robot_secret": "robot-long-connection-secret",
}


def wecom_settings(database_url: str, api_base: str = "http://127.0.0.1:9/cgi-bin",
                   **overrides: object) -> Settings:
    """Settings with WeChat Work credentials the emulator shares (and any
    `overrides`). The zone is pinned: Tortoise.init writes TIMEZONE=UTC into
    os.environ, which settings read after a first init (the PostgreSQL runs)
    would pick up."""
    return load_settings(**{"database_url": database_url, "api_token": TOKEN,
                            "max_body_bytes": 16384, "wecom_api_base": api_base,
                            "timezone": "Asia/Shanghai", **WECOM_SECRETS, **overrides})


@dataclass
class WeComWorld:
    """The emulated WeChat Work and the bot, each knowing the other's URL."""

    emulator: WeComEmulator
    bot: TestClient
    settings: Settings


async def run_scheduled_job(world: WeComWorld, clock: list[datetime], job_id: str,
                            **settings: object) -> None:
    """One round of the bot's scheduled job `job_id`, as its tick runs it."""
    from bot.keys import ATTACHMENTS, LEDGER
    from schedulers.runner import start_scheduler

    scheduler, _ = start_scheduler(world.settings.model_copy(update=settings),
                                   world.bot.app[LEDGER], lambda: clock[0], {},
                                   attachments=world.bot.app[ATTACHMENTS])
    try:
        job = scheduler.get_job(job_id)
        assert job is not None
        await job.func()
    finally:
        scheduler.shutdown(wait=False)


@pytest.fixture
async def emulator(aiohttp_server, clock) -> WeComEmulator:
    """A WeChat Work emulator on a real local server, on the test clock."""
    emu = WeComEmulator(wecom_settings("sqlite://:memory:"), clock=lambda: clock[0])
    server = await aiohttp_server(emu.app)
    emu.url = str(server.make_url("")).rstrip("/")
    return emu


@pytest.fixture
async def wecom(
    database_url: str, emulator: WeComEmulator, aiohttp_client, clock
) -> WeComWorld:
    """The bot (no scheduler: outbox rows stay pending to be looked at) talking to
    the emulator, its database migrated and the example directory loaded."""
    bot, settings = await start_bot(database_url, aiohttp_client, emulator, clock)
    return WeComWorld(emulator=emulator, bot=bot, settings=settings)


async def start_bot(
    database_url: str, aiohttp_client, emulator: WeComEmulator, clock, **overrides: object
) -> tuple[TestClient, Settings]:
    """The bot (no scheduler) on `database_url`, talking to the emulator, its
    database migrated and the example directory loaded; and its settings
    (with any `overrides`)."""
    if database_url.startswith("postgres"):
        async with open_database(database_url):
            await _truncate_postgres()
    settings = wecom_settings(database_url, api_base=f"{emulator.url}/cgi-bin", **overrides)
    bot = await aiohttp_client(create_app(settings, clock=lambda: clock[0], scheduler=False))
    await import_directory(ORG)
    emulator.connect(own_url=emulator.url, bot_url=str(bot.make_url("")))
    return bot, settings
