"""Classification at intake (R3-R7, R26): category, major flag and legal flag
from the explicit input and from the facts of the complaint."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.domain.enums import Category, Channel, Flag, OwnerLevel
from bot.domain.policy import Policy

_RANK = {Category.GENERAL: 0, Category.ESCALATED: 1, Category.IMPORTANT: 2}


@dataclass(frozen=True)
class Classification:
    category: Category
    owner_level: OwnerLevel
    major: bool
    legal: bool
    reasons: tuple[str, ...]


def more_severe(a: Category, b: Category) -> Category:
    """The more severe of two categories."""
    return a if _RANK[a] >= _RANK[b] else b


def mentions_legal_action(
    description: str, flags: Iterable[Flag], policy: Policy, channel: Channel | None = None
) -> bool:
    """R26: the legal_threat flag, a legal channel (a law firm) or a legal
    keyword in the complaint text."""
    if Flag.LEGAL_THREAT in flags or channel in policy.classification.legal_channels:
        return True
    return has_legal_keyword(description, policy)


def has_legal_keyword(text: str, policy: Policy) -> bool:
    """R26: a word of `classification.legal_keywords` in a free text (the
    complaint at intake, any note later)."""
    lowered = text.lower()
    return any(word.lower() in lowered for word in policy.classification.legal_keywords)


def classify(
    *,
    channel: Channel,
    flags: frozenset[Flag],
    description: str,
    explicit: Category | None,
    is_repeat: bool,
    policy: Policy,
) -> Classification:
    """The category a new complaint is dispatched as: the most severe of what
    the agent chose and what the channel, flags and repeat rule imply."""
    rules = policy.classification
    category = explicit or Category.GENERAL
    reasons: list[str] = []
    if explicit:
        reasons.append(f"受理选择：{explicit.label}")
    if channel in rules.escalated_channels or flags & rules.escalated_flags:
        category = more_severe(category, Category.ESCALATED)
        reasons.append("投诉渠道或标记（如地方媒体、召回）须由区域处理，按升级投诉派单（R4）")
    if is_repeat:
        category = more_severe(category, Category.ESCALATED)
        reasons.append("同一车辆再次投诉同一问题，属于重复投诉，按升级投诉派单（R6）")
    if channel in rules.important_channels or flags & rules.important_flags:
        category = more_severe(category, Category.IMPORTANT)
        reasons.append("投诉渠道或标记（如气囊、起火、中央媒体）须由本部处理，按重要投诉派单（R5）")
    major = bool(is_repeat or channel in rules.major_channels or flags & rules.major_flags)
    if major:
        reasons.append("属于重大投诉，已立即通知经销商负责人、品牌事业部和法务部（R7）")
    legal = mentions_legal_action(description, flags, policy, channel)
    if legal:
        reasons.append("涉及法律诉讼，已提示法务（R26）")
    return Classification(
        category=category,
        owner_level=policy.owner_level[category],
        major=major,
        legal=legal,
        reasons=tuple(reasons),
    )
