"""/close (结案): the call centre's callback confirms the solution, records the
customer's satisfaction and closes the ticket (R15, R23)."""

from __future__ import annotations

from bot.domain.transitions import close
from commands.base import Reply
from commands.command import Call, Command, UsageError, pop_option, split_number


def parse_satisfaction(text: str) -> tuple[int, str]:
    """`satisfaction=5` or `满意度=5` anywhere in the text, and the rest as the note."""
    value, note = pop_option(text, ("satisfaction", "满意度"))
    if value is None:
        raise UsageError("请填写客户满意度（满意度=1 到 5）。")
    if value not in {"1", "2", "3", "4", "5"}:
        raise UsageError(f"满意度须为 1 到 5 的整数，而不是“{value}”。")
    return int(value), note


async def _close(call: Call) -> Reply:
    number, rest = split_number(call.args)
    satisfaction, note = parse_satisfaction(rest)
    ctx = call.ctx
    return await call.apply(
        number, lambda t: close(t, call.actor, satisfaction, note, ctx.now)
    )


COMMAND = Command(
    name="close",
    alias="结案",
    summary="呼叫中心回访确认后结案并记录满意度（R15、R23，仅呼叫中心）",
    usage="/close 编号 满意度=1..5 [说明]",
    example="/close 1 满意度=5 客户认可处理结果",
    handler=_close,
)
