"""Photos and files on a ticket: what is accepted, under which name, who may
attach, and the history event an attachment writes. Pure: the bytes, the
ticket and the policy's rules come in as arguments."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.domain.permissions import Action, check
from bot.domain.policy import AttachmentRules
from bot.domain.ticket import Actor, Outcome, Refused, Ticket
from bot.filetypes import ACCEPTED_TEXT, FileType, sniff

_NAME_LIMIT = 120
# Path separators and characters that have no place in a file name people read.
_UNSAFE = re.compile(r'[\\/:*?"<>|]+')


@dataclass(frozen=True)
class FileFacts:
    """What the history and the database keep of one file."""

    sha256: str
    name: str
    content_type: str
    size: int


def size_text(size: int) -> str:
    """A size as people read it: 512 B, 36 KB, 4.2 MB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


class FileRefused(Refused):
    """A file (or an upload) the ticket does not take: `reason` in Chinese for
    the sender, `status` the HTTP answer (413 too large, 415 not an accepted
    type, 422 empty or unreadable, 400 not readable at all)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def accepted_type(data: bytes, rules: AttachmentRules, name: str = "") -> FileType:
    """The file's type when the ticket accepts it (size within the policy's
    limit, an accepted type by content); FileRefused naming the file otherwise."""
    label = f"“{name}”" if name else "文件"
    if not data:
        raise FileRefused(422, f"{label}是空的，未保存。")
    if len(data) > rules.max_bytes:
        raise FileRefused(413, f"{label}有 {size_text(len(data))}，超过单个附件上限 "
                               f"{size_text(rules.max_bytes)}，未保存。")
    kind = sniff(data)
    if kind is None:
        raise FileRefused(415, f"{label}不是可接受的文件类型，未保存。可接受：{ACCEPTED_TEXT}。")
    return kind


def clean_name(name: str, kind: FileType, sha256: str) -> str:
    """The name a file is listed and downloaded under: the sender's, without
    folders or control characters, at most 120 characters with its extension
    kept; a made-up one (附件-1a2b3c4d.jpg) when the sender gave none."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base:
        return f"附件-{sha256[:8]}.{kind.extension}"
    if len(base) > _NAME_LIMIT:
        stem, dot, ext = base.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        base = base[: _NAME_LIMIT - len(ext) - 1].rstrip() + ("." + ext if ext else "")
    return base


def attached(ticket: Ticket, actor: Actor, files: tuple[FileFacts, ...]) -> Outcome:
    """`actor` attaches `files` to the ticket: anyone who may work on it (not
    the employee it is about, R22; not the read-only roles), in any state,
    since evidence may come after closing. The ticket itself is unchanged; its
    history records the files."""
    check(actor, ticket, Action.ATTACH)
    data = {"files": [{"sha256": f.sha256, "name": f.name, "content_type": f.content_type,
                       "size": f.size} for f in files]}
    return Outcome(ticket=ticket, event="attached", data=data)
