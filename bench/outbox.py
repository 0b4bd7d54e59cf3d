"""Outbox drain: a minute of the 10× peak (~1,200 notices, 20 a second) queued
at once, delivered to WeChat Work (the emulator) and an SMTP server (aiosmtpd).

    python bench/outbox.py              # SQLite
    python bench/outbox.py --postgres   # and PostgreSQL (scratch db via TEST_POSTGRES_URL)

The network: 200 dealers, each with its group (webhook) and two handlers, and
the call centre's group. The notices are what the ledger writes: new
complaints (the dealer group's post, each handler's card, the customer's SMS)
whose response deadline then passes (the sweep: each handler's e-mail, the
group's nudge), and the call centre's `resolved` posts, 90 of them (its peak
minute, against its webhook's 20 a minute).

The emulator and the SMTP server run in a child process (a fresh one for each
phase), so this process does the bot's work only. Phases, in one run:
baseline, bot, baseline. The baseline
does what delivery must do at minimum: the same messages, rendered beforehand,
sent over the same kind of connections with the same concurrency (raw HTTP,
two kept SMTP connections), no database. The bot runs the scheduler's outbox
job (schedulers.outbox.deliver_backlog) every OUTBOX_INTERVAL_SECONDS until
no row waits. Prints a calibration line, then per database the drain time of
each, the ratio bot / baseline, CPU and SQL statements per notice, and what
the peers received (posts, digests, refusals, SMTP connections).
Target (issue 16): the bot drains the minute's backlog within a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import aiosmtplib
import yaml
from aiohttp import web

from bench.fill import ADMIN_URL, scratch_postgres
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.enums import Role
from bot.domain.ticket import Actor
from bot.intake import Complaint, open_complaint
from bot.ledger import Ledger
from bot.logs import configure_logging
from bot.notify.email import EmailTransport, build_email
from bot.notify.sms import LogSms, SmsTransport
from bot.notify.wecom import AppTransport, GroupTransport
from bot.policy import load_policy
from bot.policy_book import PolicyBook
from bot.render.notices import RenderedMessage, render
from bot.settings import DEFAULT_POLICY_FILE, Settings, load_settings
from bot.wecom.client import WeComClient
from bot.wecom.emulator import WeComEmulator
from models import GroupChat, Notification, TicketEvent
from schedulers.outbox import RetryPolicy, deliver_backlog
from schedulers.sweeper import sweep

DEALERS = 200
TICKETS = 185
CALL_CENTRE_POSTS = 90
CONCURRENCY = 8
SMTP_CONNECTIONS = 2
INTERVAL = 2.0  # OUTBOX_INTERVAL_SECONDS
SECRETS = {
    "wecom_corp_id": "wwcorpbench", "wecom_agent_id": 1000002, "wecom_secret": "bench-secret",
    "wecom_token": "BenchToken", "wecom_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "wecom_robot_token": "BenchRobot",
    "wecom_robot_aes_key": "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut",
}
SENDER = "投诉助手 <complaintbot@brand.example>"
CALL_CENTRE = Actor("cc.wang", Role.CALL_CENTRE, "王客服")


def calibration() -> float:
    """Seconds of a fixed pure-Python loop: compare machines by it."""
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i % 7
    return time.perf_counter() - started


# -- the peers: WeChat Work and an SMTP server, in a child process ----------


class CountingMailbox:
    """aiosmtpd handler: the messages and the connections (sessions) it saw."""

    def __init__(self) -> None:
        self.messages = 0
        self.peers: set[Any] = set()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages += 1
        self.peers.add(session.peer)
        return "250 Message accepted"


def _peers(pipe: Any) -> None:
    asyncio.run(_serve_peers(pipe))


async def _serve_peers(pipe: Any) -> None:
    from aiosmtpd.controller import Controller

    emulator = WeComEmulator(load_settings(**SECRETS))
    runner = web.AppRunner(emulator.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    emulator.url = f"http://127.0.0.1:{port}"
    box = CountingMailbox()
    with socket.socket() as probe:  # aiosmtpd needs a port number, not 0
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    pipe.send((emulator.url, smtp_port))
    while (command := await asyncio.to_thread(pipe.recv)) != "stop":
        requests = emulator.requests
        if command == "counts":
            hooks = [r for r in requests if r["path"] == "/cgi-bin/webhook/send"]
            pipe.send({
                "webhook_ok": sum(r["answer"].get("errcode") == 0 for r in hooks),
                "webhook_refused": sum(r["answer"].get("errcode") == 45009 for r in hooks),
                "digests": sum("通知汇总" in r["json"]["markdown"]["content"] for r in hooks
                               if r["answer"].get("errcode") == 0),
                "app_ok": sum(r["path"] == "/cgi-bin/message/send"
                              and r["answer"].get("errcode") == 0 for r in requests),
                "mails": box.messages, "smtp_connections": len(box.peers),
            })
    controller.stop()
    await runner.cleanup()


# -- the notices ------------------------------------------------------------


def network(path: Path) -> Path:
    """A directory file: DEALERS dealers with a group and two handlers each."""
    dealers, staff, groups = [], [], []
    for d in range(DEALERS):
        code = f"D{d:04d}"
        dealers.append({"code": code, "name": f"经销商{d:04d}", "region": "EAST"})
        for h in range(2):
            staff.append({"userid": f"d{d:04d}.h{h}", "name": f"专员{d}-{h}",
                          "role": "dealer_staff", "dealer": code,
                          "email": f"h{h}@d{d:04d}.example"})
        groups.append({"chatid": f"wrGRP-{code}", "name": f"经销商{d:04d}投诉群",
                       "kind": "dealer", "dealer": code, "webhook_key": f"hook-{code}"})
    staff.append({"userid": "cc.wang", "name": "王客服", "role": "call_centre",
                  "email": "cc.wang@brand.example"})
    staff.append({"userid": "east.he", "name": "何区域", "role": "region_staff",
                  "region": "EAST", "email": "east.he@brand.example"})
    groups += [{"chatid": "wrGRP-CC", "name": "呼叫中心群", "kind": "call_centre",
                "webhook_key": "hook-cc"},
               {"chatid": "wrGRP-EAST", "name": "华东区域投诉群", "kind": "region",
                "region": "EAST", "webhook_key": "hook-east"}]
    path.write_text(yaml.safe_dump({
        "regions": [{"code": "EAST", "name": "华东区域事业部"}],
        "dealers": dealers, "staff": staff, "groups": groups}, allow_unicode=True))
    return path


async def queue_notices(ledger: Ledger, now: datetime) -> int:
    """The minute's notices, all due at `now`; how many."""
    opened = now - timedelta(hours=3)
    for i in range(TICKETS):
        complaint = Complaint.model_validate({
            "customer_name": "李先生", "customer_phone": f"139{i:08d}", "car_model": "速腾",
            "plate": f"沪A{i:05d}", "vin": f"LFV2A21K6A{i:07d}", "channel": "phone",
            "description": "变速箱顿挫，多次维修未解决", "dealer_code": f"D{i % DEALERS:04d}"})
        await open_complaint(complaint, ledger, actor=CALL_CENTRE, source="api", now=opened)
    while await sweep(ledger, now=now):  # the response deadlines pass
        pass
    dispatched = await TicketEvent.filter(kind="dispatched").order_by("ticket_id").limit(
        CALL_CENTRE_POSTS)
    await Notification.bulk_create([
        Notification(ticket_id=e.ticket_id, event_id=e.id,  # type: ignore[attr-defined]
                     kind="resolved", medium="group", audience="call_centre_group",
                     recipient="wrGRP-CC", dedupe_key=f"bench-cc-{e.id}",
                     next_attempt_at=now, created_at=now)
        for e in dispatched])
    await Notification.filter(status="pending").update(next_attempt_at=now)
    return await Notification.filter(status="pending").count()


