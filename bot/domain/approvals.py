"""Who approves what (R19, R25): pure look-ups in the policy's authority tables."""

from __future__ import annotations

from decimal import Decimal

from bot.domain.enums import Role
from bot.domain.ticket import Refused
from bot.policy import Policy


def compensation_approver(amount: Decimal, policy: Policy) -> Role:
    """R25: the role of the first band whose upper bound covers the amount (in yuan)."""
    if amount <= 0:
        raise Refused("赔偿金额须大于 0 元。")
    for band in policy.compensation:
        if band.up_to is None or amount <= band.up_to:
            return band.role
    highest = policy.compensation[-1].up_to
    raise Refused(f"赔偿金额 {amount} 元超出权限核决表的上限 {highest} 元，请联系本部。")
