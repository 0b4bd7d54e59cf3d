"""The 201 answer of POST /api/complaints is built from what intake stored,
without reading the ticket back (issue 16): it must say, byte for byte,
what GET /api/complaints/{n} then says of the same ticket (its summary, and
the attachments when files came with the complaint), on SQLite and
PostgreSQL, whatever the complaint turned out to be."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import T0, TOKEN, WeComWorld, start_bot

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 3
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(200))
GEARBOX = "变速箱顿挫，多次维修未解决"

# The answer's fields, in the order GET shows them.
SUMMARY = [
    "number", "display", "category", "owner", "status", "dealer_code", "region_code", "major",
    "legal", "repeat_of", "related", "created_at", "dispatched_at", "policy_version", "source",
    "resolved_on_call", "confirmed_at", "deadlines",
]


@pytest.fixture
async def world(database_url, emulator, aiohttp_client, clock, tmp_path) -> WeComWorld:
    """The bot with attachments kept under the test's folder and links signed."""
    bot, settings = await start_bot(database_url, aiohttp_client, emulator, clock,
                                    attachments_dir=tmp_path / "files",
                                    attachments_secret="attachment-link-secret-0123456789",
                                    public_base_url="https://bot.example")
    return WeComWorld(emulator=emulator, bot=bot, settings=settings)


def body(**changes: Any) -> dict[str, Any]:
    return {"customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
            "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
            "description": GEARBOX, "dealer_code": "SH001", **changes}


def photos(*files: tuple[str, bytes]) -> list[dict[str, str]]:
    return [{"name": name, "content_base64": base64.b64encode(data).decode()}
            for name, data in files]


async def answered_as_shown(world: WeComWorld, complaint: dict[str, Any]) -> dict[str, Any]:
    """POST the complaint, then GET its ticket: the 201 answer's bytes are
    GET's answer cut to the summary (and the attachments if any were sent)."""
    response = await world.bot.post("/api/complaints", headers=AUTH, json=complaint)
    assert response.status == 201, await response.text()
    answer = await response.text()
    number = json.loads(answer)["number"]
    assert response.headers["Location"] == f"/api/complaints/{number}"
    shown = await world.bot.get(f"/api/complaints/{number}", headers=AUTH)
    assert shown.status == 200
    full = await shown.json()
    fields = SUMMARY + (["attachments"] if "attachments" in complaint else [])
    assert answer == json.dumps({name: full[name] for name in fields}, ensure_ascii=False)
    return full


@pytest.mark.parametrize(
    ("changes", "expect", "link"),
    [
        pytest.param({}, {"category": "general", "related": []}, None, id="general"),
        pytest.param({"attachments": photos(("仪表盘.jpg", JPEG), ("故障灯.png", PNG))},
                     {"category": "general"}, None, id="with-photos"),
        pytest.param({"description": "变速箱还是顿挫，维修多次仍未解决", "plate": ""},
                     {"category": "escalated", "major": True}, "repeat_of", id="repeat"),
        pytest.param({"description": "销售承诺的免费保养没有兑现",
                      "attachments": photos(("合同.jpg", JPEG))},
                     {"category": "general"}, "related", id="related-with-photo"),
        pytest.param({"channel": "central_media"}, {"category": "important", "major": True},
                     None, id="major"),
        pytest.param({"description": "准备起诉，律师函已发出"}, {"legal": True}, None,
                     id="legal"),
        pytest.param({"resolved_on_call": True}, {"resolved_on_call": True}, None,
                     id="resolved-on-call"),
    ],
)
async def test_the_201_answer_is_what_get_shows(
    world: WeComWorld, clock: list[datetime], changes: dict[str, Any], expect: dict[str, Any],
    link: str | None,
) -> None:
    """`link`: an earlier complaint of the same car makes this one its repeat
    (repeat_of) or, another problem, related to it (related)."""
    if link is not None:
        earlier = (await answered_as_shown(world, body()))["number"]
        clock[0] += timedelta(days=1)
    shown = await answered_as_shown(world, body(**changes))
    assert {name: shown[name] for name in expect} == expect
    if link == "repeat_of":
        assert shown["repeat_of"] == earlier
    if link == "related":
        assert shown["related"] == [earlier]
    if "attachments" in changes:
        assert [a["name"] for a in shown["attachments"]] == [
            f["name"] for f in changes["attachments"]]
        assert all(a["url"] for a in shown["attachments"])


async def test_times_off_the_second_and_across_a_weekend_read_the_same(
    world: WeComWorld, clock: list[datetime],
) -> None:
    """A Friday evening in Shanghai, with microseconds: the working-time clocks
    run into the next week, and the times computed (not read back) are those
    stored, to the microsecond, in UTC."""
    clock[0] = T0 + timedelta(days=4, hours=10, minutes=17, seconds=3, microseconds=123456)
    shown = await answered_as_shown(world, body(attachments=photos(("a.jpg", JPEG))))
    assert shown["created_at"] == clock[0].isoformat()
    assert shown["deadlines"] and all(d["due_at"].endswith("+00:00") for d in shown["deadlines"])
