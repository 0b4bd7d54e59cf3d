"""`complaintbot demo`: the bot and a local WeChat Work in one process.

No WeChat Work account needed. The bot runs with fixed demo credentials
against `WeComEmulator`, mounted on the bot's own server under /dev (the
emulated API at /dev/cgi-bin, the chat page at /dev/), so one port serves
both. Nothing takes a shortcut: the emulator signs and encrypts each callback
and posts it over loopback HTTP to /wecom/robot or /wecom/app, and the
scheduler's outbox sends through `WeComClient` to the emulated API, so group
notices and app cards show up on the chat page as they would in WeChat Work.
The example directory is loaded at start (idempotent).

What leaves WeChat Work is caught too (bot/demo_outside.py): the customer's
SMS, sent through the provider's SDK to a local stand-in, and the managers'
e-mails, sent over SMTP to a local server; the chat page shows both in a
pane, where a button also sends this week's reports (charts in the groups,
workbooks by e-mail) at once.

The demo is safe to start in a folder that holds a production `.env`: it
takes from the environment only where to listen, the zone, the policy and
how to log and tick (`_FROM_ENVIRONMENT`), never DATABASE_URL, API_TOKEN,
SMTP, SMS or WeChat Work settings (its own go to its local catchers). It keeps its own SQLite file
(data/demo.sqlite3 unless --database) and its own API token, and binds a
loopback address only: the chat page lets anyone speak as any user and hands
out the API token, so `--public` must ask for more, with a warning.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from bot.app import create_app
from bot.clock import utcnow
from bot.demo_outside import Outside
from bot.directory_import import DirectoryError, import_directory
from bot.keys import LEDGER, SETTINGS
from bot.policy import load_policy
from bot.reports.figures import period_containing
from bot.settings import Settings
from bot.wecom.devpage import mount_chat_page
from bot.wecom.emulator import WeComEmulator
from schedulers.reports import deliver_reports

log = structlog.get_logger(__name__)

DEV_PREFIX = "/dev"
DEMO_API_TOKEN = "demo-token"
DEFAULT_ORG_FILE = Path(__file__).resolve().parent.parent / "examples" / "org.yaml"
# Relative to the working folder, like the production default data/complaintbot.sqlite3.
DEFAULT_DATABASE = Path("data") / "demo.sqlite3"
# The only settings the demo takes from the environment (and .env): harmless
# ones. Everything else is the default or the demo's own (see demo_settings).
_FROM_ENVIRONMENT = (
    "http_host", "http_port", "timezone", "policy_file", "log_format", "log_level",
    "sweep_interval_seconds", "outbox_interval_seconds", "wecom_robot_mode",
)
_EVERY_INTERFACE = "0.0.0.0"
# Credentials the bot and the emulator share; they open nothing outside this process.
DEMO_WECOM: dict[str, Any] = {
    "wecom_corp_id": "wwdemo0000000001",
    "wecom_agent_id": 1000001,
    "wecom_secret": SecretStr("demo-app-secret"),
    "wecom_token": "DemoAppToken",
    "wecom_aes_key": "Y29tcGxhaW50Ym90IGRlbW8gYXBwIGNhbGxiYWNrISE",
    "wecom_robot_token": "DemoRobotToken",
    "wecom_robot_aes_key": "Y29tcGxhaW50Ym90IGRlbW8gcm9ib3QgY2FsbGJhY2s",
    "wecom_robot_bot_id": "demo-robot",
    "wecom_robot_secret": SecretStr("demo-robot-secret"),
}


def local_url(settings: Settings) -> str:
    """The bot's own base URL over loopback (a wildcard bind is reached at 127.0.0.1)."""
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


class DemoError(Exception):
    """The demo will not start as configured; the message says what to change."""


def demo_settings(settings: Settings, *, database: Path = DEFAULT_DATABASE) -> Settings:
    """The demo's own settings: of `settings` only the harmless ones
    (`_FROM_ENVIRONMENT`), then the SQLite file `database`, API_TOKEN
    "demo-token", the demo's WeChat Work credentials with the API base at the
    mounted emulator, attachments kept beside the database with links signed
    by a key of this run, and the defaults for the rest (create_demo_app adds
    the SMS and SMTP settings of its local catchers)."""
    kept = {name: getattr(settings, name) for name in _FROM_ENVIRONMENT}
    base = Settings.model_construct(**kept)  # the defaults, not the environment's
    return base.model_copy(update={
        **DEMO_WECOM,
        "database_url": f"sqlite://{database}",
        "api_token": SecretStr(DEMO_API_TOKEN),
        "attachments_dir": database.parent / "attachments",
        "attachments_secret": SecretStr(secrets.token_urlsafe(32)),
        "wecom_api_base": f"{local_url(base)}{DEV_PREFIX}/cgi-bin",
        # Used with WECOM_ROBOT_MODE=long_connection: the emulator's socket.
        "wecom_robot_ws_url": f"{local_url(base)}{DEV_PREFIX}/emulator/ws",
    })


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def demo_host(host: str, *, public: bool) -> str:
    """The address the demo binds: HTTP_HOST if it is a loopback one; with
    `public`, HTTP_HOST if it is not, else every interface."""
    if public:
        return _EVERY_INTERFACE if is_loopback(host) else host
    if not is_loopback(host):
        raise DemoError(
            f"HTTP_HOST={host} is not a loopback address, and the demo's chat page lets "
            "anyone speak as any user and shows the API token: it binds 127.0.0.1. Unset "
            "HTTP_HOST (HTTP_HOST=127.0.0.1 complaintbot demo), or pass --public to serve "
            "it to the network on purpose"
        )
    return host


