"""The application's typed keys: what the composition root puts on the app and
the edges (webhooks, schedulers) read back. A module of their own so that only
`bot.app` imports the edges, never the other way round."""

from __future__ import annotations

from aiohttp import web

from bot.attachments import Attachments
from bot.clock import Clock
from bot.ledger import Ledger
from bot.settings import Settings
from bot.storage import Storage
from bot.wecom.client import WeComClient
from bot.wecom.longconn import RobotConnection

SETTINGS = web.AppKey("settings", Settings)
LEDGER = web.AppKey("ledger", Ledger)
CLOCK = web.AppKey("clock", Clock)
WECOM = web.AppKey("wecom", WeComClient)
STORAGE = web.AppKey("storage", Storage)
ATTACHMENTS = web.AppKey("attachments", Attachments)
# Only in long-connection mode: the robot's WebSocket (webhooks/robot.py sets it).
ROBOT_CONNECTION = web.AppKey("robot_connection", RobotConnection)
