"""Kill the real bot (SIGKILL) while deadlines are being applied and e-mails
wait for a down SMTP server, restart it: every due deadline is applied once,
every e-mail arrives once (issue 4).

The bot runs as `python -m bot.cli serve` in its own process, against a real
SMTP server (aiosmtpd) on loopback. Tickets are dispatched three days in the
past by this process, through the ledger, into the bot's database. On
PostgreSQL two bots share the work, one is killed mid-sweep and restarted.
A worker whose round outlasts its lease leaves alone the rows another took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from tortoise.functions import Count

from bot.clock import utcnow
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.policy import Policy
from bot.domain.transitions import respond
from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.notify.email import EmailTransport
from bot.policy_book import PolicyBook
from models import Deadline, Notification, TicketEvent
from schedulers.outbox import RetryPolicy, deliver_due
from schedulers.sweeper import sweep
from tests.conftest import ORG, T0, TOKEN, _truncate_postgres
from tests.factories import CALL_CENTRE, SH_STAFF
from tests.test_notify_email import Mailbox, free_port
from tests.test_outbox import complaint
from tests.waiting import eventually

TICKETS = 80
CLOCKS_PER_TICKET = 5  # response, first solution, follow-up, solution e-mail, resolution
DELIVERED = ("email", "sms")  # the media this bot has a transport for (no WeChat Work)


class Bot:
    """One `complaintbot serve` process; its output goes to a file."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.port = free_port()
        self.env = {**env, "HTTP_PORT": str(self.port)}
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "serve", cwd=self.workdir, env=self.env,
                stdout=out, stderr=out,
            )
        async with aiohttp.ClientSession() as http:

            async def serving() -> bool:
                assert self.proc is not None and self.proc.returncode is None, (
                    self.log.read_text())
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz"):
                        return True  # 200 or 503 (deadlines overdue): it serves
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(serving, what=f"the bot serves:\n{self.log}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, transactions in flight are cut off."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), timeout=30)

    async def metrics(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/metrics") as answer:
                text = await answer.text()
        return {s.name + str(sorted(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


@asynccontextmanager
async def bots(database_url: str, smtp_port: int, workdir: Path,
               replicas: int) -> AsyncIterator[list[Bot]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "SMTP_", "OUTBOX_", "SWEEP_", "HTTP_"))}
    env.update(
        DATABASE_URL=database_url, API_TOKEN=TOKEN, LOG_LEVEL="INFO", LOG_FORMAT="json",
        SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_STARTTLS="false",
        # A send that times out after the server took the message is sent again
        # (SMTP cannot say): the timeout is well above a send's time on a busy machine.
        SMTP_TIMEOUT_SECONDS="5", SWEEP_INTERVAL_SECONDS="0.2", OUTBOX_INTERVAL_SECONDS="0.2",
        OUTBOX_BACKOFF_SECONDS="0.2", OUTBOX_BACKOFF_CAP_SECONDS="0.5",
        OUTBOX_MAX_TRIES="100000",
        # A send that outlasts half the lease may be taken by the other bot and
        # sent twice (a round renews between sends, not during one): 2 s against
        # a send's milliseconds, and short enough to wait out for a killed bot's rows.
        OUTBOX_LEASE_SECONDS="4",
    )
    started = [Bot(env, workdir, f"bot{i}") for i in range(replicas)]
    try:
        yield started
    finally:
        for bot in started:
            await bot.stop()


async def seed(policy: Policy) -> int:
    """Dispatch TICKETS complaints 3 days and 1 hour ago; the number of due deadlines."""
    await import_directory(ORG)
    book = PolicyBook(policy)
    await book.store_current()
    ledger = Ledger(book)
    past = utcnow() - timedelta(days=3, hours=1)
    for i in range(TICKETS):
        await open_complaint(complaint(vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}"), ledger,
                             actor=CALL_CENTRE, source="api", now=past)
    return await Deadline.filter(state="pending", due_at__lte=utcnow()).count()


# A swept deadline the ticket still runs on stays applied; one an escalation
# moved past is ended (models.Deadline.state).
SWEPT = ("applied", "ended")


async def crash_and_restart(database_url: str, workdir: Path, policy: Policy,
                            replicas: int) -> None:
    due = await seed(policy)
    assert due == TICKETS * CLOCKS_PER_TICKET
    mailbox = Mailbox(free_port())  # not started yet: SMTP is down

    async def applied() -> int:
        """Deadlines swept: still running (applied) or moved past since (ended)."""
        return await Deadline.filter(state__in=SWEPT).count()

    async def failing() -> bool:
        """A fifth of the sweep is done and an e-mail has failed against the down server."""
        tried = Notification.filter(medium="email", status="pending", tries__gte=1)
        return await applied() >= due // 5 and await tried.exists()

    async def drained() -> bool:
        undelivered = await Notification.filter(
            medium__in=DELIVERED, status__in=("pending", "sending")).count()
        return undelivered == 0 and await applied() == due

    async with bots(database_url, mailbox.port, workdir, replicas) as running:
        await asyncio.gather(*(bot.start() for bot in running))
        await eventually(failing, every=0.02, what="the sweep is under way and e-mails fail")
        await running[0].kill()
        at_kill = await applied()
        queued = await Notification.filter(medium="email", status__in=("pending", "sending"))
        # The kill lands with work undone: e-mails queued (SMTP is down) and, on
        # most runs, deadlines still due; either way nothing may be lost or doubled.
        assert at_kill > 0 and queued, f"nothing was under way at the kill ({at_kill} of {due})"
        retried = await Notification.filter(medium="email", status="pending", tries__gte=1)
        assert all("SMTP" in n.last_error or "connect" in n.last_error.lower() for n in retried)

        mailbox.start()
        try:
            await running[0].start()
            await eventually(drained, what="every deadline is applied, every e-mail sent")
            gauges = await running[0].metrics()
        finally:
            for bot in running:
                await bot.stop()
            mailbox.stop()

    assert gauges["complaintbot_deadlines_due[]"] == 0
    assert gauges["complaintbot_outbox_depth[('medium', 'email'), ('status', 'pending')]"] == 0

    # Each due deadline applied once: one breach event per deadline row.
    assert await Deadline.filter(state__in=SWEPT).count() == due
    per_deadline = await (
        TicketEvent.filter(kind="deadline_breached")
        .annotate(n=Count("id")).group_by("ticket_id", "data").values_list("n", flat=True)
    )
    assert len(per_deadline) == due and set(per_deadline) == {1}
    # Each nudge queued once (no WeChat Work here: group posts wait, none doubled).
    nudges = await Notification.filter(kind="response_overdue", medium="group").count()
    assert nudges == TICKETS

    # Each e-mail received once, and none left behind.
    emails = await Notification.filter(medium="email").exclude(status="unroutable")
    assert emails and {n.status for n in emails} == {"sent"}
    received = Counter((rcpt, str(message["Subject"]))
                       for rcpts, message, _ in mailbox.received for rcpt in rcpts)
    assert [pair for pair, n in received.items() if n > 1] == [], "an e-mail arrived twice"
    assert sorted(rcpt for rcpt, _ in received.elements()) == sorted(n.recipient for n in emails)
    assert await Notification.filter(medium__in=DELIVERED, status__not="sent").exclude(
        status="unroutable").count() == 0


@pytest.mark.slow
async def test_sigkill_mid_sweep_with_smtp_down_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, policy: Policy
) -> None:
    url = f"sqlite://{tmp_path}/complaintbot.sqlite3"
    async with open_database(url):
        await crash_and_restart(url, tmp_path, policy, replicas=1)


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_bots_on_postgres_one_killed_mid_sweep_each_deadline_and_email_once(
    postgres_url: str, tmp_path: Path, policy: Policy
) -> None:
    async with open_database(postgres_url):
        await _truncate_postgres()
        await crash_and_restart(postgres_url, tmp_path, policy, replicas=2)


class StallingMailbox(Mailbox):
    """A real SMTP server that holds the first message's DATA until `release`."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.to_thread(self.release.wait, 10)  # the server's loop runs on
        return await super().handle_DATA(server, session, envelope)


@asynccontextmanager
async def two_workers(box: StallingMailbox) -> AsyncIterator[tuple[dict, dict]]:
    """Two workers (replicas) delivering e-mail through the started `box`, each
    with its own SMTP connections, the first with one only; closed, and the
    box stopped, at the end."""
    email = {"email": EmailTransport(box.settings(smtp_timeout_seconds=10, smtp_connections=1))}
    other = {"email": EmailTransport(box.settings(smtp_timeout_seconds=10))}
    try:
        yield email, other
    finally:
        for transport in (*email.values(), *other.values()):
            await transport.close()  # type: ignore[attr-defined]
        box.stop()


async def test_rows_another_worker_took_after_the_lease_lapsed_are_not_sent_again(
    ledger: Ledger,
) -> None:
    for i in range(2):
        await open_complaint(complaint(vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}"), ledger,
                             actor=CALL_CENTRE, source="api", now=T0)
    due = T0 + timedelta(hours=2)
    await sweep(ledger, now=due)  # R12: 2 e-mails a ticket
    assert await Notification.filter(medium="email").count() == 4
    retry = RetryPolicy(lease=timedelta(minutes=1))
    box = StallingMailbox(free_port())
    box.start()
    async with two_workers(box) as (email, other):
        first = asyncio.create_task(deliver_due(email, now=due, retry=retry))
        # Worker 1 holds the 4 rows and is stuck on the first.
        assert await asyncio.to_thread(box.stalled.wait, 10)
        taken = await deliver_due(other, now=due + 2 * retry.lease, retry=retry)
        assert taken.sent == 4, "worker 2 takes the rows whose lease lapsed"
        box.release.set()
        stats = await first
    assert (stats.claimed, stats.sent) == (4, 1), "worker 1 leaves the rows it lost alone"
    # Only the send already under way when the lease lapsed arrives twice.
    assert len(box.received) == 5
    assert await Notification.filter(medium="email", status="sent").count() == 4


async def test_a_round_that_renews_its_lease_still_sends_every_row_it_holds(
    ledger: Ledger,
) -> None:
    """A slow round renews its rows' lease past half of it; the rows of a
    recipient whose turn comes after the renewal are still this worker's."""
    for i in range(2):
        await open_complaint(complaint(vin=f"LFV2A21K6A{i:07d}", plate=f"沪C{i:05d}"), ledger,
                             actor=CALL_CENTRE, source="api", now=T0)
    due = T0 + timedelta(hours=2)
    await sweep(ledger, now=due)  # R12: the same 2 handlers e-mailed for each ticket
    assert len({n.recipient for n in await Notification.filter(medium="email")}) == 2
    retry = RetryPolicy(lease=timedelta(seconds=2))
    box = StallingMailbox(free_port())
    box.start()
    # One SMTP connection: the second recipient's turn waits for the first's stalled send.
    email = {"email": EmailTransport(box.settings(smtp_timeout_seconds=10, smtp_connections=1))}
    try:
        round_ = asyncio.create_task(deliver_due(email, now=due, retry=retry))
        assert await asyncio.to_thread(box.stalled.wait, 10)
        # Past half the lease and short of all of it: the round renews, none lapses.
        threading.Timer(0.6 * retry.lease.total_seconds(), box.release.set).start()
        with capture_logs() as logs:
            stats = await round_
    finally:
        await email["email"].close()  # type: ignore[attr-defined]
        box.stop()
    assert [e for e in logs if e["event"] == "notification_lease_lost"] == []
    assert (stats.claimed, stats.sent) == (4, 4)
    assert len(box.received) == 4
    assert await Notification.filter(medium="email", status="sent").count() == 4


class FailingAfterStallMailbox(StallingMailbox):
    """Holds the first message's DATA until `release`, then refuses it for now."""

    async def handle_DATA(self, server, session, envelope) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.to_thread(self.release.wait, 10)
            return "451 4.3.0 try again later"
        return await Mailbox.handle_DATA(self, server, session, envelope)


async def test_a_failure_after_the_lease_lapsed_leaves_the_row_another_worker_sent(
    ledger: Ledger,
) -> None:
    """Worker 1's send fails after its lease lapsed and worker 2 sent the row:
    worker 1 does not put it back in the queue (it would go out again)."""
    await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    due = T0 + timedelta(hours=2)
    await sweep(ledger, now=due)
    assert await Notification.filter(medium="email").count() == 2
    retry = RetryPolicy(lease=timedelta(minutes=1))
    box = FailingAfterStallMailbox(free_port())
    box.start()
    async with two_workers(box) as (email, other):
        first = asyncio.create_task(deliver_due(email, now=due, retry=retry))
        assert await asyncio.to_thread(box.stalled.wait, 10)
        later = due + 2 * retry.lease
        assert (await deliver_due(other, now=later, retry=retry)).sent == 2
        box.release.set()
        stats = await first
        assert stats.sent == 0 and stats.errors, "worker 1's send was refused"
        assert await Notification.filter(medium="email", status="sent").count() == 2
        again = await deliver_due(other, now=later + timedelta(hours=2), retry=retry)
    assert again.claimed == 0
    assert len(box.received) == 2


async def test_the_bot_mends_clocks_an_older_version_left_running_when_it_starts(
    tmp_path: Path, policy: Policy
) -> None:
    url = f"sqlite://{tmp_path}/complaintbot.sqlite3"
    async with open_database(url):
        await import_directory(ORG)
        book = PolicyBook(policy)
        await book.store_current()
        ledger, now = Ledger(book), utcnow()
        out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=now - timedelta(hours=1))
        number = out.ticket.number
        assert number is not None
        await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系客户", now),
                           actor=SH_STAFF, source="chat", now=now)
        # Responded, but its response clock left running, as an older version would.
        await Deadline.filter(ticket_id=number, clock="response").update(state="applied")

        async def mended() -> bool:
            return (await Deadline.get(ticket_id=number, clock="response")).state == "ended"

        async with bots(url, free_port(), tmp_path, replicas=1) as [bot]:
            await bot.start()
            await eventually(mended, what="the stale clock ended at start-up")
        assert "clocks_mended" in bot.log.read_text()
