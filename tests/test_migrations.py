"""The schema: the committed migrations describe the models, applying them
again is harmless, and times come back from either database as UTC."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from bot.db import APP_LABEL, apply_migrations, open_database, tortoise_config
from models import PolicyVersion, ProcessedCallback, Region
from tests.conftest import ROOT, T0

MIGRATIONS = sorted(p.stem for p in (ROOT / "models" / "migrations").glob("[0-9]*.py"))


async def test_committed_migrations_match_the_models() -> None:
    """What `tortoise makemigrations` would write now is nothing: every model
    change has its migration in models/migrations."""
    config = tortoise_config("sqlite://:memory:")
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    pending = [
        f"  {w.app_label}.{w.name}: " + "; ".join(op.describe() for op in w.operations)
        for w in writers
    ]
    assert not pending, (
        "the models have changes that no migration records:\n" + "\n".join(pending)
        + "\nRun `DATABASE_URL=sqlite://:memory: tortoise makemigrations` and commit the new "
        "file in models/migrations/."
    )


async def _applied(ctx: TortoiseContext) -> list[str]:
    _, rows = await ctx.db("default").execute_query(
        "SELECT name FROM tortoise_migrations WHERE app = $1 ORDER BY name"
        if ctx.db("default").capabilities.dialect == "postgres"
        else "SELECT name FROM tortoise_migrations WHERE app = ? ORDER BY name",
        [APP_LABEL],
    )
    return [r["name"] for r in rows]


async def test_migrating_twice_is_harmless(database_url) -> None:
    """Opening (and so migrating) an up-to-date database again, and migrating
    once more by hand, keeps the data and records each migration once."""
    code = f"M{uuid.uuid4().hex[:8]}"
    async with open_database(database_url) as ctx:
        await Region.create(code=code, name="迁移测试")
        assert await _applied(ctx) == MIGRATIONS
    try:
        async with open_database(database_url) as ctx:
            await apply_migrations(ctx, database_url)
            assert await _applied(ctx) == MIGRATIONS
            assert await Region.filter(code=code).values_list("name", flat=True) == ["迁移测试"]
    finally:
        async with open_database(database_url, migrate=False):
            await Region.filter(code=code).delete()


async def test_stored_datetimes_come_back_timezone_aware_utc(db) -> None:
    """A time stored in Shanghai time is the same instant on the way back,
    in UTC, and can be queried by a UTC bound."""
    shanghai = T0.astimezone(ZoneInfo("Asia/Shanghai"))
    await ProcessedCallback.create(endpoint="test", key="tz", received_at=shanghai)

    row = await ProcessedCallback.get(endpoint="test", key="tz")
    assert row.received_at == T0
    assert row.received_at.utcoffset() == timedelta(0)
    (raw,) = await ProcessedCallback.filter(key="tz").values_list("received_at", flat=True)
    assert raw.utcoffset() == timedelta(0)
    found = ProcessedCallback.filter(received_at__gte=T0, received_at__lt=T0 + timedelta(seconds=1))
    assert await found.count() == 1
    assert await ProcessedCallback.filter(received_at__lt=T0).count() == 0


async def test_auto_now_times_are_stamped_in_utc(db) -> None:
    """auto_now_add stamps the real time as an aware UTC datetime, not local time."""
    before = datetime.now(UTC)
    await PolicyVersion.create(digest="tz-check", version="t", document={})
    after = datetime.now(UTC)

    stamped = (await PolicyVersion.get(digest="tz-check")).created_at
    assert stamped.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamped <= after + timedelta(seconds=1)


def test_cli_migrate_twice_is_up_to_date_both_times(tmp_path) -> None:
    """`complaintbot migrate` on a fresh and then on a migrated database succeeds."""
    env = {**os.environ, "DATABASE_URL": f"sqlite://{tmp_path}/m.sqlite3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", "migrate"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "is up to date" in result.stdout


def test_replicas_starting_together_migrate_a_new_postgres_database_once(postgres_url) -> None:
    """Three `complaintbot migrate` processes on one fresh PostgreSQL database:
    the advisory lock lets one migrate while the others wait, and all succeed."""
    fresh = f"{postgres_url}_fresh"
    name = fresh.rsplit("/", 1)[1]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        env = {**os.environ, "DATABASE_URL": fresh}
        procs = [subprocess.Popen([sys.executable, "-m", "bot.cli", "migrate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert [code for code, _ in results] == [0, 0, 0], results
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _sqlite_schema(path: str) -> dict[str, set[str]]:
    """Each table's unique constraints and indexes, as sorted column lists."""
    import sqlite3

    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name NOT LIKE 'sqlite_%' AND name != 'tortoise_migrations'")]
        schema: dict[str, set[str]] = {}
        for table in tables:
            keys = set()
            for _, name, unique, *_ in db.execute(f'PRAGMA index_list("{table}")'):
                columns = [r[2] for r in db.execute(f'PRAGMA index_info("{name}")')]
                keys.add(("unique " if unique else "index ") + ",".join(columns))
            schema[table] = keys
    return schema


