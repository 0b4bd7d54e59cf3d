"""Photos and files on a ticket (issue 15 part 2), through every door, on
SQLite and PostgreSQL: the API (multipart and base64), the app (media/get
from the emulator), the robot (an encrypted URL with its own aeskey); the
refusals (size, type by content, forged and expired links, a full or
read-only store) and R22 (no attachment shown in a group for a complaint
about an employee). What a user sees is asserted: the HTTP answer, the chat
reply, the file a link serves, the rows stored."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from bot.domain.attachments import FileRefused, accepted_type, clean_name
from bot.domain.policy import AttachmentRules
from bot.filestore import FULL_MESSAGE, READ_ONLY_MESSAGE, Pruned, sha256_of
from bot.filetypes import DOCX, HEIC, JPEG, MOV, MP4, PDF, PNG, XLSX, sniff
from bot.intake import open_complaint, parse_complaint
from bot.keys import ATTACHMENTS, LEDGER
from bot.wecom.media import MediaDecryptError, decrypt_media, encrypt_media, new_aeskey
from models import Attachment, PendingAttachment, TicketEvent
from models import Ticket as TicketRow
from tests.conftest import T0, TOKEN, WeComWorld, run_scheduled_job, start_bot
from tests.factories import CALL_CENTRE
from tests.test_metrics import scrape, value
from tests.test_storage_faults import fill, tmpfs  # noqa: F401 (a fixture)
from tests.waiting import eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GROUP = "wrGRP-SH001"
SECRET = "attachment-link-secret-0123456789"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(200))
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 3
PDF_BYTES = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"
EXE_BYTES = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(100)


def office(part: str) -> bytes:
    """A minimal Office Open XML package with its main part under `part`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(f"{part}/document.xml", "<doc/>")
    return buffer.getvalue()


def iso_media(brand: bytes, *compatible: bytes) -> bytes:
    """The start of an ISO-BMFF file: its ftyp box and some data."""
    body = brand + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(64)


@pytest.fixture
async def world(database_url, emulator, aiohttp_client, clock, tmp_path) -> WeComWorld:
    """The bot and the emulator, attachments kept under the test's folder and
    links signed."""
    bot, settings = await start_bot(database_url, aiohttp_client, emulator, clock,
                                    attachments_dir=tmp_path / "files",
                                    attachments_secret=SECRET,
                                    public_base_url="https://bot.example")
    return WeComWorld(emulator=emulator, bot=bot, settings=settings)


async def open_ticket(world: WeComWorld, **extra: Any) -> int:
    complaint = parse_complaint({
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001", **extra,
    })
    outcome = await open_complaint(complaint, world.bot.app[LEDGER], actor=CALL_CENTRE,
                                   source="api", now=T0)
    return outcome.ticket.number


def stored_files(world: WeComWorld) -> list[Path]:
    root = world.settings.attachments_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def path_of(url: str) -> str:
    """The path of a signed link (its host is PUBLIC_BASE_URL, served here by the test client)."""
    assert url.startswith("https://bot.example/files/"), url
    return URL(url).path


async def upload_multipart(world: WeComWorld, number: int, *files: tuple[str, bytes]):
    form = aiohttp.FormData()
    form.add_field("note", "不是文件的字段")
    for name, data in files:
        form.add_field("file", io.BytesIO(data), filename=name,
                       content_type="application/octet-stream")
    return await world.bot.post(f"/api/complaints/{number}/attachments", data=form, headers=AUTH)


# -- types by content ---------------------------------------------------------


