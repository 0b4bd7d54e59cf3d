"""The survey page (R23) as a phone shows it: Chinese, plain HTML and a little
CSS, no script, so any phone browser (or WeChat's) can answer it."""

from __future__ import annotations

from pathlib import Path

import jinja2

from bot.domain.survey import MAX_COMMENT

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

SCORES = ((1, "非常不满意"), (2, "不满意"), (3, "一般"), (4, "满意"), (5, "非常满意"))
TITLE = "投诉处理满意度评价"


def survey_form(*, number: int, dealer_name: str, action: str, error: str = "",
                score: int | None = None, comment: str = "") -> str:
    """The stars and the comment box for ticket `number`, posting to `action`;
    after a refused answer, `error` says why and what was entered stays."""
    return _env.get_template("web/survey.html.j2").render(
        title=TITLE, form=True, number=number, dealer_name=dealer_name, action=action,
        error=error, score=score, comment=comment, scores=SCORES, max_comment=MAX_COMMENT,
        message="")


def survey_message(message: str, *, number: int | None = None, dealer_name: str = "") -> str:
    """A page that only says something: thanks, or why the link cannot be used."""
    return _env.get_template("web/survey.html.j2").render(
        title=TITLE, form=False, number=number, dealer_name=dealer_name, message=message)
