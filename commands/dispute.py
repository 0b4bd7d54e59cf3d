"""/dispute (异议): within 24 h of dispatch the dealer says the ticket is not
theirs or not a complaint; the call centre verifies (R11)."""

from __future__ import annotations

from bot.domain.transitions import dispute
from commands.command import Command, text_command

COMMAND = Command(
    name="dispute",
    alias="异议",
    summary="对派单提出异议（派错经销商、不属于投诉），由呼叫中心核实（R11：派单后 24 小时内）",
    usage="/dispute 编号 原因",
    example="/dispute 2 该车在杭州西湖店购买和维修，派错经销商",
    handler=text_command(dispute, missing="提出异议须说明原因。", with_policy=True),
)
