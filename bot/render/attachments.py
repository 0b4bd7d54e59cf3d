"""Attachments as people read them in chat: one line per file with its
signed link, and the card's links (`jump_list`, at most 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.attachments import size_text
from bot.filetypes import ACCEPTED
from bot.render.chat import short_time
from models import Attachment

_LABELS = {kind.content_type: kind.label for kind in ACCEPTED}
# WeChat Work shows at most 3 links on a card.
CARD_LINKS = 3
_LINK_TITLE = 20


def type_label(content_type: str) -> str:
    """The file type in words: JPEG 图片, PDF 文档 ..."""
    return _LABELS.get(content_type, content_type)


def attachment_line(row: Attachment, url: str | None, zone: ZoneInfo) -> str:
    """- [name](link)（JPEG 图片，1.2 MB，张专员 03-02 09:30）; the name alone
    when no link can be made."""
    name = row.name.replace("[", "(").replace("]", ")")
    shown = f"[{name}]({url})" if url else name
    who = row.uploaded_by_name or row.uploaded_by
    return (f"- {shown}（{type_label(row.content_type)}，{size_text(row.size)}，"
            f"{who} {short_time(row.uploaded_at, zone)}）")


def attachments_markdown(number: int, rows: Sequence[Attachment],
                         links: Mapping[int, str | None], zone: ZoneInfo,
                         *, lifetime_text: str) -> str:
    """The attachments block of /show: a heading and one line per file."""
    lines = [f"\n📎 #{number} 的附件（{len(rows)} 个）："]
    lines += [attachment_line(row, links.get(row.id), zone) for row in rows]
    if any(links.values()):
        lines.append(f"> 下载链接 {lifetime_text}内有效，过期后请重新发送 /show {number}。")
    return "\n".join(lines)


def card_links(rows: Sequence[Attachment], links: Mapping[int, str | None]) -> list[dict[str, Any]]:
    """The newest files with a link, as a card's `jump_list` (type 1: a URL)."""
    linked = [row for row in reversed(rows) if links.get(row.id)][:CARD_LINKS]
    return [{"type": 1, "title": "📎 " + (row.name if len(row.name) <= _LINK_TITLE
                                         else row.name[: _LINK_TITLE - 1] + "…"),
             "url": links[row.id]} for row in linked]
