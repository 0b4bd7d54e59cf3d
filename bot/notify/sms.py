"""The customer's SMS (R10 accepted, closed with the R23 survey link) through one provider.

Providers send only pre-approved templates: the settings map each message kind
to the provider's template id and name the approved signature. The SDKs are
optional extras (`pip install 'complaintbot[sms-tencent]'` or `[sms-aliyun]`),
imported only when that provider is chosen."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import structlog

from bot.notify import DeliveryError
from bot.render.notices import RenderedMessage
from bot.render.privacy import mask_phone
from bot.settings import Settings
from bot.survey import SurveyLinks
from models import Notification

log = structlog.get_logger(__name__)


class SmsProvider(Protocol):
    """Sends one templated SMS."""

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """Send the template of `kind` with `params` to `phone`; raise when it fails."""
        ...


def _template_id(settings: Settings, kind: str) -> str:
    template = {
        "accepted": settings.sms_template_accepted,
        "closed": settings.sms_template_closed,
    }.get(kind, "")
    if not template:
        raise DeliveryError(
            f"no SMS template for {kind!r}: set SMS_TEMPLATE_{kind.upper()}", retryable=False
        )
    return template


def _e164(phone: str) -> str:
    """Mainland numbers without a country code get +86."""
    return phone if phone.startswith("+") else f"+86{phone}"


class LogSms:
    """Development: no SMS leaves the machine; one log line says what would have."""

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """Log the message with the phone masked."""
        log.info("sms_logged", phone=mask_phone(phone), kind=kind, params=params)


class TencentSms:
    """Tencent Cloud SMS (SendSms, API 2021-01-11): positional template params."""

    def __init__(self, settings: Settings) -> None:
        from tencentcloud.common import credential
        from tencentcloud.sms.v20210111 import models, sms_client

        key = settings.tencent_secret_key
        secret = key.get_secret_value() if key else ""
        self._models = models
        self._client = sms_client.SmsClient(
            credential.Credential(settings.tencent_secret_id, secret),
            settings.tencent_sms_region,
        )
        self._settings = settings

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """SendSms to one number; the per-number status must be "Ok"."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        request = self._models.SendSmsRequest()
        request.SmsSdkAppId = self._settings.tencent_sms_app_id
        request.SignName = self._settings.sms_sign_name
        request.TemplateId = _template_id(self._settings, kind)
        request.TemplateParamSet = list(params.values())
        request.PhoneNumberSet = [_e164(phone)]
        try:
            # The SDK is synchronous (requests); keep it off the event loop.
            response: Any = await asyncio.to_thread(self._client.SendSms, request)
        except TencentCloudSDKException as exc:
            raise DeliveryError(f"tencent {exc.get_code()}: {exc.get_message()}",
                                retryable=True) from exc
        status = response.SendStatusSet[0]
        if status.Code != "Ok":
            raise DeliveryError(f"tencent {status.Code}: {status.Message}",
                                retryable=status.Code.startswith("LimitExceeded"))


class AliyunSms:
    """Alibaba Cloud SMS (Dysmsapi 2017-05-25): named template params as JSON."""

    def __init__(self, settings: Settings) -> None:
        from alibabacloud_dysmsapi20170525 import models
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.models import Config

        key = settings.aliyun_access_key_secret
        secret = key.get_secret_value() if key else ""
        self._models = models
        self._client = Client(Config(
            access_key_id=settings.aliyun_access_key_id,
            access_key_secret=secret,
            endpoint="dysmsapi.aliyuncs.com",
        ))
        self._settings = settings

    async def send_sms(self, phone: str, kind: str, params: dict[str, str]) -> None:
        """send_sms to one number; the answer's code must be "OK"."""
        request = self._models.SendSmsRequest(
            phone_numbers=phone.removeprefix("+86"),
            sign_name=self._settings.sms_sign_name,
            template_code=_template_id(self._settings, kind),
            template_param=json.dumps(params, ensure_ascii=False),
        )
        response = await self._client.send_sms_async(request)
        body = response.body
        if body.code != "OK":
            raise DeliveryError(f"aliyun {body.code}: {body.message}",
                                retryable=body.code == "isv.BUSINESS_LIMIT_CONTROL")


def sms_provider(settings: Settings) -> SmsProvider:
    """The provider SMS_PROVIDER names."""
    if settings.sms_provider == "tencent":
        return TencentSms(settings)
    if settings.sms_provider == "aliyun":
        return AliyunSms(settings)
    return LogSms()


class SmsTransport:
    """Delivers SMS notifications (recipient: the customer's phone) through a provider.

    With `survey` (PUBLIC_BASE_URL and SURVEY_SECRET set), the closing SMS
    gets one more parameter, `survey`: the customer's signed link to the
    satisfaction survey of that closing (R23). The link is made here, where
    the key is, not in the templates, which never see a secret."""

    def __init__(self, provider: SmsProvider, survey: SurveyLinks | None = None) -> None:
        self.provider = provider
        self.survey = survey

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Send the kind's template with the rendered params."""
        params = message.sms_params
        if notification.kind == "closed" and self.survey is not None:
            closing: int = notification.event_id  # type: ignore[attr-defined]
            params = {**params, "survey": self.survey.link(closing)}
        await self.provider.send_sms(notification.recipient, notification.kind, params)
