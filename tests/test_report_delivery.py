"""R24 scheduled reports on SQLite and PostgreSQL, delivered through the outbox
to the WeChat Work emulator and a real SMTP server: markdown and chart in each
group, the workbook to each manager, once per period across restarts and
replicas (two runs at once, two processes, the app's own scheduler)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import sys
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from openpyxl import load_workbook

from bot.app import create_app
from bot.db import open_database
from bot.directory_import import import_directory
from bot.domain.transitions import respond
from bot.intake import Complaint, open_complaint
from bot.reports.figures import Limits, RankRow, Scope, compute_figures, parse_period
from bot.reports.render import markdown_summary
from models import Deployment, GroupChat, Notification, ReportRun
from schedulers import runner
from schedulers.reports import ReportStats, deliver_reports, due_period, first_day, report_trigger
from tests.conftest import ORG, ROOT, T0, TOKEN, WECOM_SECRETS, _truncate_postgres
from tests.factories import CALL_CENTRE, SH_STAFF
from tests.test_notify_email import running_mailbox
from tests.test_outbox import Delivery, delivering
from tests.waiting import eventually

ZONE = ZoneInfo("Asia/Shanghai")
D = timedelta(days=1)
TP = T0 - 7 * D  # Monday of 2026-W09, the week reported at T0
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SCOPES = {"dealer:SH001", "dealer:HZ001", "dealer:BJ001", "dealer:TJ001", "region:EAST",
          "region:NORTH", "brand"}
# The managers of examples/org.yaml and the report each is e-mailed.
MANAGERS = {"sh.zhou@sh001.example": "SH001", "sh.wu@sh001.example": "SH001",
            "hz.qian@hz001.example": "HZ001", "hz.zheng@hz001.example": "HZ001",
            "bj.yang@bj001.example": "BJ001", "bj.huang@bj001.example": "BJ001",
            "tj.xu@tj001.example": "TJ001", "tj.ma@tj001.example": "TJ001",
            "east.lin@brand.example": "EAST", "east.gao@brand.example": "EAST",
            "north.song@brand.example": "NORTH", "north.tang@brand.example": "NORTH",
            "hq.deng@brand.example": "全品牌", "hq.cao@brand.example": "全品牌"}


async def week09_tickets(ledger) -> None:
    """Three complaints in W09: two at SH001 (one answered in an hour, so SH001
    ranks first in EAST), one at HZ001."""
    for i, (dealer, day) in enumerate((("SH001", 0), ("SH001", 2), ("HZ001", 3))):
        body = {"customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
                "plate": "", "vin": f"LFV2A21K6A30{i:05d}", "channel": "phone",
                "description": "变速箱顿挫", "dealer_code": dealer}
        await open_complaint(Complaint.model_validate(body), ledger, actor=CALL_CENTRE,
                             source="api", now=TP + day * D)
    at = TP + timedelta(hours=1)
    await ledger.apply(1, lambda t: respond(t, SH_STAFF, "", at), actor=SH_STAFF, source="chat",
                       now=at)
    # The dispatch notices are not what this file is about.
    await Notification.all().update(status="sent")


def group_posts(emulator, key: str) -> list[dict]:
    """What the group with this webhook key received (and WeChat Work accepted)."""
    return [r["json"] for r in emulator.sent("webhook/send")
            if r["query"].get("key") == key and r["answer"].get("errcode") == 0]


def workbook_of(mail) -> tuple[str, object]:
    [part] = [p for p in mail.iter_attachments()]
    assert part.get_content_type() == XLSX
    return part.get_filename(), load_workbook(io.BytesIO(part.get_content()))


@pytest.fixture
async def delivery(ledger, emulator, clock):
    async with delivering(emulator, clock) as adapters:
        yield adapters


async def test_r24_weekly_reports_reach_every_group_and_manager_once(ledger, delivery: Delivery):
    await week09_tickets(ledger)
    week = parse_period("weekly", None, T0, ZONE)
    assert week.label == "2026-W09"
    stats = await deliver_reports(week, now=T0, policy=ledger.policies.current, zone=ZONE)
    assert set(stats.delivered) == SCOPES and not stats.failed
    sent = await delivery.run(T0)
    assert sent.sent == sent.claimed == 2 * 7 + len(MANAGERS), sent.errors

    sh = group_posts(delivery.emulator, "hook-sh001")
    assert [p["msgtype"] for p in sh] == ["markdown", "image"], "summary first, then the chart"
    text = sh[0]["markdown"]["content"]
    assert "投诉周报 2026-W09" in text and "上海浦东4S店（SH001）" in text
    assert "受理投诉：**2**" in text
    image = base64.b64decode(sh[1]["image"]["base64"])
    assert image.startswith(b"\x89PNG") and hashlib.md5(image).hexdigest() == sh[1]["image"]["md5"]

    east = group_posts(delivery.emulator, "hook-east")[0]["markdown"]["content"]
    assert "**经销商排名**" in east
    assert east.index("上海浦东4S店（SH001）受理 2") < east.index("杭州西湖4S店（HZ001）受理 1")
    hq = group_posts(delivery.emulator, "hook-hq")[0]["markdown"]["content"]
    assert "全品牌" in hq and "**区域排名**" in hq and "华东区域事业部（EAST）受理 3" in hq
    assert group_posts(delivery.emulator, "hook-cc") == [], "the call centre gets none"

    for address, scope in MANAGERS.items():
        [mail] = delivery.mailbox.to(address)
        assert mail["Subject"].startswith("【投诉周报】2026-W09 ")
        name, book = workbook_of(mail)
        assert name == f"投诉周报-2026-W09-{scope}.xlsx"
        ranked = "区域排名" if scope == "全品牌" else "经销商排名"
        assert book.sheetnames == ["汇总", ranked, "投诉明细"]
        assert "摘要如下" in mail.get_body(("plain",)).get_content()
    _, book = workbook_of(delivery.mailbox.to("sh.zhou@sh001.example")[0])
    assert book["投诉明细"].max_row == 1 + 2, "header and SH001's two complaints"
    _, book = workbook_of(delivery.mailbox.to("east.lin@brand.example")[0])
    assert [r[1] for r in book["经销商排名"].iter_rows(min_row=2, values_only=True)] == [
        "SH001", "HZ001"]
    assert delivery.mailbox.to("sh.zhang@sh001.example") == [], "handlers get no report"

    # A restart, or the hourly catch-up: nothing is computed or sent again.
    again = await deliver_reports(week, now=T0 + D, policy=ledger.policies.current, zone=ZONE)
    assert again.delivered == [] and again.already == 7
    assert (await delivery.run(T0 + D)).claimed == 0
    assert len(delivery.mailbox.received) == len(MANAGERS)


async def test_two_replicas_at_once_store_each_report_once(ledger, delivery: Delivery):
    await week09_tickets(ledger)
    month = parse_period("monthly", None, T0, ZONE)
    policy = ledger.policies.current
    first, second = await asyncio.gather(
        deliver_reports(month, now=T0, policy=policy, zone=ZONE),
        deliver_reports(month, now=T0, policy=policy, zone=ZONE))
    assert sorted(first.delivered + second.delivered) == sorted(SCOPES)
    assert first.lost + second.lost <= 1, "the one that lost a claim leaves the rest"
    assert await ReportRun.filter(kind="monthly", period="2026-02").count() == 7
    await delivery.run(T0)
    assert len(group_posts(delivery.emulator, "hook-east")) == 2
    assert sorted(a for rcpts, _, _ in delivery.mailbox.received for a in rcpts) == sorted(
        MANAGERS)
    assert delivery.mailbox.to("hq.cao@brand.example")[0]["Subject"] == "【投诉月报】2026-02 全品牌"


_REPLICA = """
import asyncio, json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
from bot.db import open_database
from bot.policy import load_policy
from bot.reports.figures import Limits, RankRow, Scope, compute_figures, parse_period
from bot.settings import DEFAULT_POLICY_FILE
from schedulers.reports import deliver_reports

