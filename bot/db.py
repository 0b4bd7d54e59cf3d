"""Database wiring: the tortoise configuration, migrations and the ORM context."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from tortoise import Model, Tortoise, connections
from tortoise.backends.asyncpg import AsyncpgDBClient
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor
from tortoise.transactions import in_transaction

from bot.clock import utcnow
from bot.storage import (
    DatabaseUnavailable,
    check_sqlite_writable,
    describe,
    sqlite_path,
    write_heartbeat,
)

APP_LABEL = "complaintbot"
MODEL_MODULES = ["models"]
MIGRATIONS_MODULE = "models.migrations"


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection returned to the pool needs besides the rollback of
    an open transaction, which asyncpg always does: nothing. asyncpg's default
    reset is one more round trip per transaction (unlisten, close cursors,
    reset settings, release session advisory locks), and the bot leaves none
    of those behind on a pooled connection (its advisory locks are per
    transaction; the migration lock has a connection of its own)."""


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The tortoise configuration for a database URL (SQLite or PostgreSQL)."""
    if database_url.startswith("postgresql://"):
        database_url = "postgres://" + database_url.removeprefix("postgresql://")
    if database_url.startswith("sqlite://") and "cache_size=" not in database_url:
        # SQLite's default page cache (2 MB) stops holding the hot pages near
        # 100,000 tickets; 32 MB keeps a sweep's cost flat (bench/sweep.py).
        database_url += ("&" if "?" in database_url else "?") + "cache_size=-32768"
    return {
        "connections": {"default": database_url},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` CLI (makemigrations), read through [tool.tortoise] in pyproject.
TORTOISE_ORM = tortoise_config(os.environ.get("DATABASE_URL", "sqlite://:memory:"))


def ensure_sqlite_dir(database_url: str) -> None:
    """SQLite creates the file but not its folder; make the folder."""
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        path = database_url.removeprefix("sqlite://").split("?", 1)[0]
        Path(path).parent.mkdir(parents=True, exist_ok=True)


# How long the first write after migrating may take before start-up gives up.
FIRST_WRITE_SECONDS = 8.0


def _is_read_only(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.ReadOnlySQLTransactionError) or any(
            word in str(seen).lower() for word in ("read-only", "readonly")
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _first_write(database_url: str) -> None:
    """Write the heartbeat once, so a database that opens but cannot store
    (a read-only server or file) stops the start with one line saying so."""
    where = database_url.split("@")[-1]
    try:
        await asyncio.wait_for(write_heartbeat(utcnow()), FIRST_WRITE_SECONDS)
    except TimeoutError:
        raise DatabaseUnavailable(
            f"database did not take a write within {FIRST_WRITE_SECONDS:g} s: {where}"
        ) from None
    except Exception as exc:
        kind = "is read-only" if _is_read_only(exc) else "cannot be written"
        raise DatabaseUnavailable(f"database {kind}: {where} ({describe(exc)})") from None


# Any constant: the PostgreSQL advisory lock replicas take while migrating.
_MIGRATION_LOCK = 0x636F6D70


@asynccontextmanager
async def _migration_lock(database_url: str) -> AsyncIterator[None]:
    """On PostgreSQL, one replica migrates while the others wait (a session
    advisory lock on a connection of its own); SQLite has one process."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        yield
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        yield
    finally:
        await conn.close()  # closing the session releases the lock


async def apply_migrations(ctx: TortoiseContext, database_url: str) -> None:
    """Bring the schema up to date with the committed migrations."""
    config = tortoise_config("sqlite://:memory:")["apps"]
    async with _migration_lock(database_url):
        await MigrationExecutor(ctx.db("default"), config).migrate()


