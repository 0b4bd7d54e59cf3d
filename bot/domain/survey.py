"""R23: the satisfaction survey the customer answers from the closing SMS.

A survey link names one closing of one ticket (its `closed` event). It is
refused once that closing has been answered, once its time has run out
(policy `survey.valid_for`, counted from the closing), and when the ticket
was reopened since: a new closing sends a new link.

Both scores can exist: the call centre records one at /close (the callback),
the customer may answer later. The customer's own answer wins: it becomes the
ticket's score of record (`satisfaction`, what the reports average), while
the call centre's stays in the history of the closing and of the answer. A
customer who never answers leaves the call centre's score in place.

A score at or below `survey.low_score` tells the dealer's managers (app
message) and the region's group; with `survey.low_score_reopens` the ticket
also goes back to its owner with fresh clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.domain.enums import Role, Status
from bot.domain.policy import Policy
from bot.domain.ticket import Actor, Audience, Medium, Notice, Outcome, Refused, Ticket
from bot.domain.transitions import reopened, reopened_notice

CUSTOMER = Actor(userid="customer", role=Role.CALL_CENTRE, name="客户（满意度评价）")
"""Who answers a survey: the customer, through the link the call centre's SMS sent."""

# Longest comment kept; a phone keyboard can paste far more than anyone reads.
MAX_COMMENT = 500


@dataclass(frozen=True)
class Closing:
    """The closing a survey link is for: its `closed` event and when it happened."""

    event: int
    at: datetime


class SurveyRefused(Refused):
    """A survey link that cannot be answered; `why` is "used", "expired" or "reopened"."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(reason)
        self.why = why


def _span(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    return f"{hours // 24} 天" if hours % 24 == 0 else f"{hours} 小时"


def survey_refusal(
    ticket: Ticket, closing: Closing, policy: Policy, now: datetime
) -> SurveyRefused | None:
    """Why the link of `closing` cannot be answered at `now`, or None when it can."""
    number = ticket.number
    answered = ticket.survey_answered_at
    if answered is not None and answered >= closing.at:
        return SurveyRefused(
            f"投诉 #{number} 的评价已经提交过了，每个评价链接只能使用一次。感谢您的反馈！",
            "used")
    valid_for = policy.survey.valid_for
    if now >= closing.at + valid_for:
        return SurveyRefused(
            f"投诉 #{number} 的评价链接已过期（结案后 {_span(valid_for)}内有效），无法再提交。"
            "如仍有问题，请联系为您服务的经销商。", "expired")
    if ticket.status is not Status.CLOSED or ticket.closed_at != closing.at:
        return SurveyRefused(
            f"投诉 #{number} 已重新进入处理，此评价链接已失效；"
            "处理完毕后我们会再发送新的评价链接。", "reopened")
    return None


def answer_survey(
    ticket: Ticket, closing: Closing, score: int, comment: str, policy: Policy, now: datetime
) -> Outcome:
    """R23: the customer's 1-5 stars and comment for `closing`, stored as the
    ticket's score of record; a low score tells the dealer's managers and
    the region, and reopens the ticket when the policy says so."""
    refusal = survey_refusal(ticket, closing, policy, now)
    if refusal is not None:
        raise refusal
    if not 1 <= score <= 5:
        raise Refused(f"投诉 #{ticket.number}：请选择 1 到 5 颗星后再提交。")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise Refused(f"投诉 #{ticket.number}：留言最多 {MAX_COMMENT} 字，"
                      f"您写了 {len(comment)} 字，请删减后再提交。")
    updated = replace(ticket, satisfaction=score, survey_score=score,
                      survey_comment=comment or None, survey_answered_at=now)
    # The comment is the event's note: legal words in it flag the ticket (R26).
    data = {"score": score, "note": comment, "closing": closing.event,
            "agent_score": ticket.satisfaction}
    if score > policy.survey.low_score:
        return Outcome(updated, "survey_answered", data)
    notices = [Notice("survey_low", Audience.DEALER_MANAGERS, Medium.APP),
               Notice("survey_low", Audience.REGION_GROUP, Medium.GROUP)]
    data["low"] = True
    if policy.survey.low_score_reopens:
        updated = reopened(updated, now)
        data.update(reopened=True, reason=f"客户评价 {score} 星（满意度评价）")
        notices.append(reopened_notice(ticket))
    return Outcome(updated, "survey_answered", data, tuple(dict.fromkeys(notices)))
