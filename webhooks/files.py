"""GET /files/{token}: one attachment, through a signed link that expires.

The link (bot/signed_links.py) is the only way to a file: there is no listing
and no path by hash. A forged or altered link answers 403, an expired one
410, each with a Chinese page saying what to do; photos and PDFs open in the
browser, other files download, under the name they were sent with. The
content type is the one told by content when the file was accepted (never
HTML, SVG or a script: bot/filetypes.py), and browsers are told not to guess
another (nosniff).
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from aiohttp import web

from bot.keys import ATTACHMENTS, CLOCK
from bot.signed_links import LinkExpired, LinkForged
from models import Attachment

log = structlog.get_logger(__name__)

FORGED = "链接无效：这个附件链接不完整或被改动过。请在企业微信里发送 /show 投诉编号 获取新的链接。"
EXPIRED = "链接已过期：附件链接只在一段时间内有效。请在企业微信里发送 /show 投诉编号 获取新的链接。"
GONE = "附件不存在或已被删除。"
DISABLED = "附件下载未启用（管理员需设置 ATTACHMENTS_SECRET）。"
_INLINE = ("image/", "application/pdf", "video/")


def _page(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def download(request: web.Request) -> web.StreamResponse:
    """The file a valid link names."""
    attachments = request.app[ATTACHMENTS]
    token = request.match_info["token"]
    now = request.app[CLOCK]()
    try:
        attachment_id = attachments.granted(token, now)
    except LookupError:
        return _page(503, DISABLED)
    except LinkForged:
        log.warning("attachment_link_forged", remote=request.remote)
        return _page(403, FORGED)
    except LinkExpired:
        log.info("attachment_link_expired", remote=request.remote)
        return _page(410, EXPIRED)
    row = await Attachment.get_or_none(id=attachment_id)
    if row is None or not attachments.store.has(row.sha256):
        log.error("attachment_missing", attachment=attachment_id)
        return _page(404, GONE)
    disposition = "inline" if row.content_type.startswith(_INLINE) else "attachment"
    log.info("attachment_served", attachment=row.id, ticket=row.ticket_id)  # type: ignore[attr-defined]
    return web.FileResponse(attachments.store.path_of(row.sha256), headers={
        "Content-Type": row.content_type,
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(row.name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    })


def setup(app: web.Application) -> None:
    """Mount GET /files/{token}."""
    app.router.add_get("/files/{token}", download)
