"""`complaintbot demo`: the bot and a local WeChat Work in one process.

No WeChat Work account needed. The bot runs with fixed demo credentials
against `WeComEmulator`, mounted on the bot's own server under /dev (the
emulated API at /dev/cgi-bin, the chat page at /dev/), so one port serves
both. Nothing takes a shortcut: the emulator signs and encrypts each callback
and posts it over loopback HTTP to /wecom/robot or /wecom/app, and the
scheduler's outbox sends through `WeComClient` to the emulated API, so group
notices and app cards show up on the chat page as they would in WeChat Work.
The example directory is loaded at start (idempotent); the database is
DATABASE_URL's, SQLite by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from bot.app import create_app
from bot.directory_import import DirectoryError, import_directory
from bot.keys import SETTINGS
from bot.policy import load_policy
from bot.settings import Settings
from bot.wecom.devpage import mount_chat_page
from bot.wecom.emulator import WeComEmulator

log = structlog.get_logger(__name__)

DEV_PREFIX = "/dev"
DEMO_API_TOKEN = "demo-token"
DEFAULT_ORG_FILE = Path(__file__).resolve().parent.parent / "examples" / "org.yaml"
# Credentials the bot and the emulator share; they open nothing outside this process.
DEMO_WECOM: dict[str, Any] = {
    "wecom_corp_id": "wwdemo0000000001",
    "wecom_agent_id": 1000001,
    "wecom_secret": SecretStr("demo-app-secret"),
    "wecom_token": "DemoAppToken",
    "wecom_aes_key": "Y29tcGxhaW50Ym90IGRlbW8gYXBwIGNhbGxiYWNrISE",
    "wecom_robot_token": "DemoRobotToken",
    "wecom_robot_aes_key": "Y29tcGxhaW50Ym90IGRlbW8gcm9ib3QgY2FsbGJhY2s",
}


def local_url(settings: Settings) -> str:
    """The bot's own base URL over loopback (a wildcard bind is reached at 127.0.0.1)."""
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def demo_settings(settings: Settings) -> Settings:
    """`settings` with the demo's WeChat Work credentials, the API base pointing
    at the mounted emulator, and API_TOKEN "demo-token" unless one is set."""
    update = {**DEMO_WECOM, "wecom_api_base": f"{local_url(settings)}{DEV_PREFIX}/cgi-bin"}
    if settings.api_token is None:
        update["api_token"] = SecretStr(DEMO_API_TOKEN)
    return settings.model_copy(update=update)


def create_demo_app(settings: Settings, *, org_file: Path = DEFAULT_ORG_FILE) -> web.Application:
    """The bot (with its scheduler) and the emulator with its chat page under
    /dev, to be served at `settings.http_host:http_port` (the emulator calls
    back to that address)."""
    demo = demo_settings(settings)
    app = create_app(demo)
    app.cleanup_ctx.append(_load_directory(org_file))  # after the database's entry
    emulator = WeComEmulator(demo)
    base = local_url(demo)
    emulator.connect(own_url=f"{base}{DEV_PREFIX}", bot_url=base)
    mount_chat_page(emulator, demo)
    app.router.add_get(DEV_PREFIX, _to_page)
    app.add_subapp(DEV_PREFIX, emulator.app)
    return app


async def _to_page(_request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{DEV_PREFIX}/")


def _load_directory(org_file: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def load(_app: web.Application) -> AsyncIterator[None]:
        summary = await import_directory(org_file)
        log.info("demo_directory_loaded", file=str(org_file), summary=str(summary))
        yield

    return load


def run_demo(settings: Settings, *, org_file: Path = DEFAULT_ORG_FILE) -> int:
    """Serve the demo until interrupted; print the chat page's URL and the API
    token once the port is bound."""
    load_policy(settings.policy_file)  # fail before binding the port
    if not org_file.is_file():
        raise DirectoryError(f"{org_file}: no such file (give one with --org FILE)")
    app = create_demo_app(settings, org_file=org_file)
    demo = app[SETTINGS]
    token = demo.api_token.get_secret_value() if demo.api_token else ""
    base = local_url(demo)

    def banner(_message: str) -> None:
        print(
            "\ncomplaintbot 演示模式（本地企业微信模拟器，无需真实账号）\n"
            f"  聊天页：  {base}{DEV_PREFIX}/\n"
            f"  API 令牌：{token}\n"
            f"  新建投诉：POST {base}/api/complaints（Authorization: Bearer {token}）\n"
            f"  数据库：  {demo.database_url.split('@')[-1]}\n"
            "按 Ctrl+C 停止。\n",
            flush=True,
        )

    web.run_app(app, host=demo.http_host, port=demo.http_port, print=banner, access_log=None)
    return 0