def test_types_are_told_by_content_not_by_name() -> None:
    assert sniff(PNG_BYTES) is PNG and sniff(JPEG_BYTES) is JPEG and sniff(PDF_BYTES) is PDF
    assert sniff(office("word")) is DOCX and sniff(office("xl")) is XLSX
    assert sniff(iso_media(b"heic", b"mif1", b"heic")) is HEIC
    assert sniff(iso_media(b"isom", b"isom", b"mp41")) is MP4
    assert sniff(iso_media(b"qt  ", b"qt  ")) is MOV
    for refused in (EXE_BYTES, b"<html><script>", b"plain text", office("other"),
                    b"PK\x03\x04broken zip", iso_media(b"xxxx", b"yyyy")):
        assert sniff(refused) is None
    rules = AttachmentRules(max_bytes=1024)
    with pytest.raises(FileRefused) as refused:
        accepted_type(EXE_BYTES, rules, "photo.jpg")
    assert refused.value.status == 415 and "“photo.jpg”不是可接受的文件类型" in refused.value.reason
    with pytest.raises(FileRefused) as refused:
        accepted_type(PNG_BYTES + bytes(1024), rules, "big.png")
    assert refused.value.status == 413 and "超过单个附件上限 1 KB" in refused.value.reason
    assert clean_name("C:\\fakepath\\..\\发票<1>.pdf", PDF, "ab" * 32) == "发票_1_.pdf"
    assert clean_name("  ", JPEG, "1a2b3c4d" + "0" * 56) == "附件-1a2b3c4d.jpg"


def test_robot_media_decrypts_with_its_own_key_and_refuses_another() -> None:
    key = new_aeskey()
    data = JPEG_BYTES + b"x" * 31
    encrypted = encrypt_media(data, key)
    assert len(encrypted) % 32 == 0 and encrypted != data
    assert decrypt_media(encrypted, key) == data
    # The robot's 43-character EncodingAESKey works the same way (padded base64).
    assert decrypt_media(encrypt_media(data, "a" * 43), "a" * 43) == data
    with pytest.raises(MediaDecryptError):
        decrypt_media(encrypted, new_aeskey())
    with pytest.raises(MediaDecryptError):
        decrypt_media(encrypted, "not-a-key")


# -- the API ------------------------------------------------------------------


async def test_the_api_stores_files_by_content_lists_them_and_serves_them_by_signed_link(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world)
    response = await upload_multipart(world, number, ("故障照片.png", PNG_BYTES),
                                      ("维修报告.pdf", PDF_BYTES))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert [(a["name"], a["content_type"], a["size"]) for a in body["attachments"]] == [
        ("故障照片.png", "image/png", len(PNG_BYTES)),
        ("维修报告.pdf", "application/pdf", len(PDF_BYTES))]
    digest = sha256_of(PNG_BYTES)
    assert (world.settings.attachments_dir / digest[:2] / digest[2:4] / digest).read_bytes() \
        == PNG_BYTES
    row = await Attachment.get(name="故障照片.png")
    assert (row.ticket_id, row.sha256, row.uploaded_by, row.source) == (  # type: ignore[attr-defined]
        number, digest, "api", "api")
    event = await TicketEvent.filter(ticket_id=number, kind="attached").get()
    assert [f["name"] for f in event.data["files"]] == ["故障照片.png", "维修报告.pdf"]

    shown = await (await world.bot.get(f"/api/complaints/{number}", headers=AUTH)).json()
    assert [a["name"] for a in shown["attachments"]] == ["故障照片.png", "维修报告.pdf"]
    download = await world.bot.get(path_of(shown["attachments"][0]["url"]))
    assert download.status == 200 and await download.read() == PNG_BYTES
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert "inline" in download.headers["Content-Disposition"]
    assert "%E6%95%85%E9%9A%9C" in download.headers["Content-Disposition"]  # 故障, RFC 5987

    # The same photo again is a second row, kept once on disk.
    again = await upload_multipart(world, number, ("again.png", PNG_BYTES))
    assert again.status == 201
    assert len(stored_files(world)) == 2 and await Attachment.all().count() == 3


async def test_the_api_takes_base64_json_and_names_the_type_by_content(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world)
    docx = office("word")
    response = await world.bot.post(f"/api/complaints/{number}/attachments", headers=AUTH,
                                    json={"files": [
                                        {"name": "协商记录.docx",
                                         "content_base64": base64.b64encode(docx).decode()},
                                        {"content_base64": base64.b64encode(JPEG_BYTES).decode()},
                                    ]})
    assert response.status == 201, await response.text()
    attached = (await response.json())["attachments"]
    assert attached[0]["content_type"] == DOCX.content_type
    assert attached[1]["name"] == f"附件-{sha256_of(JPEG_BYTES)[:8]}.jpg"
    assert "attachment;" in (await world.bot.get(path_of(attached[0]["url"]))).headers[
        "Content-Disposition"]


