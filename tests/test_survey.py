"""R23: the satisfaction survey the customer answers from the closing SMS.

Over real HTTP on SQLite and PostgreSQL: the closing SMS carries a signed
link (read from what the SMS adapter sends), the page shows the form, an
answer is stored on the ticket and its history, and the link refuses a
second use, an expired or forged link and a reopened ticket with a Chinese
page for each. A low score reaches the dealer's manager and the region's
group (through the WeChat Work emulator). The last test does the same in
Debian's Chromium on a phone-sized screen with JavaScript off.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook
from structlog.testing import capture_logs

from bot.app import create_app
from bot.db import open_database
from bot.directory import actor_for
from bot.directory_import import import_directory
from bot.domain.enums import Status
from bot.domain.survey import (
    CUSTOMER,
    Closing,
    SurveyRefused,
    answer_survey,
    survey_refusal,
)
from bot.domain.ticket import Refused
from bot.domain.transitions import close, reopen, respond
from bot.intake import open_complaint
from bot.keys import LEDGER, SETTINGS
from bot.ledger import UnderPolicy
from bot.reports.figures import Limits, Scope, build_report, compute_figures, parse_period
from bot.reports.render import markdown_summary, write_files
from bot.settings import DEFAULT_POLICY_FILE, Settings, SettingsError, load_settings
from bot.survey import SurveyLinks
from commands.base import ChatMessage, Context
from commands.router import handle_message
from models import Deadline, Notification, TicketEvent
from models import Ticket as TicketRow
from schedulers.outbox import deliver_due
from schedulers.runner import transports_for
from tests.conftest import ORG, T0, TOKEN, WECOM_SECRETS, _truncate_postgres
from tests.factories import CALL_CENTRE, EAST, SH_STAFF, make_ticket
from tests.test_demo import CHROMIUM_ARGS, _chromium, free_port
from tests.test_outbox import complaint, delivering
from tests.test_reports import ZONE, load_tickets
from tests.test_reports import complaint as report_complaint
from tests.waiting import GENEROUS
from webhooks.survey import FORGED, THANKS

BASE = "https://bot.example.com"
SECRET = "survey-secret-0123456789abcdef"
H = timedelta(hours=1)
D = timedelta(days=1)


def survey_settings(database_url: str, emulator_url: str, **changes: object) -> Settings:
    """The bot's settings with the survey on (and WeChat Work at the emulator)."""
    values: dict[str, object] = {
        "database_url": database_url, "api_token": TOKEN, "timezone": "Asia/Shanghai",
        "wecom_api_base": f"{emulator_url}/cgi-bin", "public_base_url": BASE,
        "survey_secret": SECRET, **WECOM_SECRETS}
    return load_settings(**{**values, **changes})


async def start(database_url: str, aiohttp_client, emulator, clock, **changes: object
                ) -> TestClient:
    """The bot (no scheduler) with the survey settings, on a clean database."""
    if database_url.startswith("postgres"):
        async with open_database(database_url):
            await _truncate_postgres()
    settings = survey_settings(database_url, emulator.url, **changes)
    bot = await aiohttp_client(create_app(settings, clock=lambda: clock[0], scheduler=False))
    await import_directory(ORG)
    return bot


@pytest.fixture
async def bot(database_url, aiohttp_client, emulator, clock) -> TestClient:
    return await start(database_url, aiohttp_client, emulator, clock)


async def closed_ticket(bot: TestClient | TestServer, clock, *, at=T0, score: int = 4,
                        **details: str) -> int:
    """A ticket (of the complaint's `details`) opened at `at`, responded to an
    hour later and closed by the call centre (score `score`) after two; the
    clock is left at the closing."""
    ledger = bot.app[LEDGER]
    # A vehicle of its own: the same one again would be a repeat (R6), escalated.
    vin = f"LFV2A21K6A30{await TicketRow.all().count():05d}"
    out = await open_complaint(complaint(vin=vin, **details), ledger, actor=CALL_CENTRE,
                               source="api", now=at)
    number = out.ticket.number
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "", at + H), actor=SH_STAFF,
                       source="chat", now=at + H)
    await ledger.apply(number, lambda t: close(t, CALL_CENTRE, score, "", at + 2 * H),
                       actor=CALL_CENTRE, source="chat", now=at + 2 * H)
    clock[0] = at + 2 * H
    return number


