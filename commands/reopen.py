"""/reopen (重新打开): a closed or staged-closed ticket comes back to its owner
with a fresh clock."""

from __future__ import annotations

from bot.domain.transitions import reopen
from commands.command import Command, text_command

COMMAND = Command(
    name="reopen",
    alias="重新打开",
    summary="重新打开已结案或阶段性结案的投诉，重新计时（区域、本部或呼叫中心）",
    usage="/reopen 编号 [原因]",
    example="/reopen 4 客户再次来电",
    handler=text_command(reopen),
)
