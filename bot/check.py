"""`complaintbot check`: try every dependency the configuration names and say,
one line per item, what works and what to fix.

Each check returns a `Finding`; nothing here changes data (the database is
opened without migrating, gettoken's answer is not stored). Items that are not
configured are warnings, not failures (a deployment without e-mail is
legitimate), each saying what will not happen; the report counts them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import aiosmtplib

from bot.clock import utcnow
from bot.db import open_database, tortoise_config
from bot.settings import Settings
from bot.sms_templates import SMS_TEMPLATES, missing_templates
from bot.storage import free_space, sqlite_path
from bot.wecom.client import WeComClient, WeComError
from bot.wecom.crypto import CallbackCipher, CallbackRefused
from bot.wecom.longconn import SUBSCRIBE, frame, lease_name, new_req_id
from models import Lease

Status = Literal["ok", "fail", "warn"]
# Less free than this on a disk the bot writes to is a warning: ten photos
# of the policy's largest are 100 MB, and SQLite needs room to commit.
LOW_SPACE_BYTES = 1 << 30
_MARKS: dict[Status, str] = {"ok": "✓", "fail": "✗", "warn": "!"}

# What an errcode from gettoken means for the person configuring the bot.
GETTOKEN_FIXES: dict[int, str] = {
    40013: "WECOM_CORP_ID is wrong: copy the CorpID from 我的企业 → 企业信息",
    40001: "WECOM_SECRET is wrong or was reset: copy the app's Secret from "
           "应用管理 → the app → Secret",
    40091: "WECOM_SECRET is wrong or was reset: copy the app's Secret from "
           "应用管理 → the app → Secret",
    60020: "add this server's public IP to the app's 企业可信IP "
           "(应用管理 → the app → 企业可信IP)",
    -1: "WeChat Work did not answer: check WECOM_API_BASE and outbound HTTPS from this server",
}


@dataclass(frozen=True)
class Finding:
    """The result of one check: what was checked, how it went, and what to do."""

    item: str
    status: Status
    detail: str

    def line(self) -> str:
        """The line printed for this finding, e.g. `✗ SMTP login: ...`."""
        return f"{_MARKS[self.status]} {self.item}: {self.detail}"


def _ok(item: str, detail: str) -> Finding:
    return Finding(item, "ok", detail)


def _fail(item: str, detail: str) -> Finding:
    return Finding(item, "fail", detail)


def _warn(item: str, detail: str) -> Finding:
    return Finding(item, "warn", detail)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _missing_sqlite_file(database_url: str) -> Path | None:
    """The SQLite file the URL names when it does not exist. Opening it would
    create an empty one: a typo in the path must not pass for a database."""
    if not database_url.startswith("sqlite://") or ":memory:" in database_url:
        return None
    path = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
    return None if path.is_file() else path


async def check_database(settings: Settings) -> Finding:
    """The database answers and every migration on disk is applied."""
    from tortoise.migrations.executor import MigrationExecutor

    item = "database"
    where = settings.database_url.split("@")[-1]
    missing = _missing_sqlite_file(settings.database_url)
    if missing is not None:
        return _fail(item, f"no SQLite file at {missing}: check DATABASE_URL, "
                           "or create it with `complaintbot migrate`")
    try:
        async with open_database(settings.database_url, migrate=False) as ctx:
            conn = ctx.db("default")
            await conn.execute_query("SELECT 1")
            read_only = False
            if conn.capabilities.dialect == "postgres":
                # A standby, or default_transaction_read_only: it answers but stores nothing.
                _, rows = await conn.execute_query("SHOW transaction_read_only")
                read_only = rows[0]["transaction_read_only"] == "on"
            apps = tortoise_config(settings.database_url)["apps"]
            pending = await MigrationExecutor(conn, apps).plan()
    # A diagnosis reports every failure (refused connection, bad password,
    # missing database, driver errors) rather than crashing on the first kind.
    except Exception as exc:
        return _fail(item, f"cannot reach {where} ({_describe(exc)}): "
                           "check DATABASE_URL and that the server is running")
    if read_only:
        return _fail(item, f"{where} is read-only (a standby, or default_transaction_read_only):"
                           " point DATABASE_URL at the primary or make it writable")
    if pending:
        names = ", ".join(step.migration.name for step in pending)
        return _fail(item, f"{where} reachable, {len(pending)} migration(s) not applied "
                           f"({names}): run `complaintbot migrate`")
    path = sqlite_path(settings.database_url)
    if path is not None and (low := await _low_space(path.absolute().parent)) is not None:
        return _warn(item, f"{where} reachable, migrations current; {low}: a full disk "
                           "refuses every change")
    return _ok(item, f"{where} reachable, migrations current")


async def check_smtp(settings: Settings) -> Finding:
    """Connect to the SMTP server the way e-mail delivery does, and log in."""
    item = "SMTP"
    if not settings.smtp_host:
        return _warn(item, "SMTP 未配置：邮件不会发出（经理收不到报表工作簿）；"
                           "设置 SMTP_HOST 等以启用")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_ssl,
        start_tls=False if settings.smtp_ssl else settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
    )
    try:
        await smtp.connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        return _fail(item, f"cannot connect to {where} ({_describe(exc)}): check SMTP_HOST, "
                           "SMTP_PORT, SMTP_SSL and SMTP_STARTTLS")
    try:
        if not settings.smtp_username:
            return _ok(item, f"{where} connected (no SMTP_USERNAME: no login)")
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        try:
            await smtp.login(settings.smtp_username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return _fail(item, f"{where} refused the login of {settings.smtp_username} "
                               f"({exc.code}): check SMTP_USERNAME and SMTP_PASSWORD")
        except aiosmtplib.SMTPException as exc:
            return _fail(item, f"{where} login failed ({_describe(exc)})")
        return _ok(item, f"{where} connected, logged in as {settings.smtp_username}")
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()


async def check_wecom_api(settings: Settings) -> Finding:
    """gettoken with the app's CorpID and Secret (the token is not stored)."""
    item = "WeChat Work app"
    if not settings.wecom_configured:
        return _warn(item, "企业微信应用未配置：不会给个人发应用消息（派单、催办、审批）；"
                           "设置 WECOM_CORP_ID、WECOM_SECRET、WECOM_AGENT_ID 以启用")
    if settings.wecom_agent_id is None:
        return _fail(item, "WECOM_AGENT_ID is not set: copy the AgentId from 应用管理 → the app")
    client = WeComClient.from_settings(settings)
    try:
        await client.gettoken(attempts=1)
    except WeComError as exc:
        fix = GETTOKEN_FIXES.get(exc.errcode, "see the errcode in the WeChat Work docs")
        return _fail(item, f"gettoken errcode {exc.errcode} ({exc.errmsg}): {fix}")
    finally:
        await client.close()
    return _ok(item, f"gettoken works for corp {settings.wecom_corp_id}, "
                     f"agent {settings.wecom_agent_id}")


