"""/bind (绑定): an administrator binds the group the command is typed in to a
dealer, a region, HQ or the call centre. The binding decides where the bot
posts a ticket's traffic and what /list shows there."""

from __future__ import annotations

import structlog

from bot.domain.enums import Role
from bot.domain.ticket import Refused
from commands.base import Reply
from commands.command import Call, Command, UsageError
from models import Dealer, GroupChat, Region

log = structlog.get_logger(__name__)

_KINDS = {
    "dealer": "dealer", "经销商": "dealer",
    "region": "region", "区域": "region",
    "hq": "hq", "本部": "hq",
    "call_centre": "call_centre", "呼叫中心": "call_centre",
}


async def _bind(call: Call) -> Reply:
    chatid = call.msg.chatid
    if chatid is None:
        raise Refused("/bind 只能在群聊中使用：请在要绑定的群里 @投诉助手 发送。")
    words = call.args.split()
    kind = _KINDS.get(words[0].lower()) if words else None
    if kind is None:
        raise UsageError("请写明绑定对象：dealer 编号、region 编号、hq 或 call_centre。")
    needs_code = kind in ("dealer", "region")
    if len(words) != (2 if needs_code else 1):
        raise UsageError("dealer 和 region 后须跟一个编号，hq 和 call_centre 不跟编号。")
    dealer = region = None
    if kind == "dealer":
        dealer = await Dealer.get_or_none(code=words[1].upper())
        if dealer is None:
            raise Refused(f"没有编号为 {words[1]} 的经销商，本群未绑定。")
        label = f"经销商 {dealer.name}（{dealer.code}）"
    elif kind == "region":
        region = await Region.get_or_none(code=words[1].upper())
        if region is None:
            raise Refused(f"没有编号为 {words[1]} 的区域，本群未绑定。")
        label = f"区域 {region.name}（{region.code}）"
    else:
        label = "本部" if kind == "hq" else "呼叫中心"
    group, created = await GroupChat.update_or_create(
        chatid=chatid, defaults={"kind": kind, "dealer": dealer, "region": region}
    )
    log.info("group_bound", chatid=chatid, kind=kind, created=created, by=call.actor.userid)
    return Reply(markdown=f"✅ 本群已绑定为{label}的投诉群。此后该单位的投诉通知发到本群，"
                          "/list 默认列出其投诉。")


COMMAND = Command(
    name="bind",
    alias="绑定",
    summary="把本群绑定到经销商、区域、本部或呼叫中心（仅管理员，仅群聊）",
    usage="/bind dealer 编号 | region 编号 | hq | call_centre",
    example="/bind dealer SH001",
    handler=_bind,
    roles=frozenset({Role.ADMIN}),
)
