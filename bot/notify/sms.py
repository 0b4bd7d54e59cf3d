"""The customer's SMS (R10 accepted, closed with the R23 survey link) through one provider.

Providers send only pre-approved templates: bot/sms_templates.py names, for
each message kind, the setting holding the provider's template id and the
parameters in order; SMS_SIGN_NAME is the approved signature. Errors say
whether a later try may succeed (DeliveryError.retryable): a frequency limit
or the provider's own failure is retried by the outbox, a refused template,
number or key is not. Each provider's address is a setting
(TENCENT_SMS_ENDPOINT, ALIYUN_SMS_ENDPOINT), so a local stand-in
(bot/notify/sms_standin.py) can take its place. The SDKs are optional extras
(`pip install 'complaintbot[sms-tencent]'` or `[sms-aliyun]`), imported only
when that provider is chosen."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from bot.notify import DeliveryError
from bot.render.notices import RenderedMessage
from bot.render.privacy import mask_phone
from bot.settings import Settings
from bot.sms_templates import CLOSED_WITH_SURVEY, SMS_TEMPLATES, SmsTemplate
from bot.survey import SurveyLinks
from models import Notification

log = structlog.get_logger(__name__)


class SmsProvider(Protocol):
    """Sends one templated SMS."""

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """Send the template of `kind` with `params` to `phone`; raise when it fails."""
        ...


def _template(settings: Settings, kind: str) -> tuple[SmsTemplate, str]:
    """The kind's registered template and the provider's id for it; a kind
    without one cannot be sent, now or later."""
    template = SMS_TEMPLATES.get(kind)
    template_id = template.template_id(settings) if template else ""
    if template is None or not template_id:
        name = template.env_name if template else "a template in bot/sms_templates.py"
        raise DeliveryError(f"短信 {kind} 没有模板：设置 {name}", retryable=False)
    return template, template_id


def _e164(phone: str) -> str:
    """The number as +country code and number: intake keeps a mainland mobile
    as typed, with or without 86 or +86 before it."""
    if phone.startswith("+"):
        return phone
    if len(phone) == 13 and phone.startswith("861"):
        return f"+{phone}"
    return f"+86{phone}"


def _aliyun_number(phone: str) -> str:
    """Aliyun's form: a mainland number alone, any other with its country code, no +."""
    e164 = _e164(phone)
    return e164.removeprefix("+86") if e164.startswith("+86") else e164.removeprefix("+")


def _endpoint(url: str) -> tuple[str, str]:
    """The scheme and host[:port] of a *_SMS_ENDPOINT setting."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class LogSms:
    """Development: no SMS leaves the machine; one log line says what would have."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._sign_name = settings.sms_sign_name if settings else ""

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """Log the message (the text the phone would show) with the phone masked."""
        template = SMS_TEMPLATES.get(kind)
        text = template.text(self._sign_name, params) if template else ""
        log.info("sms_logged", phone=mask_phone(phone), kind=kind, params=params, text=text)


# What an administrator reads first in /outbox (which shows the start of the
# error): the cause in Chinese, by the providers' code prefixes.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("FailedOperation.Template", "isv.SMS_TEMPLATE", "isv.TEMPLATE"),
     "短信模板未审核通过或编号、参数不符：核对 SMS_TEMPLATE_* 与 docs/deploy.md 的模板"),
    (("FailedOperation.Signature", "isv.SMS_SIGNATURE", "isv.SMS_SIGN"),
     "短信签名未审核通过：核对 SMS_SIGN_NAME"),
    (("InvalidParameterValue.IncorrectPhoneNumber", "isv.MOBILE_NUMBER"),
     "客户电话不是可收短信的手机号"),
    (("AuthFailure", "InvalidAccessKeyId", "SignatureDoesNotMatch", "IncompleteSignature"),
     "短信服务商不认这组密钥：核对 TENCENT_SECRET_* 或 ALIYUN_ACCESS_KEY_*"),
    (("LimitExceeded", "RequestLimitExceeded", "isv.BUSINESS_LIMIT", "Throttling"),
     "短信发送频率超限，稍后重试"),
)


def _refusal(provider: str, code: str, message: str, *, retryable: bool) -> DeliveryError:
    """The provider's error answer, its cause in Chinese first."""
    cause = next((text for prefixes, text in _CAUSES if code.startswith(prefixes)),
                 "短信服务商暂时出错，稍后重试" if retryable else "短信服务商拒绝发送")
    return DeliveryError(f"{cause}（{provider} {code}: {message}）", retryable=retryable)


# Tencent Cloud's codes (whole request or one number) after which a later try
# may succeed: frequency limits, its own failures, the network.
_TENCENT_RETRYABLE = ("LimitExceeded.", "RequestLimitExceeded", "InternalError",
                      "ClientNetworkError", "ServerNetworkError")


