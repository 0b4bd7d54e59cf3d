"""What a chat command is, what its handler receives, and the argument parsing
every command shares (ticket numbers, key=value fields, usage errors).

Each command module declares its `COMMAND`; `commands.router` composes the
modules in one place (aiogram style: modules declare, one place includes)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.domain.enums import Role
from bot.domain.ticket import Actor, Outcome, Ticket
from bot.ledger import UnderPolicy
from bot.render.chat import render_outcome
from commands.base import CardClick, ChatMessage, Context, Reply
from models import GroupChat

# Ticket numbers are 32-bit ids in the database.
_MAX_NUMBER = 2**31 - 1
_NUMBER = re.compile(r"^[#＃]?(\d+)$")
_YES = {"是", "yes", "y", "true", "1", "接受", "有"}
_NO = {"否", "no", "n", "false", "0", "不接受", "无"}


class UsageError(Exception):
    """The arguments don't fit the command; `reason` is Chinese, the router
    adds the command's usage line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Call:
    """One command as its handler sees it: the parsed-off arguments, the
    message, the context and the known actor."""

    command: Command
    args: str
    msg: ChatMessage
    ctx: Context
    actor: Actor
    commands: tuple[Command, ...]

    async def bound_group(self) -> GroupChat | None:
        """The group the command was typed in, with its dealer and region; None
        one-to-one or in a group not bound with /bind. Read only by the commands
        that ask, to spare every other command the query."""
        if self.msg.chatid is None:
            return None
        # Joined, not prefetched: one query instead of two.
        return await GroupChat.filter(chatid=self.msg.chatid).select_related(
            "dealer", "region").first()

    @property
    def in_group(self) -> bool:
        """Group replies never show the customer's phone or VIN unmasked."""
        return self.msg.chatid is not None

    async def apply(
        self,
        number: int,
        transition: Callable[[Ticket], Outcome] | UnderPolicy,
        *,
        names: Mapping[str, str] | None = None,
    ) -> Reply:
        """Apply a transition through the ledger and reply with the rendered outcome."""
        ctx = self.ctx
        outcome = await ctx.ledger.apply(
            number, transition, actor=self.actor, source="chat", now=ctx.now
        )
        return Reply(markdown=render_outcome(outcome, self.actor, ctx.zone, now=ctx.now,
                                             names=names))


Handler = Callable[[Call], Awaitable[Reply]]
ClickHandler = Callable[[CardClick, Context, Actor, int], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    """A chat command: `/name` or its Chinese alias, a one-line summary for
    /help, the usage line shown with argument errors, the roles allowed to use
    it at all (None: anyone known; the domain decides per ticket), and an
    optional handler for card buttons whose key is `name:NUMBER`, and an
    example shown by `/help name` (the same one docs/guide.zh-CN.md shows).
    `reads_only`: the command changes nothing (at most it records the card
    it answers with), so a copy of its callback may simply run again and
    answer afresh: it runs without the callback's claim and transaction."""

    name: str
    alias: str
    summary: str
    usage: str
    handler: Handler
    roles: frozenset[Role] | None = None
    click: ClickHandler | None = None
    example: str = ""
    reads_only: bool = False


def parse_number(token: str) -> int:
    """A ticket number written as 1024 or #1024."""
    match = _NUMBER.match(token.strip())
    if not match or not 0 < int(match.group(1)) <= _MAX_NUMBER:
        raise UsageError(f"“{token}”不是有效的投诉编号（例如 1024 或 #1024）。")
    return int(match.group(1))


def split_number(args: str) -> tuple[int, str]:
    """The ticket number at the start of the arguments, and the rest."""
    head, _, rest = args.strip().partition(" ")
    if not head:
        raise UsageError("请给出投诉编号（例如 1024 或 #1024）。")
    return parse_number(head), rest.strip()


def text_command(
    transition: Callable[..., Outcome], *, missing: str | None = None, with_policy: bool = False
) -> Handler:
    """The handler of a command shaped `/name 编号 text`: the text (a note or a
    reason, required when `missing` says what to ask for) goes to
    `transition(ticket, actor, text, [policy,] now)` through the ledger."""

    async def handle(call: Call) -> Reply:
        number, text = split_number(call.args)
        if missing and not text:
            raise UsageError(missing)
        now = call.ctx.now
        if with_policy:
            return await call.apply(number, UnderPolicy(
                lambda t, policy: transition(t, call.actor, text, policy, now)))
        return await call.apply(number, lambda t: transition(t, call.actor, text, now))

    return handle


def pop_option(text: str, names: tuple[str, ...]) -> tuple[str | None, str]:
    """Take one `name=value` (value up to the next space) out of the text."""
    keys = "|".join(re.escape(n) for n in names)
    match = re.search(rf"(?:^|\s)(?:{keys})\s*[=＝:：]\s*(\S*)", text, re.IGNORECASE)
    if match is None:
        return None, text.strip()
    rest = (text[: match.start()] + " " + text[match.end():]).strip()
    return match.group(1), rest


def keyed_fields(text: str, keys: Mapping[str, str]) -> dict[str, str]:
    """`key=value` fields whose values may contain spaces up to the next key.

    `keys` maps every accepted spelling (诉求, demand, ...) to the field name."""
    spellings = sorted(keys, key=len, reverse=True)
    pattern = re.compile(
        rf"(?:^|(?<=\s))({'|'.join(re.escape(s) for s in spellings)})\s*[=＝:：]",
        re.IGNORECASE,
    )
    found = list(pattern.finditer(text))
    leading = text[: found[0].start()].strip() if found else text.strip()
    if leading:
        raise UsageError(f"无法识别“{leading}”，请按 字段=内容 的格式填写。")
    by_lower = {k.lower(): v for k, v in keys.items()}
    fields: dict[str, str] = {}
    for match, following in zip(found, [*found[1:], None], strict=True):
        end = following.start() if following else len(text)
        field = by_lower[match.group(1).lower()]
        if field in fields:
            raise UsageError(f"字段“{match.group(1)}”重复填写。")
        fields[field] = text[match.end(): end].strip()
    return fields


def parse_yes_no(value: str, label: str) -> bool:
    """是/否 (or yes/no) as a boolean."""
    word = value.strip().lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise UsageError(f"{label}须填写“是”或“否”，而不是“{value}”。")