async def sent_sms(bot: TestClient | TestServer, clock) -> list[dict]:
    """What the SMS adapter the bot runs with (development: the log) sent now."""
    with capture_logs() as logs:
        await deliver_due(transports_for(bot.app[SETTINGS], None), now=clock[0])
    return [e for e in logs if e["event"] == "sms_logged"]


async def survey_link(bot: TestClient | TestServer, clock, number: int) -> str:
    """The link in the ticket's closing SMS."""
    [closing] = [s for s in await sent_sms(bot, clock)
                 if s["kind"] == "closed_survey" and s["params"]["number"] == str(number)]
    return closing["params"]["survey"]


async def survey_path(bot: TestClient, clock, number: int) -> str:
    """The path of the link in the ticket's closing SMS."""
    link = await survey_link(bot, clock, number)
    assert link.startswith(f"{BASE}/s/")
    return link.removeprefix(BASE)


async def answer(bot: TestClient, path: str, score: str, comment: str = "") -> tuple[int, str]:
    resp = await bot.post(path, data={"score": score, "comment": comment})
    return resp.status, await resp.text()


async def page(bot: TestClient, path: str) -> tuple[int, str]:
    resp = await bot.get(path)
    assert resp.content_type == "text/html" and resp.charset == "utf-8"
    return resp.status, await resp.text()


async def test_r23_the_closing_sms_carries_a_short_link_to_the_form(bot, clock):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    assert len(BASE + path) <= 60, "short enough for an SMS"
    status, html = await page(bot, path)
    assert status == 200
    assert f"投诉编号 #{number}" in html and "上海浦东4S店" in html
    assert "您对本次投诉的处理结果满意吗？" in html and "提交评价" in html
    assert re.findall(r'name="score" value="(\d)"', html) == ["5", "4", "3", "2", "1"]
    assert 'name="viewport"' in html and "<script" not in html
    assert "13812345678" not in html and "李先生" not in html, "a forwarded link shows nobody"


async def test_r23_an_answer_is_stored_on_the_ticket_and_in_its_history(bot, clock):
    number = await closed_ticket(bot, clock, score=4)
    path = await survey_path(bot, clock, number)
    clock[0] += 3 * H
    status, html = await answer(bot, path, "5", "  服务很好，谢谢  ")
    assert status == 200 and "感谢您的评价" in html and f"#{number}" in html
    row = await TicketRow.get(id=number)
    assert (row.survey_score, row.survey_comment, row.survey_answered_at) == (
        5, "服务很好，谢谢", clock[0])
    assert row.satisfaction == 5, "the customer's own answer wins over the call centre's 4"
    assert row.status == "closed"
    event = await TicketEvent.get(ticket_id=number, kind="survey_answered")
    closing = await TicketEvent.get(ticket_id=number, kind="closed")
    assert (event.actor, event.source, event.at) == ("customer", "survey", clock[0])
    assert event.data == {"score": 5, "note": "服务很好，谢谢", "closing": closing.id,
                          "agent_score": 4}
    assert closing.data["satisfaction"] == 4, "the call centre's score stays in the history"
    resp = await bot.get(f"/api/complaints/{number}", headers={"Authorization": f"Bearer {TOKEN}"})
    body = await resp.json()
    assert (body["survey_score"], body["survey_comment"], body["satisfaction"]) == (
        5, "服务很好，谢谢", 5)
    assert body["history"][-1]["kind"] == "survey_answered"
    ctx = Context(actor=await actor_for("sh.zhang"), ledger=bot.app[LEDGER], now=clock[0],
                  zone=ZONE)
    shown = (await handle_message(ChatMessage(userid="sh.zhang", text=f"/show {number}",
                                              channel="app", chatid=None, msgid="m1"), ctx))
    assert "> 客户评价：5 星（03-02 14:00）：服务很好，谢谢" in shown.markdown
    assert not await Notification.filter(ticket_id=number, kind="survey_low").exists()


async def test_r23_a_link_is_usable_once(bot, clock):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    # Two taps at once (a double submit): the ticket's row lock lets one in.
    both = await asyncio.gather(answer(bot, path, "4"), answer(bot, path, "4"))
    assert sorted(status for status, _ in both) == [200, 409]
    for status, html in (await answer(bot, path, "1", "再来一次"), await page(bot, path)):
        assert status == 409
        assert f"投诉 #{number} 的评价已经提交过了，每个评价链接只能使用一次" in html
        assert "提交评价</button>" not in html
    row = await TicketRow.get(id=number)
    assert (row.survey_score, row.survey_comment) == (4, None)
    assert await TicketEvent.filter(ticket_id=number, kind="survey_answered").count() == 1


