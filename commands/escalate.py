"""/escalate (升级): hand the ticket up one level — general to the region,
escalated to HQ (R4, R5)."""

from __future__ import annotations

from bot.domain.transitions import escalate
from commands.command import Command, text_command

COMMAND = Command(
    name="escalate",
    alias="升级",
    summary="升级投诉：一般投诉转区域，升级投诉转本部（R4、R5）",
    usage="/escalate 编号 原因",
    example="/escalate 3 客户拒绝方案，要求退车",
    handler=text_command(escalate, missing="升级须说明原因。"),
)
