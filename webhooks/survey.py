"""GET and POST /s/{token}: the customer answers the satisfaction survey (R23).

The token is the signed link of the closing SMS (bot/survey.py); whether it
may still be answered, and what an answer does, is the domain's
(bot/domain/survey.py), applied through the ledger like any other change.
Every answer is a page in Chinese: the form, thanks, or why not, with a
status that says the same (404 unknown or forged, 409 used, 410 expired or
reopened, 400 bad input, the entries kept)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from bot.domain.policy import Policy
from bot.domain.survey import CUSTOMER, Closing, SurveyRefused, answer_survey, survey_refusal
from bot.domain.ticket import Refused, Ticket
from bot.keys import CLOCK, LEDGER, SETTINGS
from bot.ledger import UnderPolicy, snapshot
from bot.render.survey import survey_form, survey_message
from bot.survey import PATH, SurveyLinks
from models import Dealer, TicketEvent
from models import Ticket as TicketRow
from webhooks.health import storage_guarded

log = structlog.get_logger(__name__)

NOT_ENABLED = "满意度评价暂未开通。如有意见，请联系为您服务的经销商。"
FORGED = "评价链接无效，请核对短信中的链接是否完整；如有意见，请联系为您服务的经销商。"
THANKS = "感谢您的评价！您的意见已记录，我们会认真改进服务。"
_STATUS = {"used": 409, "expired": 410, "reopened": 410}


@dataclass(frozen=True)
class _Survey:
    """A genuine link's closing, its ticket and the ticket's policy."""

    closing: Closing
    ticket: Ticket
    policy: Policy
    dealer_name: str


def _page(html: str, status: int = 200) -> web.Response:
    # Not cached: a page that says "used" must not come back as the form.
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def _find(request: web.Request) -> _Survey | web.Response:
    """The closing a link names, or the page that says why there is none."""
    links = SurveyLinks.from_settings(request.app[SETTINGS])
    if links is None:
        return _page(survey_message(NOT_ENABLED), 404)
    token = request.match_info["token"]
    event_id = links.closing_of(token)
    event = (await TicketEvent.get_or_none(id=event_id, kind="closed")
             if event_id is not None else None)
    if event is None:
        log.warning("survey_link_refused", token=token[:40], remote=request.remote)
        return _page(survey_message(FORGED), 404)
    ticket = snapshot(await TicketRow.get(id=event.ticket_id))  # type: ignore[attr-defined]
    policy = await request.app[LEDGER].policies.get(ticket.policy_version)
    dealer = await Dealer.get_or_none(code=ticket.dealer_code)
    return _Survey(Closing(event.id, event.at), ticket, policy,
                   dealer.name if dealer else "")


def _refused(survey: _Survey, refusal: SurveyRefused) -> web.Response:
    log.info("survey_refused", ticket=survey.ticket.number, why=refusal.why)
    return _page(survey_message(refusal.reason, number=survey.ticket.number,
                                dealer_name=survey.dealer_name), _STATUS[refusal.why])


async def show_survey(request: web.Request) -> web.Response:
    """The form, or why the link cannot be answered."""
    survey = await _find(request)
    if isinstance(survey, web.Response):
        return survey
    refusal = survey_refusal(survey.ticket, survey.closing, survey.policy, request.app[CLOCK]())
    if refusal is not None:
        return _refused(survey, refusal)
    return _page(survey_form(number=survey.ticket.number or 0, dealer_name=survey.dealer_name,
                             action=request.path))


@storage_guarded
async def submit_survey(request: web.Request) -> web.Response:
    """Store the answer through the ledger; thanks, or why not."""
    survey = await _find(request)
    if isinstance(survey, web.Response):
        return survey
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return _page(survey_form(number=survey.ticket.number or 0,
                                 dealer_name=survey.dealer_name, action=request.path,
                                 error="提交的内容过长，请删减留言后再提交。"), 413)
    score_text, comment = str(form.get("score", "")).strip(), str(form.get("comment", ""))
    score = int(score_text) if score_text in {"1", "2", "3", "4", "5"} else 0
    number = survey.ticket.number or 0
    now = request.app[CLOCK]()
    try:
        await request.app[LEDGER].apply(
            number,
            UnderPolicy(lambda t, p: answer_survey(t, survey.closing, score, comment, p, now)),
            actor=CUSTOMER, source="survey", now=now)
    except SurveyRefused as refusal:
        return _refused(survey, refusal)
    except Refused as refusal:
        log.info("survey_answer_refused", ticket=number, reason=refusal.reason)
        return _page(survey_form(number=number, dealer_name=survey.dealer_name,
                                 action=request.path, error=refusal.reason,
                                 score=score or None, comment=comment), 400)
    log.info("survey_answered", ticket=number, score=score)
    return _page(survey_message(THANKS, number=number, dealer_name=survey.dealer_name))


def setup(app: web.Application) -> None:
    """Register the survey page's routes."""
    app.router.add_get(PATH + "{token}", show_survey)
    app.router.add_post(PATH + "{token}", submit_survey)
