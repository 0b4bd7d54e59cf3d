"""Directory sync against the emulated WeChat Work address book (SQLite and
PostgreSQL): people are added, updated and deactivated, the open work of
those who left goes through the ledger, a dry run and a repeat change nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from bot.db import open_database
from bot.directory import actor_for
from bot.directory_import import import_directory
from bot.directory_sync import Mapping, load_mapping, sync_directory
from bot.domain.transitions import respond
from bot.intake import open_complaint
from bot.ledger import Ledger
from bot.policy_book import PolicyBook
from bot.render.notices import render
from bot.wecom.client import WeComClient
from models import ApprovalRequest, Notification, Staff, TicketEvent
from models import Ticket as TicketRow
from tests.conftest import T0, WECOM_SECRETS, wecom_settings
from tests.factories import CALL_CENTRE, SH_STAFF
from tests.test_ledger import complaint

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "examples" / "directory-sync.yaml"
ORG = ROOT / "examples" / "org.yaml"
# Department ids of examples/directory-sync.yaml.
_DEALER_DEPT = {"SH001": 1101, "HZ001": 1102, "BJ001": 1201, "TJ001": 1202}
_REGION_DEPT = {"EAST": 1100, "NORTH": 1200}
_HQ_DEPT = 1000
GENERATED = 300


def fill_address_book(emulator) -> None:
    """The people of examples/org.yaml, and GENERATED dealer staff more, as
    WeChat Work would list them under the example mapping's departments."""
    book = emulator.directory
    book.add_department(_HQ_DEPT, "本部")
    for region, dept in _REGION_DEPT.items():
        book.add_department(dept, f"{region} 区域")
    for dealer, dept in _DEALER_DEPT.items():
        book.add_department(dept, dealer, parentid=_REGION_DEPT["EAST" if dept < 1200 else "NORTH"])
    book.add_department(1103, "SH001 售后", parentid=_DEALER_DEPT["SH001"])  # mapped by its parent
    for person in yaml.safe_load(ORG.read_text(encoding="utf-8"))["staff"]:
        dept = (_DEALER_DEPT[person["dealer"]] if person.get("dealer")
                else _REGION_DEPT[person["region"]] if person.get("region") else _HQ_DEPT)
        book.add_member(person["userid"], person["name"], [dept], email=person["email"],
                        mobile=person["mobile"])
        book.tag(_TAG_IDS[person["role"]], _TAGS[person["role"]], [person["userid"]])
    dealers = list(_DEALER_DEPT.values())
    for i in range(GENERATED):
        book.add_member(f"gen.{i:03d}", f"员工{i:03d}", [dealers[i % 4]],
                        email=f"gen.{i:03d}@dealer.example", mobile=f"1350000{i:04d}")


_TAGS = {
    "call_centre": "呼叫中心", "dealer_staff": "客户关系专员", "dealer_manager": "经销商部门负责人",
    "dealer_gm": "经销商总经理", "region_staff": "区域处理人", "second_level_manager": "二级经理",
    "senior_manager": "高级经理", "hq_staff": "本部处理人", "brand_division": "品牌事业部",
    "legal": "法务部", "admin": "管理员",
}
_TAG_IDS = {role: i + 1 for i, role in enumerate(_TAGS)}


@pytest.fixture
def mapping() -> Mapping:
    return load_mapping(MAPPING)


@pytest.fixture
async def client(ledger, emulator):
    wecom = WeComClient.from_settings(wecom_settings("sqlite://:memory:",
                                                     api_base=f"{emulator.url}/cgi-bin"))
    yield wecom
    await wecom.close()


async def _staff() -> list[tuple]:
    return sorted(await Staff.all().values_list("userid", "name", "role", "email", "mobile",
                                                "dealer_id", "region_id", "active"))


