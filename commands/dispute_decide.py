"""/dispute-decide (异议核实): the call centre upholds a dispute (reassign to
another dealer, or cancel) or rejects it (the clock runs on) (R11)."""

from __future__ import annotations

from bot.domain.ticket import Refused
from bot.domain.transitions import decide_dispute
from commands.base import Reply
from commands.command import Call, Command, UsageError, pop_option, split_number
from models import Dealer

_UPHOLD = {"uphold", "成立"}
_REJECT = {"reject", "不成立", "驳回"}


async def _decide(call: Call) -> Reply:
    number, rest = split_number(call.args)
    code, rest = pop_option(rest, ("dealer", "经销商"))
    decision = rest.lower()
    if decision not in _UPHOLD | _REJECT:
        raise UsageError("请写明核实结果：uphold（成立）或 reject（不成立）。")
    uphold = decision in _UPHOLD
    if code is not None and not uphold:
        raise UsageError("异议不成立时不能改派经销商。")
    new_dealer = None
    names: dict[str, str] = {}
    if code:
        dealer = await Dealer.get_or_none(code=code.upper()).prefetch_related("region")
        if dealer is None:
            raise Refused(f"没有编号为 {code} 的经销商，#{number} 未改派。")
        new_dealer = (dealer.code, dealer.region.code)
        names[dealer.code] = f"{dealer.name}（{dealer.code}）"
    ctx = call.ctx
    return await call.apply(
        number,
        lambda t: decide_dispute(t, call.actor, uphold, ctx.now, new_dealer=new_dealer),
        names=names,
    )


COMMAND = Command(
    name="dispute-decide",
    alias="异议核实",
    summary="核实经销商异议：成立则改派或撤销，不成立则照常计时（R11，仅呼叫中心）",
    usage="/dispute-decide 编号 uphold|reject [dealer=经销商编号]",
    example="/dispute-decide 2 uphold dealer=HZ001",
    handler=_decide,
)
