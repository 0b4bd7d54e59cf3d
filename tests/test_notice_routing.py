"""Issue 12: notices ask for an action only of those who may take it (item 2),
a customer's "no agreement" reaches whoever can act (item 7, R15), legal words
in any note flag the ticket (item 8, R26) and a notice nobody can receive goes
to the region (item 9, R20). What people read is the rendered outbox row."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.directory import actor_for
from bot.domain.enums import Category, OwnerLevel
from bot.intake import Complaint, open_complaint
from bot.render.notices import render
from commands.base import ChatMessage, Context, Reply
from commands.router import handle_message
from models import Notification
from models import Ticket as TicketRow
from tests.conftest import T0
from tests.factories import CALL_CENTRE

ZONE = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
VIN = "LFV2A21K6A3012345"
INFORMED = "本群知悉即可，无需响应"


def complaint(**overrides: object) -> Complaint:
    body = {
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "沪A12345", "vin": VIN, "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    }
    body.update(overrides)
    return Complaint.model_validate(body)


@pytest.fixture
def say(ledger, clock):
    """Type a command as `userid` (in group `chatid`, else one-to-one) at clock[0]."""

    async def say_(userid: str, text: str, chatid: str | None = None) -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=ledger, now=clock[0], zone=ZONE)
        msg = ChatMessage(userid=userid, text=text, channel="robot", chatid=chatid, msgid="m1")
        return await handle_message(msg, ctx)

    return say_


async def posted(number: int, recipient: str, kind: str | None = None) -> list[str]:
    """The markdown of every notice about the ticket written for `recipient`."""
    rows = Notification.filter(ticket_id=number, recipient=recipient)
    if kind:
        rows = rows.filter(kind=kind)
    return [(await render(row)).markdown for row in await rows.order_by("id")]


async def test_r6_repeat_tells_the_dealer_group_without_asking_it_to_respond(ledger, say):
    """Item 2: a repeat goes to the region at intake; the dealer group is told,
    the region group is asked, and /respond in the dealer group is refused."""
    await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    second = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0 + H)).ticket
    assert second.owner_level is OwnerLevel.REGION
    dealer = await posted(second.number, "wrGRP-SH001")
    assert dealer and all("/respond" not in m for m in dealer)
    (dispatched,) = await posted(second.number, "wrGRP-SH001", "dispatched")
    assert INFORMED in dispatched
    region = "\n".join(await posted(second.number, "wrGRP-EAST"))
    assert f"`/respond {second.number}`" in region and INFORMED not in region
    refused = await say("sh.zhang", f"/respond {second.number}", chatid="wrGRP-SH001")
    assert refused.markdown.startswith("⛔")


async def test_r2_a_general_complaint_still_asks_the_dealer_group_to_respond(ledger):
    """Item 2: the dealer who owns the ticket keeps its instruction."""
    first = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                  now=T0)).ticket
    (text,) = await posted(first.number, "wrGRP-SH001", "dispatched")
    assert f"然后回复 `/respond {first.number}`" in text and INFORMED not in text


async def test_r2_escalation_informs_the_dealer_group_and_asks_the_region(ledger, say):
    """Item 2: after /escalate the dealer group no longer gets an instruction."""
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    reply = await say("east.he", f"/escalate {number} 客户要求区域介入")
    assert "升级" in reply.markdown
    (dealer,) = await posted(number, "wrGRP-SH001", "escalated")
    assert INFORMED in dealer and "/respond" not in dealer
    (region,) = await posted(number, "wrGRP-EAST", "escalated")
    assert f"`/respond {number}`" in region
    assert (await TicketRow.get(id=number)).category is Category.ESCALATED


async def legal_mails(number: int) -> list[str]:
    rows = await Notification.filter(ticket_id=number, kind="legal_flag", medium="email")
    return [r.recipient for r in rows]


@pytest.mark.parametrize("command", [
    "/respond {n} 客户说要去法院起诉",
    "/followup {n} 客户已找律师",
    "/escalate {n} 客户威胁打官司",
])
async def test_r8_legal_words_in_a_later_note_flag_the_ticket(ledger, say, command):
    """Item 8 (R26): the ledger scans every change's note, not only intake."""
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    assert not (await TicketRow.get(id=number)).legal
    if command.startswith("/followup"):
        await say("sh.zhang", f"/respond {number}")
    actor = "east.he" if command.startswith("/escalate") else "sh.zhang"
    reply = await say(actor, command.format(n=number))
    assert "已提示法务（R26）" in reply.markdown
    assert (await TicketRow.get(id=number)).legal
    assert await legal_mails(number) == ["legal.han@brand.example"]
    # Said again, the ticket is flagged already: legal is not told twice.
    await say("sh.zhang", f"/attempt {number} 客户又提到律师")
    assert len(await legal_mails(number)) == 1