async def test_r23_a_link_expires_after_the_policy_days(bot, clock, policy):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    closed_at = clock[0]
    clock[0] = closed_at + policy.survey.valid_for - timedelta(minutes=1)
    assert (await page(bot, path))[0] == 200, "still valid a minute before"
    clock[0] = closed_at + policy.survey.valid_for
    for status, html in (await page(bot, path), await answer(bot, path, "5")):
        assert status == 410
        assert f"投诉 #{number} 的评价链接已过期（结案后 7 天内有效）" in html
    assert (await TicketRow.get(id=number)).survey_score is None


async def test_r23_a_forged_or_altered_link_is_refused(bot, clock):
    first = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, first)
    second = await closed_ticket(bot, clock)
    second_closing = await TicketEvent.get(ticket_id=second, kind="closed")
    event, signature = path.removeprefix("/s/").split(".")
    other_key = SurveyLinks(BASE, b"another-secret-0123456789")
    forged = [
        f"/s/{event}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # altered
        f"/s/{second_closing.id}.{signature}",  # another ticket's closing, this signature
        f"/s/{other_key.token(second_closing.id)}",  # signed with another key
        f"/s/0{event}.{signature}", "/s/abc", "/s/%E2%91%A0.x",
    ]
    for bad in forged:
        for status, html in (await page(bot, bad), await answer(bot, bad, "1")):
            assert status == 404, bad
            assert "评价链接无效，请核对短信中的链接是否完整" in html, bad
    assert not await TicketEvent.filter(kind="survey_answered").exists()


async def test_r23_a_reopened_ticket_voids_the_link(bot, clock):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    await bot.app[LEDGER].apply(number, lambda t: reopen(t, EAST, "客户来电", clock[0]),
                                actor=EAST, source="chat", now=clock[0])
    status, html = await page(bot, path)
    assert status == 410 and f"投诉 #{number} 已重新进入处理，此评价链接已失效" in html
    assert (await answer(bot, path, "2"))[0] == 410


async def test_r23_bad_answers_are_refused_in_chinese_and_change_nothing(bot, clock):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    status, html = await answer(bot, path, "", "忘了打分")
    assert status == 400 and f"投诉 #{number}：请选择 1 到 5 颗星后再提交" in html
    assert "忘了打分</textarea>" in html, "what was written stays"
    assert (await answer(bot, path, "6"))[0] == 400
    status, html = await answer(bot, path, "3", "长" * 501)
    assert status == 400 and "留言最多 500 字，您写了 501 字" in html
    assert 'value="3" required checked' in html, "the chosen star stays"
    status, html = await answer(bot, path, "2", "<script>alert(1)</script>" + "长" * 480)
    assert status == 400 and "&lt;script&gt;" in html and "<script>" not in html
    assert not await TicketEvent.filter(ticket_id=number, kind="survey_answered").exists()
    assert (await answer(bot, path, "3"))[0] == 200, "the link still works after a refusal"


async def test_r23_a_low_score_tells_the_dealer_manager_and_the_region(bot, clock, emulator):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    assert (await answer(bot, path, "1", "等了两周才修好"))[0] == 200
    rows = await Notification.filter(ticket_id=number, kind="survey_low").order_by("id")
    assert [(r.medium, r.audience, r.recipient) for r in rows] == [
        ("app", "dealer_managers", "sh.zhou"), ("group", "region_group", "wrGRP-EAST")]
    async with delivering(emulator, clock) as delivery:
        await deliver_due({m: delivery.transports[m] for m in ("app", "group")}, now=clock[0])
        [to_manager] = delivery.app_messages("sh.zhou")
        [to_region] = delivery.webhook_posts("hook-east")
    for text in (to_manager, to_region):
        assert f"【客户评价低分】</font>投诉 #{number}**" in text
        assert "客户在满意度评价中给出 **1 星**（满分 5 星），呼叫中心回访时记录为 4 分" in text
        assert "客户留言：等了两周才修好" in text and "13812345678" not in text
    assert "重新打开（`/reopen" in to_region, "the region may reopen it"
    assert "联系区域重新打开" in to_manager, "a dealer manager may not"
    assert (await TicketRow.get(id=number)).status == "closed", "reopening is off by default"


