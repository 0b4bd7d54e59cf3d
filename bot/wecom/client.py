"""The WeChat Work API client the outbox worker sends through (aiohttp, not
wechatpy's blocking client).

One access token per app, fetched by gettoken once and kept in the database
(`models.AccessToken`) so every replica uses the same one; refreshed before it
expires and when the API calls it invalid. Transient failures (5xx, timeouts,
errcode -1 and 45009) are retried a few times with exponential backoff inside
a call; what is still failing is raised as `WeComError`, whose `retryable`
tells the outbox whether to try the row again later. Sends are paced under
the documented limits (30 messages a minute and 1000 an hour per app member,
20 a minute per group webhook, 200 a minute and 10,000 a day into a group the
app created), counted across replicas (bot/wecom/pacing.py):
a send with no room raises `RateLimited` and the outbox tries it later, so
WeChat Work never drops one silently.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import aiohttp
import structlog

from bot.clock import Clock, utcnow
from bot.metrics import WECOM_API_ERRORS
from bot.settings import Settings
from bot.wecom.pacing import (
    APPCHAT_LIMITS,
    MEMBER_LIMITS,
    WEBHOOK_LIMITS,
    Limits,
    Room,
    room,
    take_slot,
)
from models import AccessToken

log = structlog.get_logger(__name__)

# errcodes worth another try: -1 system busy, 45009 rate limit, 45033 too many
# concurrent calls. Everything else (60020 IP not trusted, 81013 no valid
# recipient, 40003 bad userid, ...) fails the same way again.
RETRYABLE_ERRCODES = frozenset({-1, 45009, 45033})
# The token is unknown, malformed or expired: fetch a new one and call again.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# Refresh this long before the token's announced expiry.
TOKEN_MARGIN = timedelta(minutes=5)

# A request's body: JSON, or a multipart form built afresh for each try.
Body = dict[str, Any] | Callable[[], aiohttp.FormData] | None
# The group robot takes images up to 2 MB before base64 encoding.
WEBHOOK_IMAGE_MAX_BYTES = 2 * 1024 * 1024


class WeComError(Exception):
    """The API refused or could not be reached. `errcode` is WeChat Work's
    (-1 for transport failures: 5xx, timeouts, unreadable answers)."""

    def __init__(self, errcode: int, errmsg: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"WeChat Work error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later."""
        if self._retryable is not None:
            return self._retryable
        return self.errcode in RETRYABLE_ERRCODES


@dataclass(frozen=True)
class Media:
    """A file downloaded from WeChat Work: its bytes, and the name and type
    its headers gave (empty when they gave none)."""

    data: bytes
    filename: str = ""
    content_type: str = ""