# -- the baseline -----------------------------------------------------------


async def baseline_messages(now: datetime) -> list[tuple[Notification, RenderedMessage]]:
    """Every queued notice with its message, rendered before the clock starts."""
    rows = await Notification.filter(status="pending").order_by("id")
    return [(row, await render(row, now=now)) for row in rows]


async def run_baseline(url: str, smtp: Settings, messages: list, hooks: dict[str, str]) -> float:
    """Seconds to send `messages` with no database: one request or e-mail each."""
    turns = {m: asyncio.Semaphore(CONCURRENCY) for m in ("group", "app", "email", "sms")}
    mail_turns = asyncio.Semaphore(SMTP_CONNECTIONS)
    idle: list[aiosmtplib.SMTP] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/cgi-bin/gettoken", params={
                "corpid": SECRETS["wecom_corp_id"],
                "corpsecret": SECRETS["wecom_secret"]}) as answer:
            token = (await answer.json())["access_token"]

        async def send(row: Notification, message: RenderedMessage) -> None:
            async with turns[row.medium]:
                if row.medium == "group":
                    await session.post(f"{url}/cgi-bin/webhook/send",
                                       params={"key": hooks[row.recipient]},
                                       json={"msgtype": "markdown",
                                             "markdown": {"content": message.markdown}})
                elif row.medium == "app":
                    await session.post(f"{url}/cgi-bin/message/send",
                                       params={"access_token": token},
                                       json={"touser": row.recipient, "agentid": 1000002,
                                             "msgtype": "markdown",
                                             "markdown": {"content": message.markdown}})
                elif row.medium == "email":
                    async with mail_turns:
                        client = idle.pop() if idle else aiosmtplib.SMTP(
                            hostname=smtp.smtp_host, port=smtp.smtp_port, start_tls=False)
                        if not client.is_connected:
                            await client.connect()
                        await client.send_message(build_email(smtp, row.recipient, message))
                        idle.append(client)

        started = time.perf_counter()
        await asyncio.gather(*(send(row, message) for row, message in messages))
        elapsed = time.perf_counter() - started
    for client in idle:
        await client.quit()
    return elapsed


