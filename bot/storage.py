"""Is the database storing what the bot acknowledges? (issue 13)

A database can answer SELECT and still lose writes: a full disk, a read-only
file, mount or server, or a SQLite file deleted or replaced under the running
process (SQLite keeps writing to the unlinked file, and a restart finds the
data gone). `Storage` notices each: `probe` rewrites the heartbeat row under a
short timeout, and `file_problem` compares the SQLite file at its path with the
one opened at start. Intake and chat commands refuse while either fails
(`webhooks.health.storage_guarded`, the callback endpoints) instead of
acknowledging what was not stored; /healthz reports it.

The causes go to the log and `complaintbot check`; public answers only name
the part that is down.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import asyncpg
from tortoise import connections
from tortoise.exceptions import DBConnectionError, TransactionManagementError

from bot.clock import utcnow

# What a person is told in chat when their command could not be stored.
STORAGE_MESSAGE = "⚠️ 系统暂时无法保存，请稍后重试。"
# The Retry-After of a refusal: the probe sees recovery within seconds.
RETRY_AFTER_SECONDS = 30
# Larger than SQLite's recycled WAL (journal_size_limit, 16 KiB): see models.Heartbeat.
_SQLITE_PAD_BYTES = 16 * 1024  # random, shown as hex: 32 KiB of text

# SQLite errors that mean the storage, not the statement, is at fault.
_SQLITE_FAULTS = ("disk is full", "disk i/o error", "readonly", "read-only",
                  "unable to open", "database is locked")
# PostgreSQL: 53 insufficient resources (disk full), 08 connection, 57 operator
# intervention (shutdown), 25006 read-only transaction, 58 system (I/O) errors.
_POSTGRES_FAULTS = (asyncpg.InsufficientResourcesError, asyncpg.PostgresConnectionError,
                    asyncpg.OperatorInterventionError, asyncpg.ReadOnlySQLTransactionError,
                    asyncpg.PostgresSystemError, asyncpg.InterfaceError)
_CONNECTION_FAULTS = (*_POSTGRES_FAULTS, DBConnectionError, TransactionManagementError,
                      ConnectionError, TimeoutError)


class DatabaseUnavailable(Exception):
    """The database cannot be used (read-only, unreachable); the message is one
    line naming the cause, e.g. "database is read-only: data/x.sqlite3 (…)"."""


class StorageUnavailable(Exception):
    """A write cannot be trusted to be stored now; `cause` is for the log."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def sqlite_path(database_url: str) -> Path | None:
    """The file a sqlite:// URL names; None for PostgreSQL or :memory:."""
    if not database_url.startswith("sqlite://") or ":memory:" in database_url:
        return None
    return Path(database_url.removeprefix("sqlite://").split("?", 1)[0])


def free_space(folder: Path) -> int:
    """Bytes free on the disk of `folder` (or of its nearest existing parent:
    a store not yet created will be created there). Blocking: a network
    mount may hang, so call it in a thread."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    return shutil.disk_usage(existing).free


def describe(exc: BaseException) -> str:
    """One line for the log: the exception's type and text."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (tortoise passes the driver's error as its
    argument or its cause) and what it was raised during."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 10:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += [a for a in current.args if isinstance(a, BaseException)]
    return seen


def storage_fault(exc: BaseException) -> str | None:
    """The cause when `exc` says the database could not store (disk full,
    read-only, connection lost, timeout); None for any other error (a bug, a
    constraint), which stays a 500 and a logged exception."""
    for error in _chain(exc):
        if isinstance(error, StorageUnavailable):
            return error.cause
        if isinstance(error, sqlite3.DatabaseError) and any(
            word in str(error).lower() for word in _SQLITE_FAULTS
        ):
            return describe(error)
        if isinstance(error, _CONNECTION_FAULTS):
            return describe(error)
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
            return describe(error)
    return None


def check_sqlite_writable(path: Path) -> None:
    """Raise DatabaseUnavailable when the SQLite file (or, for a new one, its
    folder) cannot be written. Run before the ORM opens it: tortoise sets its
    pragmas holding its connection lock and never releases the lock when one
    fails, so every later query would wait for ever."""
    try:
        conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(f"database cannot be opened: {path} ({exc})") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock: fails when read-only
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        text = str(exc).lower()
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            raise DatabaseUnavailable(f"database is read-only: {path} ({exc})") from None
        raise DatabaseUnavailable(f"database cannot be written: {path} ({exc})") from None
    finally:
        conn.close()


async def write_heartbeat(now: datetime) -> None:
    """Rewrite the heartbeat row (create it the first time)."""
    from models import Heartbeat

    connection = connections.get("default")
    # Fresh content every time: SQLite skips rewriting a row that does not change.
    sqlite = connection.capabilities.dialect == "sqlite"
    pad = secrets.token_hex(_SQLITE_PAD_BYTES) if sqlite else ""
    if not await Heartbeat.filter(id=1).update(beat_at=now, pad=pad):
        await Heartbeat.bulk_create([Heartbeat(id=1, beat_at=now, pad=pad)],
                                    ignore_conflicts=True)


class Storage:
    """The process's view of its database's ability to store (one per app)."""

    def __init__(self, database_url: str, *, write_timeout: float) -> None:
        self.path = sqlite_path(database_url)
        self.write_timeout = write_timeout
        self._identity: tuple[int, int] | None = None

    def opened(self) -> None:
        """Remember which SQLite file the process opened, to notice its replacement."""
        if self.path is not None:
            stat = os.stat(self.path)
            self._identity = (stat.st_dev, stat.st_ino)

    def file_problem(self) -> str | None:
        """Why the SQLite file at the path is no longer the one being written
        (deleted, replaced); None when it is, and always on PostgreSQL."""
        if self.path is None or self._identity is None:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"the SQLite file {self.path} was deleted while the bot was running"
        except OSError as exc:
            return f"the SQLite file {self.path} cannot be read: {describe(exc)}"
        if (stat.st_dev, stat.st_ino) != self._identity:
            return f"the SQLite file {self.path} was replaced while the bot was running"
        return None

    def guard(self) -> None:
        """Raise StorageUnavailable when a write would land in a lost file."""
        if (problem := self.file_problem()) is not None:
            raise StorageUnavailable(problem)

    async def probe(self, now: datetime | None = None) -> str | None:
        """The cause when the database cannot store now; None when a write
        went through within the timeout."""
        if (problem := self.file_problem()) is not None:
            return problem
        try:
            await asyncio.wait_for(write_heartbeat(now or utcnow()), self.write_timeout)
        except TimeoutError:
            return f"no write within {self.write_timeout:g} s"
        except Exception as exc:  # every driver error means "cannot store" here
            return describe(exc)
        return None