def complaint_body(**extra: Any) -> dict[str, Any]:
    return {"customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
            "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
            "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001", **extra}


async def test_small_photos_may_come_with_the_complaint_or_it_opens_not_at_all(
    world: WeComWorld,
) -> None:
    photo = {"name": "仪表盘.jpg", "content_base64": base64.b64encode(JPEG_BYTES).decode()}
    response = await world.bot.post("/api/complaints", headers=AUTH,
                                    json=complaint_body(attachments=[photo]))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert [a["name"] for a in body["attachments"]] == ["仪表盘.jpg"]
    assert (await Attachment.get(ticket_id=body["number"])).source == "api"
    bad = {"name": "x.jpg", "content_base64": base64.b64encode(EXE_BYTES).decode()}
    refused = await world.bot.post("/api/complaints", headers=AUTH,
                                   json=complaint_body(attachments=[photo, bad]))
    assert refused.status == 415 and "“x.jpg”" in (await refused.json())["error"]
    assert await TicketRow.all().count() == 1 and await Attachment.all().count() == 1


async def test_the_api_refuses_a_file_too_large_or_of_another_type_and_stores_nothing(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world)
    cases = [
        ([("setup.jpg", EXE_BYTES)], 415, "“setup.jpg”不是可接受的文件类型"),
        # One bad file refuses the request: the good one is not kept either.
        ([("ok.png", PNG_BYTES), ("page.pdf", b"<html>not a pdf</html>")], 415, "“page.pdf”"),
        ([("empty.png", b"")], 422, "是空的"),
        ([("huge.jpg", JPEG_BYTES + bytes(10 * 1024 * 1024))], 413, "超过单个附件上限 10.0 MB"),
    ]
    for files, status, says in cases:
        response = await upload_multipart(world, number, *files)
        assert response.status == status
        assert says in (await response.json())["error"]
    assert await Attachment.all().count() == 0
    assert not await TicketEvent.filter(kind="attached").exists()
    assert stored_files(world) == []


async def test_the_api_refuses_bad_requests_in_chinese(world: WeComWorld) -> None:
    number = await open_ticket(world)
    url = f"/api/complaints/{number}/attachments"
    cases = [
        (await world.bot.post(url, headers=AUTH, json={"name": "a.png", "content_base64": "@@"}),
         422, "不是有效的 base64"),
        (await world.bot.post(url, headers=AUTH, json={"files": []}), 422, "请提供 1 至 10 个文件"),
        (await world.bot.post(url, headers=AUTH, data="x"), 415, "multipart/form-data"),
        (await world.bot.post(url, data=io.BytesIO(b'{"content_base64": "' + b"A" * (15 << 20)),
                              headers={**AUTH, "Content-Type": "application/json"}),
         413, "请求过大"),
        (await world.bot.post("/api/complaints/999/attachments", headers=AUTH,
                              json={"content_base64": ""}), 404, "没有编号为 #999 的投诉"),
    ]
    for response, status, says in cases:
        assert response.status == status
        assert says in (await response.json())["error"]
    assert (await world.bot.post(url, json={})).status == 401
    assert await Attachment.all().count() == 0


