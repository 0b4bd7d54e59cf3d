"""/attach (附件): put the photos and files one has just sent on a ticket.

A photo or file sent to the app or the robot arrives already checked and
stored (webhooks/media.py). With a ticket number in the same message (a
group's `@投诉助手 /attach 1024` with photos, or just `#1024`), it goes on
that ticket at once. Without one it waits (policy `attachments.pending_window`)
until the same person writes `/attach 1024` in the same chat. The router sends
every message that carries files here, whatever its text.

R22: in a group, nothing of a complaint about an employee is shown, not even
the names of its files.
"""

from __future__ import annotations

import re

from bot.domain.permissions import group_may_see_details
from bot.domain.ticket import Refused
from bot.ledger import snapshot
from bot.render.attachments import type_label
from bot.render.notices import duration_text
from commands.base import Reply
from commands.command import Call, Command, parse_number
from models import Ticket as TicketRow

_BARE_NUMBER = re.compile(r"^[#＃]?\d+$")


def _number_given(call: Call) -> int | None:
    """The ticket number the message names; None when it names none (photos
    with other words wait for /attach). A lone /attach with a wrong number is
    a usage error."""
    args = call.args.strip()
    if not args:
        return None
    if _BARE_NUMBER.match(args) or not (call.msg.files or call.msg.file_problems):
        return parse_number(args)
    return None


def _problems(call: Call) -> str:
    return "".join(f"\n⚠️ {p}" for p in call.msg.file_problems)


async def _attach(call: Call) -> Reply:
    kit, msg, now = call.ctx.attachments, call.msg, call.ctx.now
    if kit is None:
        raise Refused("附件功能未启用，请联系管理员。")
    rules = call.ctx.ledger.policies.current.attachments
    window = duration_text(rules.pending_window)
    number = _number_given(call)
    if number is None:
        if msg.files:
            await kit.hold(msg.files, userid=msg.userid, chatid=msg.chatid, source=msg.channel,
                           now=now, rules=rules)
            names = "、".join(f"{f.name}（{type_label(f.content_type)}）" for f in msg.files)
            return Reply(markdown=f"📎 已收到 {len(msg.files)} 个文件：{names}。\n"
                                  f"请在 {window}内发送 /attach 投诉编号（例如 /attach 1024），"
                                  "归档到对应的投诉。" + _problems(call))
        if msg.file_problems:
            return Reply(markdown="❌ 文件未能保存：" + _problems(call))
        raise Refused("请给出投诉编号，例如 /attach 1024。")
    pending = await kit.take_pending(msg.userid, msg.chatid, now, rules)
    if not msg.files and not pending:
        raise Refused(f"没有等待归档到 #{number} 的图片或文件：请先发送图片或文件，"
                      f"再在 {window}内发送 /attach {number}。" + _problems(call))
    rows = await kit.attach(call.ctx.ledger, number, msg.files, actor=call.actor,
                            source=msg.channel, now=now, pending=pending)
    ticket = snapshot(await TicketRow.get(id=number))
    if call.in_group and not group_may_see_details(ticket):
        return Reply(markdown=f"📎 已为 #{number} 归档 {len(rows)} 个附件。"
                              f"处理人可私聊机器人发送 /show {number} 查看。" + _problems(call))
    names = "\n".join(f"- {r.name}（{type_label(r.content_type)}）" for r in rows)
    return Reply(markdown=f"📎 已为 #{number} 归档 {len(rows)} 个附件：\n{names}\n"
                          f"发送 /show {number} 可查看全部附件和下载链接。" + _problems(call))


COMMAND = Command(
    name="attach",
    alias="附件",
    summary="把刚发送的图片或文件归档到投诉（先发图片或文件，再发 /attach 编号）",
    usage="/attach 编号",
    handler=_attach,
    example="/attach 1",
)
