"""Counting the SQL statements a piece of work sends to the database.

Counted at the driver, below the ORM, so everything the database is asked to
do shows: on SQLite every statement sqlite3 prepares (its trace callback:
BEGIN, SAVEPOINT, COMMIT and `SELECT last_insert_rowid()` included), on
PostgreSQL every round trip asyncpg makes (its query loggers: BEGIN, COMMIT
and the pool's reset on each release included). Only the instrumentation is
added, for the length of the block: the code measured runs unchanged.

    async with count_statements() as counted:
        ...
    assert counted.total == 9, counted.listing()

Used by tests/test_command_cost.py and bench/callbacks.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tortoise import connections


@dataclass
class Statements:
    """The statements sent while the block ran, in order."""

    sql: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many statements (SQLite) or round trips (PostgreSQL)."""
        return len(self.sql)

    def listing(self) -> str:
        """One statement a line, shortened: the message of a failed count."""
        return "\n".join(f"{i:2} {' '.join(s.split())[:150]}" for i, s in enumerate(self.sql, 1))


@asynccontextmanager
async def count_statements(name: str = "default") -> AsyncIterator[Statements]:
    """Count the statements sent on connection `name` during the block."""
    client: Any = connections.get(name)
    counted = Statements()
    if client.capabilities.dialect == "sqlite":
        async with _sqlite_trace(client, counted):
            yield counted
    else:
        async with _asyncpg_loggers(client, counted):
            yield counted


@asynccontextmanager
async def _sqlite_trace(client: Any, counted: Statements) -> AsyncIterator[None]:
    # A trigger's statements are reported with a leading "--": part of the
    # statement that fired them, not statements of their own.
    def trace(sql: str) -> None:
        if not sql.startswith("--"):
            counted.sql.append(sql)

    connection = client._connection  # aiosqlite's, shared by its transactions
    await connection.set_trace_callback(trace)
    try:
        yield
    finally:
        await connection.set_trace_callback(None)


@asynccontextmanager
async def _asyncpg_loggers(client: Any, counted: Statements) -> AsyncIterator[None]:
    def logged(record: Any) -> None:
        counted.sql.append(record.query)

    pool = client._pool
    watched = [holder._con for holder in pool._holders if holder._con is not None]
    for con in watched:
        con.add_query_logger(logged)
    # A connection the pool opens meanwhile is watched from its start.
    init = pool._init

    async def watch_new(con: Any) -> None:
        watched.append(con)
        con.add_query_logger(logged)
        if init is not None:
            await init(con)

    pool._init = watch_new
    try:
        yield
        # asyncpg calls its loggers soon after each query, not during it.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        pool._init = init
        for con in watched:
            con.remove_query_logger(logged)