class TencentSms:
    """Tencent Cloud SMS (SendSms, API 2021-01-11): positional template params.

    The SDK is synchronous (requests): each send runs in a worker thread."""

    def __init__(self, settings: Settings) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models, sms_client

        key = settings.tencent_secret_key
        secret = key.get_secret_value() if key else ""
        scheme, host = _endpoint(settings.tencent_sms_endpoint)
        http = HttpProfile(protocol=scheme, endpoint=host,
                           reqTimeout=max(1, math.ceil(settings.sms_timeout_seconds)))
        self._models = models
        self._client = sms_client.SmsClient(
            credential.Credential(settings.tencent_secret_id, secret),
            settings.tencent_sms_region, ClientProfile(httpProfile=http),
        )
        self._settings = settings

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """SendSms to one number; the per-number status must be "Ok"."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        template, template_id = _template(self._settings, kind)
        request = self._models.SendSmsRequest()
        request.SmsSdkAppId = self._settings.tencent_sms_app_id
        request.SignName = self._settings.sms_sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = [params[p.name] for p in template.params]
        request.PhoneNumberSet = [_e164(phone)]
        try:
            response: Any = await asyncio.to_thread(self._client.SendSms, request)
        except TencentCloudSDKException as exc:
            code = str(exc.get_code())
            raise _refusal("tencent", code, str(exc.get_message()),
                           retryable=code.startswith(_TENCENT_RETRYABLE)) from exc
        status = response.SendStatusSet[0]
        if status.Code != "Ok":
            raise _refusal("tencent", status.Code, status.Message,
                           retryable=status.Code.startswith(_TENCENT_RETRYABLE))


# Aliyun's business codes after which a later try may succeed (its request
# throttling, Throttling.*, and its server errors are retried too).
_ALIYUN_RETRYABLE = ("isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR",
                     "Throttling")


class AliyunSms:
    """Alibaba Cloud SMS (Dysmsapi 2017-05-25): named template params as JSON.

    The SDK's async call runs on the event loop (aiohttp), signed with
    ACS3-HMAC-SHA256."""

    def __init__(self, settings: Settings) -> None:
        from alibabacloud_dysmsapi20170525 import models
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.models import Config

        key = settings.aliyun_access_key_secret
        secret = key.get_secret_value() if key else ""
        scheme, host = _endpoint(settings.aliyun_sms_endpoint)
        timeout_ms = int(settings.sms_timeout_seconds * 1000)
        self._models = models
        self._client = Client(Config(
            access_key_id=settings.aliyun_access_key_id,
            access_key_secret=secret,
            endpoint=host,
            protocol=scheme,
            connect_timeout=timeout_ms,
            read_timeout=timeout_ms,
        ))
        self._settings = settings

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """send_sms to one number; the answer's code must be "OK"."""
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ServerException
        from Tea.exceptions import UnretryableException

        template, template_id = _template(self._settings, kind)
        request = self._models.SendSmsRequest(
            phone_numbers=_aliyun_number(phone),
            sign_name=self._settings.sms_sign_name,
            template_code=template_id,
            template_param=json.dumps({p.name: params[p.name] for p in template.params},
                                      ensure_ascii=False),
        )
        try:
            response = await self._client.send_sms_async(request)
        except AlibabaCloudException as exc:
            code = str(exc.code)
            raise _refusal("aliyun", code, str(exc.message), retryable=isinstance(
                exc, ServerException) or code.startswith(_ALIYUN_RETRYABLE)) from exc
        except UnretryableException as exc:
            # The SDK's name for a request that never got an answer (no
            # connection, a timeout): it does not retry it itself; the outbox does.
            raise _refusal("aliyun", "NetworkError", str(exc.message), retryable=True) from exc
        body = response.body
        if body.code != "OK":
            raise _refusal("aliyun", str(body.code), str(body.message),
                           retryable=str(body.code).startswith(_ALIYUN_RETRYABLE))


def sms_provider(settings: Settings) -> SmsProvider:
    """The provider SMS_PROVIDER names."""
    if settings.sms_provider == "tencent":
        return TencentSms(settings)
    if settings.sms_provider == "aliyun":
        return AliyunSms(settings)
    return LogSms(settings)


class SmsTransport:
    """Delivers SMS notifications (recipient: the customer's phone) through a provider.

    With `survey` (PUBLIC_BASE_URL and SURVEY_SECRET set), the closing SMS
    goes as the template with one more parameter (CLOSED_WITH_SURVEY),
    `survey`: the customer's signed link to the satisfaction survey of that
    closing (R23). The link is made here, where the key is, not in the
    templates, which never see a secret."""

    def __init__(self, provider: SmsProvider, survey: SurveyLinks | None = None) -> None:
        self.provider = provider
        self.survey = survey

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Send the kind's template with the rendered params."""
        params, kind = message.sms_params, notification.kind
        if kind == "closed" and self.survey is not None:
            closing: int = notification.event_id  # type: ignore[attr-defined]
            params, kind = {**params, "survey": self.survey.link(closing)}, CLOSED_WITH_SURVEY
        await self.provider.send_sms(notification.recipient, kind, params)