async def test_sync_adds_updates_deactivates_and_hands_on_open_work(
        ledger, emulator, client, mapping):
    fill_address_book(emulator)
    first = await sync_directory(client, mapping, ledger, now=T0)
    # The example directory is what the address book says: only the new people come in.
    assert len(first.created) == GENERATED and not first.updated and not first.deactivated
    assert await Staff.filter(active=True).count() == GENERATED + 27
    newcomer = await actor_for("gen.001")
    assert newcomer is not None and newcomer.dealer_code == "HZ001"

    # sh.zhang handles a ticket, east.lin has an approval waiting: both leave.
    number = await _handled_by_zhang(ledger)
    other = await _open(ledger)
    approval = await ApprovalRequest.create(
        ticket_id=other, kind="compensation", requested_by="sh.wu", requested_at=T0,
        reason="补偿", approver_role="second_level_manager", approver_userid="east.lin")
    emulator.directory.remove_member("sh.zhang")
    emulator.directory.members["east.lin"]["status"] = 5  # quit
    emulator.directory.add_member("sh.new", "新专员", [1103], email="sh.new@sh001.example")
    emulator.directory.members["gen.002"]["name"] = "改名员工"
    emulator.directory.tag(_TAG_IDS["dealer_manager"], _TAGS["dealer_manager"], ["gen.003"])

    report = await sync_directory(client, mapping, ledger, now=T0)

    assert [line.split()[0] for line in report.created] == ["sh.new"]
    assert sorted(line.split(":")[0] for line in report.updated) == ["gen.002", "gen.003"]
    assert [line.split()[0] for line in report.deactivated] == ["east.lin", "sh.zhang"]
    assert f"sh.zhang: tickets #{number}" in str(report)
    # Deactivated, never deleted; the new man sits in SH001 through the sub-department.
    leaver = await Staff.get(userid="sh.zhang")
    assert not leaver.active and await actor_for("sh.zhang") is None
    assert (await actor_for("sh.new")).dealer_code == "SH001"
    assert (await Staff.get(userid="gen.003")).role.value == "dealer_manager"
    # Policy `leavers.reassign: pool`: the ticket goes back to the dealer's handlers.
    row = await TicketRow.get(id=number)
    assert row.assignee is None
    events = await TicketEvent.filter(kind="staff_left").order_by("ticket_id").values_list(
        "ticket_id", "actor", "source")
    assert events == [(number, "system", "directory_sync"), (other, "system", "directory_sync")]
    # The region's group hears of both, in Chinese, with the ticket number.
    notices = await Notification.filter(kind="staff_left").order_by("ticket_id", "id")
    # Ticket `other` is major: its crisis group hears too (R8).
    assert [(n.ticket_id, n.recipient) for n in notices] == [
        (number, "wrGRP-EAST"), (other, "wrGRP-EAST"), (other, f"crisis{other}")]
    text = (await render(notices[0])).markdown
    assert f"#{number}" in text and "张专员" in text and "待指派" in text
    approval_text = (await render(notices[1])).markdown
    assert "林二级经理" in approval_text and str(approval.id) in approval_text

    # The same address book again: nothing changes.
    before = (await _staff(), await TicketEvent.all().count(), await Notification.all().count())
    again = await sync_directory(client, mapping, ledger, now=T0)
    assert not again.changed and str(again).endswith("directory unchanged")
    assert (await _staff(), await TicketEvent.all().count(),
            await Notification.all().count()) == before


async def test_dry_run_changes_nothing(ledger, emulator, client, mapping):
    fill_address_book(emulator)
    emulator.directory.remove_member("sh.chen")
    before = await _staff()
    report = await sync_directory(client, mapping, ledger, dry_run=True, now=T0)
    assert len(report.created) == GENERATED and report.deactivated == ["sh.chen 陈专员"]
    assert "dry run" in str(report)
    assert await _staff() == before