@asynccontextmanager
async def open_database(
    database_url: str, *, migrate: bool = True
) -> AsyncIterator[TortoiseContext]:
    """Open the ORM for the current task (and tasks it starts), migrated, and
    close exactly that context at the end. A database that cannot be written
    (a read-only file, mount or server) raises DatabaseUnavailable at once,
    its message one line naming the cause, instead of hanging the start."""
    ensure_sqlite_dir(database_url)
    path = sqlite_path(database_url)
    if path is not None:
        check_sqlite_writable(path)
    # tortoise caches each table's INSERT/DELETE SQL by connection *name*, not by
    # dialect: drop it, or a process that opened SQLite first sends `?` to PostgreSQL.
    EXECUTOR_CACHE.clear()
    ctx = await Tortoise.init(config=tortoise_config(database_url), _create_db=False)
    client = ctx.db("default")
    if isinstance(client, AsyncpgDBClient):
        client.extra["reset"] = _keep_session  # read when the pool is made, on first use
    try:
        if migrate:
            try:
                await apply_migrations(ctx, database_url)
            except Exception as exc:
                if not _is_read_only(exc):
                    raise
                raise DatabaseUnavailable(f"database is read-only: "
                                          f"{database_url.split('@')[-1]} ({describe(exc)})"
                                          ) from None
            await _first_write(database_url)
        yield ctx
    finally:
        await ctx.close_connections()


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """The transaction already open in this task, else a new one.

    A nested `in_transaction` would be a savepoint (SAVEPOINT and RELEASE, two
    statements per change) protecting nothing the outer transaction does not:
    whoever opened it rolls it back whole when a change fails half-way
    (webhooks/callback.run_once, the sweeper's batch, the intake API)."""
    if isinstance(connections.get("default"), TransactionalDBClient):
        yield
        return
    async with in_transaction():
        yield


async def fetch_rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """Run raw SQL written with `?` placeholders on either backend; rows as
    dicts. For hot or aggregate queries that the ORM's query builder would
    make slow (the roster of every change, the report figures)."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        count = iter(range(1, sql.count("?") + 1))
        sql = re.sub(r"\?", lambda _: f"${next(count)}", sql)
    rows = await connection.execute_query_dict(sql, params)  # RETURNING rows too, on asyncpg
    return [dict(row) for row in rows]


# Rows per multi-row INSERT: far below both backends' bound parameters per
# statement (32,766) for the widest table, the outbox's.
_ROWS_PER_INSERT = 500


async def insert_rows(
    rows: Sequence[Model], *, on_conflict: str = "", returning: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Insert new instances of one model with one multi-row INSERT (per 500)
    on either backend, values converted by the model's fields as the ORM
    does; `on_conflict` is the SQL after ON CONFLICT ("DO NOTHING", or an
    upsert both databases read alike); the `returning` columns of the rows
    inserted (those a conflict left out are missing), in no promised order.

    tortoise's bulk_create sends one statement per row on SQLite
    (executemany) and `create` follows each insert with `SELECT
    last_insert_rowid()`: the statements of every change (the event, its
    clocks, its notices) that this one replaces."""
    if not rows:
        return []
    meta = type(rows[0])._meta
    fields = [name for name in meta.fields_db_projection if not meta.fields_map[name].generated]
    columns = ", ".join(f'"{meta.fields_db_projection[name]}"' for name in fields)
    tail = f" ON CONFLICT {on_conflict}" if on_conflict else ""
    if returning:
        tail += " RETURNING " + ", ".join(f'"{name}"' for name in returning)
    found: list[dict[str, Any]] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        part = rows[start:start + _ROWS_PER_INSERT]
        params = [meta.fields_map[name].to_db_value(getattr(row, name), row)
                  for row in part for name in fields]
        one = "(" + ", ".join("?" * len(fields)) + ")"
        found += await fetch_rows(f'INSERT INTO "{meta.db_table}" ({columns}) VALUES '
                                  + ", ".join([one] * len(part)) + tail, params)
    return found


def current_database_url() -> str:
    """The URL the open ORM context was opened with, for a process of our own
    (the report renderer) to open the same database."""
    return connections.db_config["default"]
