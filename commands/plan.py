"""/plan (方案): the first solution of R13 — demand, cause, solution, whether
the customer accepts, whether a return visit is planned."""

from __future__ import annotations

from bot.domain.ticket import Solution
from bot.domain.transitions import propose_solution
from bot.ledger import UnderPolicy
from commands.base import Reply
from commands.command import Call, Command, UsageError, keyed_fields, parse_yes_no, split_number

_KEYS = {
    "诉求": "demand", "demand": "demand",
    "原因": "cause", "cause": "cause",
    "方案": "solution", "solution": "solution",
    "接受": "customer_accepts", "accepts": "customer_accepts",
    "回访": "return_visit", "visit": "return_visit",
}
_LABELS = {"demand": "诉求", "cause": "原因", "solution": "方案",
           "customer_accepts": "接受", "return_visit": "回访"}


def parse_solution(text: str) -> Solution:
    """The five R13 fields from `诉求=… 原因=… 方案=… 接受=是 回访=否`."""
    fields = keyed_fields(text, _KEYS)
    missing = [label for name, label in _LABELS.items() if not fields.get(name)]
    if missing:
        raise UsageError(f"首次方案缺少：{'、'.join(missing)}。")
    return Solution(
        demand=fields["demand"],
        cause=fields["cause"],
        solution=fields["solution"],
        customer_accepts=parse_yes_no(fields["customer_accepts"], "接受"),
        return_visit=parse_yes_no(fields["return_visit"], "回访"),
    )


async def _plan(call: Call) -> Reply:
    number, rest = split_number(call.args)
    solution = parse_solution(rest)
    ctx = call.ctx
    return await call.apply(number, UnderPolicy(
        lambda t, policy: propose_solution(t, call.actor, solution, policy, ctx.now)))


COMMAND = Command(
    name="plan",
    alias="方案",
    summary="提交首次方案：客户诉求、原因分析、解决方案、客户是否接受、是否回访（R13：24 小时内）",
    usage="/plan 编号 诉求=… 原因=… 方案=… 接受=是|否 回访=是|否",
    example="/plan 1 诉求=更换变速箱 原因=阀体磨损 方案=免费更换阀体并延保一年 接受=是 回访=是",
    handler=_plan,
)
