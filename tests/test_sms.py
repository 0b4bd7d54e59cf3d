"""The customer's SMS through the providers' real SDKs (the sms-tencent and
sms-aliyun extras) to a local stand-in of each provider's send API
(bot/notify/sms_standin.py) that checks the signed request: TC3-HMAC-SHA256
for Tencent Cloud, ACS3-HMAC-SHA256 for Aliyun. What the customer's phone
would show, the providers' error answers and what the outbox does after
each, on SQLite and PostgreSQL.

The stand-in is served by the test's own event loop: a send that blocked
the loop (the Tencent SDK is synchronous) could never be answered.
"""

from __future__ import annotations

import ast
import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.check import check_sms
from bot.domain.transitions import close, respond
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger
from bot.notify import DeliveryError
from bot.notify.sms import SmsTransport, sms_provider
from bot.notify.sms_standin import SmsStandIn, standin_for
from bot.settings import Settings, load_settings
from bot.sms_templates import SMS_TEMPLATES
from bot.survey import SurveyLinks
from models import Notification
from schedulers.outbox import RetryPolicy, deliver_due
from tests.conftest import ROOT, T0
from tests.factories import CALL_CENTRE, SH_STAFF

PHONE = "13812345678"
SIGN = "某汽车品牌"
IDS = {"tencent": {"accepted": "1100001", "closed": "1100002", "closed_survey": "1100003"},
       "aliyun": {"accepted": "SMS_460001", "closed": "SMS_460002",
                  "closed_survey": "SMS_460003"}}
RETRY = RetryPolicy(max_tries=8, backoff=timedelta(seconds=30))


def _sdk(provider: str) -> None:
    module = {"tencent": "tencentcloud", "aliyun": "alibabacloud_dysmsapi20170525"}[provider]
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the {provider} SDK is not installed; CI=true requires it "
                        "(pip install -e '.[test]')")
        pytest.skip(f"the {provider} SDK is not installed (pip install -e '.[test]')")


@pytest.fixture
async def standin(aiohttp_server) -> AsyncIterator[tuple[SmsStandIn, str]]:
    """Both providers with the templates of bot/sms_templates.py registered."""
    provider = SmsStandIn(
        sign_name=SIGN,
        tencent_templates={IDS["tencent"][k]: t.tencent_wording for k, t in SMS_TEMPLATES.items()},
        aliyun_templates={IDS["aliyun"][k]: t.aliyun_wording for k, t in SMS_TEMPLATES.items()},
    )
    server = await aiohttp_server(provider.app())
    yield provider, f"http://127.0.0.1:{server.port}"


def provider_settings(provider: str, standin: SmsStandIn, endpoint: str,
                      **changes: object) -> Settings:
    """SMS_PROVIDER=`provider` against the stand-in, with its credentials."""
    return load_settings(**{
        "sms_provider": provider, "sms_sign_name": SIGN,
        "sms_template_accepted": IDS[provider]["accepted"],
        "sms_template_closed": IDS[provider]["closed"],
        "sms_template_closed_survey": IDS[provider]["closed_survey"],
        "tencent_secret_id": standin.tencent_secret_id,
        "tencent_secret_key": SecretStr(standin.tencent_secret_key),
        "tencent_sms_app_id": standin.tencent_app_id, "tencent_sms_endpoint": endpoint,
        "aliyun_access_key_id": standin.aliyun_key_id,
        "aliyun_access_key_secret": SecretStr(standin.aliyun_key_secret),
        "aliyun_sms_endpoint": endpoint, "sms_timeout_seconds": 5, **changes,
    })


def complaint(**changes: str) -> Complaint:
    return Complaint.model_validate({
        "customer_name": "李先生", "customer_phone": PHONE, "car_model": "速腾",
        "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001", **changes})


async def sms_row(number: int, kind: str = "accepted") -> Notification:
    return await Notification.get(ticket_id=number, medium="sms", kind=kind)


async def responded_and_closed(ledger: Ledger, number: int, at) -> None:
    """The dealer responds and the call centre closes: the closing SMS is due."""
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系客户", at),
                       actor=SH_STAFF, source="chat", now=at)
    await ledger.apply(number, lambda t: close(t, CALL_CENTRE, 5, "客户满意", at),
                       actor=CALL_CENTRE, source="chat", now=at)