def create_demo_app(
    settings: Settings, *, org_file: Path = DEFAULT_ORG_FILE, database: Path = DEFAULT_DATABASE
) -> web.Application:
    """The bot (with its scheduler, on the SQLite file `database`) and the
    emulator with its chat page under /dev, to be served at
    `settings.http_host:http_port` (the emulator calls back to that address)."""
    outside = Outside()
    demo = demo_settings(settings, database=database).model_copy(update=outside.settings())
    app = create_app(demo)
    # The SMS stand-in and the SMTP catcher listen before the outbox sends.
    app.cleanup_ctx.insert(0, outside.serve)
    app.cleanup_ctx.append(_load_directory(org_file))  # after the database's entry
    emulator = WeComEmulator(demo)
    base = local_url(demo)
    emulator.connect(own_url=f"{base}{DEV_PREFIX}", bot_url=base)
    mount_chat_page(emulator, demo)
    emulator.app.router.add_get("/api/outside", _outside_view(outside))
    emulator.app.router.add_post("/api/report", _report_now)
    app.router.add_get(DEV_PREFIX, _to_page)
    app.add_subapp(DEV_PREFIX, emulator.app)
    return app


async def _to_page(_request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{DEV_PREFIX}/")


def _outside_view(outside: Outside) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(_request: web.Request) -> web.Response:
        """GET /dev/api/outside: the customer's SMS and the managers' e-mails."""
        return web.json_response(outside.view())

    return view


async def _report_now(request: web.Request) -> web.Response:
    """POST /dev/api/report: this week's reports so far, to every group and
    manager now (the schedule sends the last complete week on Monday); once
    per week, as the scheduled ones."""
    settings, ledger = request.config_dict[SETTINGS], request.config_dict[LEDGER]
    now = utcnow()
    period = period_containing("weekly", now.astimezone(settings.zone).date(), settings.zone)
    stats = await deliver_reports(period, now=now, policy=ledger.policies.current,
                                  zone=settings.zone)
    return web.json_response({"period": period.label, "delivered": len(stats.delivered),
                              "already": stats.already, "failed": len(stats.failed)})


def _load_directory(org_file: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def load(_app: web.Application) -> AsyncIterator[None]:
        summary = await import_directory(org_file)
        log.info("demo_directory_loaded", file=str(org_file), summary=str(summary))
        yield

    return load


def run_demo(
    settings: Settings, *, org_file: Path = DEFAULT_ORG_FILE,
    database: Path = DEFAULT_DATABASE, public: bool = False,
) -> int:
    """Serve the demo until interrupted; print the chat page's URL and the API
    token once the port is bound. Raises DemoError for a non-loopback
    HTTP_HOST without `public`, or a `database` that is the configured
    DATABASE_URL's file."""
    host = demo_host(settings.http_host, public=public)
    if _same_sqlite_file(settings.database_url, database):
        raise DemoError(f"{database} is DATABASE_URL's database; give the demo another "
                        "file with --database FILE")
    load_policy(settings.policy_file)  # fail before binding the port
    if not org_file.is_file():
        raise DirectoryError(f"{org_file}: no such file (give one with --org FILE)")
    app = create_demo_app(settings.model_copy(update={"http_host": host}), org_file=org_file,
                          database=database)
    demo = app[SETTINGS]
    token = demo.api_token.get_secret_value() if demo.api_token else ""
    base = local_url(demo)
    warning = ""
    if public:
        log.warning("demo_public", host=host, port=demo.http_port)
        warning = (f"  警告：--public，演示对网络开放（{host}:{demo.http_port}）：任何能访问"
                   "此端口的人都能看到 API 令牌，并以任何用户的身份发言。只在可信网络中使用。\n")

    def banner(_message: str) -> None:
        print(
            "\ncomplaintbot 演示模式（本地企业微信模拟器，无需真实账号）\n"
            f"{warning}"
            f"  聊天页：  {base}{DEV_PREFIX}/\n"
            f"  API 令牌：{token}\n"
            f"  新建投诉：POST {base}/api/complaints（Authorization: Bearer {token}）\n"
            f"  数据库：  {database}（演示专用）\n"
            "按 Ctrl+C 停止。\n",
            flush=True,
        )

    web.run_app(app, host=demo.http_host, port=demo.http_port, print=banner, access_log=None)
    return 0


def _same_sqlite_file(database_url: str, database: Path) -> bool:
    """True when `database_url` is SQLite on the very file `database`."""
    if not database_url.startswith("sqlite://") or ":memory:" in database_url:
        return False
    configured = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
    return configured.resolve() == database.resolve()
