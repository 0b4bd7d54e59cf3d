"""/attempt (联系未果): a failed attempt to reach the customer (R16). Three in
three different time slots within three days close the ticket as unreachable."""

from __future__ import annotations

from bot.domain.enums import Slot
from bot.domain.policy import Policy
from bot.domain.ticket import Outcome, Ticket
from bot.domain.transitions import attempt, slot_of
from bot.ledger import UnderPolicy
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number

_SLOTS = {word: slot for slot in Slot for word in (slot.value, slot.label)}


async def _attempt(call: Call) -> Reply:
    number, rest = split_number(call.args)
    ctx = call.ctx
    slot = _SLOTS.get(rest.lower()) if rest else None
    if rest and slot is None:
        raise UsageError(f"时段须为 上午、下午 或 晚上（morning/afternoon/evening），"
                         f"而不是“{rest}”。")

    def attempted(ticket: Ticket, policy: Policy) -> Outcome:
        # Without a slot, the one it is now by the ticket's policy.
        when = slot if slot is not None else slot_of(ctx.now, policy, ctx.zone)
        return attempt(ticket, call.actor, when, policy, ctx.now)

    return await call.apply(number, UnderPolicy(attempted))


COMMAND = Command(
    name="attempt",
    alias="联系未果",
    summary="记录一次联系客户未果，时段默认为当前时段（R16：3 天内 3 个不同时段未果即结案）",
    usage="/attempt 编号 [上午|下午|晚上]",
    example="/attempt 3 上午",
    handler=_attempt,
)
