"""/help (帮助): every command with its alias, or one command in detail."""

from __future__ import annotations

from commands.base import Reply
from commands.command import Call, Command, UsageError

# Replies quote rule numbers (R12); the rules are explained in plain Chinese there.
RULES_DOC = "docs/process.zh-CN.md"
RULES_LINE = f"回复中括号里的规则编号（如 R12）是什么意思，见《投诉处理规则》：{RULES_DOC}"


async def _help(call: Call) -> Reply:
    word = call.args.strip()
    if word:
        wanted = word.lstrip("/／").lower()
        found = next(
            (c for c in call.commands if wanted in (c.name.lower(), c.alias.lower())), None
        )
        if found is None:
            raise UsageError(f"没有命令“{word}”。")
        lines = [f"**/{found.name}（{found.alias}）**", found.summary, f"用法：{found.usage}"]
        if found.example:
            lines.append(f"例如：{found.example}")
        return Reply(markdown="\n".join(lines))
    lines = ["**投诉助手命令**（群里请先 @我；中文命令可不加 /）"]
    lines += [f"- /{c.name}（{c.alias}）：{c.summary}" for c in call.commands]
    lines.append("投诉编号写 1024 或 #1024 均可。发送 /help 命令 查看某个命令的用法。")
    lines.append(RULES_LINE)
    return Reply(markdown="\n".join(lines))


COMMAND = Command(
    name="help",
    alias="帮助",
    summary="列出全部命令，或查看某个命令的用法",
    usage="/help [命令]",
    example="/help 方案",
    handler=_help,
    reads_only=True,
)
