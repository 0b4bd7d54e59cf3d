"""/major (重大): the store or region judges a complaint major (R7); the
dealer's leaders, brand division and legal are told (R8, R9)."""

from __future__ import annotations

from bot.domain.transitions import mark_major
from commands.command import Command, text_command

COMMAND = Command(
    name="major",
    alias="重大投诉",
    summary="标记为重大投诉，立即通知经销商负责人、总经理、品牌事业部和法务部（R7–R9）",
    usage="/major 编号 原因",
    handler=text_command(mark_major, missing="请说明判定为重大投诉的原因。"),
    example="/major 1024 客户在展厅闹事",
)
