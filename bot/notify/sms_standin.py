"""A local SMS provider: the send APIs of Tencent Cloud and Aliyun, as their
SDKs call them, for tests and the demo (no SMS leaves the machine).

One aiohttp application answers `POST /` in both providers' wire formats,
told apart by the action header:

- Tencent Cloud SMS SendSms, API 2021-01-11 (`X-TC-Action: SendSms`): JSON
  body, signed with TC3-HMAC-SHA256 (signature v3: the canonical request of
  method, path, query, the SignedHeaders lower-cased, and the body's SHA-256;
  the key derived from "TC3" + SecretKey, the date, the service "sms" and
  "tc3_request"); answers `{"Response": {...}}` with HTTP 200, an `Error`
  for a refused request, else one `SendStatusSet` entry per number whose
  `Code` is "Ok" or why that number was refused.
- Aliyun Dysmsapi SendSms, 2017-05-25 (`x-acs-action: SendSms`): parameters
  in the query, signed with ACS3-HMAC-SHA256 (signature V3: the canonical
  request of method, path, the sorted RFC 3986-encoded query, the signed
  headers, which must cover host and every x-acs-* header, and the body's
  SHA-256 in x-acs-content-sha256; HMAC-SHA256 with the AccessKey secret);
  a refused signature or key is HTTP 400/404 with `Code`, a business refusal
  HTTP 200 with `Code` other than "OK".

Each checks what the provider checks: the credentials and the signature,
a timestamp within 15 minutes, the app (Tencent), the approved signature
name, the template id and its parameter count, the number's format. It fills
the registered template in the provider's own syntax and keeps the message in
`received` (with the text the phone shows); `fail_next` makes it answer the
next sends with one of the providers' error codes (a frequency limit, a
system error). Every request is kept in `requests`, refused or not.

Outside the tests: `python -m bot.notify.sms_standin --port 9100` serves one
that accepts this configuration's account (`standin_for`), and the bot sends
to it with TENCENT_SMS_ENDPOINT or ALIYUN_SMS_ENDPOINT=http://127.0.0.1:9100;
each message it accepts is logged with the text the phone would show.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from bot.clock import Clock, utcnow
from bot.render.privacy import mask_phone
from bot.settings import Settings, get_settings
from bot.sms_templates import SMS_TEMPLATES

log = structlog.get_logger(__name__)

_SKEW = timedelta(minutes=15)
_MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_TENCENT_PARAM = re.compile(r"\{(\d+)\}")
_ALIYUN_PARAM = re.compile(r"\$\{(\w+)\}")

# Error answers by code, as the providers document them.
TENCENT_ERRORS: dict[str, str] = {
    "AuthFailure.SecretIdNotFound": "The SecretId is not found.",
    "AuthFailure.SignatureFailure": "The provided credentials could not be validated.",
    "AuthFailure.SignatureExpire": "Signature expired.",
    "FailedOperation.SignatureIncorrectOrUnapproved": "签名未审批或格式错误。",
    "FailedOperation.TemplateIncorrectOrUnapproved": "模板未审批或内容不匹配。",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate":
        "请求内容与审核通过的模板内容不匹配。",
    "InvalidParameterValue.SdkAppIdNotExist": "SdkAppId 不存在。",
    "InvalidParameterValue.IncorrectPhoneNumber": "手机号格式错误。",
    "LimitExceeded.PhoneNumberThirtySecondLimit": "单个手机号 30 秒内下发短信条数超过设定的上限。",
    "LimitExceeded.PhoneNumberDailyLimit": "单个手机号日下发短信条数超过设定的上限。",
    "RequestLimitExceeded": "请求的次数超过了频率限制。",
    "InternalError.Timeout": "请求下发短信超时。",
}
# Codes answered per number (in SendStatusSet), not for the whole request.
_TENCENT_PER_NUMBER = ("InvalidParameterValue.IncorrectPhoneNumber", "LimitExceeded.")

# A refused request (key, signature, time, throttling) is an HTTP error; a
# business refusal is HTTP 200 with its code.
ALIYUN_ERRORS: dict[str, str] = {
    "InvalidAccessKeyId.NotFound": "Specified access key is not found.",
    "SignatureDoesNotMatch": "Specified signature is not matched with our calculation.",
    "IncompleteSignature": "The request signature does not conform to Aliyun standards.",
    "InvalidTimeStamp.Expired": "Specified time stamp or date value is expired.",
    "SignatureNonceUsed": "Specified signature nonce was used already.",
    "Throttling.User": "Request was denied due to user flow control.",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量缺少对应参数值",
    "isv.MOBILE_NUMBER_ILLEGAL": "手机号码格式错误",
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控",
    "isp.SYSTEM_ERROR": "系统出现错误，请重新调用",
}


def _aliyun_status(code: str) -> int:
    if code == "InvalidAccessKeyId.NotFound":
        return 404
    return 200 if code.startswith(("isv.", "isp.")) else 400


@dataclass(frozen=True)
class ReceivedSms:
    """One message the stand-in accepted: what the customer's phone would show."""

    provider: str
    phone: str
    template_id: str
    params: dict[str, str]
    text: str
    at: datetime