async def test_a_signed_link_expires_and_a_forged_one_is_refused(
    world: WeComWorld, clock: list,
) -> None:
    number = await open_ticket(world)
    await upload_multipart(world, number, ("a.png", PNG_BYTES), ("b.pdf", PDF_BYTES))
    shown = await (await world.bot.get(f"/api/complaints/{number}", headers=AUTH)).json()
    first, second = (path_of(a["url"]) for a in shown["attachments"])
    assert (await world.bot.get(first)).status == 200
    token = first.rsplit("/", 1)[1]
    ident, expires, signature = token.split(".")
    other_id = second.rsplit("/", 1)[1].split(".")[0]
    forged = [
        f"/files/{other_id}.{expires}.{signature}",  # another file, this file's signature
        f"/files/{ident}.{int(expires) + 86400}.{signature}",  # a longer life
        f"/files/{ident}.{expires}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "/files/not-a-token",
    ]
    for path in forged:
        response = await world.bot.get(path)
        assert response.status == 403
        assert "链接无效" in await response.text()
    # The policy's link lifetime is 24 h: a second before it works, then it is gone.
    clock[0] = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert (await world.bot.get(first)).status == 200
    clock[0] = T0 + timedelta(hours=24)
    expired = await world.bot.get(first)
    assert expired.status == 410
    assert "链接已过期" in await expired.text() and "/show" in await expired.text()


async def world_storing_in(folder: Path, database_url, emulator, aiohttp_client,
                           clock) -> WeComWorld:
    bot, settings = await start_bot(database_url, aiohttp_client, emulator, clock,
                                    attachments_dir=folder, attachments_secret=SECRET)
    return WeComWorld(emulator=emulator, bot=bot, settings=settings)


async def test_a_full_store_refuses_with_a_clear_message_and_keeps_nothing(
    database_url, emulator, aiohttp_client, clock, tmpfs: Path,  # noqa: F811
) -> None:
    world = await world_storing_in(tmpfs / "files", database_url, emulator, aiohttp_client, clock)
    number = await open_ticket(world)
    # /metrics tells how much room is left before it runs out (16 MB here).
    free = value(await scrape(world.bot), "complaintbot_storage_free_bytes", store="attachments")
    assert 15e6 < free <= 16 * 2**20
    (tmpfs / "files").mkdir()
    filler = fill(tmpfs)
    full = await scrape(world.bot)
    assert full[("complaintbot_storage_free_bytes", frozenset({("store", "attachments")}))] == 0
    response = await upload_multipart(world, number, ("a.jpg", JPEG_BYTES))
    assert response.status == 507
    assert (await response.json())["error"] == FULL_MESSAGE
    assert await Attachment.all().count() == 0
    assert [p for p in (tmpfs / "files").rglob("*") if p.is_file()] == []
    filler.unlink()
    assert (await upload_multipart(world, number, ("a.jpg", JPEG_BYTES))).status == 201
    scraped = await scrape(world.bot)
    assert value(scraped, "complaintbot_storage_free_bytes", store="attachments") > 15e6
    # SQLite's folder is watched too (PostgreSQL's disk is its server's).
    stores = {dict(labels)["store"] for name, labels in scraped
              if name == "complaintbot_storage_free_bytes"}
    assert stores == ({"attachments", "database"} if database_url.startswith("sqlite")
                      else {"attachments"})


async def test_a_read_only_store_refuses_with_a_clear_message(
    database_url, emulator, aiohttp_client, clock, tmpfs: Path,  # noqa: F811
) -> None:
    world = await world_storing_in(tmpfs / "files", database_url, emulator, aiohttp_client, clock)
    number = await open_ticket(world)
    remount = await asyncio.create_subprocess_exec("mount", "-o", "remount,ro", str(tmpfs))
    assert await remount.wait() == 0
    response = await upload_multipart(world, number, ("a.jpg", JPEG_BYTES))
    assert response.status == 503
    assert (await response.json())["error"] == READ_ONLY_MESSAGE
    assert await Attachment.all().count() == 0


# -- chat: the app and the robot ------------------------------------------------


async def app_reply(world: WeComWorld, userid: str) -> str:
    """The newest reply the app has queued for `userid`."""
    from models import Notification

    row = await Notification.filter(kind="reply", recipient=userid).order_by("-id").first()
    assert row is not None
    return row.payload["markdown"]


