"""/compensate (赔偿): ask for a compensation in yuan; the policy's authority
table routes it to the approver (R25), who gets a card with 批准 / 驳回."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from bot.approvals import open_request
from bot.domain.approvals import request_compensation, yuan
from bot.ledger import UnderPolicy
from commands.base import Reply
from commands.command import Call, Command, UsageError, split_number
from models import Staff


def parse_amount(token: str) -> Decimal:
    """An amount in yuan: 2000, 2,000.50, ¥2000 or 2000元; at most two decimals."""
    text = token.strip().lstrip("¥￥").removesuffix("元").replace(",", "").replace("，", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"“{token}”不是有效的金额（单位：元，例如 2000 或 2000.50）。") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise UsageError(f"“{token}”不是有效的金额（最多两位小数）。")
    return amount


async def _compensate(call: Call) -> Reply:
    number, rest = split_number(call.args)
    head, _, reason = rest.partition(" ")
    if not head:
        raise UsageError("请给出赔偿金额（元）。")
    amount = parse_amount(head)
    reason = reason.strip()
    if not reason:
        raise UsageError("请说明赔偿原因。")
    ctx = call.ctx
    outcome, req = await open_request(
        ctx.ledger, number,
        UnderPolicy(lambda t, policy: request_compensation(t, call.actor, amount, reason,
                                                          policy, ctx.now)),
        kind="compensation", actor=call.actor, reason=reason, now=ctx.now, zone=ctx.zone,
        amount=amount,
    )
    if outcome.ticket.about_staff or outcome.ticket.about_staff_name:
        # R22: the approver may be the one above the employee the complaint is
        # about; naming them in a group would tell whom it is about.
        routed = "已送有审批权限的人"
    else:
        approver = await Staff.get(userid=req.approver_userid)
        routed = f"待 {approver.name}（{approver.role.label}）"
    return Reply(markdown=f"📝 #{number} 已申请赔偿 {yuan(amount)}（{call.actor.display}），"
                          f"按赔偿审批权限表，{routed}审批（R25，审批单 {req.id}）。"
                          f"\n> 原因：{reason}")


COMMAND = Command(
    name="compensate",
    alias="赔偿",
    summary="申请赔偿（单位：元），按金额大小送有权审批的人（R25 赔偿审批权限）",
    usage="/compensate 编号 金额 原因",
    handler=_compensate,
    example="/compensate 1024 2000 维修期间代步车费用",
)
