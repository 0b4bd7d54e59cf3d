"""The attachment store: files kept once per content, named by their sha256.

`ATTACHMENTS_DIR/ab/cd/abcd…` holds the bytes whose sha256 is `abcd…`; the
database (models.Attachment) keeps what they are and whose. A file is written
to a temporary name in the store, flushed to disk and then renamed into place,
so a reader never meets half a file and a full disk or a read-only mount
leaves nothing behind: `put` raises `FileStoreUnavailable` and the caller
stores no row. The same photo sent twice is kept once.

Files no row uses (a photo sent without a ticket number and never attached)
are removed by `remove_idle` once untouched for a while: `put` touches a file
it already has, so a file about to be used again is never idle, and a file is
first renamed aside, so a `put` racing the removal writes a fresh copy.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
FULL_MESSAGE = "附件存储空间已满，文件未保存。请联系管理员清理后重试。"
READ_ONLY_MESSAGE = "附件存储目前只读，文件未保存。请联系管理员。"
BROKEN_MESSAGE = "附件存储暂时无法写入，文件未保存。请稍后重试或联系管理员。"


class FileStoreUnavailable(Exception):
    """The store cannot keep a file now: `reason` is for people (Chinese),
    `cause` for the log. Nothing was stored."""

    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause


def sha256_of(data: bytes) -> str:
    """The hex sha256 of `data`: its name in the store."""
    return hashlib.sha256(data).hexdigest()


_DIGEST = frozenset("0123456789abcdef")
# What a write or a removal leaves while under way (a kill leaves it behind).
_INCOMING, _DOOMED = ".incoming-", ".doomed-"


@dataclass
class Pruned:
    """What one clean-up of the store removed."""

    files: int = 0
    bytes: int = 0
    leftovers: int = 0  # half-written files a killed process left behind
    expired: int = 0  # held files whose wait for /attach was over (rows)


class FileStore:
    """A content-addressed folder of files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, digest: str) -> Path:
        """Where the file with this sha256 is (or would be) kept."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def has(self, digest: str) -> bool:
        """Whether the file with this sha256 is in the store."""
        return self.path_of(digest).is_file()

    async def put(self, data: bytes) -> tuple[str, bool]:
        """Keep `data`; its sha256, and True when it was not kept before."""
        return await asyncio.to_thread(self._put, data)

    async def discard(self, digest: str) -> None:
        """Remove a file `put` just added whose record could not be stored."""
        await asyncio.to_thread(self.path_of(digest).unlink, missing_ok=True)

    async def idle_files(self, idle: timedelta) -> tuple[list[str], int]:
        """The files not touched for `idle` (their sha256), and how many
        leftovers of writes and removals older than that were deleted."""
        return await asyncio.to_thread(self._idle_files, idle.total_seconds())

    async def remove_idle(self, digest: str, idle: timedelta) -> int | None:
        """Remove the file if it is still idle; the bytes freed, None if it was
        kept (touched since, or gone)."""
        return await asyncio.to_thread(self._remove_idle, digest, idle.total_seconds())

    def _idle_files(self, idle: float) -> tuple[list[str], int]:
        before = time.time() - idle
        found: list[str] = []
        leftovers = 0
        if not self.root.is_dir():
            return found, leftovers
        for entry in self.root.iterdir():
            if entry.name.startswith((_INCOMING, _DOOMED)) and _mtime(entry) < before:
                entry.unlink(missing_ok=True)
                leftovers += 1
        for path in self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
            name = path.name
            if len(name) == 64 and set(name) <= _DIGEST and _mtime(path) < before:
                found.append(name)
        return found, leftovers

    def _remove_idle(self, digest: str, idle: float) -> int | None:
        target = self.path_of(digest)
        aside = self.root / f"{_DOOMED}{digest}-{secrets.token_hex(4)}"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            return None
        try:
            facts = aside.stat()
        except FileNotFoundError:
            return None  # another replica's clean-up took it as a leftover
        if facts.st_mtime >= time.time() - idle:
            # `put` touched it between the listing and the rename: it is in use.
            if not target.exists():
                os.rename(aside, target)
            else:
                aside.unlink()
            return None
        aside.unlink()
        log.info("attachment_removed", sha256=digest, size=facts.st_size)
        return facts.st_size

    def _put(self, data: bytes) -> tuple[str, bool]:
        digest = sha256_of(data)
        target = self.path_of(digest)
        if target.is_file() and target.stat().st_size == len(data):
            try:
                os.utime(target)  # in use again: not idle (remove_idle)
                return digest, False
            except FileNotFoundError:
                pass  # removed just now: written afresh below
        temporary = self.root / f"{_INCOMING}{secrets.token_hex(8)}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise _unavailable(exc) from exc
        log.info("attachment_stored", sha256=digest, size=len(data))
        return digest, True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()  # gone meanwhile: never idle


def _unavailable(exc: OSError) -> FileStoreUnavailable:
    cause = f"{type(exc).__name__}: {exc}"
    if exc.errno in _FULL:
        reason = FULL_MESSAGE
    elif exc.errno in _READ_ONLY:
        reason = READ_ONLY_MESSAGE
    else:
        reason = BROKEN_MESSAGE
    log.error("attachment_store_failed", error=cause)
    return FileStoreUnavailable(reason, cause)