async def test_an_app_photo_is_fetched_with_media_get_and_waits_for_attach(
    world: WeComWorld, clock: list,
) -> None:
    number = await open_ticket(world)
    assert await world.emulator.app_media("sh.zhang", JPEG_BYTES, filename="IMG_0001.jpg") == ""
    fetched = world.emulator.sent("media/get")
    assert len(fetched) == 1 and fetched[0]["answer"] == {"size": len(JPEG_BYTES)}
    reply = await app_reply(world, "sh.zhang")
    assert "已收到 1 个文件：IMG_0001.jpg（JPEG 图片）" in reply and "/attach" in reply
    assert await PendingAttachment.all().count() == 1
    # Someone else's /attach, or the same person in a group, takes nothing.
    await world.emulator.app_message("sh.chen", f"/attach {number}")
    assert "没有等待归档" in await app_reply(world, "sh.chen")
    reply = await world.emulator.robot_message("sh.zhang", GROUP, f"@投诉助手 /attach {number}")
    assert "没有等待归档" in reply["stream"]["content"]

    clock[0] = T0 + timedelta(minutes=5)
    await world.emulator.app_message("sh.zhang", f"附件 {number}")
    reply = await app_reply(world, "sh.zhang")
    assert f"已为 #{number} 归档 1 个附件" in reply and "IMG_0001.jpg" in reply
    row = await Attachment.get(ticket_id=number)
    assert (row.uploaded_by, row.uploaded_by_name, row.source) == ("sh.zhang", "张专员", "app")
    assert await PendingAttachment.all().count() == 0

    # /show lists it with a link that serves the photo.
    await world.emulator.app_message("sh.zhang", f"/show {number}")
    shown = await app_reply(world, "sh.zhang")
    assert "IMG_0001.jpg" in shown and "下载链接 1 天内有效" in shown
    link = shown.split("](", 1)[1].split(")", 1)[0]
    assert await (await world.bot.get(path_of(link))).read() == JPEG_BYTES


async def test_an_app_photo_waits_only_the_pending_window(
    world: WeComWorld, clock: list,
) -> None:
    number = await open_ticket(world)
    await world.emulator.app_media("sh.zhang", PDF_BYTES, filename="维修发票.pdf",
                                   content_type="application/pdf", kind="file")
    assert "维修发票.pdf（PDF 文档）" in await app_reply(world, "sh.zhang")
    clock[0] = T0 + timedelta(minutes=10, seconds=1)
    await world.emulator.app_message("sh.zhang", f"/attach {number}")
    assert "没有等待归档" in await app_reply(world, "sh.zhang")
    assert await Attachment.all().count() == 0


async def test_an_app_file_of_another_type_is_refused_and_not_stored(world: WeComWorld) -> None:
    await open_ticket(world)
    await world.emulator.app_media("sh.zhang", EXE_BYTES, filename="tool.exe",
                                   content_type="application/octet-stream", kind="file")
    reply = await app_reply(world, "sh.zhang")
    assert "文件未能保存" in reply and "“tool.exe”不是可接受的文件类型" in reply
    assert await PendingAttachment.all().count() == 0 and stored_files(world) == []


async def test_a_robot_photo_one_to_one_is_decrypted_with_its_own_key(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world)
    reply = await world.emulator.robot_media("sh.zhang", None, [PNG_BYTES])
    assert "已收到 1 个文件" in reply["stream"]["content"]
    reply = await world.emulator.robot_message("sh.zhang", None, f"/attach {number}")
    assert f"已为 #{number} 归档 1 个附件" in reply["stream"]["content"]
    row = await Attachment.get(ticket_id=number)
    assert (row.sha256, row.content_type, row.source) == (sha256_of(PNG_BYTES), "image/png",
                                                          "robot")
    # In callback mode without a per-URL key, the robot's EncodingAESKey decrypts.
    reply = await world.emulator.robot_media("sh.zhang", None, [PDF_BYTES], kind="file",
                                             per_url_key=False)
    assert "PDF 文档" in reply["stream"]["content"]