class MediaTooLarge(Exception):
    """A download was stopped at `limit` bytes: the file is larger."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes")
        self.limit = limit


class RateLimited(Exception):
    """The send would break a WeChat Work limit (bot/wecom/pacing.py) and was
    not made; try again in `retry_after` seconds. Not a failure."""

    retryable = True

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"{key.split(':', 1)[0]} send limit: wait {retry_after:.1f} s")
        self.retry_after = retry_after


class WeComClient:
    """Calls the WeChat Work API for one self-built app (and any group webhook)."""

    def __init__(
        self,
        *,
        api_base: str,
        corp_id: str,
        secret: str,
        agent_id: int | None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        member_limits: Limits = MEMBER_LIMITS,
        webhook_limits: Limits = WEBHOOK_LIMITS,
        appchat_limits: Limits = APPCHAT_LIMITS,
        clock: Clock = utcnow,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._backoff = backoff
        self._member_limits = member_limits
        self._webhook_limits = webhook_limits
        self._appchat_limits = appchat_limits
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._token_name = f"app:{corp_id}:{agent_id}"
        self._token: AccessToken | None = None
        self._token_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = utcnow) -> WeComClient:
        """The client for the configured app."""
        secret = settings.wecom_secret.get_secret_value() if settings.wecom_secret else ""
        return cls(
            api_base=settings.wecom_api_base,
            corp_id=settings.wecom_corp_id,
            secret=secret,
            agent_id=settings.wecom_agent_id,
            timeout=settings.wecom_api_timeout_seconds,
            clock=clock,
        )

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API -----------------------------------------------------------

    async def send_app_markdown(self, userids: list[str], content: str) -> dict:
        """Send a markdown message from the app to members (message/send)."""
        message = {"msgtype": "markdown", "markdown": {"content": content}}
        return await self._send_app(userids, message)

    async def send_app_card(self, userids: list[str], card: dict) -> dict:
        """Send a template card from the app; the answer carries its `response_code`."""
        return await self._send_app(userids, {"msgtype": "template_card", "template_card": card})

    async def update_template_card(
        self, userids: list[str], response_code: str, card: dict
    ) -> dict:
        """Replace a clicked card for `userids` (each response_code works once, for 72 h)."""
        await self._pace_members(userids)
        body = {"userids": userids, "agentid": self.agent_id, "response_code": response_code,
                "template_card": card}
        return await self._with_token("message/update_template_card", body)

    async def send_webhook_markdown(self, key: str, content: str) -> dict:
        """Post markdown into a group through its robot webhook (webhook/send?key=)."""
        await self._pace(f"webhook:{key}", self._webhook_limits)
        body = {"msgtype": "markdown", "markdown": {"content": content}}
        return await self._call("webhook/send", body, params={"key": key})

    async def send_webhook_image(self, key: str, image: bytes) -> dict:
        """Post a JPG or PNG (at most 2 MB) into a group through its robot
        webhook: sent inline as base64 with the MD5 of the raw bytes."""
        if len(image) > WEBHOOK_IMAGE_MAX_BYTES:
            raise WeComError(40009, f"image of {len(image)} bytes exceeds 2 MB",
                             retryable=False)
        await self._pace(f"webhook:{key}", self._webhook_limits)
        body = {"msgtype": "image", "image": {"base64": base64.b64encode(image).decode(),
                                              "md5": hashlib.md5(image).hexdigest()}}
        return await self._call("webhook/send", body, params={"key": key})

    async def send_appchat_markdown(self, chatid: str, content: str) -> dict:
        """Post markdown into a group the app created (appchat/send)."""
        await self._pace(f"appchat:{chatid}", self._appchat_limits)
        body = {"chatid": chatid, "msgtype": "markdown", "markdown": {"content": content}}
        return await self._with_token("appchat/send", body)

    async def create_appchat(self, name: str, owner: str, userlist: list[str],
                             chatid: str) -> dict:
        """Create a group the app can post to (appchat/create), with the given
        chatid; the answer carries it."""
        body = {"name": name, "owner": owner, "userlist": userlist, "chatid": chatid}
        return await self._with_token("appchat/create", body)

    async def update_appchat(self, chatid: str, add_user_list: list[str]) -> dict:
        """Add members to a group the app created (appchat/update)."""
        return await self._with_token("appchat/update",
                                      {"chatid": chatid, "add_user_list": add_user_list})

    async def upload_image(self, image: bytes, filename: str) -> str:
        """Upload a JPG or PNG as temporary media (media/upload, kept 3 days);
        its media_id."""

        def form() -> aiohttp.FormData:  # a FormData is spent once sent: one per try
            data = aiohttp.FormData()
            data.add_field("media", image, filename=filename,
                           content_type="image/png" if image.startswith(b"\x89PNG")
                           else "image/jpeg")
            return data

        answer = await self._with_token("media/upload", form, query={"type": "image"})
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeComError(-1, "media/upload answered without a media_id")
        return media_id

    async def send_appchat_image(self, chatid: str, image: bytes) -> dict:
        """Post an image into a group the app created: uploaded first, then sent
        by its media_id (appchat/send)."""
        await self._pace(f"appchat:{chatid}", self._appchat_limits)
        media_id = await self.upload_image(image, "chart.png")
        body = {"chatid": chatid, "msgtype": "image", "image": {"media_id": media_id}}
        return await self._with_token("appchat/send", body)

    async def webhook_room(self, key: str) -> Room:
        """What the group webhook's limit lets through now (nothing taken)."""
        return await room(f"webhook:{key}", self._webhook_limits, self._clock())

    async def appchat_room(self, chatid: str) -> Room:
        """What the app-created group's limits let through now (nothing taken)."""
        return await room(f"appchat:{chatid}", self._appchat_limits, self._clock())

    async def member_room(self, userid: str) -> Room:
        """What the member's app-message limits let through now (nothing taken)."""
        return await room(f"member:{userid}", self._member_limits, self._clock())

    async def get_media(self, media_id: str, *, max_bytes: int) -> Media:
        """Download temporary media an app member sent (media/get, kept 3 days):
        MediaTooLarge past `max_bytes`, WeComError for an errcode (40007: an
        unknown or expired media_id)."""
        return await self._with_token("media/get", None, query={"media_id": media_id},
                                      method="GET", max_bytes=max_bytes)

    async def download(self, url: str, *, max_bytes: int) -> Media:
        """Download a file the smart robot was sent (its URL, valid 5 minutes,
        holds the file encrypted; bot/wecom/media.py decrypts it)."""
        return await self._call(url, None, method="GET", max_bytes=max_bytes)

    async def post_response_url(self, url: str, body: dict) -> dict:
        """Answer a robot callback later through its `response_url` (single use: no retries)."""
        return await self._call(url, body, attempts=1)

    async def gettoken(self, *, attempts: int | None = None) -> dict:
        """Ask gettoken for a new access token with the app's CorpID and Secret;
        the answer, not cached or stored (`complaintbot check` uses it directly)."""
        return await self._call(
            "gettoken", None, params={"corpid": self.corp_id, "corpsecret": self._secret},
            method="GET", attempts=attempts,
        )

    async def address_book(self, path: str, *, query: dict[str, str] | None = None,
                           body: dict | None = None) -> dict:
        """One address-book read (department/list, user/list_id, user/get,
        tag/get ...): GET with `query`, or POST `body`; the answer (errcode 0)."""
        return await self._with_token(path, body, query=query,
                                      method="GET" if body is None else "POST")

    # -- plumbing ----------------------------------------------------------

    async def _send_app(self, userids: list[str], message: dict[str, Any]) -> dict:
        await self._pace_members(userids)
        body = {"touser": "|".join(userids), "agentid": self.agent_id, **message}
        answer = await self._with_token("message/send", body)
        if answer.get("invaliduser"):
            log.warning("wecom_invalid_recipients", invaliduser=answer["invaliduser"])
        return answer

    async def _pace_members(self, userids: list[str]) -> None:
        for userid in userids:
            await self._pace(f"member:{userid}", self._member_limits)

    async def _pace(self, key: str, limits: Limits) -> None:
        wait = await take_slot(key, limits, self._clock())
        if wait > 0:
            log.info("wecom_paced", key=key.split(":", 1)[0], wait_seconds=round(wait, 2))
            raise RateLimited(key, wait)

    async def _with_token(self, path: str, body: Body, *,
                          query: dict[str, str] | None = None, method: str = "POST",
                          max_bytes: int | None = None) -> Any:
        token = await self._access_token()
        try:
            return await self._call(path, body, params={**(query or {}), "access_token": token},
                                    method=method, max_bytes=max_bytes)
        except WeComError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            log.info("wecom_token_rejected", path=path, errcode=exc.errcode)
        token = await self._access_token(rejected=token)
        return await self._call(path, body, params={**(query or {}), "access_token": token},
                                method=method, max_bytes=max_bytes)

    async def _access_token(self, *, rejected: str | None = None) -> str:
        """A token valid for a while yet: from memory, else from the database
        (another replica may have fetched it), else from gettoken."""
        async with self._token_lock:
            fresh_until = self._clock() + TOKEN_MARGIN

            def usable(candidate: AccessToken | None) -> bool:
                return (candidate is not None and candidate.token != rejected
                        and candidate.expires_at > fresh_until)

            if usable(self._token):
                return self._token.token  # type: ignore[union-attr]
            stored = await AccessToken.get_or_none(name=self._token_name)
            if usable(stored):
                self._token = stored
                return stored.token  # type: ignore[union-attr]
            answer = await self.gettoken()
            token, lifetime = answer.get("access_token"), answer.get("expires_in", 7200)
            if not isinstance(token, str) or not token or not isinstance(lifetime, int):
                raise WeComError(-1, "gettoken answered without a usable access_token")
            expires_at = self._clock() + timedelta(seconds=lifetime)
            self._token, _ = await AccessToken.update_or_create(
                name=self._token_name, defaults={"token": token, "expires_at": expires_at}
            )
            log.info("wecom_token_fetched", name=self._token_name, expires_at=expires_at)
            return token

    def _session_open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(
        self,
        path: str,
        body: Body,
        *,
        params: dict[str, str] | None = None,
        method: str = "POST",
        attempts: int | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """One API call, retried on transient failures; the answer when errcode
        is 0, or with `max_bytes` the file it answers (a `Media`)."""
        url = path if "://" in path else f"{self.api_base}/{path}"
        # Log the path only: the query holds the token or a webhook key, the body customer data.
        where = path if "://" not in path else ("download" if max_bytes else "response_url")
        attempts = attempts or self._attempts
        attempt = 1
        while True:
            result = await self._attempt(method, url, body, params, max_bytes)
            if not isinstance(result, WeComError):
                return result
            WECOM_API_ERRORS.labels(errcode=str(result.errcode)).inc()
            log.warning("wecom_api_error", path=where, errcode=result.errcode,
                        errmsg=result.errmsg, attempt=attempt, retryable=result.retryable)
            if not result.retryable or attempt >= attempts:
                raise result
            await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            attempt += 1

    async def _attempt(
        self, method: str, url: str, body: Body, params: dict[str, str] | None,
        max_bytes: int | None = None,
    ) -> dict | Media | WeComError:
        """The answer of one request (a file when `max_bytes` is given and the
        answer is not JSON), or the error it ended in."""
        payload = {"data": body()} if callable(body) else {"json": body}
        try:
            async with self._session_open().request(method, url, params=params,
                                                    **payload) as resp:
                if resp.status >= 500:
                    return WeComError(-1, f"HTTP {resp.status}")
                if resp.status != 200:
                    return WeComError(-1, f"HTTP {resp.status}", retryable=False)
                if max_bytes is not None and not _is_json(resp):
                    return await _read_media(resp, max_bytes)
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return WeComError(-1, f"{type(exc).__name__}: {exc}".rstrip(": "))
        except ValueError:
            return WeComError(-1, "the answer is not JSON")
        if not isinstance(answer, dict):
            return WeComError(-1, "the answer is not a JSON object")
        try:
            errcode = int(answer.get("errcode", 0))
        except (TypeError, ValueError):
            return WeComError(-1, f"unreadable errcode {answer.get('errcode')!r}")
        if errcode != 0:
            return WeComError(errcode, str(answer.get("errmsg", "")))
        return answer


def _is_json(resp: aiohttp.ClientResponse) -> bool:
    """media/get answers the file, or JSON (or text/plain JSON) with an errcode."""
    return resp.content_type in ("application/json", "text/plain")


async def _read_media(resp: aiohttp.ClientResponse, max_bytes: int) -> Media:
    """The file in a download's answer, read no further than `max_bytes`."""
    if (resp.content_length or 0) > max_bytes:
        raise MediaTooLarge(max_bytes)
    data = bytearray()
    async for chunk in resp.content.iter_chunked(256 * 1024):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise MediaTooLarge(max_bytes)
    return Media(bytes(data), filename=_filename(resp), content_type=resp.content_type)


def _filename(resp: aiohttp.ClientResponse) -> str:
    """The name in Content-Disposition: filename*=UTF-8''... (RFC 5987) or filename="..."."""
    header = resp.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*=UTF-8''([^;\s]+)", header, re.IGNORECASE)
    if match:
        return unquote(match.group(1))
    match = re.search(r'filename="?([^";]+)"?', header, re.IGNORECASE)
    return unquote(match.group(1).strip()) if match else ""