@dataclass
class SmsStandIn:
    """Both providers' send APIs with one account each, one approved
    signature name and the registered templates (id → wording in the
    provider's syntax: Tencent's {1}, Aliyun's ${name})."""

    sign_name: str
    tencent_templates: dict[str, str] = field(default_factory=dict)
    aliyun_templates: dict[str, str] = field(default_factory=dict)
    tencent_secret_id: str = "AKIDstandin"
    tencent_secret_key: str = "standin-secret-key"
    tencent_app_id: str = "1400000000"
    aliyun_key_id: str = "LTAIstandin"
    aliyun_key_secret: str = "standin-access-key-secret"
    clock: Clock = utcnow
    received: list[ReceivedSms] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _faults: list[str] = field(default_factory=list)
    _nonces: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        """The HTTP application: POST / in either provider's format."""
        app = web.Application()
        app.router.add_post("/", self._send)
        return app

    def fail_next(self, code: str, count: int = 1) -> None:
        """Answer the next `count` sends that pass the signature check with
        `code` (a key of TENCENT_ERRORS or ALIYUN_ERRORS)."""
        self._faults.extend([code] * count)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-TC-Action"):
            answer = self._tencent(request, body)
            self._record("tencent", request, body, answer["Response"].get("Error", {}).get(
                "Code") or answer["Response"]["SendStatusSet"][0]["Code"])
            # Exactly "application/json": the SDK reads an Error only under it.
            return web.Response(body=json.dumps(answer).encode(), content_type="application/json")
        if request.headers.get("x-acs-action"):
            status, answer = self._aliyun(request, body)
            self._record("aliyun", request, body, answer["Code"])
            return web.json_response(answer, status=status)
        return web.json_response({"error": "neither X-TC-Action nor x-acs-action"}, status=400)

    def _record(self, provider: str, request: web.Request, body: bytes, code: str) -> None:
        self.requests.append({"provider": provider, "query": dict(request.query),
                              "headers": dict(request.headers), "body": body.decode(),
                              "code": code, "at": self.clock().isoformat()})

    # -- Tencent Cloud ----------------------------------------------------------

    def _tencent(self, request: web.Request, body: bytes) -> dict[str, Any]:
        request_id = secrets.token_hex(16)

        def error(code: str) -> dict[str, Any]:
            return {"Response": {"Error": {"Code": code, "Message": TENCENT_ERRORS[code]},
                                 "RequestId": request_id}}

        refusal = self._tencent_signature(request, body)
        if refusal is not None:
            return error(refusal)
        if request.headers.get("X-TC-Action") != "SendSms" or \
                request.headers.get("X-TC-Version") != "2021-01-11":
            return error("FailedOperation.TemplateIncorrectOrUnapproved")
        sent = json.loads(body)
        if sent.get("SmsSdkAppId") != self.tencent_app_id:
            return error("InvalidParameterValue.SdkAppIdNotExist")
        if sent.get("SignName") != self.sign_name:
            return error("FailedOperation.SignatureIncorrectOrUnapproved")
        wording = self.tencent_templates.get(str(sent.get("TemplateId")))
        if wording is None:
            return error("FailedOperation.TemplateIncorrectOrUnapproved")
        params = [str(p) for p in sent.get("TemplateParamSet") or []]
        if len(params) != len(set(_TENCENT_PARAM.findall(wording))):
            return error("FailedOperation.TemplateParamSetNotMatchApprovedTemplate")
        fault = self._faults.pop(0) if self._faults else None
        if fault is not None and not fault.startswith(_TENCENT_PER_NUMBER):
            return error(fault)
        statuses = []
        for phone in sent.get("PhoneNumberSet") or []:
            code = fault or ("Ok" if _MAINLAND_MOBILE.match(phone.removeprefix("+86"))
                             else "InvalidParameterValue.IncorrectPhoneNumber")
            if code == "Ok":
                text = _TENCENT_PARAM.sub(lambda m: params[int(m.group(1)) - 1], wording)
                self._accept("tencent", phone, str(sent["TemplateId"]),
                             {str(i): p for i, p in enumerate(params, start=1)}, text)
            statuses.append({
                "SerialNo": secrets.token_hex(8), "PhoneNumber": phone,
                "Fee": 1 if code == "Ok" else 0, "SessionContext": "", "IsoCode": "CN",
                "Code": code, "Message": "send success" if code == "Ok" else TENCENT_ERRORS[code],
            })
        return {"Response": {"SendStatusSet": statuses, "RequestId": request_id}}

    def _tencent_signature(self, request: web.Request, body: bytes) -> str | None:
        """The error code for a request whose TC3-HMAC-SHA256 signature fails, else None."""
        match = re.fullmatch(
            r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/(\w+)/tc3_request, "
            r"SignedHeaders=([a-z0-9;\-]+), Signature=([0-9a-f]{64})",
            request.headers.get("Authorization", ""))
        if match is None:
            return "AuthFailure.SignatureFailure"
        secret_id, date, service, signed, signature = match.groups()
        if secret_id != self.tencent_secret_id:
            return "AuthFailure.SecretIdNotFound"
        try:
            stamp = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return "AuthFailure.SignatureFailure"
        at = datetime.fromtimestamp(stamp, UTC)
        if abs(self.clock() - at) > _SKEW:
            return "AuthFailure.SignatureExpire"
        names = signed.split(";")
        if service != "sms" or date != at.strftime("%Y-%m-%d") or \
                not {"content-type", "host"} <= set(names):
            return "AuthFailure.SignatureFailure"
        headers = "".join(f"{n}:{request.headers.get(n, '').strip().lower()}\n" for n in names)
        canonical = "\n".join([request.method, request.path, request.query_string, headers,
                               signed, hashlib.sha256(body).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", str(stamp), f"{date}/{service}/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(f"TC3{self.tencent_secret_key}".encode(), date)
        key = _hmac(_hmac(key, service), "tc3_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(expected, signature) else "AuthFailure.SignatureFailure"

    # -- Aliyun -----------------------------------------------------------------

    def _aliyun(self, request: web.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        request_id = secrets.token_hex(16).upper()

        def error(code: str) -> tuple[int, dict[str, Any]]:
            return _aliyun_status(code), {"Code": code, "Message": ALIYUN_ERRORS[code],
                                          "RequestId": request_id}

        refusal = self._aliyun_signature(request, body)
        if refusal is not None:
            return error(refusal)
        query = request.query
        if request.headers.get("x-acs-action") != "SendSms" or \
                request.headers.get("x-acs-version") != "2017-05-25":
            return error("isv.SMS_TEMPLATE_ILLEGAL")
        if query.get("SignName") != self.sign_name:
            return error("isv.SMS_SIGNATURE_ILLEGAL")
        template_id = query.get("TemplateCode", "")
        wording = self.aliyun_templates.get(template_id)
        if wording is None:
            return error("isv.SMS_TEMPLATE_ILLEGAL")
        try:
            params = json.loads(query.get("TemplateParam") or "{}")
        except ValueError:
            return error("isv.TEMPLATE_MISSING_PARAMETERS")
        if not isinstance(params, dict) or \
                not set(_ALIYUN_PARAM.findall(wording)) <= set(params):
            return error("isv.TEMPLATE_MISSING_PARAMETERS")
        if self._faults:
            return error(self._faults.pop(0))
        phones = query.get("PhoneNumbers", "").split(",")
        if not all(_MAINLAND_MOBILE.match(p) for p in phones):
            return error("isv.MOBILE_NUMBER_ILLEGAL")
        text = _ALIYUN_PARAM.sub(lambda m: str(params[m.group(1)]), wording)
        for phone in phones:
            self._accept("aliyun", phone, template_id, {k: str(v) for k, v in params.items()},
                         text)
        return 200, {"Code": "OK", "Message": "OK", "RequestId": request_id,
                     "BizId": f"{secrets.randbelow(10**15)}^0"}

    def _aliyun_signature(self, request: web.Request, body: bytes) -> str | None:
        """The error code for a request whose ACS3-HMAC-SHA256 signature fails, else None."""
        match = re.fullmatch(
            r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([a-z0-9;\-]+),"
            r"Signature=([0-9a-f]{64})", request.headers.get("Authorization", ""))
        if match is None:
            return "IncompleteSignature"
        key_id, signed, signature = match.groups()
        if key_id != self.aliyun_key_id:
            return "InvalidAccessKeyId.NotFound"
        names = signed.split(";")
        common = {n.lower() for n in request.headers if n.lower().startswith("x-acs-")}
        if names != sorted(names) or not ({"host"} | common) <= set(names):
            return "IncompleteSignature"
        try:
            at = datetime.strptime(request.headers.get("x-acs-date", ""),
                                   "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "InvalidTimeStamp.Expired"
        if abs(self.clock() - at) > _SKEW:
            return "InvalidTimeStamp.Expired"
        payload_hash = hashlib.sha256(body).hexdigest()
        if request.headers.get("x-acs-content-sha256") != payload_hash:
            return "SignatureDoesNotMatch"
        query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(
            (k, v) for k, v in request.query.items()))
        headers = "".join(f"{n}:{request.headers.get(n, '').strip()}\n" for n in names)
        canonical = "\n".join([request.method, request.path, query, headers, signed,
                               payload_hash])
        to_sign = f"ACS3-HMAC-SHA256\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(self.aliyun_key_secret.encode(), to_sign.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch"
        nonce = request.headers.get("x-acs-signature-nonce", "")
        if nonce in self._nonces:
            return "SignatureNonceUsed"
        self._nonces.add(nonce)
        return None

    def _accept(self, provider: str, phone: str, template_id: str, params: dict[str, str],
                wording: str) -> None:
        sms = ReceivedSms(provider, phone, template_id, params, f"【{self.sign_name}】{wording}",
                          self.clock())
        self.received.append(sms)
        log.info("sms_standin_received", provider=provider,
                 phone=mask_phone(phone.removeprefix("+86")), text=sms.text)


def standin_for(settings: Settings) -> SmsStandIn:
    """A stand-in holding the account `settings` send with: its keys, app,
    signature name and, under their template ids, the templates of
    bot/sms_templates.py in each provider's syntax."""
    def secret(value: Any) -> str:
        return value.get_secret_value() if value else ""

    registered = [(t.template_id(settings), t) for t in SMS_TEMPLATES.values()]
    return SmsStandIn(
        sign_name=settings.sms_sign_name,
        tencent_templates={i: t.tencent_wording for i, t in registered if i},
        aliyun_templates={i: t.aliyun_wording for i, t in registered if i},
        tencent_secret_id=settings.tencent_secret_id,
        tencent_secret_key=secret(settings.tencent_secret_key),
        tencent_app_id=settings.tencent_sms_app_id,
        aliyun_key_id=settings.aliyun_access_key_id,
        aliyun_key_secret=secret(settings.aliyun_access_key_secret),
    )


def main(argv: list[str] | None = None) -> int:
    """Serve `standin_for` this configuration until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.notify.sms_standin",
        description="A local Tencent Cloud / Aliyun SMS send API for trials: no SMS leaves "
                    "the machine.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="port to bind (9100)")
    args = parser.parse_args(argv)
    web.run_app(standin_for(get_settings()).app(), host=args.host, port=args.port)
    return 0


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _rfc3986(text: str) -> str:
    """Percent-encoding as signature V3 wants it: only A-Z a-z 0-9 - _ . ~ kept."""
    return quote(text, safe="-_.~")


if __name__ == "__main__":
    raise SystemExit(main())