async def test_a_group_mixed_message_naming_the_ticket_attaches_its_photos_at_once(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world)
    reply = await world.emulator.robot_media(
        "sh.zhang", GROUP, [JPEG_BYTES, PNG_BYTES], text=f"@投诉助手 /attach {number}")
    assert f"已为 #{number} 归档 2 个附件" in reply["stream"]["content"]
    assert await Attachment.filter(ticket_id=number).count() == 2
    assert len(world.emulator.sent("media/get")) == 0
    downloads = [r for r in world.emulator.requests if "/emulator/robot_media/" in r["path"]]
    assert len(downloads) == 2
    # /show in the group: a card with links to the files.
    reply = await world.emulator.robot_message("sh.zhang", GROUP, f"@投诉助手 /show {number}")
    card = reply["template_card"]
    assert card["sub_title_text"].startswith("附件 2 个｜")
    assert [j["title"] for j in card["jump_list"]] == ["📎 附件-" + sha256_of(PNG_BYTES)[:8]
                                                       + ".png", "📎 附件-"
                                                       + sha256_of(JPEG_BYTES)[:8] + ".jpg"]


async def test_a_photo_over_the_long_connection_is_decrypted_with_its_url_key(
    database_url, emulator, aiohttp_client, clock, tmp_path,
) -> None:
    """Long-connection mode (doc 101463): the callback comes over the socket
    and every media URL carries its own aeskey."""
    bot, settings = await start_bot(
        database_url, aiohttp_client, emulator, clock, attachments_dir=tmp_path / "files",
        attachments_secret=SECRET, wecom_robot_mode="long_connection",
        wecom_robot_ws_url=f"{emulator.url}/emulator/ws", wecom_robot_ping_seconds=0.2,
        wecom_robot_reconnect_seconds=0.05)
    await eventually(lambda: emulator.ws.connected, what="the bot subscribed")
    world = WeComWorld(emulator=emulator, bot=bot, settings=settings)
    number = await open_ticket(world)
    heic = iso_media(b"heic", b"mif1", b"heic")
    reply = await emulator.robot_media("sh.zhang", GROUP, [heic], text=f"@投诉助手 附件 {number}")
    assert f"已为 #{number} 归档 1 个附件" in reply["stream"]["content"]
    assert "HEIC 图片" in reply["stream"]["content"]
    row = await Attachment.get(ticket_id=number)
    assert (row.content_type, row.sha256) == ("image/heic", sha256_of(heic))
    callback = [r for r in emulator.requests if r["path"] == "ws:/wecom/robot"][-1]
    assert callback["json"]["mixed"]["msg_item"][1]["image"]["aeskey"]


async def test_an_expired_robot_link_is_told_and_nothing_stored(
    world: WeComWorld, clock: list,
) -> None:
    await open_ticket(world)
    url, aeskey = world.emulator.robot_media_url(JPEG_BYTES)
    clock[0] = T0 + timedelta(minutes=6)
    reply = await world.emulator.deliver_robot({
        "msgid": "m-expired", "aibotid": "aib", "chattype": "single",
        "from": {"userid": "sh.zhang"}, "response_url": "", "msgtype": "image",
        "image": {"url": url, "aeskey": aeskey}})
    assert "下载失败（链接可能已过期）" in reply["stream"]["content"]
    assert await PendingAttachment.all().count() == 0 and stored_files(world) == []


async def test_r22_no_attachment_is_shown_in_a_group_for_a_complaint_about_staff(
    world: WeComWorld,
) -> None:
    number = await open_ticket(world, about_staff="sh.chen",
                               description="销售顾问陈专员态度恶劣")
    reply = await world.emulator.robot_media(
        "sh.zhang", GROUP, [JPEG_BYTES], text=f"@投诉助手 /attach {number}")
    content = reply["stream"]["content"]
    assert f"已为 #{number} 归档 1 个附件" in content
    name = (await Attachment.get(ticket_id=number)).name
    assert name not in content and "私聊" in content
    reply = await world.emulator.robot_message("sh.zhang", GROUP, f"@投诉助手 /show {number}")
    shown = str(reply)
    assert "附件" not in shown and "jump_list" not in reply["template_card"]
    assert "/files/" not in shown
    # One to one the handler sees the file and its link; the employee it is about, nothing.
    reply = await world.emulator.robot_message("sh.zhang", None, f"/show {number}")
    assert reply["template_card"]["jump_list"][0]["title"] == f"📎 {name}"
    reply = await world.emulator.robot_message("sh.chen", None, f"/show {number}")
    assert "/files/" not in str(reply)
    reply = await world.emulator.robot_media("sh.chen", None, [PNG_BYTES])
    reply = await world.emulator.robot_message("sh.chen", None, f"/attach {number}")
    assert "按规定您不能处理或查看" in reply["stream"]["content"]
    assert await Attachment.filter(ticket_id=number).count() == 1