async def main():
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.fromisoformat(sys.argv[2])
    async with open_database(sys.argv[1]):
        stats = await deliver_reports(parse_period("weekly", None, now, zone), now=now,
                                      policy=load_policy(DEFAULT_POLICY_FILE), zone=zone)
    print(json.dumps({"delivered": stats.delivered, "lost": stats.lost}))

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_replica_processes_store_each_report_once(ledger, db):
    await week09_tickets(ledger)

    async def replica() -> dict:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _REPLICA, db, T0.isoformat(), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return json.loads(out.decode().strip().splitlines()[-1])

    results = await asyncio.gather(replica(), replica())
    assert sorted(results[0]["delivered"] + results[1]["delivered"]) == sorted(SCOPES)
    assert await ReportRun.filter(kind="weekly", period="2026-W09").count() == 7
    keys = await Notification.filter(kind="report_weekly").values_list("dedupe_key", flat=True)
    assert len(keys) == len(set(keys)) == 2 * 7 + len(MANAGERS)


def test_a_report_is_due_once_its_schedule_fired():
    weekly = report_trigger("0 9 * * mon", ZONE)
    monthly = report_trigger("0 9 1 * *", ZONE)
    assert due_period("weekly", weekly, T0, ZONE).label == "2026-W09"
    assert due_period("weekly", weekly, T0 - timedelta(minutes=1), ZONE).label == "2026-W08"
    assert due_period("weekly", weekly, T0 + 6 * D, ZONE).label == "2026-W09"
    assert due_period("monthly", monthly, T0, ZONE).label == "2026-02"
    assert due_period("monthly", monthly, T0 - 2 * D, ZONE).label == "2026-01"


