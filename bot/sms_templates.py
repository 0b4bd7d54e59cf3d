"""The customer's SMS kinds and the templates registered for them.

Mainland providers send only templates approved beforehand: each kind the
process sends by SMS (bot/domain/transitions.py, Medium.SMS) has its entry
here, the one place that says which setting holds the provider's template id,
which parameters the template takes and in what order, and the wording to
register. Tencent Cloud fills its placeholders by position ({1}, {2}, ...),
Aliyun by name (${number}); `tencent_wording` and `aliyun_wording` give the
text to register with each. To add a parameter (a survey link on the closed
SMS, say): add it to the kind's `params` and `wording`, give the render
context (bot/render/notices.py) the value its `source` names, and register
the new wording with the provider under a new template id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
CLOSED_WITH_SURVEY = "closed_survey"
"""The closing SMS with its survey link: a template of its own, since each
wording is registered with the provider."""


@dataclass(frozen=True)
class SmsParam:
    """One parameter of a template: its name in the template (Aliyun's
    ${name}; Tencent's is its position), the render context's key that gives
    its value, and what it is, for people."""

    name: str
    source: str
    meaning: str


@dataclass(frozen=True)
class SmsTemplate:
    """A kind of customer SMS and the template the provider approved for it."""

    kind: str
    label: str
    setting: str
    params: tuple[SmsParam, ...]
    wording: str

    @property
    def env_name(self) -> str:
        """The environment variable that holds the provider's template id."""
        return self.setting.upper()

    def template_id(self, settings: Any) -> str:
        """The provider's template id for this kind ("" when not configured)."""
        return str(getattr(settings, self.setting) or "")

    def values(self, context: dict[str, Any]) -> dict[str, str]:
        """The parameters, in the template's order, from a render context."""
        return {p.name: str(context[p.source]) for p in self.params}

    def text(self, sign_name: str, params: dict[str, str]) -> str:
        """The SMS as the customer's phone shows it: 【signature】 and the wording filled in."""
        body = _PLACEHOLDER.sub(lambda m: params.get(m.group(1), ""), self.wording)
        return f"【{sign_name}】{body}" if sign_name else body

    @property
    def tencent_wording(self) -> str:
        """The wording to register with Tencent Cloud: {1}, {2}, ... by position."""
        position = {p.name: i for i, p in enumerate(self.params, start=1)}
        return _PLACEHOLDER.sub(lambda m: f"{{{position[m.group(1)]}}}", self.wording)

    @property
    def aliyun_wording(self) -> str:
        """The wording to register with Aliyun: ${name}."""
        return _PLACEHOLDER.sub(lambda m: f"${{{m.group(1)}}}", self.wording)


SMS_TEMPLATES: dict[str, SmsTemplate] = {
    template.kind: template
    for template in (
        SmsTemplate(
            kind="accepted",
            label="投诉已受理",
            setting="sms_template_accepted",
            params=(SmsParam("number", "number", "投诉编号"),
                    SmsParam("dealer", "dealer_name", "负责处理的经销商")),
            wording="您的投诉（编号{number}）已受理，{dealer}将尽快与您联系。",
        ),
        SmsTemplate(
            kind="closed",
            label="投诉已结案",
            setting="sms_template_closed",
            params=(SmsParam("number", "number", "投诉编号"),),
            wording="您的投诉（编号{number}）已处理完毕，感谢您的耐心与支持。",
        ),
        SmsTemplate(
            kind=CLOSED_WITH_SURVEY,
            label="投诉已结案（附满意度评价链接）",
            setting="sms_template_closed_survey",
            params=(SmsParam("number", "number", "投诉编号"),
                    SmsParam("survey", "survey", "满意度评价链接（R23，签名、一次有效）")),
            wording="您的投诉（编号{number}）已处理完毕，感谢您的耐心与支持。"
                    "请为本次服务评价：{survey}",
        ),
    )
}


def missing_templates(settings: Any) -> list[SmsTemplate]:
    """The kinds in use whose template id is not configured: the closing SMS
    with the survey link replaces the one without when the survey is on."""
    unused = "closed" if settings.survey_enabled else CLOSED_WITH_SURVEY
    return [t for t in SMS_TEMPLATES.values()
            if t.kind != unused and not t.template_id(settings)]