# -- the store's clean-up -----------------------------------------------------

TWO_DAYS = 2 * 24 * 3600


def age(path: Path, seconds: float) -> None:
    """Make a stored file look untouched for `seconds` (the store goes by mtime)."""
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


async def test_files_no_ticket_uses_leave_the_store_once_idle_and_attached_ones_stay(
    world: WeComWorld, clock: list,
) -> None:
    number = await open_ticket(world)
    await world.emulator.app_media("sh.zhang", JPEG_BYTES, filename="IMG_0001.jpg")
    await world.emulator.app_message("sh.zhang", f"/attach {number}")
    assert f"已为 #{number} 归档 1 个附件" in await app_reply(world, "sh.zhang")
    # A file sent without a number and never attached, and what a write
    # killed half-way left behind.
    await world.emulator.app_media("sh.zhang", PDF_BYTES, filename="维修发票.pdf",
                                   content_type="application/pdf", kind="file")
    assert "维修发票.pdf" in await app_reply(world, "sh.zhang")
    root = world.settings.attachments_dir
    (root / ".incoming-0123456789abcdef").write_bytes(b"half a file")
    kit, rules = world.bot.app[ATTACHMENTS], world.bot.app[LEDGER].policies.current.attachments

    # Within the wait for /attach, or untouched for less than a day: all stay.
    clock[0] = T0 + timedelta(minutes=11)
    assert await kit.prune(now=clock[0], rules=rules) == Pruned(expired=1)
    assert len(stored_files(world)) == 3

    for path in stored_files(world):
        age(path, TWO_DAYS)
    pruned = await kit.prune(now=clock[0], rules=rules)
    assert pruned == Pruned(files=1, bytes=len(PDF_BYTES), leftovers=1)
    assert [p.name for p in stored_files(world)] == [sha256_of(JPEG_BYTES)]
    # The attached photo is still served by its link.
    await world.emulator.app_message("sh.zhang", f"/show {number}")
    shown = await app_reply(world, "sh.zhang")
    link = shown.split("](", 1)[1].split(")", 1)[0]
    assert await (await world.bot.get(path_of(link))).read() == JPEG_BYTES
    assert await kit.prune(now=clock[0], rules=rules) == Pruned()


async def test_a_file_sent_again_is_in_use_again_and_not_removed(
    world: WeComWorld, clock: list,
) -> None:
    kit, rules = world.bot.app[ATTACHMENTS], world.bot.app[LEDGER].policies.current.attachments
    await world.emulator.app_media("sh.zhang", JPEG_BYTES, filename="IMG_0001.jpg")
    [stored] = stored_files(world)
    age(stored, TWO_DAYS)
    clock[0] = T0 + timedelta(minutes=30)
    # The same photo again, from someone else: kept once, and touched.
    await world.emulator.app_media("sh.chen", JPEG_BYTES, filename="again.jpg")
    assert stored_files(world) == [stored]
    # Neither waits for /attach any more, but the file was in use a moment ago.
    clock[0] = T0 + timedelta(minutes=45)
    pruned = await kit.prune(now=clock[0], rules=rules)
    assert pruned.files == 0 and await PendingAttachment.all().count() == 0
    assert stored.read_bytes() == JPEG_BYTES
    age(stored, TWO_DAYS)
    # The scheduler's job, as its tick runs it, removes it now.
    await run_scheduled_job(world, clock, "prune_attachments")
    assert stored_files(world) == []