async def test_r22_a_low_score_about_an_employee_keeps_the_comment_out_of_groups(
    bot, clock, emulator
):
    number = await closed_ticket(bot, clock, about_staff="sh.chen")
    path = await survey_path(bot, clock, number)
    assert (await answer(bot, path, "1", "陈专员态度恶劣"))[0] == 200
    async with delivering(emulator, clock) as delivery:
        await deliver_due({m: delivery.transports[m] for m in ("app", "group")}, now=clock[0])
        [to_manager] = [m for m in delivery.app_messages("sh.zhou") if "评价低分" in m]
        [to_region] = [p for p in delivery.webhook_posts("hook-east") if "评价低分" in p]
    assert "客户留言：陈专员态度恶劣" in to_manager
    assert "陈专员" not in to_region and "客户留言" not in to_region
    assert f"投诉 #{number}" in to_region and "1 星" in to_region


async def test_r26_a_comment_naming_legal_action_flags_the_ticket_to_legal(bot, clock):
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    assert (await answer(bot, path, "3", "再不赔偿我就去法院起诉"))[0] == 200
    assert (await TicketRow.get(id=number)).legal
    assert await Notification.filter(ticket_id=number, kind="legal_flag",
                                     recipient="legal.han@brand.example").exists()


async def test_r23_a_low_score_reopens_the_ticket_when_the_policy_says_so(
    database_url, aiohttp_client, emulator, clock, tmp_path: Path
):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(DEFAULT_POLICY_FILE.read_text(encoding="utf-8").replace(
        "low_score_reopens: false", "low_score_reopens: true"), encoding="utf-8")
    bot = await start(database_url, aiohttp_client, emulator, clock, policy_file=policy_file)
    number = await closed_ticket(bot, clock)
    path = await survey_path(bot, clock, number)
    assert (await answer(bot, path, "3"))[0] == 200
    assert (await TicketRow.get(id=number)).status == "closed", "3 is not low"

    number = await closed_ticket(bot, clock, at=T0 + D)
    path = await survey_path(bot, clock, number)
    assert (await answer(bot, path, "2", "问题没解决"))[0] == 200
    row = await TicketRow.get(id=number)
    assert (row.status, row.survey_score, row.satisfaction, row.reopened_count) == (
        "dispatched", 2, None, 1)
    assert await Deadline.filter(ticket_id=number, clock="response", state="pending",
                                 due_at=clock[0] + 2 * H).exists()
    kinds = await Notification.filter(ticket_id=number, kind__in=["survey_low", "reopened"]
                                      ).values_list("kind", "recipient")
    assert sorted(kinds) == [("reopened", "wrGRP-SH001"), ("survey_low", "sh.zhou"),
                             ("survey_low", "wrGRP-EAST")]
    async with delivering(emulator, clock) as delivery:
        await deliver_due({"group": delivery.transports["group"]}, now=clock[0])
        [reopened] = [p for p in delivery.webhook_posts("hook-sh001") if "重新打开" in p]
    assert f"投诉 #{number} 已重新打开" in reopened and "客户评价 2 星（满意度评价）" in reopened
    status, html = await page(bot, path)
    assert status == 409, "the answered link stays used after the reopening"


async def test_r23_without_an_address_and_key_there_is_no_survey_link(
    database_url, aiohttp_client, emulator, clock
):
    bot = await start(database_url, aiohttp_client, emulator, clock, survey_secret=None)
    number = await closed_ticket(bot, clock)
    [closing] = [s for s in await sent_sms(bot, clock) if s["kind"] == "closed"]
    assert closing["params"] == {"number": str(number)}
    status, html = await page(bot, "/s/1.AAAAAAAAAAAAAAAA")
    assert status == 404 and "满意度评价暂未开通" in html


# -- the rules alone (no database) ------------------------------------------------


def test_r23_survey_settings_refuse_a_short_key_and_an_address_without_scheme():
    with pytest.raises(SettingsError) as refused:
        load_settings(survey_secret="short", public_base_url="bot.example.com")
    assert "SURVEY_SECRET: Value error, must be at least 16 characters" in str(refused.value)
    assert "PUBLIC_BASE_URL: Value error, must start with https://" in str(refused.value)
    settings = load_settings(survey_secret=SECRET, public_base_url=f"{BASE}/")
    links = SurveyLinks.from_settings(settings)
    assert links is not None and links.link(42).startswith(f"{BASE}/s/42.")