def _round_trip(item: str, token: str, aes_key: str, receive_id: str,
                token_name: str, key_name: str, robot: bool, unset: str) -> Finding:
    if not token and not aes_key:
        return _warn(item, f"{unset}；设置 {token_name}、{key_name} 以启用")
    try:
        cipher = CallbackCipher(token, aes_key, receive_id)
    except ValueError as exc:
        return _fail(item, f"{exc}: check {token_name} and {key_name}")
    now = utcnow()
    stamp = str(int(now.timestamp()))
    try:
        if robot:
            query, body = cipher.robot_callback({"msgid": "check"}, timestamp=stamp)
            plain = cipher.decrypt_robot(query, body, now=now)
        else:
            query, body = cipher.app_callback("<xml>check</xml>", agent_id=None, timestamp=stamp)
            plain = cipher.decrypt_app(query, body, now=now)
    except CallbackRefused as exc:
        return _fail(item, f"signature round-trip failed ({exc.reason})")
    if "check" not in plain:
        return _fail(item, "signature round-trip returned other text")
    return _ok(item, "signature and encryption round-trip")


async def check_app_callback(settings: Settings) -> Finding:
    """Encrypt, sign, verify and decrypt an app callback with the configured key."""
    if settings.wecom_token and not settings.wecom_corp_id:
        return _fail("app callback key", "WECOM_CORP_ID is empty: app callbacks carry it")
    return _round_trip("app callback key", settings.wecom_token, settings.wecom_aes_key,
                       settings.wecom_corp_id, "WECOM_TOKEN", "WECOM_AES_KEY", robot=False,
                       unset="应用回调未配置：员工在应用里发的指令和审批点击不会到达")