async def deliver(settings: Settings, now=T0):
    transport = SmsTransport(sms_provider(settings), SurveyLinks.from_settings(settings))
    return await deliver_due({"sms": transport}, now=now, retry=RETRY)


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_the_customer_receives_the_accepted_and_closed_sms(
    provider: str, ledger: Ledger, standin
) -> None:
    _sdk(provider)
    service, endpoint = standin
    settings = provider_settings(provider, service, endpoint)
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    stats = await deliver(settings)
    assert (stats.sent, stats.errors) == (1, [])
    [sms] = service.received
    assert sms.provider == provider and sms.phone.removeprefix("+86") == PHONE
    assert sms.text == f"【{SIGN}】您的投诉（编号{number}）已受理，上海浦东4S店将尽快与您联系。"
    assert sms.template_id == IDS[provider]["accepted"]
    assert (await sms_row(number)).status == "sent"

    later = T0 + timedelta(hours=2)
    await responded_and_closed(ledger, number, later)
    await deliver(settings, later)
    assert service.received[-1].text == (
        f"【{SIGN}】您的投诉（编号{number}）已处理完毕，感谢您的耐心与支持。")
    assert (await sms_row(number, "closed")).status == "sent"


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_r23_with_the_survey_on_the_closing_sms_is_its_template_with_the_link(
    provider: str, ledger: Ledger, standin
) -> None:
    _sdk(provider)
    service, endpoint = standin
    settings = provider_settings(provider, service, endpoint,
                                 public_base_url="https://bot.example.com",
                                 survey_secret=SecretStr("survey-secret-0123456789abcdef"))
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    number = out.ticket.number
    later = T0 + timedelta(hours=2)
    await responded_and_closed(ledger, number, later)
    await deliver(settings, later)
    closing = service.received[-1]
    assert closing.template_id == IDS[provider]["closed_survey"]
    assert closing.text.startswith(
        f"【{SIGN}】您的投诉（编号{number}）已处理完毕，感谢您的耐心与支持。"
        "请为本次服务评价：https://bot.example.com/s/")
    assert (await sms_row(number, "closed")).status == "sent"