async def test_a_long_ranking_is_cut_to_fit_a_group_message(ledger):
    week = parse_period("weekly", None, T0, ZONE)
    figures = await compute_figures(week, Scope("region", "EAST"), Limits.of(
        ledger.policies.current), ZONE)
    figures.ranking = [RankRow(f"D{i:03d}", f"第{i}号经销商", 10, 0.5, 0.5, 1, i)
                       for i in range(1, 200)]
    text = markdown_summary(figures, max_bytes=4096)
    assert len(text.encode()) <= 4096 and "1. 第1号经销商（D001）" in text
    assert text.endswith("个经销商见邮件附件") and "其余" in text


@pytest.mark.slow
async def test_the_app_catches_up_at_start_and_not_again_after_a_restart(
    database_url, aiohttp_client, clock, emulator, monkeypatch
):
    """The app's own scheduler: started on Monday 10:00 after missing 09:00 (in
    service since January), it stores and sends last week's and last month's
    reports; restarted, nothing."""
    clock[0] = T0 + timedelta(hours=1)
    rounds: list[ReportStats] = []  # each report round the scheduler ran, as it ended

    async def recorded(*args, **kwargs) -> ReportStats:
        stats = await deliver_reports(*args, **kwargs)
        rounds.append(stats)
        return stats

    monkeypatch.setattr(runner, "deliver_reports", recorded)

    def all_sent() -> bool:
        return (len(rounds) >= 2 and len(box.received) >= 2 * len(MANAGERS)
                and len(group_posts(emulator, "hook-north")) >= 4)

    with running_mailbox() as box:
        settings = box.settings(database_url=database_url, api_token=TOKEN,
                                outbox_interval_seconds=0.1, report_catchup_delay_seconds=0,
                                wecom_api_base=f"{emulator.url}/cgi-bin",
                                timezone="Asia/Shanghai", **WECOM_SECRETS)
        async with open_database(database_url):  # the directory is there from the start
            if database_url.startswith("postgres"):
                await _truncate_postgres()
            await import_directory(ORG)
            # Running since January: last week's and month's reports are owed.
            await Deployment.create(id=1, first_day=date(2026, 1, 5), created_at=T0 - 60 * D)
        client = await aiohttp_client(create_app(settings, clock=lambda: clock[0]))
        await eventually(all_sent, what="both reports went to every manager and group")
        await client.close()
        # The restart: same database, same clock. Its catch-up looks at both
        # kinds again (two more rounds) and finds them done: it stores nothing
        # for the outbox, so nothing more can be sent.
        client = await aiohttp_client(create_app(settings, clock=lambda: clock[0]))
        await eventually(lambda: len(rounds) >= 4, what="the restarted app's catch-up ran")
        await client.close()
    assert all(r.delivered for r in rounds[:2]) and [r.delivered for r in rounds[2:]] == [[], []]
    subjects = sorted(m["Subject"] for _, m, _ in box.received)
    assert len(subjects) == 2 * len(MANAGERS), subjects
    assert sum(s.startswith("【投诉周报】2026-W09 ") for s in subjects) == len(MANAGERS)
    assert sum(s.startswith("【投诉月报】2026-02 ") for s in subjects) == len(MANAGERS)
    assert [p["msgtype"] for p in group_posts(emulator, "hook-north")] == [
        "markdown", "image"] * 2


