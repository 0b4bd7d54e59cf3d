"""/outbox (发送队列): an administrator sees the notices the bot gave up on
(dead letters) and puts one back in the queue, in chat, as `complaintbot
outbox list|retry` does on the server. Without this, a dead notice waits
silently for someone with a shell."""

from __future__ import annotations

import structlog

from bot.domain.enums import Role
from bot.domain.ticket import Refused
from commands.base import Reply
from commands.command import Call, Command, UsageError
from models import Notification
from schedulers.outbox import revive

log = structlog.get_logger(__name__)

SHOWN = 20
_LIST = {"", "list", "列表"}
_RETRY = {"retry", "重试"}
_MEDIA = {"group": "群消息", "app": "应用消息", "robot": "机器人回复",
          "email": "邮件", "sms": "短信"}


def _line(row: Notification, call: Call) -> str:
    number = row.ticket_id  # type: ignore[attr-defined]
    about = f"投诉 #{number}" if number is not None else "报表/回复"
    queued = row.created_at.astimezone(call.ctx.zone).strftime("%m-%d %H:%M")
    error = " ".join(row.last_error.split())[:60] or "无"
    medium = _MEDIA.get(row.medium, row.medium)
    return (f"- 编号 {row.id}：{about}，{medium}（{row.kind}），{queued} 入队，"
            f"已试 {row.tries} 次；最后错误：{error}")


async def _list(call: Call) -> Reply:
    dead = await Notification.filter(status="dead").order_by("-id").limit(SHOWN + 1)
    waiting = await Notification.filter(status__in=("pending", "sending")).count()
    if not dead:
        return Reply(markdown=f"✅ 没有发送失败的通知。队列中待发送 {waiting} 条。")
    lines = [f"**发送失败、已停止重试的通知**（队列中另有待发送 {waiting} 条）"]
    lines += [_line(row, call) for row in dead[:SHOWN]]
    if len(dead) > SHOWN:
        lines.append(f"仅显示最近 {SHOWN} 条；全部请在服务器上运行 complaintbot outbox list。")
    lines.append("先排除原因（如企业微信或邮件服务故障），再发送 /outbox retry 编号 重新发送。")
    return Reply(markdown="\n".join(lines))


async def _outbox(call: Call) -> Reply:
    words = call.args.split()
    action = words[0].lower() if words else ""
    if action in _LIST and len(words) <= 1:
        return await _list(call)
    if action in _RETRY:
        if len(words) != 2 or not words[1].lstrip("#＃").isdigit():
            raise UsageError("请给出通知编号（/outbox 列出的编号）。")
        notification = int(words[1].lstrip("#＃"))
        if notification >= 2**31 or not await revive(notification, now=call.ctx.now):
            raise Refused(f"没有编号为 {notification} 的发送失败通知。")
        log.info("notification_revived", id=notification, by=call.actor.userid)
        return Reply(markdown=f"✅ 通知 {notification} 已重新排队，稍后自动发送。")
    raise UsageError("请写 list（列表）或 retry（重试）编号。")


COMMAND = Command(
    name="outbox",
    alias="发送队列",
    summary="查看发送失败的通知，重新发送（仅管理员）",
    usage="/outbox [list] | /outbox retry 通知编号",
    example="/outbox retry 42",
    handler=_outbox,
    roles=frozenset({Role.ADMIN}),
)