# -- the bot ----------------------------------------------------------------


class StatementCounter(logging.Handler):
    """Counts the SQL statements tortoise logs (its db_client logger, DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


async def run_bot(url: str, smtp: Settings) -> tuple[float, int]:
    """Seconds until no notice waits, ticking like the scheduler; and the SQL
    statements it took."""
    client = WeComClient(api_base=f"{url}/cgi-bin", corp_id=SECRETS["wecom_corp_id"],
                         secret=SECRETS["wecom_secret"], agent_id=SECRETS["wecom_agent_id"])
    email = EmailTransport(smtp)
    transports = {"group": GroupTransport(client), "app": AppTransport(client),
                  "email": email, "sms": SmsTransport(LogSms())}
    counter = StatementCounter()
    db_log = logging.getLogger("tortoise.db_client")
    db_log.addHandler(counter)
    db_log.setLevel(logging.DEBUG)
    db_log.propagate = False
    started = time.perf_counter()
    try:
        while True:
            tick = time.perf_counter()
            await deliver_backlog(transports, clock=lambda: datetime.now(UTC),
                                  retry=RetryPolicy(), concurrency=CONCURRENCY)
            if not await Notification.filter(status__in=("pending", "sending")).exists():
                break
            await asyncio.sleep(max(0.0, INTERVAL - (time.perf_counter() - tick)))
        elapsed = time.perf_counter() - started
    finally:
        db_log.removeHandler(counter)
        db_log.setLevel(logging.WARNING)
        await email.close()
        await client.close()
    return elapsed, counter.count


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def peers() -> Iterator[tuple[Any, str, Settings]]:
    """A fresh emulator and SMTP server in a child process: (pipe, API URL,
    settings that send e-mail to it)."""
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    child = context.Process(target=_peers, args=(there,), daemon=True)
    child.start()
    try:
        if not here.poll(60):
            raise SystemExit("the emulator and SMTP server did not start")
        url, smtp_port = here.recv()
        yield here, url, load_settings(smtp_host="127.0.0.1", smtp_port=smtp_port,
                                       smtp_starttls=False, smtp_from=SENDER,
                                       smtp_connections=SMTP_CONNECTIONS)
    finally:
        here.send("stop")
        child.join(10)


async def baseline_bot_baseline(messages: list, hooks: dict[str, str]) -> tuple[
        dict[str, list[float]], dict[str, list[float]], dict[str, dict[str, int]], int]:
    """The phases baseline, bot, baseline, each against fresh peers, sending
    `messages` (the baseline) or every waiting row (the bot): the seconds and
    the CPU seconds of each phase, what the peers received in each, and the
    bot's SQL statements."""
    counts = {}
    phases: dict[str, list[float]] = {"baseline": [], "bot": []}
    cpus: dict[str, list[float]] = {"baseline": [], "bot": []}
    statements = 0
    for phase in ("baseline", "bot", "baseline"):
        with peers() as (pipe, url, smtp):
            before = cpu()
            if phase == "baseline":
                phases[phase].append(await run_baseline(url, smtp, messages, hooks))
            else:
                elapsed, statements = await run_bot(url, smtp)
                phases[phase].append(elapsed)
            cpus[phase].append(cpu() - before)
            pipe.send("counts")
            counts[phase] = pipe.recv()
    return phases, cpus, counts, statements


