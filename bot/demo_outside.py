"""What `complaintbot demo` sends outside WeChat Work, caught where the chat
page can show it: the customer's SMS and the managers' e-mails.

Nothing takes a shortcut: the bot sends SMS through the provider's real SDK
(Tencent Cloud's when installed, else Aliyun's) to `SmsStandIn`, and e-mail
over SMTP to a local server (aiosmtpd), each on a loopback port of its own,
bound when the demo app is made. Without an SMS SDK the SMS are only logged,
without aiosmtpd (`pip install 'complaintbot[demo]'`) no e-mail is sent; the
page says so (`missing`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import importlib.util
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from bot.clock import utcnow
from bot.notify.sms_standin import SmsStandIn
from bot.render.privacy import mask_phone
from bot.sms_templates import SMS_TEMPLATES

DEMO_SIGN_NAME = "投诉助手演示"
DEMO_SMTP_FROM = "complaintbot@demo.example"
_LOOPBACK = "127.0.0.1"
# Each kind's template id "registered" with the stand-in.
_TEMPLATE_IDS = {kind: f"{100001 + i}" for i, kind in enumerate(SMS_TEMPLATES)}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.bind((_LOOPBACK, 0))
    return sock


class MailCatcher:
    """An aiosmtpd handler keeping each e-mail as the page shows it."""

    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message: recipients, subject, plain text, attachment names."""
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        body = message.get_body(("plain",))  # type: ignore[attr-defined]
        self.mails.append({
            "to": list(envelope.rcpt_tos), "subject": str(message["subject"] or ""),
            "text": body.get_content() if body is not None else "",
            "attachments": [p.get_filename() for p in message.iter_attachments()],  # type: ignore[attr-defined]
            "time": utcnow().isoformat(),
        })
        return "250 Message accepted"


class Outside:
    """The SMS stand-in and the SMTP catcher of one demo."""

    def __init__(self) -> None:
        self.provider = ("tencent" if _installed("tencentcloud") else
                         "aliyun" if _installed("alibabacloud_dysmsapi20170525") else "log")
        self.mail_catching = _installed("aiosmtpd")
        self.standin = SmsStandIn(
            sign_name=DEMO_SIGN_NAME,
            tencent_templates={_TEMPLATE_IDS[k]: t.tencent_wording
                               for k, t in SMS_TEMPLATES.items()},
            aliyun_templates={_TEMPLATE_IDS[k]: t.aliyun_wording
                              for k, t in SMS_TEMPLATES.items()},
        )
        self.catcher = MailCatcher()
        self._sms_socket = _bound()
        self._smtp_socket = _bound() if self.mail_catching else None

    def settings(self) -> dict[str, Any]:
        """The demo's SMS and SMTP settings: the stand-in's credentials and ports."""
        sms_url = f"http://{_LOOPBACK}:{self._sms_socket.getsockname()[1]}"
        values: dict[str, Any] = {
            "sms_provider": self.provider, "sms_sign_name": DEMO_SIGN_NAME,
            **{t.setting: _TEMPLATE_IDS[k] for k, t in SMS_TEMPLATES.items()},
            "tencent_secret_id": self.standin.tencent_secret_id,
            "tencent_secret_key": SecretStr(self.standin.tencent_secret_key),
            "tencent_sms_app_id": self.standin.tencent_app_id,
            "tencent_sms_endpoint": sms_url,
            "aliyun_access_key_id": self.standin.aliyun_key_id,
            "aliyun_access_key_secret": SecretStr(self.standin.aliyun_key_secret),
            "aliyun_sms_endpoint": sms_url,
        }
        if self._smtp_socket is not None:
            values |= {"smtp_host": _LOOPBACK, "smtp_port": self._smtp_socket.getsockname()[1],
                       "smtp_starttls": False, "smtp_ssl": False, "smtp_from": DEMO_SMTP_FROM}
        return values

    async def serve(self, _app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: both servers run while the demo does."""
        runner = web.AppRunner(self.standin.app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sms_socket).start()
        smtp = None
        if self._smtp_socket is not None:
            from aiosmtpd.smtp import SMTP

            smtp = await asyncio.get_running_loop().create_server(
                lambda: SMTP(self.catcher, hostname="demo"), sock=self._smtp_socket)
        try:
            yield
        finally:
            if smtp is not None:
                smtp.close()
                await smtp.wait_closed()
            await runner.cleanup()
            for sock in (self._sms_socket, self._smtp_socket):
                if sock is not None:
                    sock.close()

    def view(self) -> dict[str, Any]:
        """What the page shows: the SMS (phone masked) and e-mails, oldest first,
        and what is not caught for want of a package."""
        missing = []
        if self.provider == "log":
            missing.append("未安装短信 SDK，短信只写入日志："
                           "pip install 'complaintbot[sms-tencent]'")
        if not self.mail_catching:
            missing.append("未安装 aiosmtpd，邮件不会发出：pip install 'complaintbot[demo]'")
        return {
            "provider": self.provider,
            "sms": [{"phone": mask_phone(s.phone.removeprefix("+86")), "text": s.text,
                     "time": s.at.isoformat()} for s in self.standin.received],
            "mails": self.catcher.mails,
            "missing": missing,
        }