async def test_an_app_chat_group_gets_the_summary_and_the_chart_as_uploaded_media(
        ledger, delivery):
    await week09_tickets(ledger)
    await GroupChat.filter(chatid="wrGRP-SH001").update(webhook_key="", app_chat_id="wrAPPCHAT1")
    delivery.emulator.appchats.adopt("wrAPPCHAT1", ["sh.zhang", "sh.li"])
    week = parse_period("weekly", None, T0, ZONE)
    await deliver_reports(week, now=T0, policy=ledger.policies.current, zone=ZONE)
    assert (await delivery.run(T0)).dead == 0
    [upload] = delivery.emulator.sent("media/upload")
    assert upload["json"]["type"] == "image" and upload["answer"]["errcode"] == 0
    text, image = delivery.emulator.sent("appchat/send")
    assert text["json"]["chatid"] == image["json"]["chatid"] == "wrAPPCHAT1"
    assert "投诉周报" in text["json"]["markdown"]["content"]
    assert image["json"]["image"]["media_id"] == upload["answer"]["media_id"]
    assert image["answer"]["errcode"] == 0
    run = await ReportRun.get(kind="weekly", period="2026-W09", scope_code="SH001")
    assert upload["json"]["md5"] == hashlib.md5(run.chart_png).hexdigest()


async def test_the_emulator_refuses_an_image_whose_md5_does_not_match(emulator):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    image = {"base64": base64.b64encode(png).decode(), "md5": hashlib.md5(b"other").hexdigest()}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.url}/cgi-bin/webhook/send", params={"key": "k"},
                                json={"msgtype": "image", "image": image}) as answer:
            assert (await answer.json())["errcode"] == 40009
        image["md5"] = hashlib.md5(png).hexdigest()
        async with session.post(f"{emulator.url}/cgi-bin/webhook/send", params={"key": "k"},
                                json={"msgtype": "image", "image": image}) as answer:
            assert (await answer.json())["errcode"] == 0


async def test_r9_a_first_start_sends_no_report_of_the_weeks_and_months_before_it(
        ledger, delivery: Delivery):
    """Deployed on Monday 2026-03-02 (no ticket yet): the reports due then, of
    W09 and February, would be all zeros of days the bot did not run; none is
    sent. The first week it ran, W10, is reported the Monday after."""
    weekly, monthly = report_trigger("0 9 * * mon", ZONE), report_trigger("0 9 1 * *", ZONE)
    policy = ledger.policies.current
    for kind, trigger in (("weekly", weekly), ("monthly", monthly)):
        period = due_period(kind, trigger, T0, ZONE)
        stats = await deliver_reports(period, now=T0, policy=policy, zone=ZONE)
        assert stats.delivered == [] and stats.failed == []
    assert await first_day(T0, ZONE) == date(2026, 3, 2)
    assert (await delivery.run(T0)).claimed == 0
    assert delivery.emulator.sent("webhook/send") == [] and delivery.mailbox.received == []

    week10 = due_period("weekly", weekly, T0 + 7 * D, ZONE)
    stats = await deliver_reports(week10, now=T0 + 7 * D, policy=policy, zone=ZONE)
    assert set(stats.delivered) == SCOPES
    await delivery.run(T0 + 7 * D)
    [text, _] = group_posts(delivery.emulator, "hook-sh001")
    assert "投诉周报 2026-W10" in text["markdown"]["content"]
    assert len(delivery.mailbox.received) == len(MANAGERS)