async def test_migrated_sqlite_keeps_every_constraint_and_index(tmp_path) -> None:
    """A database built by the migrations has the unique constraints and indexes
    the models declare. On SQLite tortoise's AlterField rebuilds the table and
    drops them (a lost UNIQUE on deadline lets a clock fire twice), so a change
    that leaves the column alone must not rebuild it."""
    migrated, generated = tmp_path / "migrated.sqlite3", tmp_path / "generated.sqlite3"
    async with open_database(f"sqlite://{migrated}"):
        pass
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(f"sqlite://{generated}"))
        await ctx.generate_schemas()
    want, got = _sqlite_schema(str(generated)), _sqlite_schema(str(migrated))
    missing = {t: sorted(want[t] - got.get(t, set())) for t in want if want[t] - got.get(t, set())}
    assert not missing, f"the migrated schema lacks: {missing}"


async def _fill_every_column(conn: Any, table: str, **known: Any) -> None:
    """Insert one row with a plausible value in every NOT NULL column without
    a default (as a release of that day would have stored it)."""
    postgres = conn.capabilities.dialect == "postgres"
    if postgres:
        columns = [(r["column_name"], r["data_type"]) for r in await conn.execute_query_dict(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 "
            "AND is_nullable = 'NO' AND column_default IS NULL", [table])]
    else:
        columns = [(r["name"], r["type"].lower()) for r in await conn.execute_query_dict(
            f"SELECT name, type FROM pragma_table_info('{table}') WHERE \"notnull\" = 1 "
            "AND dflt_value IS NULL AND pk = 0")]
    values = dict(known)
    for name, kind in columns:
        if name in values:
            continue
        if "bool" in kind:
            values[name] = False
        elif "int" in kind:
            values[name] = 1
        elif "time" in kind:
            values[name] = T0
        elif "json" in kind:
            values[name] = "[]"
        else:
            values[name] = name[:8]
    marks = [f"${i}" if postgres else "?" for i in range(1, len(values) + 1)]
    await conn.execute_query(
        f'INSERT INTO "{table}" ({", ".join(values)}) VALUES ({", ".join(marks)})',
        list(values.values()))


async def test_a_database_with_rows_upgrades_from_an_earlier_release(
        tmp_path: Path, postgres_url: str) -> None:
    """A deployment's database holds tickets and cards when a release adds NOT
    NULL columns to them (0017's ticket source, 0020's spent card code):
    PostgreSQL refuses such a column on a table with rows unless the database
    knows its default. Migrated from 0016 with rows, on both databases."""
    fresh = f"{postgres_url}_upgrade"
    name = fresh.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        for url in (f"sqlite://{tmp_path}/old.sqlite3", fresh):
            async with TortoiseContext() as ctx:
                await ctx.init(config=tortoise_config(url))
                conn = ctx.db("default")
                await MigrationExecutor(conn, tortoise_config("sqlite://:memory:")["apps"]).migrate(
                    targets=[MigrationTarget(app_label=APP_LABEL, name="0016_ticket_survey")])
                await _fill_every_column(conn, "policy_version", digest="d1")
                await _fill_every_column(conn, "ticket", id=7, policy_id="d1")
                await _fill_every_column(conn, "sent_card", ticket_id=7, response_code="code")
            async with open_database(url) as ctx:
                [ticket] = await ctx.db("default").execute_query_dict(
                    "SELECT source, resolved_on_call FROM ticket WHERE id = 7")
                [card] = await ctx.db("default").execute_query_dict(
                    "SELECT response_code, spent_code FROM sent_card WHERE ticket_id = 7")
            assert (ticket["source"], bool(ticket["resolved_on_call"])) == ("api", False), url
            assert (card["response_code"], card["spent_code"]) == ("code", ""), url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
