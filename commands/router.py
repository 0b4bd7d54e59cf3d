"""The chat router: every command module is included here, in one place.

The transports (webhooks/robot.py, webhooks/app.py) call `handle_message` for a
typed command and `handle_click` for a card button. Both always return a Reply:
an unknown user, a bad argument, a refusal by the rules or a bug each become a
clear Chinese answer, never an exception."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from bot.domain.ticket import Refused
from bot.metrics import COMMANDS
from bot.storage import STORAGE_MESSAGE, storage_fault
from commands import (
    ack,
    approve,
    assign,
    attach,
    attempt,
    bind,
    close,
    compensate,
    confirm,
    delegate,
    dispute,
    dispute_decide,
    escalate,
    followup,
    legal,
    major,
    new,
    outbox,
    plan,
    reject,
    reopen,
    report,
    resolve,
    respond,
    show,
    stage,
)
from commands import help as help_
from commands import list as list_
from commands.base import CardClick, ChatMessage, Context, Reply
from commands.command import Call, Command, UsageError, parse_number

log = structlog.get_logger(__name__)

_SLASHES = ("/", "／")
# After a Chinese alias typed without a space: 响应1024, 响应#1024.
_ALIAS_JOINS = "#＃0123456789"
FAILURE = "⚠️ 处理命令时出错，已记录，请稍后重试或联系管理员。"
NOT_A_COMMAND = "没有识别到命令。发送 /help 查看全部命令。"


def failure_text(exc: BaseException) -> str:
    """The apology for a failed command: "could not save, try again" when the
    database could not store it (nothing happened), else the generic one."""
    return STORAGE_MESSAGE if storage_fault(exc) is not None else FAILURE


def unknown_user(userid: str) -> Reply:
    """The answer to someone the directory does not know."""
    return Reply(markdown=f"⛔ 您（{userid}）不在投诉处理人员名录中，不能使用投诉助手。"
                          "如需开通请联系管理员。")


class Router:
    """Finds the command a text starts with and runs its handler."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self.commands = tuple(commands)
        words: dict[str, tuple[Command, bool]] = {}
        for cmd in self.commands:
            for word, is_alias in ((cmd.name, False), (cmd.alias, True)):
                if word.lower() in words:
                    raise ValueError(f"two commands answer to {word!r}")
                words[word.lower()] = (cmd, is_alias)
        # Longest first, so /dispute-decide is not read as /dispute.
        self._words = sorted(words.items(), key=lambda item: len(item[0]), reverse=True)

    def find(self, word: str) -> Command | None:
        """The command named `word` (/respond, respond or 响应)."""
        word = word.strip().lstrip("".join(_SLASHES)).lower()
        return next((cmd for w, (cmd, _) in self._words if w == word), None)

    def match(self, text: str) -> tuple[Command, str] | None:
        """The command the text starts with and its arguments; None when the
        text is not a command. English names need the slash, aliases don't."""
        body = " ".join(text.replace("\u3000", " ").split())
        slashed = body.startswith(_SLASHES)
        if slashed:
            body = body[1:]
        lowered = body.lower()
        for word, (cmd, is_alias) in self._words:
            if not (slashed or is_alias) or not lowered.startswith(word):
                continue
            rest = body[len(word):]
            if not rest or rest[0] == " " or (is_alias and rest[0] in _ALIAS_JOINS):
                return cmd, rest.strip()
        return None

    def reads_only(self, msg: ChatMessage) -> bool:
        """Whether the message is a command that changes nothing (`Command.reads_only`)."""
        found = self.match(msg.text)
        return not (msg.files or msg.file_problems) and found is not None and found[0].reads_only

    async def handle_message(self, msg: ChatMessage, ctx: Context) -> Reply:
        """Run the command in a typed message and answer it."""
        if ctx.actor is None:
            log.info("chat_unknown_user", userid=msg.userid, chatid=msg.chatid)
            return unknown_user(msg.userid)
        found = self.match(msg.text)
        if (msg.files or msg.file_problems) and (found is None or found[0] is not attach.COMMAND):
            # Photos and files go to /attach whatever the words with them say:
            # a bare ticket number attaches them, anything else holds them.
            found = attach.COMMAND, msg.text.strip()
        if found is None:
            word = msg.text.strip().split(" ", 1)[0]
            if word.startswith(_SLASHES):
                return Reply(markdown=f"未知命令 {word}。发送 /help 查看全部命令。")
            return Reply(markdown=NOT_A_COMMAND)
        cmd, args = found
        if cmd.roles is not None and ctx.actor.role not in cmd.roles:
            COMMANDS.labels(command=cmd.name, outcome="forbidden").inc()
            allowed = "、".join(sorted(role.label for role in cmd.roles))
            return Reply(markdown=f"⛔ 只有{allowed}可以使用 /{cmd.name}。")
        try:
            call = Call(command=cmd, args=args, msg=msg, ctx=ctx, actor=ctx.actor,
                        commands=self.commands)
            reply = await cmd.handler(call)
        except UsageError as exc:
            COMMANDS.labels(command=cmd.name, outcome="usage_error").inc()
            return Reply(markdown=f"❌ {exc.reason}\n用法：{cmd.usage}")
        except Refused as exc:
            COMMANDS.labels(command=cmd.name, outcome="refused").inc()
            log.info("chat_command_refused", command=cmd.name, userid=msg.userid)
            return Reply(markdown=f"⛔ {exc.reason}")
        except Exception as exc:
            COMMANDS.labels(command=cmd.name, outcome="failed").inc()
            log.exception("chat_command_failed", command=cmd.name, userid=msg.userid,
                          chatid=msg.chatid, msgid=msg.msgid)
            return Reply(markdown=failure_text(exc), failure=exc)
        COMMANDS.labels(command=cmd.name, outcome="ok").inc()
        log.info("chat_command", command=cmd.name, userid=msg.userid, chatid=msg.chatid)
        return reply

    async def handle_click(self, click: CardClick, ctx: Context) -> Reply:
        """Apply a card button (key `action:NUMBER`) and answer with the updated card."""
        action, _, number_text = click.event_key.partition(":")
        cmd = self.find(action) if action else None
        try:
            number = parse_number(number_text)
        except UsageError:
            number = None
        if ctx.actor is None:
            log.info("chat_unknown_user", userid=click.userid, chatid=click.chatid)
            return unknown_user(click.userid)
        if cmd is None or cmd.click is None or number is None:
            log.info("card_click_unknown", key=click.event_key[:64], userid=click.userid)
            return Reply(markdown="⚠️ 这张卡片的操作已失效。请发送 /show 编号 查看投诉的最新状态。")
        try:
            reply = await cmd.click(click, ctx, ctx.actor, number)
        except Refused as exc:
            COMMANDS.labels(command=cmd.name, outcome="refused").inc()
            return Reply(markdown=f"⛔ {exc.reason}")
        except Exception as exc:
            COMMANDS.labels(command=cmd.name, outcome="failed").inc()
            log.exception("card_click_failed", command=cmd.name, userid=click.userid,
                          ticket=number)
            return Reply(markdown=failure_text(exc), failure=exc)
        COMMANDS.labels(command=cmd.name, outcome="ok").inc()
        log.info("card_click", command=cmd.name, userid=click.userid, ticket=number)
        return reply


