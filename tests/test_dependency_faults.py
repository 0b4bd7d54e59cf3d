"""WeChat Work and the mail server fail for a while: the bot keeps answering
callbacks, and after recovery everything queued goes out, nothing twice (issue 7).

The bot runs with its scheduler (the outbox worker delivers on its own, on the
real clock) against the emulator and a real SMTP server on loopback. During
the outage the emulator answers each API call with, in turn, HTTP 503, errcode
45009 (rate limit) and a 504 after waiting past the client's timeout, and the
mail server is down. Meanwhile chat commands keep coming, a few of which post
notices (/resolve into the call centre's group; the follow-up that escalates
into two groups, the region handler's card and the manager's e-mail).

The slow answers refuse the call: had WeChat Work done the work and only
answered late, the client's retry would post the message again (appchat/send
and webhook/send carry no idempotency key), which no sender can prevent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.fill import DEALERS, HANDLER
from bot.app import create_app
from bot.clock import utcnow
from bot.db import open_database
from bot.domain.policy import Policy
from bot.settings import load_settings
from bot.wecom.emulator import Fault, WeComEmulator
from commands.router import FAILURE
from models import Notification, TicketEvent
from tests.conftest import ORG, TOKEN, WECOM_SECRETS, _truncate_postgres, wecom_settings
from tests.test_crash_callbacks import TICKET_NUMBER, expected_posts, received_posts, seed
from tests.test_notify_email import Mailbox, free_port
from tests.waiting import eventually

TIMEOUT = 0.5  # WECOM_API_TIMEOUT_SECONDS
OUTAGE = (Fault(status=503), Fault(errcode=45009), Fault(delay=3 * TIMEOUT, status=504))
# Few notices: each failing API call costs the outbox about 2 s (3 tries, backoff).
PLAIN, ESCALATING = 40, 1
RESOLVED = 3  # of the plain tickets, resolved during the outage
ANSWER_WITHIN = 1.0  # seconds, each callback during the outage


def group_of(number: int) -> tuple[str, str]:
    """The dealer group a ticket belongs to, and its handler."""
    dealer = DEALERS[number % 4][0]
    return f"wrGRP-{dealer}", HANDLER[dealer]


@pytest.mark.slow
async def test_outage_of_wecom_and_smtp_callbacks_answered_queue_drains_once(
    database_url: str, aiohttp_server, aiohttp_client, policy: Policy, tmp_path: Path
) -> None:
    if database_url.startswith("postgres"):
        async with open_database(database_url):
            await _truncate_postgres()
    emulator = WeComEmulator(wecom_settings("sqlite://:memory:"))
    server = await aiohttp_server(emulator.app)
    emulator.url = str(server.make_url("")).rstrip("/")
    mailbox = Mailbox(free_port())  # not started: SMTP is down
    settings = load_settings(
        database_url=database_url, api_token=TOKEN, timezone="Asia/Shanghai",
        wecom_api_base=f"{emulator.url}/cgi-bin", wecom_api_timeout_seconds=TIMEOUT,
        smtp_host="127.0.0.1", smtp_port=mailbox.port, smtp_starttls=False,
        smtp_timeout_seconds=1, outbox_interval_seconds=0.2, outbox_backoff_seconds=0.2,
        outbox_backoff_cap_seconds=0.5, outbox_max_tries=100000, outbox_lease_seconds=60,
        report_weekly_cron="", report_monthly_cron="", **WECOM_SECRETS,
    )
    emulator.outage(*OUTAGE)
    bot = await aiohttp_client(create_app(settings))
    emulator.connect(own_url=emulator.url, bot_url=str(bot.make_url("")))
    plain, escalating = await seed(policy, ORG, plain=PLAIN, escalating=ESCALATING)

    # During the outage: a follow-up on each plain ticket, some resolved, one escalated.
    commands = [(n, f"/followup {n} 客户确认方案") for n in plain]
    commands[5:5] = [(n, f"/resolve {n} 已更换阀体") for n in plain[:RESOLVED]]
    commands[20:20] = [(n, f"/followup {n} 客户仍不满意") for n in escalating]
    latencies = []
    for number, text in commands:
        chatid, userid = group_of(number)
        started = time.monotonic()
        reply = await emulator.robot_message(userid, chatid, f"@投诉助手 {text}")
        latencies.append(time.monotonic() - started)
        content = reply["stream"]["content"]
        assert content != FAILURE and f"#{number}" in content
        await asyncio.sleep(0.05)  # commands trickle in while the outbox fails

    async def every_fault_met() -> bool:
        """Each kind of failure answered to the outbox, each notice tried and failed."""
        answers = Counter(str(r["answer"].get("http_status") or r["answer"].get("errcode"))
                          for r in emulator.requests if r["direction"] == "api")
        untried = await Notification.filter(last_error="").exists()
        return all(answers[k] for k in ("503", "45009", "504")) and not untried

    await eventually(every_fault_met, every=0.1,
                     what="the outbox has met every fault and tried every notice")
    assert not await Notification.filter(status="sent").exists(), "nothing got through"
    mail_errors = await Notification.filter(medium="email").values_list("last_error", flat=True)
    assert mail_errors and all("SMTP" in e or "connect" in e.lower() for e in mail_errors)
    assert max(latencies) < ANSWER_WITHIN, f"slowest answer {max(latencies):.2f} s"

    # Recovery.
    recovered = time.monotonic()
    emulator.restore()
    mailbox.start()
    try:
        async def drained() -> bool:
            return not await Notification.filter(status__in=("pending", "sending")).exists()

        await eventually(drained, every=0.1, what="the outbox has delivered everything")
    finally:
        mailbox.stop()
    print(f"{len(commands)} callbacks, slowest {max(latencies):.3f} s; drained"
          f" {time.monotonic() - recovered:.1f} s after recovery")

    # Each command applied once.
    events = Counter(await TicketEvent.filter(kind__in=("followup", "resolved"))
                     .values_list("ticket_id", "kind"))
    assert events == Counter({(n, "resolved" if "/resolve" in t else "followup"): 1
                              for n, t in commands})
    # Each notice sent, received once.
    rows = await Notification.all()
    assert {r.status for r in rows} == {"sent"}
    assert Counter(r.kind for r in rows) == {"resolved": RESOLVED, "escalated": 4 * ESCALATING}
    got = Counter(received_posts(emulator))
    assert got == await expected_posts()
    emails = Counter((r.recipient, r.ticket_id)  # type: ignore[attr-defined]
                     for r in rows if r.medium == "email")
    mailed = Counter((rcpt, int(TICKET_NUMBER.search(str(message["Subject"]))[1]))
                     for rcpts, message, _ in mailbox.received for rcpt in rcpts)
    assert mailed == emails
    assert all(r.sent_at and r.sent_at <= utcnow() for r in rows)