async def one_run(db_url: str, name: str) -> None:
    """Baseline, bot, baseline on one database, each against fresh peers."""
    async with open_database(db_url):
        with tempfile.TemporaryDirectory() as tmp:
            await import_directory(network(Path(tmp) / "org.yaml"))
        book = PolicyBook(load_policy(DEFAULT_POLICY_FILE))
        await book.store_current()
        now = datetime.now(UTC)
        queued = await queue_notices(Ledger(book), now)
        hooks = dict(await GroupChat.all().values_list("chatid", "webhook_key"))
        messages = await baseline_messages(now)
        phases, cpus, counts, statements = await baseline_bot_baseline(messages, hooks)
    base = sum(phases["baseline"]) / 2
    bot = phases["bot"][0]
    base_cpu = sum(cpus["baseline"]) / 2
    print(f"outbox_{name}_notices {queued}", flush=True)
    print(f"outbox_{name}_baseline_seconds {base:.2f} s "
          f"({phases['baseline'][0]:.2f} before, {phases['baseline'][1]:.2f} after)", flush=True)
    print(f"outbox_{name}_bot_drain_seconds {bot:.2f} s (target < 60 s)", flush=True)
    print(f"outbox_{name}_ratio_bot_to_baseline {bot / base:.1f} x", flush=True)
    print(f"outbox_{name}_cpu_ms_per_notice bot {1000 * cpus['bot'][0] / queued:.2f} ms, "
          f"baseline {1000 * base_cpu / queued:.2f} ms, ratio "
          f"{cpus['bot'][0] / base_cpu:.1f} x", flush=True)
    print(f"outbox_{name}_sql_statements_per_notice {statements / queued:.2f}", flush=True)
    print(f"outbox_{name}_peers bot {counts['bot']}; baseline {counts['baseline']}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help=f"also run on PostgreSQL (scratch database via {ADMIN_URL})")
    args = parser.parse_args()
    configure_logging("json", "WARNING")  # a log line per notice would time the terminal
    print(f"calibration_loop_seconds {calibration():.3f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        await one_run(f"sqlite://{tmp}/bench.sqlite3", "sqlite")
    if args.postgres:
        async with scratch_postgres() as db_url:
            await one_run(db_url, "postgres")


if __name__ == "__main__":
    asyncio.run(main())
