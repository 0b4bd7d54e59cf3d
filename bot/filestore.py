"""The attachment store: files kept once per content, named by their sha256.

`ATTACHMENTS_DIR/ab/cd/abcd…` holds the bytes whose sha256 is `abcd…`; the
database (models.Attachment) keeps what they are and whose. A file is written
to a temporary name in the store, flushed to disk and then renamed into place,
so a reader never meets half a file and a full disk or a read-only mount
leaves nothing behind: `put` raises `FileStoreUnavailable` and the caller
stores no row. The same photo sent twice is kept once.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
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

    def _put(self, data: bytes) -> tuple[str, bool]:
        digest = sha256_of(data)
        target = self.path_of(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest, False
        temporary = self.root / f".incoming-{secrets.token_hex(8)}"
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