async def test_r8_plan_fields_are_scanned_too(ledger, say):
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    await say("sh.zhang", f"/respond {number}")
    await say("sh.zhang", f"/plan {number} 诉求=退车，否则起诉 原因=阀体磨损 方案=更换阀体 "
                          "接受=是 回访=是")
    assert (await TicketRow.get(id=number)).legal


async def test_r8_legal_command_and_its_alias_flag_once(ledger, say):
    first = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                  now=T0)).ticket.number
    reply = await say("sh.zhang", f"/legal {first} 客户情绪激动", chatid="wrGRP-SH001")
    assert reply.markdown.startswith(f"⚖️ #{first} 已标记为涉及法律诉讼，已提示法务（R26）")
    assert (await TicketRow.get(id=first)).legal
    assert await legal_mails(first) == ["legal.han@brand.example"]
    again = await say("sh.zhang", f"法务 {first}")
    assert again.markdown == f"⛔ #{first} 已提示法务，无需重复标记。"
    # Another dealer may not flag this dealer's ticket.
    other = await say("bj.liu", f"/legal {first}")
    assert other.markdown.startswith("⛔") and "不属于" in other.markdown


@pytest.mark.parametrize(("channel", "legal"), [("law_firm", True), ("parent_company", False)])
async def test_r2_law_firm_and_parent_company_channels(ledger, channel, legal):
    """Item 8 (R2): both channels are accepted; a law firm's complaint is
    flagged to legal at intake (R26, classification.legal_channels)."""
    out = await open_complaint(complaint(channel=channel), ledger, actor=CALL_CENTRE,
                               source="api", now=T0)
    assert out.ticket.legal is legal
    assert bool(await legal_mails(out.ticket.number)) is legal


PLAN_REFUSED = "诉求=退车 原因=阀体磨损 方案=更换阀体 接受=否 回访=是"


async def responded_ticket(ledger, say) -> int:
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    await say("sh.zhang", f"/respond {number}")
    return number


async def test_r7_no_agreement_escalates_at_once_by_default(ledger, say, clock):
    """Item 7 (R15): /plan … 接受=否 hands the ticket to the region, which is
    asked to respond; the dealer group is told."""
    number = await responded_ticket(ledger, say)
    clock[0] = T0 + H
    reply = await say("sh.zhang", f"/plan {number} {PLAN_REFUSED}")
    assert "⬆️ 客户不接受方案（R15），已升级为升级投诉，转区域负责。" in reply.markdown
    row = await TicketRow.get(id=number)
    assert (row.category, row.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)
    assert row.solution["customer_accepts"] is False
    (region,) = await posted(number, "wrGRP-EAST", "escalated")
    assert "客户不接受方案（R15）" in region and f"`/respond {number}`" in region
    (dealer,) = await posted(number, "wrGRP-SH001", "escalated")
    assert INFORMED in dealer


@pytest.fixture
async def notify_ledger(ledger):
    """The ledger under a policy whose no_agreement action is `notify`."""
    from bot.domain.policy import policy_from_document
    from bot.ledger import Ledger
    from bot.policy_book import PolicyBook

    document = ledger.policies.current.document()
    document["no_agreement"] = {"action": "notify", "decide_within": "24h"}
    book = PolicyBook(policy_from_document(document))
    await book.store_current()
    return Ledger(book)


async def test_r7_no_agreement_notifies_the_region_with_its_own_clock(notify_ledger, clock):
    """Item 7 (R15, notify): the region is told and asked to decide by a time;
    undecided at that time, the ticket escalates."""
    from models import Deadline
    from schedulers.sweeper import sweep

    async def say(userid: str, text: str) -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=notify_ledger, now=clock[0],
                      zone=ZONE)
        return await handle_message(ChatMessage(userid=userid, text=text, channel="robot"), ctx)

    number = await responded_ticket(notify_ledger, say)
    clock[0] = T0 + H
    reply = await say("sh.zhang", f"/plan {number} {PLAN_REFUSED}")
    assert "已通知区域决定是否升级" in reply.markdown
    row = await TicketRow.get(id=number)
    assert row.owner_level is OwnerLevel.DEALER and row.no_agreement_at == T0 + H
    (region,) = await posted(number, "wrGRP-EAST", "no_agreement")
    assert "【客户不接受方案】" in region and f"`/escalate {number} 原因`" in region
    assert "2026-03-03 10:00</font> 前决定" in region
    assert await posted(number, "east.he", "no_agreement")  # the region's handler, in the app
    (dealer,) = await posted(number, "wrGRP-SH001", "no_agreement")
    assert INFORMED in dealer and "/escalate" not in dealer
    pending = await Deadline.filter(ticket_id=number, clock="no_agreement", state="pending")
    assert [d.due_at for d in pending] == [T0 + 25 * H]
    await sweep(notify_ledger, now=T0 + 25 * H)
    row = await TicketRow.get(id=number)
    assert (row.owner_level, row.no_agreement_at) == (OwnerLevel.REGION, None)


