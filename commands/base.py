"""What a chat command receives and returns, whatever transport brought it.

The WeChat Work adapters (webhooks/robot.py, webhooks/app.py) turn a decrypted
callback into a `ChatMessage` or a `CardClick`, hand it to `commands.router`,
and send the `Reply` back the way their channel allows (a passive stream or
template_card for the robot, message/send for the app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot.attachments import Attachments
from bot.domain.attachments import FileFacts
from bot.domain.ticket import Actor
from bot.ledger import Ledger

Channel = Literal["robot", "app"]


@dataclass(frozen=True)
class ChatMessage:
    """A command typed by a person: in a group (@robot) or one-to-one. A photo
    or file sent with it is already accepted and stored (`files`); one that
    could not be (too large, not an accepted type, its download failed) is
    told in `file_problems` (Chinese, for the reply)."""

    userid: str
    text: str
    channel: Channel
    chatid: str | None = None
    msgid: str = ""
    files: tuple[FileFacts, ...] = ()
    file_problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CardClick:
    """A click on a button of a card the bot sent."""

    userid: str
    event_key: str
    task_id: str
    channel: Channel
    chatid: str | None = None
    response_code: str = ""


@dataclass(frozen=True)
class Context:
    """Everything a handler may use besides its arguments."""

    actor: Actor | None
    ledger: Ledger
    now: datetime
    zone: ZoneInfo
    attachments: Attachments | None = None


@dataclass(frozen=True)
class Reply:
    """The answer: markdown always (the fallback everywhere), a template_card
    (WeChat Work JSON) when the answer is a card. `failure` is the error of a
    command that failed (the markdown apologises): a caller holding a
    transaction must roll it back, for the command may have stopped half-way."""

    markdown: str
    card: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    failure: BaseException | None = field(default=None, compare=False, repr=False)
