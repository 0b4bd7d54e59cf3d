"""/followup (回访): a return visit to the customer (R14); the visit that takes
the count above the limit escalates the ticket to the region."""

from __future__ import annotations

from bot.domain.transitions import followup
from commands.command import Command, text_command

COMMAND = Command(
    name="followup",
    alias="回访",
    summary="记录一次回访跟踪（R14：48 小时内；超过 2 次自动升级）",
    usage="/followup 编号 [说明]",
    example="/followup 1 客户反馈换件后正常",
    handler=text_command(followup, with_policy=True),
)