async def check_robot_callback(settings: Settings) -> Finding | None:
    """Encrypt, sign, verify and decrypt a smart-robot callback with the
    configured key; nothing to check when the robot uses its long connection."""
    if settings.wecom_robot_mode == "long_connection":
        return None
    return _round_trip("robot callback key", settings.wecom_robot_token,
                       settings.wecom_robot_aes_key, "", "WECOM_ROBOT_TOKEN",
                       "WECOM_ROBOT_AES_KEY", robot=True,
                       unset="智能机器人回调未配置：群里 @机器人 的指令和卡片点击不会到达")


async def check_robot_connection(settings: Settings) -> Finding | None:
    """In long-connection mode: the WebSocket opens and `aibot_subscribe` takes
    the BotID and Secret. WeChat Work keeps one connection per robot, so while
    a running replica holds it (a live lease) only the handshake is tried: a
    subscription would displace the bot's own connection."""
    if settings.wecom_robot_mode != "long_connection":
        return None
    item = "robot long connection"
    url = settings.wecom_robot_ws_url
    try:
        holder = await _robot_connection_holder(settings)
    except Exception as exc:  # no database: subscribing might displace a running bot
        holder = f"(unknown: the database cannot be read, {_describe(exc)})"
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            if holder is not None:
                return _ok(item, f"{url} answers; subscription not tried, the connection is "
                                 f"held by {holder} (a second one would displace it)")
            req_id = new_req_id(SUBSCRIBE)
            secret = settings.wecom_robot_secret
            await ws.send_str(frame(SUBSCRIBE, req_id, {
                "bot_id": settings.wecom_robot_bot_id,
                "secret": secret.get_secret_value() if secret else ""}))
            ack = await asyncio.wait_for(ws.receive_json(), 10)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return _fail(item, f"cannot open {url} ({_describe(exc)}): check "
                           "WECOM_ROBOT_WS_URL and that outbound HTTPS (443) is allowed")
    if not isinstance(ack, dict) or ack.get("errcode") != 0:
        errcode = ack.get("errcode") if isinstance(ack, dict) else None
        return _fail(item, f"aibot_subscribe refused (errcode {errcode}): check "
                           "WECOM_ROBOT_BOT_ID and WECOM_ROBOT_SECRET (智能机器人 → API 模式)")
    return _ok(item, f"subscribed as {settings.wecom_robot_bot_id} at {url}, then closed")


async def _robot_connection_holder(settings: Settings) -> str | None:
    """Who holds the robot's long connection now, per the lease row; None if nobody."""
    async with open_database(settings.database_url, migrate=False):
        lease = await Lease.get_or_none(name=lease_name(settings.wecom_robot_bot_id))
    if lease is None or lease.expires_at <= utcnow():
        return None
    return lease.holder


async def check_sms(settings: Settings) -> Finding:
    """The SMS provider's settings are complete, every SMS kind the process
    sends has its registered template (bot/sms_templates.py), and the
    provider's SDK is installed."""
    item = "SMS"
    provider = settings.sms_provider
    if provider == "log":
        return _warn(item, "SMS_PROVIDER=log：短信只写入日志，客户收不到（仅供开发）")
    if provider == "tencent":
        needed = {"TENCENT_SECRET_ID": settings.tencent_secret_id,
                  "TENCENT_SECRET_KEY": settings.tencent_secret_key,
                  "TENCENT_SMS_APP_ID": settings.tencent_sms_app_id}
        module, extra = "tencentcloud.sms", "sms-tencent"
    else:
        needed = {"ALIYUN_ACCESS_KEY_ID": settings.aliyun_access_key_id,
                  "ALIYUN_ACCESS_KEY_SECRET": settings.aliyun_access_key_secret}
        module, extra = "alibabacloud_dysmsapi20170525", "sms-aliyun"
    needed["SMS_SIGN_NAME"] = settings.sms_sign_name
    missing = [name for name, value in needed.items() if not value]
    untemplated = missing_templates(settings)
    if missing or untemplated:
        kinds = "、".join(f"{t.kind}（{t.label}）" for t in untemplated)
        without = f"; no template for the SMS {kinds}: register each with {provider} " \
                  "(wording in docs/deploy.md)" if untemplated else ""
        names = [*missing, *(t.env_name for t in untemplated)]
        return _fail(item, f"SMS_PROVIDER={provider} needs {', '.join(names)}{without}")
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return _fail(item, f"the {provider} SDK is not installed: "
                           f"pip install 'complaintbot[{extra}]'")
    kinds = "、".join(SMS_TEMPLATES)
    return _ok(item, f"{provider} configured, templates for {kinds} "
                     "(credentials are tried on the first send)")


