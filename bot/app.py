"""The aiohttp application factory and its lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from bot.attachments import Attachments
from bot.clock import Clock, utcnow
from bot.db import open_database
from bot.keys import ATTACHMENTS, CLOCK, LEDGER, SETTINGS, STORAGE, WECOM
from bot.ledger import Ledger
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.settings import Settings
from bot.storage import Storage
from bot.wecom.client import WeComClient

log = structlog.get_logger(__name__)



def create_app(
    settings: Settings, *, clock: Clock = utcnow, scheduler: bool = True
) -> web.Application:
    """Build the bot's web application. The database opens (and migrates) on startup;
    then, unless `scheduler` is False, the deadline sweep and the outbox run."""
    from schedulers.runner import scheduler_context
    from webhooks import api, files, health, metrics, reports, robot, survey
    from webhooks import app as app_callbacks

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[STORAGE] = Storage(settings.database_url,
                           write_timeout=settings.health_write_timeout_seconds)
    app[ATTACHMENTS] = Attachments.from_settings(settings)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_wecom)
    if scheduler:
        app.cleanup_ctx.append(scheduler_context)  # after the ORM: jobs need its context
    health.setup(app)
    metrics.setup(app)
    api.setup(app)
    robot.setup(app)
    app_callbacks.setup(app)
    reports.setup(app)
    survey.setup(app)
    files.setup(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    policies = PolicyBook(load_policy(settings.policy_file))
    async with open_database(settings.database_url):
        app[STORAGE].opened()
        await policies.store_current()
        app[LEDGER] = Ledger(policies)
        log.info("database_ready", policy=policies.current.version, digest=policies.current.digest)
        yield


async def _wecom(app: web.Application) -> AsyncIterator[None]:
    """The one WeChat Work API client of the process (its pacing is per process)."""
    client = WeComClient.from_settings(app[SETTINGS], clock=app[CLOCK])
    app[WECOM] = client
    yield
    await client.close()