def test_r23_the_survey_rules_in_order(policy):
    closed = make_ticket(policy, T0, status=Status.CLOSED, closed_at=T0 + D, satisfaction=4)
    closing = Closing(event=7, at=T0 + D)
    week = policy.survey.valid_for
    assert survey_refusal(closed, closing, policy, T0 + D + week - H) is None
    out = answer_survey(closed, closing, 2, "", policy, T0 + 2 * D)
    assert out.event == "survey_answered" and out.data["low"] is True
    assert out.ticket.survey_comment is None and out.ticket.status == "closed"
    refusals = {
        "used": survey_refusal(out.ticket, closing, policy, T0 + 2 * D),
        "expired": survey_refusal(closed, closing, policy, T0 + D + week),
        "reopened": survey_refusal(closed, Closing(6, T0), policy, T0 + D),
    }
    assert {why: r.why if r else None for why, r in refusals.items()} == {
        "used": "used", "expired": "expired", "reopened": "reopened"}
    with pytest.raises(SurveyRefused):
        answer_survey(out.ticket, closing, 5, "", policy, T0 + 2 * D)
    with pytest.raises(Refused, match="请选择 1 到 5 颗星"):
        answer_survey(closed, closing, 0, "", policy, T0 + 2 * D)


# -- reports (R24): response rate and mean stars per dealer and region ----------------


async def answer_closing(ledger, number: int, score: int, at) -> None:
    """The customer answers the ticket's last closing at `at` (the page's way in)."""
    event = await TicketEvent.filter(ticket_id=number, kind="closed").order_by("-id").first()
    assert event is not None
    closing = Closing(event.id, event.at)
    await ledger.apply(number, UnderPolicy(
        lambda t, p: answer_survey(t, closing, score, "", p, at)),
        actor=CUSTOMER, source="survey", now=at)


async def test_r23_reports_count_the_survey_per_dealer_and_region(ledger, policy, tmp_path):
    """By hand, on the tickets of tests/test_reports.py plus G:
    W09: P1 SH001 closed (call centre 4), answered 5 in W10: counts in W09.
    W10: A SH001 closed (5), answered 2; G SH001 closed (3), answered 4;
         D HZ001 closed (3), never answered.
    W10 SH001: 2 closings, 2 answers, 100 %, mean 3; HZ001: 1, 0, 0 %, no mean;
    EAST: 3, 2, 66.67 %, mean 3; the score of record of A is the customer's 2,
    so EAST's satisfaction is (2 + 4 + 3) / 3; NORTH closed nothing."""
    numbers = await load_tickets(ledger, policy)
    g = (await open_complaint(report_complaint("LFV2A21K6A3099999"), ledger, actor=CALL_CENTRE,
                              source="api", now=T0 + 3 * D)).ticket.number
    for step, actor, at in ((lambda t, at: respond(t, SH_STAFF, "", at), SH_STAFF, 3 * D + H),
                            (lambda t, at: close(t, CALL_CENTRE, 3, "", at), CALL_CENTRE, 4 * D)):
        await ledger.apply(g, lambda t, s=step, at=T0 + at: s(t, at), actor=actor,
                           source="chat", now=T0 + at)
    await answer_closing(ledger, numbers["P1"], 5, T0 + H)
    await answer_closing(ledger, numbers["A"], 2, T0 + 31 * H)
    await answer_closing(ledger, g, 4, T0 + 4 * D + H)

    week = parse_period("weekly", "2026-W10", T0, ZONE)
    limits = Limits.of(policy)
    dealer = await compute_figures(week, Scope.parse("dealer:SH001"), limits, ZONE)
    assert (dealer.survey_invited, dealer.survey_answered, dealer.survey_response_rate,
            dealer.survey_mean) == (2, 2, 1.0, 3.0)
    assert dealer.previous is not None
    assert (dealer.previous.survey_invited, dealer.previous.survey_answered,
            dealer.previous.survey_mean) == (1, 1, 5.0)
    hz = await compute_figures(week, Scope.parse("dealer:HZ001"), limits, ZONE)
    assert (hz.survey_invited, hz.survey_answered, hz.survey_response_rate,
            hz.survey_mean) == (1, 0, 0.0, None)
    region = await compute_figures(week, Scope.parse("region:EAST"), limits, ZONE)
    assert (region.survey_invited, region.survey_answered, region.survey_response_rate,
            region.survey_mean) == (3, 2, 0.6667, 3.0)
    assert region.satisfaction == 3, "the customer's 2 for A, not the call centre's 5"
    assert [(r.code, r.survey_response_rate, r.survey_mean) for r in region.ranking] == [
        ("HZ001", 0.0, None), ("SH001", 1.0, 3.0)]
    brand = await compute_figures(week, Scope.parse("brand"), limits, ZONE)
    assert [(r.code, r.survey_response_rate, r.survey_mean) for r in brand.ranking] == [
        ("EAST", 0.6667, 3.0), ("NORTH", None, None)]

    text = markdown_summary(region)
    assert "- 满意度评价回复率：**67%**（较上期 -33个百分点）" in text
    assert "- 客户评价平均星级：**3**（较上期 -2）" in text
    report = await build_report("weekly", "2026-W10", Scope.parse("region:EAST"), policy, ZONE,
                                T0 + 7 * D)
    [xlsx, _] = write_files(report.figures, report.tickets, report.history, ZONE, tmp_path)
    book = load_workbook(xlsx)
    summary = {row[0]: row[1:4] for row in book["汇总"].iter_rows(min_row=3, values_only=True)}
    assert summary["满意度评价回复率"] == (0.6667, 1.0, pytest.approx(-0.3333))
    assert summary["客户评价平均星级"] == (3.0, 5.0, -2.0)
    ranking = list(book["经销商排名"].iter_rows(values_only=True))
    assert ranking[0][-2:] == ("满意度评价回复率", "客户评价平均星级")
    assert [r[1:2] + r[-2:] for r in ranking[1:]] == [("HZ001", 0.0, None),
                                                     ("SH001", 1.0, 3.0)]
    detail = {r[0]: r[-2:] for r in book["投诉明细"].iter_rows(min_row=2, values_only=True)}
    assert detail[numbers["A"]] == (2, 2) and detail[numbers["D"]] == (3, None)