async def test_r7_an_accepted_plan_stops_the_regions_clock(notify_ledger, clock):
    from models import Deadline

    async def say(userid: str, text: str) -> Reply:
        ctx = Context(actor=await actor_for(userid), ledger=notify_ledger, now=clock[0],
                      zone=ZONE)
        return await handle_message(ChatMessage(userid=userid, text=text, channel="robot"), ctx)

    number = await responded_ticket(notify_ledger, say)
    await say("sh.zhang", f"/plan {number} {PLAN_REFUSED}")
    await say("sh.zhang", f"/plan {number} {PLAN_REFUSED.replace('接受=否', '接受=是')}")
    assert (await TicketRow.get(id=number)).no_agreement_at is None
    assert not await Deadline.filter(ticket_id=number, clock="no_agreement", state="pending")


async def test_r7_a_dealer_manager_may_escalate_dealer_staff_may_not(ledger, say):
    """Item 7: the dealer's department head asks for escalation himself."""
    number = await responded_ticket(ledger, say)
    staff = await say("sh.zhang", f"/escalate {number} 客户不接受方案")
    assert staff.markdown == f"⛔ 只有区域或本部可以执行此操作（#{number}）。"
    manager = await say("sh.zhou", f"/escalate {number} 客户不接受方案")
    assert manager.markdown.startswith(f"⬆️ #{number} 已升级为升级投诉，转区域负责（周经理")
    again = await say("sh.zhou", f"/escalate {number} 再升级")
    assert again.markdown.startswith("⛔") and "经销商不能再升级" in again.markdown
    other = await say("hz.qian", f"/escalate {number} 不是我店的")
    assert other.markdown.startswith("⛔")


async def lonely_dealer() -> None:
    """A dealer the directory knows with no staff and no group (R20)."""
    from models import Dealer, Region

    await Dealer.create(code="NJ001", name="南京新街口4S店",
                        region=await Region.get(code="EAST"))


async def test_r9_a_notice_nobody_can_receive_goes_to_the_region(ledger, say):
    """Item 9 (R20): intake to a dealer with no handler and no group; the
    region's group is told which notices reached nobody and asked to take it
    up; the region's /list shows the ticket, a dealer's does not."""
    await lonely_dealer()
    number = (await open_complaint(complaint(dealer_code="NJ001"), ledger, actor=CALL_CENTRE,
                                   source="api", now=T0)).ticket.number
    missed = await Notification.filter(ticket_id=number, status="unroutable")
    assert {(r.kind, r.audience) for r in missed} == {
        ("dispatched", "dealer_group"), ("dispatched", "dealer_handlers")}
    (region,) = await posted(number, "wrGRP-EAST", "unroutable")
    assert f"【通知无人接收】</font>投诉 #{number}**（一般投诉，南京新街口4S店）" in region
    assert "无法送达：经销商投诉群、经销商客户关系专员" in region and "R20" in region
    listed = await say("east.he", "/list", chatid="wrGRP-EAST")
    assert "⚠️ 有通知无人接收的投诉 1 条" in listed.markdown
    assert f"> #{number}：经销商投诉群、经销商客户关系专员" in listed.markdown
    dealer = await say("sh.zhang", "/list", chatid="wrGRP-SH001")
    assert "无人接收" not in dealer.markdown


async def test_r9_a_routable_change_tells_the_region_nothing_extra(ledger):
    number = (await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api",
                                   now=T0)).ticket.number
    assert not await Notification.filter(ticket_id=number, kind="unroutable")
    assert not await Notification.filter(ticket_id=number, status="unroutable")


async def test_r9_healthz_is_degraded_while_notices_reach_nobody(client):
    from tests.conftest import TOKEN

    healthy = await client.get("/healthz")
    assert healthy.status == 200 and (await healthy.json())["status"] == "ok"
    await lonely_dealer()
    body = complaint(dealer_code="NJ001").model_dump(mode="json")
    answer = await client.post("/api/complaints", json=body,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 201
    degraded = await client.get("/healthz")
    assert degraded.status == 200
    assert (await degraded.json())["status"] == "degraded"
    assert (await degraded.json())["unroutable_notices"] == 2
