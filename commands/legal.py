"""/legal (法务): flag a ticket to legal by hand (R26), when the customer
threatens legal action in words no keyword catches."""

from __future__ import annotations

from bot.domain.transitions import flag_legal
from commands.command import Command, text_command

COMMAND = Command(
    name="legal",
    alias="法务",
    summary="标记投诉涉及法律诉讼并提示法务部（R26）；备注中出现诉讼等字眼时系统也会自动标记",
    usage="/legal 编号 [说明]",
    example="/legal 5 客户称已委托律师",
    handler=text_command(flag_legal),
)