# -- in a real browser: Debian's Chromium, a phone's screen, JavaScript off -----------

PHONE_SCREEN = "/tmp/survey-phone.png"


@pytest.mark.slow
async def test_r23_the_survey_on_a_phone_in_chromium(aiohttp_server, clock, tmp_path: Path):
    chromium = _chromium()
    from playwright.async_api import async_playwright, expect

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = survey_settings(f"sqlite://{tmp_path}/survey.sqlite3", "http://127.0.0.1:9",
                               public_base_url=base)
    server = await aiohttp_server(create_app(settings, clock=lambda: clock[0],
                                             scheduler=False), port=port)
    await import_directory(ORG)
    old = await closed_ticket(server, clock, at=T0 - 8 * D)
    expired = await survey_link(server, clock, old)
    number = await closed_ticket(server, clock)
    link = await survey_link(server, clock, number)
    event, signature = link.rsplit("/", 1)[1].split(".")
    forged = f"{base}/s/{event}.{signature[::-1]}"

    expect.set_options(timeout=GENEROUS * 1000)
    async with async_playwright() as playwright:
        phone = {k: v for k, v in playwright.devices["Pixel 5"].items()
                 if k != "default_browser_type"}
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**phone, java_script_enabled=False,
                                                locale="zh-CN")
            page = await context.new_page()
            width = phone["viewport"]["width"]

            response = await page.goto(link)
            assert response is not None and response.status == 200
            await expect(page.locator("h1")).to_have_text("投诉处理满意度评价")
            await expect(page.locator(".ticket")).to_have_text(f"投诉编号 #{number} · 上海浦东4S店")
            submit = page.get_by_role("button", name="提交评价")
            box = await submit.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            star = page.locator("label[for=score4]")
            star_box = await star.bounding_box()
            assert star_box is not None and star_box["width"] >= 44, "big enough for a thumb"
            await star.tap()
            await expect(page.locator("#score4")).to_be_checked()
            await expect(page.locator("label[for=score1]")).to_have_css("color",
                                                                        "rgb(245, 166, 35)")
            await expect(page.locator("label[for=score5]")).to_have_css("color",
                                                                        "rgb(208, 211, 216)")
            await page.get_by_label("意见或建议（选填）").fill("处理及时，很满意")
            await page.screenshot(path=PHONE_SCREEN, full_page=True)
            await submit.tap()
            await expect(page.locator(".message")).to_have_text(THANKS)
            row = await TicketRow.get(id=number)
            assert (row.survey_score, row.survey_comment) == (4, "处理及时，很满意")

            for url, status, text in (
                (link, 409, f"投诉 #{number} 的评价已经提交过了，每个评价链接只能使用一次。"),
                (expired, 410, f"投诉 #{old} 的评价链接已过期（结案后 7 天内有效）"),
                (forged, 404, FORGED),
            ):
                response = await page.goto(url)
                assert response is not None and response.status == status, url
                await expect(page.locator(".message")).to_contain_text(text)
                await expect(submit).to_have_count(0)
            await context.close()
        finally:
            await browser.close()
