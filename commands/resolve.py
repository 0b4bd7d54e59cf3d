"""/resolve (处理完毕): the dealer is done; the call centre calls back (R23)."""

from __future__ import annotations

from bot.domain.transitions import resolve
from commands.command import Command, text_command

COMMAND = Command(
    name="resolve",
    alias="处理完毕",
    summary="标记经销商已处理完毕，转呼叫中心回访（R23）",
    usage="/resolve 编号 [说明]",
    example="/resolve 1 已更换阀体，客户满意",
    handler=text_command(resolve),
)