async def test_colleague_policy_hands_the_ticket_to_a_colleague(
        ledger, emulator, client, mapping, policy):
    colleague = Ledger(PolicyBook(policy.model_copy(update={
        "leavers": policy.leavers.model_copy(update={"reassign": "colleague"})})))
    await colleague.policies.store_current()
    fill_address_book(emulator)
    await sync_directory(client, mapping, colleague, now=T0)
    number = await _handled_by_zhang(colleague)
    emulator.directory.remove_member("sh.zhang")
    await sync_directory(client, mapping, colleague, now=T0)
    # The first active SH001 handler by userid (gen.000 sits in SH001).
    assert (await TicketRow.get(id=number)).assignee == "gen.000"
    assigned = await Notification.filter(ticket_id=number, kind="assigned").values_list(
        "recipient", flat=True)
    assert assigned == ["gen.000"]


async def _open(ledger: Ledger) -> int:
    out = await open_complaint(complaint(), ledger, actor=CALL_CENTRE, source="api", now=T0)
    return out.ticket.number


async def _handled_by_zhang(ledger: Ledger) -> int:
    """A ticket sh.zhang has responded to (so handles), about to leave."""
    number = await _open(ledger)
    await ledger.apply(number, lambda t: respond(t, SH_STAFF, "已联系", T0), actor=SH_STAFF,
                       source="test", now=T0)
    return number


async def test_an_expired_token_is_fetched_again(ledger, emulator, client, mapping):
    fill_address_book(emulator)
    await sync_directory(client, mapping, ledger, now=T0)
    emulator.expire_tokens()
    emulator.directory.remove_member("gen.000")
    report = await sync_directory(client, mapping, ledger, now=T0)
    assert report.deactivated == ["gen.000 员工000"]
    refused = [r for r in emulator.requests if r["answer"].get("errcode") == 42001]
    assert refused and len(emulator.sent("gettoken")) == 2


async def test_the_daily_job_syncs_on_its_schedule(ledger, emulator, client):
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from schedulers.runner import _add_directory_sync_job

    fill_address_book(emulator)
    settings = wecom_settings("sqlite://:memory:").model_copy(update={
        "directory_sync_cron": "30 6 * * *", "directory_sync_mapping": str(MAPPING)})
    scheduler = AsyncIOScheduler(timezone="UTC")
    _add_directory_sync_job(scheduler, settings, ledger, client, set())
    job = scheduler.get_job("directory_sync")
    assert str(job.trigger).startswith("cron[") and "hour='6'" in str(job.trigger)
    await job.func()
    assert await Staff.filter(userid__startswith="gen.").count() == GENERATED


async def test_a_role_that_does_not_fit_is_skipped_not_deactivated(
        ledger, emulator, client, mapping):
    fill_address_book(emulator)
    # A dealer GM's tag on a region handler: region staff cannot be a dealer's GM.
    emulator.directory.tag(_TAG_IDS["dealer_gm"], _TAGS["dealer_gm"], ["east.he"])
    report = await sync_directory(client, mapping, ledger, now=T0)
    assert [line.split(":")[0] for line in report.skipped] == ["east.he"]
    assert "east.he" not in str(report.deactivated)
    assert (await Staff.get(userid="east.he")).active


