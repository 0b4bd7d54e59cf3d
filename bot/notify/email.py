"""E-mail over SMTP (aiosmtplib): a plain-text and an HTML part, Chinese
subject encoded per RFC 2047 by the standard library's email policy."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from bot.clock import utcnow
from bot.notify import DeliveryError
from bot.render.notices import RenderedMessage
from bot.settings import Settings
from models import Notification


def build_email(settings: Settings, to: str, message: RenderedMessage) -> EmailMessage:
    """The MIME message: multipart/alternative, text first, HTML preferred;
    with attachments (a report's workbook) multipart/mixed around it."""
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = settings.smtp_from
    email["To"] = Address(addr_spec=to)
    email["Date"] = format_datetime(utcnow())
    sender = email["From"].addresses[0]
    email["Message-ID"] = make_msgid(domain=sender.domain or "localhost")
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        email.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                             filename=attachment.filename)
    return email


class EmailTransport:
    """Sends e-mail notifications through the SMTP server of the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Send one e-mail. A bad or refused (5xx) recipient is not retried;
        anything else (server down, login, 4xx) may be fixed and is."""
        s = self.settings
        try:
            email = build_email(s, notification.recipient, message)
            await aiosmtplib.send(
                email,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_ssl,
                start_tls=False if s.smtp_ssl else s.smtp_starttls,
                timeout=s.smtp_timeout_seconds,
            )
        except ValueError as exc:  # a malformed address, refused before any traffic
            raise DeliveryError(f"bad address: {exc}", retryable=False) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(r.code >= 500 for r in exc.recipients)
            raise DeliveryError(str(exc), retryable=not permanent) from exc
