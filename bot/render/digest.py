"""A digest: a group's waiting notices merged into one post, when more wait
than the group's send limit lets through (schedulers/outbox.py).

Each notice becomes one line, its ticket number first and its headline (the
first line of its markdown) after; the lines are split over as few posts as
the platform's markdown length allows, every post saying how many notices it
carries and that the full ticket is one `/show` away."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Markdown emphasis and <font> colour tags: a digest line is plain text.
_MARKUP = re.compile(r"</?font[^>]*>|\*\*")
# A line longer than this is cut: the headline names the notice, /show has the rest.
_LINE_CHARS = 80
# Room kept for the header's counts, which are filled in last.
_HEADER_SLACK = 16


@dataclass(frozen=True)
class DigestPost:
    """One post of a digest and the indices (into the notices given) it carries."""

    markdown: str
    carries: tuple[int, ...]


def digest_line(number: int, markdown: str) -> str:
    """One notice as a digest line: `#1024` first, then its headline with the
    number taken out (新投诉 #1024（一般投诉）… reads 新投诉（一般投诉）…)."""
    headline = next((line for line in markdown.splitlines() if line.strip()), "")
    text = " ".join(_MARKUP.sub("", headline).split())
    text = re.sub(rf"\s*#{number}(?!\d)\s*", "", text)
    if len(text) > _LINE_CHARS:
        text = text[:_LINE_CHARS - 1] + "…"
    return f"- #{number} {text}".rstrip()


def _header(count: int, part: int, parts: int) -> str:
    which = f"（第 {part}/{parts} 条）" if parts > 1 else ""
    return (f"**本群通知汇总：{count} 条**{which}\n"
            "通知较多，超过群消息的发送频率，合并为一条发送。"
            "详情请 @机器人 发送 /show 编号。")


def digest_posts(notices: list[tuple[int, str]], max_bytes: int) -> list[DigestPost]:
    """The posts of a digest of `notices` ((ticket number, markdown) in
    order), each at most `max_bytes` of UTF-8."""
    lines = [digest_line(number, markdown) for number, markdown in notices]
    budget = max_bytes - len(_header(len(lines), 99, 99).encode()) - _HEADER_SLACK
    chunks: list[list[int]] = [[]]
    size = 0
    for index, line in enumerate(lines):
        cost = len(line.encode()) + 1
        if chunks[-1] and size + cost > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += cost
    return [
        DigestPost(markdown="\n".join([_header(len(chunk), part, len(chunks))]
                                      + [lines[i] for i in chunk]),
                   carries=tuple(chunk))
        for part, chunk in enumerate(chunks, start=1)
    ]
