"""Photos and files members send to the app or the robot: downloaded, checked
and stored before the message goes to the command router.

The app's image and file messages carry a MediaId, fetched with `media/get`
(kept three days); the robot's image and file messages, and the images of a
group's `mixed` message, carry a URL valid five minutes to the file encrypted
with AES-256-CBC (bot/wecom/media.py). The robot's URL cannot wait for the
outbox, so both are fetched within the callback, before the transaction that
applies it (no I/O inside a transaction). A retried callback already applied
is not fetched again (its stored reply is answered). What fails (too large,
not an accepted type, an expired link, a key that does not fit) becomes a
Chinese line of the reply, and nothing of that file is stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import structlog
from aiohttp import web

from bot.directory import actor_for
from bot.domain.attachments import FileFacts, FileRefused, size_text
from bot.filestore import FileStoreUnavailable
from bot.keys import ATTACHMENTS, LEDGER, SETTINGS, WECOM
from bot.wecom.client import MediaTooLarge, RateLimited, WeComError
from bot.wecom.media import MediaDecryptError, decrypt_media
from commands.base import ChatMessage
from models import ProcessedCallback

log = structlog.get_logger(__name__)

# AES-CBC pads a robot file by up to 32 bytes.
_PADDING = 32


@dataclass(frozen=True)
class MediaRef:
    """Where a sent photo or file is: an app MediaId, or a robot URL with its
    own `aeskey` ("" : the robot's EncodingAESKey); `name` as sent, if known."""

    kind: str  # "image" or "file", for the reply
    media_id: str = ""
    url: str = ""
    aeskey: str = ""
    name: str = ""


async def with_files(app: web.Application, endpoint: str, key: str, message: ChatMessage,
                     refs: tuple[MediaRef, ...]) -> ChatMessage:
    """`message` with the files `refs` name fetched, checked and stored
    (`files`), and what went wrong with the others (`file_problems`). Nothing
    is fetched for a callback already applied or a sender the directory does
    not know (the router answers those)."""
    if not refs or await ProcessedCallback.exists(endpoint=endpoint, key=key):
        return message
    if await actor_for(message.userid) is None:
        return message
    files: list[FileFacts] = []
    problems: list[str] = []
    for index, ref in enumerate(refs, 1):
        label = f"“{ref.name}”" if ref.name else (
            f"第 {index} 张图片" if ref.kind == "image" else f"第 {index} 个文件")
        try:
            files.append(await _fetch(app, ref))
        except FileRefused as exc:
            problems.append(exc.reason)
        except FileStoreUnavailable as exc:
            problems.append(exc.reason)
        except MediaTooLarge as exc:
            limit = exc.limit - (_PADDING if ref.url else 0)
            problems.append(f"{label}超过单个附件上限 {size_text(limit)}，未保存。")
        except MediaDecryptError as exc:
            log.warning("wecom_media_undecryptable", endpoint=endpoint, error=str(exc))
            problems.append(f"{label}无法解密，未保存，请重新发送。")
        except (WeComError, RateLimited) as exc:
            log.warning("wecom_media_download_failed", endpoint=endpoint, error=str(exc))
            problems.append(f"{label}下载失败（链接可能已过期），未保存，请重新发送。")
    return dataclasses.replace(message, files=tuple(files), file_problems=tuple(problems))


async def _fetch(app: web.Application, ref: MediaRef) -> FileFacts:
    """Download one file, decrypt a robot's, check it and store it."""
    rules = app[LEDGER].policies.current.attachments
    client = app[WECOM]
    if ref.media_id:
        media = await client.get_media(ref.media_id, max_bytes=rules.max_bytes)
        data = media.data
    else:
        media = await client.download(ref.url, max_bytes=rules.max_bytes + _PADDING)
        data = decrypt_media(media.data, ref.aeskey or app[SETTINGS].wecom_robot_aes_key)
    return await app[ATTACHMENTS].accept(data, ref.name or media.filename, rules)