def _probe_folder(folder: Path) -> None:
    """Create the folder if missing, write a small file into it and remove it."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".check-{os.getpid()}"
    try:
        probe.write_bytes(b"complaintbot check")
    finally:
        probe.unlink(missing_ok=True)


async def check_attachments(settings: Settings) -> Finding:
    """The attachment store (ATTACHMENTS_DIR) takes a file, and download
    links can be signed (ATTACHMENTS_SECRET)."""
    item, folder = "attachments", settings.attachments_dir
    try:
        await asyncio.to_thread(_probe_folder, folder)
    except OSError as exc:
        return _fail(item, f"ATTACHMENTS_DIR {folder} cannot be written ({_describe(exc)}): "
                           "photos and files sent to tickets will be refused")
    if (low := await _low_space(folder)) is not None:
        return _warn(item, f"{folder} writable; {low}: run `complaintbot attachments prune` "
                           "or give it room")
    if settings.attachments_secret is None:
        return _warn(item, "ATTACHMENTS_SECRET 未设置：附件只列出名称，没有下载链接")
    return _ok(item, f"{folder} writable; download links point to {settings.base_url}/files/")


async def _low_space(folder: Path) -> str | None:
    """What to say when the disk of `folder` has less than LOW_SPACE_BYTES free."""
    free = await asyncio.to_thread(free_space, folder)
    if free >= LOW_SPACE_BYTES:
        return None
    return f"only {free / 2**20:.1f} MB free on its disk"


async def check_survey(settings: Settings) -> Finding:
    """R23: the closing SMS carries the survey link only with both settings."""
    item = "survey"
    given = {"PUBLIC_BASE_URL": bool(settings.public_base_url),
             "SURVEY_SECRET": settings.survey_secret is not None}
    if not any(given.values()):
        return _warn(item, "满意度评价未开通：结案短信不带评价链接，满意度只有客服评分；"
                           "设置 PUBLIC_BASE_URL、SURVEY_SECRET 以启用")
    missing = [name for name, set_ in given.items() if not set_]
    if missing:
        return _fail(item, f"{' and '.join(missing)} not set: the closing SMS goes without "
                           "the survey link until both PUBLIC_BASE_URL and SURVEY_SECRET are set")
    return _ok(item, f"closing SMS links to {settings.public_base_url}/s/… "
                     "(the page must be reachable from customers' phones)")


async def check_chart_font(_settings: Settings) -> Finding:
    """A font with Chinese glyphs for the report charts is installed."""
    from bot.reports.fonts import INSTALL_HINT, cjk_font

    font = cjk_font()
    if font is None:
        return _fail("chart font", f"no font with Chinese glyphs: report charts show boxes "
                                   f"for every Chinese character; {INSTALL_HINT}")
    return _ok("chart font", f"{font} (report charts draw Chinese)")


CHECKS: tuple[tuple[str, Callable[[Settings], Awaitable[Finding | None]]], ...] = (
    ("database", check_database),
    ("SMTP", check_smtp),
    ("WeChat Work app", check_wecom_api),
    ("app callback key", check_app_callback),
    ("robot callback key", check_robot_callback),
    ("robot long connection", check_robot_connection),
    ("SMS", check_sms),
    ("attachments", check_attachments),
    ("survey", check_survey),
    ("chart font", check_chart_font),
)

# Longest wait for one check; each client has its own, shorter timeouts.
CHECK_SECONDS = 60.0


async def run_checks(settings: Settings) -> list[Finding]:
    """Every check that applies, in order; one that hangs longer than
    CHECK_SECONDS fails."""
    findings = []
    for item, check in CHECKS:
        try:
            finding = await asyncio.wait_for(check(settings), CHECK_SECONDS)
        except TimeoutError:
            finding = _fail(item, f"no answer within {CHECK_SECONDS:g} s")
        if finding is not None:
            findings.append(finding)
    return findings


def report(findings: list[Finding]) -> tuple[str, int]:
    """The printed report and the exit code (1 when anything failed; a
    warning, an integration not configured, does not fail)."""
    lines = [finding.line() for finding in findings]
    failed = sum(finding.status == "fail" for finding in findings)
    warned = sum(finding.status == "warn" for finding in findings)
    if failed:
        lines.append(f"{failed} check(s) failed")
    elif warned:
        lines.append(f"no check failed; {warned} warning(s): see the items marked !")
    else:
        lines.append("all checks passed")
    return "\n".join(lines), 1 if failed else 0