async def _cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    """`complaintbot directory sync ...` as the operator runs it (a subprocess,
    so the emulator's loop keeps serving)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "directory", "sync", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_command_prints_what_changed_and_dry_run_writes_nothing(emulator, tmp_path):
    url = f"sqlite://{tmp_path}/complaintbot.sqlite3"
    async with open_database(url):
        await import_directory(ORG)
    fill_address_book(emulator)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "DATABASE_"))}
    env.update({name.upper(): str(value) for name, value in WECOM_SECRETS.items()})
    env.update({"DATABASE_URL": url, "WECOM_API_BASE": f"{emulator.url}/cgi-bin"})

    code, _, err = await _cli(env, tmp_path)
    assert code == 2 and "DIRECTORY_SYNC_MAPPING" in err
    code, out, _ = await _cli(env, tmp_path, "--mapping", str(MAPPING), "--dry-run")
    assert code == 0 and "+ gen.000 员工000 dealer_staff" in out
    assert out.splitlines()[-2:] == [f"{GENERATED} staff would be created",
                                     "dry run: nothing was written"]
    env["DIRECTORY_SYNC_MAPPING"] = str(MAPPING)
    code, out, _ = await _cli(env, tmp_path)
    assert code == 0 and out.splitlines()[-1] == f"{GENERATED} staff created"
    code, out, _ = await _cli(env, tmp_path)
    assert code == 0 and out.strip() == "directory unchanged"


async def test_a_leaver_whose_work_cannot_be_handed_on_stays_active_until_it_can(
        ledger, emulator, client, mapping):
    """Deactivating and handing on are one: a run that fails (or is killed)
    half-way leaves the person active, so the next run hands their work on."""
    fill_address_book(emulator)
    await sync_directory(client, mapping, ledger, now=T0)
    number = await _handled_by_zhang(ledger)
    emulator.directory.remove_member("sh.zhang")
    emulator.directory.members["east.lin"]["status"] = 5  # quit, with nothing open
    # sh.zhang's ticket row edited by hand into something the bot cannot read.
    await TicketRow.filter(id=number).update(attempts=[{"garbled": True}])
    report = await sync_directory(client, mapping, ledger, now=T0)
    assert [line.split()[0] for line in report.deactivated] == ["east.lin"]
    assert "! sh.zhang: their open work could not be handed on" in str(report)
    assert (await Staff.get(userid="sh.zhang")).active
    assert await TicketEvent.filter(kind="staff_left").count() == 0

    await TicketRow.filter(id=number).update(attempts=[])
    again = await sync_directory(client, mapping, ledger, now=T0)
    assert [line.split()[0] for line in again.deactivated] == ["sh.zhang"]
    assert not (await Staff.get(userid="sh.zhang")).active
    assert await TicketEvent.filter(kind="staff_left").values_list("ticket_id", flat=True) == [
        number]
    assert (await TicketRow.get(id=number)).assignee is None


async def test_two_syncs_at_once_tell_the_region_once(ledger, emulator, client, mapping):
    fill_address_book(emulator)
    await sync_directory(client, mapping, ledger, now=T0)
    await _handled_by_zhang(ledger)
    emulator.directory.remove_member("sh.zhang")
    reports = await asyncio.gather(*(sync_directory(client, mapping, ledger, now=T0)
                                     for _ in range(2)))
    assert sorted(len(r.deactivated) for r in reports) == [0, 1]
    notices = await Notification.filter(kind="staff_left").values_list("recipient", flat=True)
    assert notices == ["wrGRP-EAST"]


async def test_the_emulated_address_book_speaks_errcodes(emulator):
    import aiohttp

    fill_address_book(emulator)
    base = f"{emulator.url}/cgi-bin"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/user/get", params={"userid": "sh.wu"}) as resp:
            assert (await resp.json())["errcode"] == 41001
        async with session.get(f"{base}/user/get",
                               params={"userid": "sh.wu", "access_token": "nope"}) as resp:
            assert (await resp.json())["errcode"] == 40014
        async with session.get(f"{base}/gettoken", params={
                "corpid": WECOM_SECRETS["wecom_corp_id"],
                "corpsecret": WECOM_SECRETS["wecom_secret"]}) as resp:
            token = (await resp.json())["access_token"]
        async with session.get(f"{base}/user/get",
                               params={"userid": "ghost", "access_token": token}) as resp:
            assert (await resp.json())["errcode"] == 60111
        async with session.get(f"{base}/user/list", params={
                "department_id": str(_DEALER_DEPT["SH001"]), "fetch_child": "1",
                "access_token": token}) as resp:
            answer = await resp.json()
        assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
        assert {"sh.zhang", "gen.000"} <= {u["userid"] for u in answer["userlist"]}
        async with session.post(f"{base}/user/list_id", params={"access_token": token},
                                json={"cursor": "", "limit": 100}) as resp:
            page = await resp.json()
        assert len({u["userid"] for u in page["dept_user"]}) == 100 and page["next_cursor"]
