"""/confirm (确认): the call centre confirms a complaint a store recorded
itself (a walk-in or a call to the store, 4S-store rules), which ends the
clock that reminds it to."""

from __future__ import annotations

from bot.domain.transitions import confirm_store
from commands.command import Command, text_command

COMMAND = Command(
    name="confirm",
    alias="确认",
    summary="呼叫中心确认经销商在门店登记的投诉（到店或打到店里的投诉），确认前会按时限提醒",
    usage="/confirm 编号 [说明]",
    example="/confirm 1 已核对，客户信息无误",
    handler=text_command(confirm_store),
)
