"""E-mail delivery against a real SMTP server (aiosmtpd on 127.0.0.1): the
MIME shape, the encoded Chinese subject, and which failures are retried."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from bot.notify import DeliveryError
from bot.notify.email import EmailTransport, build_email
from bot.render.notices import RenderedMessage
from bot.settings import Settings, load_settings
from models import Notification

SENDER = "投诉助手 <complaintbot@brand.example>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """What a local SMTP server received, parsed, and over how many connections
    (the clients' addresses); `refuse` lists recipients it answers 550 to."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[list[str], EmailMessage, bytes]] = []
        self.connections: set[tuple[str, int]] = set()
        self.refuse: set[str] = set()
        self._controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        self.received.append((list(envelope.rcpt_tos), parsed, raw))  # type: ignore[arg-type]
        self.connections.add(session.peer)
        return "250 Message accepted"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self, **overrides: Any) -> Settings:
        """Bot settings that send to this server."""
        values: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": self.port,
                                  "smtp_starttls": False, "smtp_from": SENDER}
        values.update(overrides)
        return load_settings(**values)

    def to(self, address: str) -> list[EmailMessage]:
        """The messages delivered to `address`."""
        return [m for rcpts, m, _ in self.received if address in rcpts]


@contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    """A real SMTP server on a free local port for the duration of the block."""
    box = Mailbox(free_port())
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with running_mailbox() as box:
        yield box


MESSAGE = RenderedMessage(
    subject="【响应逾期】投诉 #1024 已逾期 1 小时 未响应",
    text="您好：\n\n投诉 #1024 尚未响应。\n",
    html="<p>您好：</p><p>投诉 #1024 &lt;尚未&gt; 响应。</p>",
    markdown="",
)


def notification(recipient: str) -> Notification:
    # Never saved: the e-mail adapter reads only the recipient.
    return Notification(recipient=recipient, kind="response_overdue", medium="email")


async def test_email_is_multipart_with_an_encoded_chinese_subject(mailbox: Mailbox) -> None:
    async with EmailTransport(mailbox.settings()) as transport:
        await transport.deliver(notification("sh.zhang@sh001.example"), MESSAGE)
    [message] = mailbox.to("sh.zhang@sh001.example")
    _, _, raw = mailbox.received[0]
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line.lower(), "non-ASCII subject must be RFC 2047 encoded"
    assert message["Subject"] == MESSAGE.subject and "#1024" in message["Subject"]
    assert message["From"].addresses[0].addr_spec == "complaintbot@brand.example"
    assert message["From"].addresses[0].display_name == "投诉助手"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and "投诉 #1024 尚未响应" in plain.get_content()
    assert html is not None and "&lt;尚未&gt;" in html.get_content()
    assert message["Message-ID"].endswith("@brand.example>")


def test_build_email_keeps_the_recipient_exact() -> None:
    built = build_email(load_settings(smtp_from=SENDER), "east.lin@brand.example", MESSAGE)
    assert built["To"] == "east.lin@brand.example"


async def test_a_refused_recipient_is_not_retried(mailbox: Mailbox) -> None:
    mailbox.refuse.add("gone@sh001.example")
    with pytest.raises(DeliveryError) as caught:
        async with EmailTransport(mailbox.settings()) as transport:
            await transport.deliver(notification("gone@sh001.example"), MESSAGE)
    assert caught.value.retryable is False
    assert mailbox.received == []


async def test_a_malformed_address_is_not_retried(mailbox: Mailbox) -> None:
    with pytest.raises(DeliveryError) as caught:
        async with EmailTransport(mailbox.settings()) as transport:
            await transport.deliver(notification("not an address\n"), MESSAGE)
    assert caught.value.retryable is False


async def test_a_server_that_is_down_is_retried_later() -> None:
    settings = load_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False,
                             smtp_timeout_seconds=2)
    with pytest.raises(aiosmtplib.SMTPConnectError) as caught:
        async with EmailTransport(settings) as transport:
            await transport.deliver(notification("sh.zhang@sh001.example"), MESSAGE)
    # The outbox retries a failure that does not say it is permanent.
    assert not hasattr(caught.value, "retryable")


async def test_e_mails_share_kept_connections_and_a_dropped_one_is_reopened(
    mailbox: Mailbox,
) -> None:
    """Ten e-mails at once over SMTP_CONNECTIONS=2: two connections, kept
    between e-mails; when the server restarts (its connections gone), the
    next e-mail opens a new one and arrives."""
    async with EmailTransport(mailbox.settings(smtp_connections=2)) as transport:
        await asyncio.gather(*(transport.deliver(notification(f"u{n}@sh001.example"), MESSAGE)
                               for n in range(10)))
        assert len(mailbox.received) == 10 and len(mailbox.connections) == 2
        await transport.deliver(notification("later@sh001.example"), MESSAGE)
        assert len(mailbox.connections) == 2, "the kept connection carried it"
        mailbox.stop()
        mailbox.start()
        await transport.deliver(notification("after@sh001.example"), MESSAGE)
    assert [m["To"] for m in mailbox.to("after@sh001.example")] == ["after@sh001.example"]
    assert len(mailbox.received) == 12 and len(mailbox.connections) == 3
