"""R24 weekly and monthly reports on a real database (SQLite and PostgreSQL):
a known set of tickets across two ISO weeks, every figure checked by hand."""

from __future__ import annotations

import csv
import io
import struct
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.directory import actor_for
from bot.domain.transitions import (
    close,
    decide_staged_closure,
    escalate,
    first_solution,
    request_staged_closure,
    resolve,
    respond,
)
from bot.intake import Complaint, open_complaint
from bot.keys import LEDGER
from bot.reports.figures import (
    Limits,
    Scope,
    build_report,
    compute_figures,
    parse_period,
    ticket_list,
)
from bot.reports.render import CHART_SIZE, markdown_summary, write_files
from commands.base import ChatMessage, Context
from commands.router import handle_message
from models import ApprovalRequest
from tests.conftest import T0, TOKEN
from tests.factories import CALL_CENTRE, EAST, EAST_SECOND, HZ_STAFF, PLAN, SH_STAFF
from tests.test_settings_and_cli import run_cli

AUTH = {"Authorization": f"Bearer {TOKEN}"}
H = timedelta(hours=1)
D = timedelta(days=1)
ZONE = ZoneInfo("Asia/Shanghai")
TP = T0 - 7 * D  # the Monday before: week 2026-W09


def complaint(vin: str, **overrides) -> Complaint:
    body = {
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "", "vin": vin, "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


async def load_tickets(ledger, policy) -> dict[str, int]:
    """Two weeks of tickets; the comments give what each contributes.

    W09: P1 SH001 responded 1 h, closed 30 h (satisfaction 4, 300 yuan);
         P2 HZ001 web, responded 3 h, still open (overdue at the end of W10).
    W10: A SH001 responded 1 h, plan 10 h, resolved 20 h, closed 30 h (5, 1500 yuan);
         B SH001 wechat, return_exchange, responded 3 h, open;
         C SH001 repeat of P1 (escalated), the region responded 1 h, open;
         D HZ001 responded 30 min, plan 2.5 h, resolved 50.5 h, closed 80.5 h (3);
         F SH001 escalated at 2 h, region responded 3 h, staged-closed at 19 h;
         E BJ001 (NORTH), untouched."""
    numbers: dict[str, int] = {}

    async def open_(name, vin, at, **extra):
        out = await open_complaint(complaint(vin, **extra), ledger, actor=CALL_CENTRE,
                                   source="api", now=at)
        numbers[name] = out.ticket.number
        return out.ticket.number

    async def act(number, actor, step, at):
        await ledger.apply(number, lambda t: step(t, at), actor=actor, source="chat", now=at)

    vins = {n: f"LFV2A21K6A30{i:05d}" for i, n in enumerate("P1 P2 A B D F E".split())}
    p1 = await open_("P1", vins["P1"], TP)
    await act(p1, SH_STAFF, lambda t, at: respond(t, SH_STAFF, "", at), TP + H)
    await act(p1, CALL_CENTRE, lambda t, at: close(t, CALL_CENTRE, 4, "", at), TP + 30 * H)
    p2 = await open_("P2", vins["P2"], TP + 2 * H, dealer_code="HZ001", channel="web",
                     description="异响")
    await act(p2, HZ_STAFF, lambda t, at: respond(t, HZ_STAFF, "", at), TP + 5 * H)

    a = await open_("A", vins["A"], T0, description="空调不制冷")
    await act(a, SH_STAFF, lambda t, at: respond(t, SH_STAFF, "", at), T0 + H)
    await act(a, SH_STAFF, lambda t, at: first_solution(t, SH_STAFF, PLAN, at), T0 + 10 * H)
    await act(a, SH_STAFF, lambda t, at: resolve(t, SH_STAFF, "", at), T0 + 20 * H)
    await act(a, CALL_CENTRE, lambda t, at: close(t, CALL_CENTRE, 5, "", at), T0 + 30 * H)
    b = await open_("B", vins["B"], T0 + D, channel="wechat", flags=["return_exchange"],
                    description="要求退车")
    await act(b, SH_STAFF, lambda t, at: respond(t, SH_STAFF, "", at), T0 + 27 * H)
    c = await open_("C", vins["P1"], T0 + 2 * D)
    await act(c, EAST, lambda t, at: respond(t, EAST, "", at), T0 + 49 * H)
    d = await open_("D", vins["D"], T0 + 2 * H, dealer_code="HZ001", description="漏油")
    await act(d, HZ_STAFF, lambda t, at: respond(t, HZ_STAFF, "", at), T0 + 2.5 * H)
    await act(d, HZ_STAFF, lambda t, at: first_solution(t, HZ_STAFF, PLAN, at), T0 + 4.5 * H)
    await act(d, HZ_STAFF, lambda t, at: resolve(t, HZ_STAFF, "", at), T0 + 52.5 * H)
    await act(d, CALL_CENTRE, lambda t, at: close(t, CALL_CENTRE, 3, "", at), T0 + 82.5 * H)
    f = await open_("F", vins["F"], T0 + 3 * H, description="销售欺诈")
    await act(f, CALL_CENTRE, lambda t, at: escalate(t, CALL_CENTRE, "客户要求", at), T0 + 5 * H)
    await act(f, EAST, lambda t, at: respond(t, EAST, "", at), T0 + 6 * H)
    await act(f, EAST, lambda t, at: request_staged_closure(t, EAST, "诉求不合理", policy, at),
              T0 + 20 * H)
    await act(f, EAST_SECOND, lambda t, at: decide_staged_closure(
        t, EAST_SECOND, approve=True, requested_by="east.he", reason="同意", now=at),
        T0 + 22 * H)
    await open_("E", vins["E"], T0 + H, dealer_code="BJ001", description="保养收费高")

    async def compensation(number, amount, status, at):
        await ApprovalRequest.create(
            ticket_id=number, kind="compensation", requested_by="sh.zhang", requested_at=at,
            reason="补偿", approver_role="dealer_gm", approver_userid="sh.gm",
            amount=Decimal(amount), status=status, decided_at=at)

    await compensation(p1, "300", "approved", TP + 10 * H)
    await compensation(a, "1500", "approved", T0 + 25 * H)
    await compensation(d, "800", "rejected", T0 + 25 * H)
    return numbers


@pytest.fixture
async def week10(ledger, policy):
    await load_tickets(ledger, policy)
    return parse_period("weekly", "2026-W10", T0, ZONE)


async def test_r24_dealer_weekly_figures_match_hand_computed_values(week10, policy):
    figures = await compute_figures(week10, Scope.parse("dealer:SH001"), Limits.of(policy), ZONE)
    assert figures.scope_name == "上海浦东4S店（SH001）"
    assert (figures.received, figures.repeats, figures.escalations) == (4, 1, 1)
    assert figures.by_category == {"escalated": 2, "general": 2}
    assert figures.by_channel == {"phone": 3, "wechat": 1}
    assert figures.by_flag == {"return_exchange": 1}
    assert (figures.responded_in_time, figures.first_solution_in_time,
            figures.resolved_in_time) == (0.5, 0.25, 0.5)
    # responses 60, 60, 180, 180 min; resolutions 19 h (F), 20 h (A)
    assert figures.response_median_min == pytest.approx(120)
    assert figures.response_p90_min == pytest.approx(180)
    assert figures.resolution_median_h == pytest.approx(19.5)
    assert figures.resolution_p90_h == pytest.approx(19.9)
    assert (figures.backlog, figures.overdue, figures.staged_closures) == (2, 2, 1)
    assert figures.compensation_approved == 1500
    assert figures.satisfaction == 5
    assert figures.ranking == []
    previous = figures.previous
    assert previous is not None and previous.period.label == "2026-W09"
    assert (previous.received, previous.responded_in_time, previous.resolved_in_time,
            previous.satisfaction, previous.compensation_approved, previous.backlog) == (
        1, 1.0, 1.0, 4, 300, 0)
    assert (figures.change("received"), figures.change("responded_in_time"),
            figures.change("satisfaction"), figures.change("compensation_approved")) == (
        3, -0.5, 1, 1200)


async def test_r24_region_weekly_figures_rank_its_dealers(week10, policy):
    figures = await compute_figures(week10, Scope.parse("region:EAST"), Limits.of(policy), ZONE)
    assert (figures.received, figures.repeats, figures.escalations) == (5, 1, 1)
    assert figures.by_category == {"escalated": 2, "general": 3}
    assert figures.by_channel == {"phone": 4, "wechat": 1}
    assert (figures.responded_in_time, figures.first_solution_in_time,
            figures.resolved_in_time) == (0.6, 0.4, 0.6)
    # responses 30, 60, 60, 180, 180 min; resolutions 19, 20, 50.5 h
    assert figures.response_median_min == pytest.approx(60)
    assert figures.response_p90_min == pytest.approx(180)
    assert figures.resolution_median_h == pytest.approx(20)
    assert figures.resolution_p90_h == pytest.approx(44.4)
    assert (figures.backlog, figures.overdue, figures.staged_closures) == (3, 3, 1)
    assert figures.compensation_approved == 1500
    assert figures.satisfaction == 4
    assert [(r.rank, r.code, r.received, r.responded_in_time, r.resolved_in_time, r.backlog)
            for r in figures.ranking] == [
        (1, "HZ001", 1, 1.0, 1.0, 1), (2, "SH001", 4, 0.5, 0.5, 2)]
    assert figures.previous is not None
    assert (figures.previous.received, figures.previous.responded_in_time) == (2, 0.5)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


async def test_r24_workbook_chart_and_summary_of_a_region(week10, policy, tmp_path):
    report = await build_report("weekly", "2026-W10", Scope.parse("region:EAST"), policy, ZONE,
                                T0)
    paths = write_files(report.figures, report.tickets, report.history, ZONE, tmp_path)
    assert [p.name for p in paths] == ["report-weekly-2026-W10-region-EAST.xlsx",
                                       "report-weekly-2026-W10-region-EAST.png"]
    book = load_workbook(paths[0])
    assert book.sheetnames == ["汇总", "经销商排名", "投诉明细"]
    summary = {row[0]: row[1:4] for row in book["汇总"].iter_rows(min_row=3, values_only=True)}
    assert summary["受理投诉"] == (5, 2, 3)
    assert summary["2小时内响应率"] == (0.6, 0.5, pytest.approx(0.1))
    assert summary["类别：升级投诉"][0] == 2
    ranking = list(book["经销商排名"].iter_rows(min_row=2, values_only=True))
    assert [r[:4] for r in ranking] == [(1, "HZ001", "杭州西湖4S店", 1), (2, "SH001",
                                                                     "上海浦东4S店", 4)]
    detail = list(book["投诉明细"].iter_rows(values_only=True))
    assert len(detail) == 1 + 5 and detail[0][:3] == ("编号", "派单时间", "经销商")
    period = parse_period("weekly", "2026-W10", T0, ZONE)
    paged = await ticket_list(period, Scope.parse("region:EAST"), page=2)
    assert [t["id"] for t in paged] == [r[0] for r in detail[1:]], "read in pages, all once"
    assert {r[8] for r in detail[1:]} == {"138****5678"}  # phones masked
    assert detail[1][1] == "2026-03-02 09:00"
    assert png_size(paths[1].read_bytes()) == CHART_SIZE == (1200, 800)
    assert [label for label, _ in report.history][-2:] == ["2026-W09", "2026-W10"]
    assert report.history[-1][1] == {"general": 3, "escalated": 2, "important": 0}

    text = markdown_summary(report.figures)
    assert "### 投诉周报 2026-W10（03-02 至 03-08）" in text
    assert "范围：华东区域事业部（EAST）" in text
    assert "- 受理投诉：**5**（较上期 +3）" in text
    assert "- 2小时内响应率：**60%**（较上期 +10个百分点）" in text
    assert "1. 杭州西湖4S店（HZ001）受理 1，响应率 100%" in text


async def test_r24_report_command_answers_with_the_groups_view(week10, ledger):
    async def say(userid: str, text: str, chatid: str | None) -> str:
        ctx = Context(actor=await actor_for(userid), ledger=ledger, now=T0 + 7 * D, zone=ZONE)
        msg = ChatMessage(userid=userid, text=text, channel="robot", chatid=chatid, msgid="m1")
        return (await handle_message(msg, ctx)).markdown

    # R9: without a period, the current one so far (W11 has just begun).
    current = await say("sh.zhang", "/report week", "wrGRP-SH001")
    assert "投诉周报 2026-W11" in current and "- 受理投诉：**0**" in current
    dealer = await say("sh.zhang", "/report week 2026-W10", "wrGRP-SH001")
    assert "投诉周报 2026-W10" in dealer and "范围：上海浦东4S店（SH001）" in dealer
    assert "- 受理投诉：**4**（较上期 +3）" in dealer and "排名" not in dealer
    region = await say("east.he", "报表 week 2026-W10", "wrGRP-EAST")
    assert "**经销商排名**" in region and "2. 上海浦东4S店（SH001）受理 4" in region
    brand = await say("cc.wang", "/report month 2026-03", "wrGRP-CC")
    assert "投诉月报 2026-03（03-01 至 03-31）" in brand and "范围：全品牌" in brand
    assert "- 受理投诉：**6**" in brand and "**区域排名**" in brand
    assert "2026-W99" in await say("sh.zhang", "/report week 2026-W99", "wrGRP-SH001")


async def test_r24_api_returns_json_and_csv_behind_the_token(client, clock, policy):
    await load_tickets(client.app[LEDGER], policy)
    clock[0] = T0 + 7 * D  # the week has ended: its backlog counts at its end
    url = "/api/reports/weekly?period=2026-W10&scope=region:EAST"
    assert (await client.get(url)).status == 401
    response = await client.get(url, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["period"]["label"] == "2026-W10" and body["scope"] == "region:EAST"
    assert (body["received"], body["responded_in_time"], body["overdue"]) == (5, 0.6, 3)
    assert body["running"] is False and body["as_of"] == "2026-03-09T00:00:00+08:00"
    assert body["change"]["received"] == 3
    assert [r["code"] for r in body["ranking"]] == ["HZ001", "SH001"]
    response = await client.get(url, headers={**AUTH, "Accept": "text/csv"})
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["指标", "2026-W10", "上期", "变化"]
    assert ["受理投诉", "5", "2", "3"] in rows and ["渠道:微信", "1", "", ""] in rows
    bad = await client.get("/api/reports/weekly?scope=city:X", headers=AUTH)
    assert bad.status == 400 and "无法识别的范围" in (await bad.json())["error"]


async def test_r24_cli_writes_the_workbook_and_the_chart(week10, db, tmp_path):
    result = run_cli("report", "weekly", "--period", "2026-W10", "--scope", "dealer:SH001",
                     "--out", str(tmp_path / "out"), env={"DATABASE_URL": db}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    xlsx = tmp_path / "out" / "report-weekly-2026-W10-dealer-SH001.xlsx"
    assert result.stdout.split() == [str(xlsx), str(xlsx.with_suffix(".png"))]
    assert len(list(load_workbook(xlsx)["投诉明细"].iter_rows())) == 1 + 4
    assert png_size(xlsx.with_suffix(".png").read_bytes()) == (1200, 800)


# --- a period still running; periods out of range (issue 12 item 12) ------------------


async def test_r12_a_running_period_counts_its_backlog_as_of_now(week10, policy):
    """In the middle of W10 nothing dispatched in it is 3 days old yet: the
    overdue count is as of now (only P2 of W09), and the report says so."""
    now = T0 + 3 * D + 2 * H  # Thursday 11:00
    figures = await compute_figures(week10, Scope.parse("region:EAST"), Limits.of(policy), ZONE,
                                    now=now)
    assert figures.running and figures.as_of == now
    assert (figures.backlog, figures.overdue) == (4, 1)  # D is closed only on Thursday evening
    text = markdown_summary(figures)
    assert "> 本期尚未结束，数据截至 03-05 11:00" in text
    assert "- 截至 03-05 11:00 超期未解决：**1**" in text and "期末" not in text
    ended = await compute_figures(week10, Scope.parse("region:EAST"), Limits.of(policy), ZONE,
                                  now=T0 + 7 * D)
    assert not ended.running and (ended.backlog, ended.overdue) == (3, 3)
    assert "- 期末超期未解决：**3**" in markdown_summary(ended)


OUT_OF_RANGE = [("weekly", "9999-W52"), ("weekly", "0001-W01"), ("monthly", "9999-12"),
                ("monthly", "0001-01")]


@pytest.mark.parametrize(("kind", "period"), OUT_OF_RANGE)
async def test_r12_a_period_out_of_range_is_400_not_500(client, kind, period):
    response = await client.get(f"/api/reports/{kind}?period={period}", headers=AUTH)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert period in error and ("尚未开始" in error or "超出可统计的范围" in error)


@pytest.mark.parametrize(("kind", "period"), OUT_OF_RANGE)
async def test_r12_the_chat_and_the_cli_refuse_a_period_out_of_range(ledger, db, tmp_path,
                                                                     kind, period):
    ctx = Context(actor=await actor_for("cc.wang"), ledger=ledger, now=T0, zone=ZONE)
    words = {"weekly": "week", "monthly": "month"}[kind]
    msg = ChatMessage(userid="cc.wang", text=f"/report {words} {period}", channel="robot",
                      chatid="wrGRP-CC", msgid="m1")
    reply = (await handle_message(msg, ctx)).markdown
    assert period in reply and ("尚未开始" in reply or "超出可统计的范围" in reply)
    result = run_cli("report", kind, "--period", period, "--out", str(tmp_path / "out"),
                     env={"DATABASE_URL": db}, cwd=tmp_path)
    assert result.returncode == 2 and period in result.stderr
    assert "Traceback" not in result.stderr


async def test_r8_the_chart_names_units_counts_whole_tickets_and_draws_chinese(ledger):
    """A region's chart: its dealers by name (one without tickets as a zero
    bar), whole-number counts, and drawn in the CJK font with no missing glyph
    (pytest turns matplotlib's missing-glyph warning into an error)."""
    import matplotlib.pyplot as plt

    from bot.reports.fonts import cjk_font
    from bot.reports.render import chart, figure

    assert cjk_font() == "WenQuanYi Micro Hei"
    await open_complaint(complaint("LFV2A21K6A3000001"), ledger, actor=CALL_CENTRE,
                         source="api", now=TP)
    period = parse_period("weekly", "2026-W09", T0, ZONE)
    report = await build_report("weekly", period.label, Scope("region", "EAST"),
                                ledger.policies.current, ZONE, T0)
    fig = figure(report.figures, report.history)
    try:
        volume, sla = fig.axes
        assert [t.get_text() for t in sla.get_xticklabels()] == [
            "杭州西湖4S店", "上海浦东4S店"], "names, not codes, in ranking order"
        # Bars: both dealers' response shares, then both resolution shares.
        heights = [round(bar.get_height()) for bar in sla.patches]
        assert len(heights) == 4 and heights[0] == heights[2] == 0, (
            "the dealer without tickets is a zero bar")
        assert all(tick == int(tick) for tick in volume.get_yticks())
        assert volume.get_ylim()[1] >= 1
    finally:
        plt.close(fig)
    png = chart(report.figures, report.history)
    assert png_size(png) == CHART_SIZE


async def test_r24_first_call_resolutions_per_unit_match_a_hand_count(ledger, policy, tmp_path):
    """Issue 15: complaints the call centre settled on the first call are
    received, closed and counted per dealer and region, in the period only."""
    settled = {"SH001": [T0, T0 + 2 * H], "HZ001": [T0 + D], "BJ001": [],
               "TJ001": [TP + H]}  # TJ001's is in W09: not W10's
    made = iter(range(100))
    for dealer, moments in settled.items():
        for at in moments:
            await open_complaint(complaint(f"LFV2A21K6A31{next(made):05d}", dealer_code=dealer,
                                           resolved_on_call=True),
                                 ledger, actor=CALL_CENTRE, source="chat", now=at)
        # and one dispatched as usual in W10, which is not a first-call resolution
        await open_complaint(complaint(f"LFV2A21K6A31{next(made):05d}", dealer_code=dealer),
                             ledger, actor=CALL_CENTRE, source="api", now=T0 + 3 * H)
    week = parse_period("weekly", "2026-W10", T0, ZONE)
    limits = Limits.of(policy)

    async def count(scope: str) -> tuple[int, int]:
        figures = await compute_figures(week, Scope.parse(scope), limits, ZONE)
        return figures.first_call_resolutions, figures.received

    # By hand: SH001 2 of 3, HZ001 1 of 2, BJ001 0 of 1, TJ001 0 of 1 (its one is in W09).
    assert await count("dealer:SH001") == (2, 3)
    assert await count("dealer:HZ001") == (1, 2)
    assert await count("dealer:BJ001") == (0, 1)
    assert await count("dealer:TJ001") == (0, 1)
    assert await count("region:EAST") == (3, 5)
    assert await count("region:NORTH") == (0, 2)
    assert await count("brand") == (3, 7)
    east = await compute_figures(week, Scope.parse("region:EAST"), limits, ZONE)
    assert {r.code: r.first_call_resolutions for r in east.ranking} == {"SH001": 2, "HZ001": 1}
    brand = await compute_figures(week, Scope.parse("brand"), limits, ZONE)
    assert {r.code: r.first_call_resolutions for r in brand.ranking} == {"EAST": 3, "NORTH": 0}
    assert east.previous is not None and east.previous.first_call_resolutions == 0
    north_w09 = await compute_figures(week.previous(ZONE), Scope.parse("region:NORTH"), limits,
                                      ZONE)
    assert north_w09.first_call_resolutions == 1
    # What people read: the group's summary and the workbook's ranking.
    assert "- 其中首次来电解决：**3**（较上期 +3）" in markdown_summary(east)
    report = await build_report("weekly", "2026-W10", Scope.parse("region:EAST"), policy, ZONE,
                                T0 + 7 * D)
    xlsx = write_files(report.figures, report.tickets, report.history, ZONE, tmp_path)[0]
    rows = list(load_workbook(xlsx)["经销商排名"].iter_rows(values_only=True))
    assert rows[0][4] == "首次来电解决"
    assert {row[1]: row[4] for row in rows[1:]} == {"SH001": 2, "HZ001": 1}