ROUTER = Router(
    [
        help_.COMMAND,
        show.COMMAND,
        list_.COMMAND,
        new.COMMAND,
        confirm.COMMAND,
        respond.COMMAND,
        plan.COMMAND,
        followup.COMMAND,
        attempt.COMMAND,
        resolve.COMMAND,
        close.COMMAND,
        escalate.COMMAND,
        dispute.COMMAND,
        dispute_decide.COMMAND,
        assign.COMMAND,
        reopen.COMMAND,
        stage.COMMAND,
        approve.COMMAND,
        reject.COMMAND,
        compensate.COMMAND,
        delegate.COMMAND,
        major.COMMAND,
        legal.COMMAND,
        ack.COMMAND,
        bind.COMMAND,
        outbox.COMMAND,
        report.COMMAND,
        attach.COMMAND,
    ]
)


async def handle_message(msg: ChatMessage, ctx: Context) -> Reply:
    """Entry point for the transports: a typed command (group @robot or one-to-one)."""
    return await ROUTER.handle_message(msg, ctx)


def reads_only(msg: ChatMessage) -> bool:
    """For the transports: whether the message's command changes nothing."""
    return ROUTER.reads_only(msg)


async def handle_click(click: CardClick, ctx: Context) -> Reply:
    """Entry point for the transports: a click on a card button."""
    return await ROUTER.handle_click(click, ctx)