# The answers after which a later try may succeed, by provider: the stand-in
# is made to give them once.
RETRIED = {
    "tencent": ("LimitExceeded.PhoneNumberThirtySecondLimit", "RequestLimitExceeded",
                "InternalError.Timeout"),
    "aliyun": ("isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "isp.SYSTEM_ERROR"),
}
# The answers no later try can change: what is wrong, and the code the provider gives.
REFUSED = {
    "tencent": {"bad template": "FailedOperation.TemplateIncorrectOrUnapproved",
                "bad number": "InvalidParameterValue.IncorrectPhoneNumber",
                "wrong key": "AuthFailure.SignatureFailure",
                "unknown key": "AuthFailure.SecretIdNotFound",
                "unapproved signature": "FailedOperation.SignatureIncorrectOrUnapproved"},
    "aliyun": {"bad template": "isv.SMS_TEMPLATE_ILLEGAL",
               "bad number": "isv.MOBILE_NUMBER_ILLEGAL",
               "wrong key": "SignatureDoesNotMatch",
               "unknown key": "InvalidAccessKeyId.NotFound",
               "unapproved signature": "isv.SMS_SIGNATURE_ILLEGAL"},
}
# (provider, what the stand-in is made to answer, retryable, the code the row records)
ANSWERS = [(p, code, True, None) for p, codes in RETRIED.items() for code in codes] + [
    (p, wrong, False, code) for p, codes in REFUSED.items() for wrong, code in codes.items()]


def spoiled(provider: str, answer: str, service: SmsStandIn, endpoint: str) -> Settings:
    """Settings (and the stand-in) that make the provider give `answer`."""
    key = "tencent_secret_key" if provider == "tencent" else "aliyun_access_key_secret"
    key_id = "tencent_secret_id" if provider == "tencent" else "aliyun_access_key_id"
    changes: dict[str, object] = {
        "bad template": {"sms_template_accepted": "999999"},
        "wrong key": {key: SecretStr("not-the-secret")},
        "unknown key": {key_id: "AKIDnobody"},
        "unapproved signature": {"sms_sign_name": "别的签名"},
    }.get(answer, {})
    if "." in answer or answer == "RequestLimitExceeded":
        service.fail_next(answer)
    return provider_settings(provider, service, endpoint, **changes)


# The outbox's handling of a retryable or a dead row is the same on both
# databases (tests/test_outbox.py); the providers' answers are tried on SQLite.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("provider", "answer", "retryable", "code"), ANSWERS)
async def test_each_error_answer_is_retried_or_given_up(
    provider: str, answer: str, retryable: bool, code: str | None, ledger: Ledger, standin
) -> None:
    _sdk(provider)
    service, endpoint = standin
    settings = spoiled(provider, answer, service, endpoint)
    phone = "02162345678" if answer == "bad number" else PHONE  # a landline: no SMS
    out = await open_complaint(complaint(customer_phone=phone), ledger, actor=CALL_CENTRE,
                               source="api", now=T0)
    number = out.ticket.number
    stats = await deliver(settings)
    row = await sms_row(number)
    assert service.received == [] and stats.sent == 0
    assert service.requests[-1]["code"] == (code or answer)  # the SDK reached the stand-in
    assert (code or answer) in row.last_error
    assert "短信" in row.last_error.split("（", 1)[0]  # the cause in Chinese, first
    if not retryable:
        assert (row.status, stats.dead) == ("dead", 1)
        return
    # Back in the queue after the first backoff; then it goes out.
    assert (row.status, row.next_attempt_at, stats.retrying) == (
        "pending", T0 + RETRY.backoff, 1)
    assert (await deliver(settings, T0 + RETRY.backoff)).sent == 1
    assert (await sms_row(number)).status == "sent"
    assert [s.phone.removeprefix("+86") for s in service.received] == [PHONE]


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_a_mobile_typed_with_its_country_code_is_reached(provider: str, standin) -> None:
    _sdk(provider)
    service, endpoint = standin
    sender = sms_provider(provider_settings(provider, service, endpoint))
    for typed in (PHONE, f"86{PHONE}", f"+86{PHONE}"):
        await sender.send_sms(typed, "closed", {"number": "1"})
    assert [s.phone.removeprefix("+86") for s in service.received] == [PHONE] * 3


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_a_stand_in_for_the_configuration_accepts_what_the_bot_sends(
    provider: str, aiohttp_server
) -> None:
    """`python -m bot.notify.sms_standin` serves this one: the configured account."""
    _sdk(provider)
    settings = load_settings(
        sms_provider=provider, sms_sign_name="我的品牌", sms_template_accepted="T1",
        sms_template_closed="T2", tencent_secret_id="AKIDmine",
        tencent_secret_key=SecretStr("my-secret"), tencent_sms_app_id="1400123",
        aliyun_access_key_id="LTAImine", aliyun_access_key_secret=SecretStr("my-secret"))
    service = standin_for(settings)
    endpoint = f"http://127.0.0.1:{(await aiohttp_server(service.app())).port}"
    sender = sms_provider(settings.model_copy(update={"tencent_sms_endpoint": endpoint,
                                                      "aliyun_sms_endpoint": endpoint}))
    await sender.send_sms(PHONE, "closed", {"number": "9"})
    assert [s.text for s in service.received] == [
        "【我的品牌】您的投诉（编号9）已处理完毕，感谢您的耐心与支持。"]


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_a_provider_that_cannot_be_reached_is_retried(provider: str, standin) -> None:
    _sdk(provider)
    service, _ = standin
    settings = provider_settings(provider, service, "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(DeliveryError) as caught:
        await sms_provider(settings).send_sms(PHONE, "accepted", {"number": "1", "dealer": "店"})
    assert caught.value.retryable is True


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_a_provider_that_does_not_answer_is_given_up_and_retried(
    provider: str, standin, aiohttp_server
) -> None:
    """SMS_TIMEOUT_SECONDS bounds each send; the loop stays free meanwhile."""
    _sdk(provider)
    service, _ = standin
    answered = asyncio.Event()

    async def silent(_request: web.Request) -> web.Response:
        await answered.wait()  # never set: the provider hangs
        raise AssertionError("unreachable")

    hanging = web.Application()
    hanging.router.add_post("/", silent)
    endpoint = f"http://127.0.0.1:{(await aiohttp_server(hanging)).port}"
    settings = provider_settings(provider, service, endpoint, sms_timeout_seconds=1)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        await sms_provider(settings).send_sms(PHONE, "closed", {"number": "1"})
    waited = time.monotonic() - started
    ticker.cancel()
    assert caught.value.retryable is True
    assert 0.9 <= waited < 30 and ticks >= 5  # the event loop ran while the send waited


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_a_kind_without_a_template_is_not_sent_nor_retried(provider: str, standin) -> None:
    _sdk(provider)
    service, endpoint = standin
    settings = provider_settings(provider, service, endpoint, sms_template_closed="")
    with pytest.raises(DeliveryError, match="没有模板：设置 SMS_TEMPLATE_CLOSED") as caught:
        await sms_provider(settings).send_sms(PHONE, "closed", {"number": "1"})
    assert caught.value.retryable is False and service.requests == []


@pytest.mark.parametrize("provider", ["tencent", "aliyun"])
async def test_the_stand_in_refuses_a_request_changed_after_signing(provider: str, standin
                                                                     ) -> None:
    """The signature check can fail: a signed request replayed with another
    number is refused, as the provider would."""
    _sdk(provider)
    service, endpoint = standin
    await sms_provider(provider_settings(provider, service, endpoint)).send_sms(
        PHONE, "accepted", {"number": "1", "dealer": "店"})
    signed = service.requests[-1]
    headers = {k: v for k, v in signed["headers"].items()
               if k.lower() not in ("host", "content-length")}
    query, body = dict(signed["query"]), signed["body"]
    if provider == "tencent":
        body = body.replace(PHONE, "13900000000")
    else:
        query["PhoneNumbers"] = "13900000000"
    async with aiohttp.ClientSession() as session, session.post(
        f"{endpoint}/", params=query, data=body.encode(), headers=headers
    ) as resp:
        answer = await resp.json()
    code = answer["Response"]["Error"]["Code"] if provider == "tencent" else answer["Code"]
    assert code == ("AuthFailure.SignatureFailure" if provider == "tencent"
                    else "SignatureDoesNotMatch")
    assert [s.phone.removeprefix("+86") for s in service.received] == [PHONE]


def _sms_kinds_the_process_sends() -> set[str]:
    """Every kind bot/domain/transitions.py sends by Medium.SMS."""
    tree = ast.parse((ROOT / "bot" / "domain" / "transitions.py").read_text(encoding="utf-8"))
    kinds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_n" and any(
            isinstance(a, ast.Attribute) and a.attr == "SMS" for a in node.args
        ):
            kinds.add(node.args[0].value)  # type: ignore[attr-defined]
    return kinds


def test_every_sms_the_process_sends_has_a_registered_template() -> None:
    kinds = _sms_kinds_the_process_sends()
    assert kinds >= {"accepted", "closed"}
    assert kinds <= set(SMS_TEMPLATES)


def test_the_registered_wording_is_documented_for_both_providers() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for template in SMS_TEMPLATES.values():
        assert template.env_name in deploy
        assert template.tencent_wording in deploy and template.aliyun_wording in deploy
        for param in template.params:
            assert f"`{param.name}`" in deploy


async def test_check_names_each_sms_kind_without_a_template() -> None:
    settings = load_settings(sms_provider="tencent", tencent_secret_id="AKID",
                             tencent_secret_key=SecretStr("k"), tencent_sms_app_id="1400",
                             sms_sign_name=SIGN, sms_template_accepted="1100001")
    finding = await check_sms(settings)
    assert finding.status == "fail"
    assert "SMS_TEMPLATE_CLOSED" in finding.detail and "投诉已结案" in finding.detail
    assert "SMS_TEMPLATE_ACCEPTED" not in finding.detail
    ready = await check_sms(settings.model_copy(update={"sms_template_closed": "1100002"}))
    if ready.status == "ok":  # with the SDK installed
        assert "accepted、closed" in ready.detail


def test_template_wording_in_each_providers_syntax() -> None:
    accepted = SMS_TEMPLATES["accepted"]
    assert accepted.tencent_wording == "您的投诉（编号{1}）已受理，{2}将尽快与您联系。"
    assert accepted.aliyun_wording == "您的投诉（编号${number}）已受理，${dealer}将尽快与您联系。"
    assert accepted.text(SIGN, {"number": "7", "dealer": "某店"}) == \
        f"【{SIGN}】您的投诉（编号7）已受理，某店将尽快与您联系。"
