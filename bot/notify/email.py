"""E-mail over SMTP (aiosmtplib): a plain-text and an HTML part, Chinese
subject encoded per RFC 2047 by the standard library's email policy.

Connections are kept open between e-mails (SMTP_CONNECTIONS of them, each
sending one e-mail at a time) rather than opened, greeted and logged into for
each one; a connection the server has closed meanwhile is opened again and
the e-mail sent on the new one."""

from __future__ import annotations

import asyncio
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
    """Sends e-mail notifications through the SMTP server of the settings,
    over a few connections kept open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.concurrency = settings.smtp_connections
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._turns = asyncio.Semaphore(settings.smtp_connections)

    def _new_connection(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_ssl,
            start_tls=False if s.smtp_ssl else s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
        )

    async def deliver(self, notification: Notification, message: RenderedMessage) -> None:
        """Send one e-mail. A bad or refused (5xx) recipient is not retried;
        anything else (server down, login, 4xx) may be fixed and is."""
        try:
            email = build_email(self.settings, notification.recipient, message)
        except ValueError as exc:  # a malformed address, refused before any traffic
            raise DeliveryError(f"bad address: {exc}", retryable=False) from exc
        async with self._turns:
            smtp = self._idle.get_nowait() if not self._idle.empty() else self._new_connection()
            try:
                await self._send(smtp, email)
            except BaseException:
                smtp.close()  # in an unknown state: the next e-mail opens a new one
                raise
            self._idle.put_nowait(smtp)

    async def _send(self, smtp: aiosmtplib.SMTP, email: EmailMessage) -> None:
        try:
            if smtp.is_connected:
                try:
                    await smtp.send_message(email)
                    return
                except aiosmtplib.SMTPServerDisconnected:
                    # The server closed the kept connection while it was idle.
                    smtp.close()
            await smtp.connect()
            await smtp.send_message(email)
        except ValueError as exc:  # a malformed address, refused before any traffic
            raise DeliveryError(f"bad address: {exc}", retryable=False) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(r.code >= 500 for r in exc.recipients)
            raise DeliveryError(str(exc), retryable=not permanent) from exc

    async def __aenter__(self) -> EmailTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Say goodbye to the server on every idle connection."""
        while not self._idle.empty():
            smtp = self._idle.get_nowait()
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()
