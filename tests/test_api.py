"""The intake API as the call-centre system sees it: POST and GET
/api/complaints and /healthz, on a real server, on SQLite and PostgreSQL.

Every rejected request must leave the database exactly as it was."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.domain.enums import Channel, Flag
from bot.intake import INVALID
from models import Deadline, Notification, Ticket, TicketEvent
from tests.conftest import T0, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}

VALID: dict[str, Any] = {
    "customer_name": "李先生",
    "customer_phone": "138 1234 5678",
    "car_model": "速腾",
    "plate": "沪A 12345",
    "vin": "LFV2A21K6A3012345",
    "channel": "phone",
    "description": "变速箱顿挫，多次维修未解决",
    "dealer_code": "SH001",
}


def complaint(**changes: Any) -> dict[str, Any]:
    """A valid POST body with some fields changed."""
    return {**VALID, **changes}


def without(*names: str) -> dict[str, Any]:
    """A valid POST body with some fields left out."""
    return {k: v for k, v in VALID.items() if k not in names}


async def row_counts() -> dict[str, int]:
    """How many rows each table a complaint writes to holds."""
    return {
        "tickets": await Ticket.all().count(),
        "events": await TicketEvent.all().count(),
        "notifications": await Notification.all().count(),
        "deadlines": await Deadline.all().count(),
    }


async def post(client, body: Any, headers: dict[str, str] = AUTH):
    """POST a body: bytes as they are, anything else as JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/api/complaints", data=data, headers={"Content-Type": "application/json", **headers}
    )


async def create(client, **changes: Any) -> dict[str, Any]:
    """POST a valid complaint (with changes) and return the 201 body."""
    response = await post(client, complaint(**changes))
    assert response.status == 201, await response.text()
    return await response.json()


async def fetch(client, number: int) -> dict[str, Any]:
    response = await client.get(f"/api/complaints/{number}", headers=AUTH)
    assert response.status == 200, await response.text()
    return await response.json()


def sent(ticket: dict[str, Any], medium: str, kind: str | None = None) -> list[str]:
    """Recipients of the ticket's notifications over one medium (of one kind)."""
    return [
        n["recipient"]
        for n in ticket["notifications"]
        if n["medium"] == medium and (kind is None or n["kind"] == kind)
    ]


# --- creating and reading a ticket ---------------------------------------------------


async def test_r10_post_dispatches_a_general_complaint_to_the_dealer(client) -> None:
    """A valid complaint is stored, classified general, owned by the dealer,
    dispatched, and its deadlines run from the clock."""
    response = await post(client, VALID)

    assert response.status == 201
    body = await response.json()
    assert response.headers["Location"] == f"/api/complaints/{body['number']}"
    assert body["display"] == f"#{body['number']}"
    assert (body["category"], body["owner"], body["status"]) == ("general", "dealer", "dispatched")
    assert (body["dealer_code"], body["region_code"]) == ("SH001", "EAST")
    assert (body["major"], body["legal"], body["repeat_of"]) == (False, False, None)
    due = {d["clock"]: d["due_at"] for d in body["deadlines"]}
    assert due == {
        "response": (T0 + timedelta(hours=2)).isoformat(),
        "first_solution": (T0 + timedelta(hours=24)).isoformat(),
        "followup": (T0 + timedelta(hours=48)).isoformat(),
        "solution_email": (T0 + timedelta(days=2)).isoformat(),
        "resolution": (T0 + timedelta(days=3)).isoformat(),
    }
    row = await Ticket.get(id=body["number"])
    assert row.customer_phone == "13812345678"  # spaces dropped
    assert row.plate == "沪A12345"
    assert row.dispatched_at == T0
    assert await row_counts() == {"tickets": 1, "events": 1, "notifications": 4, "deadlines": 5}


async def test_deadlines_run_from_the_time_of_dispatch(client, clock) -> None:
    """The response deadline is 2 h after whatever the clock said at dispatch."""
    clock[0] = T0 + timedelta(days=5, minutes=7)
    body = await create(client)
    due = {d["clock"]: d["due_at"] for d in body["deadlines"]}
    assert due["response"] == (clock[0] + timedelta(hours=2)).isoformat()


async def test_get_shows_history_deadlines_and_notifications(client) -> None:
    """GET returns the dispatch event, the pending deadlines and the outbox:
    SMS to the customer, a notice in SH001's group and a card to each handler."""
    number = (await create(client))["number"]

    ticket = await fetch(client, number)

    assert ticket["number"] == number
    assert ticket["customer_name"] == "李先生"
    assert ticket["vin"] == "LFV2A21K6A3012345"
    assert ticket["dispatched_at"] == T0.isoformat()
    assert [(e["kind"], e["actor"], e["source"], e["at"]) for e in ticket["history"]] == [
        ("dispatched", "api", "api", T0.isoformat())
    ]
    assert [d["clock"] for d in ticket["deadlines"]][0] == "response"
    assert sent(ticket, "sms", "accepted") == ["13812345678"]
    assert sent(ticket, "group", "dispatched") == ["wrGRP-SH001"]
    assert sorted(sent(ticket, "app", "dispatched")) == ["sh.chen", "sh.zhang"]
    assert "unroutable" not in {n["status"] for n in ticket["notifications"]}


async def test_get_accepts_a_hash_before_the_number(client) -> None:
    """`#7` is how people write ticket numbers; the API takes it too."""
    number = (await create(client))["number"]
    response = await client.get(f"/api/complaints/%23{number}", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["number"] == number


# --- classification -------------------------------------------------------------------


async def test_r6_repeat_complaint_links_the_earlier_ticket_and_escalates(client) -> None:
    """The same VIN complaining again about the same problem is a repeat:
    linked, escalated to the region, major, and announced in the region's group."""
    first = await create(client)
    second = await create(client, description="变速箱还是顿挫，维修多次仍未解决", plate="")

    assert second["repeat_of"] == first["number"]
    assert (second["category"], second["owner"], second["major"]) == ("escalated", "region", True)
    ticket = await fetch(client, second["number"])
    assert ticket["history"][0]["data"]["repeat_of"] == first["number"]
    assert "wrGRP-EAST" in sent(ticket, "group", "escalated")
    assert sent(ticket, "app", "escalated") == ["east.he"]


async def test_r6_another_vehicle_is_not_a_repeat(client) -> None:
    """The same text from a different car is a new general complaint."""
    await create(client)
    other = await create(client, vin="LSVAU2180N2123456", plate="沪B54321")
    assert (other["repeat_of"], other["category"]) == (None, "general")


async def test_r6_another_problem_of_the_same_car_is_related_not_a_repeat(client) -> None:
    """Issue 12 item 4: an open gearbox ticket does not make a complaint about
    an unkept promise a repeat: it stays general, not major, brand division and
    legal hear nothing; both tickets show the link."""
    first = await create(client)
    second = await create(client, description="销售承诺的免费保养没有兑现")

    assert (second["repeat_of"], second["category"], second["major"]) == (None, "general", False)
    assert second["related"] == [first["number"]]
    ticket = await fetch(client, second["number"])
    assert sent(ticket, "email") == []
    assert ticket["history"][0]["data"]["related_to"] == first["number"]
    assert (await fetch(client, first["number"]))["related"] == [second["number"]]


@pytest.mark.parametrize(
    ("changes", "category", "owner", "major"),
    [
        pytest.param({"channel": "central_media"}, "important", "hq", True, id="r5-central-media"),
        pytest.param({"channel": "local_media"}, "escalated", "region", True, id="r4-local-media"),
        pytest.param({"flags": ["recall"]}, "escalated", "region", False, id="r4-recall"),
        pytest.param({"flags": ["airbag"]}, "important", "hq", False, id="r5-airbag"),
        pytest.param({"category": "escalated"}, "escalated", "region", False, id="explicit"),
        pytest.param(
            {"category": "escalated", "flags": ["fire"]}, "important", "hq", False,
            id="r5-fire-beats-explicit",
        ),
    ],
)
async def test_r4_r5_channel_and_flags_set_category_and_owner(
    client, changes: dict[str, Any], category: str, owner: str, major: bool
) -> None:
    """R4/R5: the channel, the flags and the agent's choice decide the category
    (the most severe wins) and so the owner."""
    body = await create(client, **changes)
    assert (body["category"], body["owner"], body["major"]) == (category, owner, major)
    assert body["status"] == "dispatched"


async def test_r5_important_complaint_reaches_hq(client) -> None:
    """An important complaint is announced in the HQ group with a card to HQ staff."""
    body = await create(client, flags=["airbag"])
    ticket = await fetch(client, body["number"])
    assert "wrGRP-HQ" in sent(ticket, "group", "escalated")
    assert sent(ticket, "app", "escalated") == ["hq.feng"]


async def test_r26_legal_keyword_flags_the_ticket_to_legal(client) -> None:
    """A complaint that mentions a lawyer is flagged legal and e-mailed to legal."""
    body = await create(client, description="再不解决我就找律师")
    assert body["legal"] is True
    assert body["category"] == "general"
    ticket = await fetch(client, body["number"])
    assert sent(ticket, "email", "legal_flag") == ["legal.han@brand.example"]


async def test_without_legal_words_legal_hears_nothing(client) -> None:
    body = await create(client)
    assert body["legal"] is False
    assert sent(await fetch(client, body["number"]), "email") == []


async def test_r22_the_employee_complained_about_gets_no_card(client) -> None:
    """R22: a complaint about sh.zhang is not sent to sh.zhang, only to the
    other SH001 handler."""
    body = await create(client, about_staff="sh.zhang")
    ticket = await fetch(client, body["number"])
    assert ticket["about_staff"] == "sh.zhang"
    assert sent(ticket, "app", "dispatched") == ["sh.chen"]
    assert "sh.zhang" not in {n["recipient"] for n in ticket["notifications"]}


# --- refusals: nothing is written -----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="empty-token"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="token-prefix"),
    ],
)
async def test_without_the_token_nothing_is_accepted_or_shown(client, headers) -> None:
    """401 for POST and GET without the right bearer token; nothing written."""
    number = (await create(client))["number"]
    before = await row_counts()

    response = await post(client, complaint(vin="LSVAU2180N2123456"), headers=headers)
    assert response.status == 401
    assert (await response.json())["error"] == "缺少或错误的访问令牌（Authorization: Bearer …）。"
    response = await client.get(f"/api/complaints/{number}", headers=headers)
    assert response.status == 401
    assert "customer_name" not in await response.text()

    assert await row_counts() == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            without("customer_name", "channel"),
            {"customer_name": "必填", "channel": "必填"},
            id="missing-fields",
        ),
        pytest.param({}, {name: "必填" for name in VALID}, id="empty-object"),
        pytest.param(
            complaint(customer_name=42), {"customer_name": "应为文本"}, id="number-for-name"
        ),
        pytest.param(complaint(flags="recall"), {"flags": "应为列表"}, id="string-for-flags"),
        pytest.param(complaint(flags=["aliens"]), {"flags.0": "airbag"}, id="unknown-flag"),
        pytest.param(complaint(channel="pigeon"), {"channel": "phone"}, id="unknown-channel"),
        pytest.param(complaint(category="urgent"), {"category": "general"}, id="unknown-category"),
        pytest.param(complaint(vin="LFV2A21K6A301234O"), {"vin": "17 位"}, id="vin-with-O"),
        pytest.param(complaint(vin="LFV2A21K6A30123"), {"vin": "17 位"}, id="short-vin"),
        pytest.param(complaint(vin="", plate=""), {"vin": "或车牌号"}, id="no-vehicle"),
        pytest.param(
            complaint(customer_phone="call me"), {"customer_phone": "电话号码"}, id="bad-phone"
        ),
        pytest.param(
            complaint(customer_name="   "), {"customer_name": "不能为空"}, id="blank-name"
        ),
        pytest.param(
            complaint(description="x" * 5001), {"description": "最多 5000"}, id="long-text"
        ),
        pytest.param(
            complaint(dealer_code="XX999"), {"dealer_code": "经销商代码“XX999”不存在"},
            id="unknown-dealer",
        ),
        pytest.param(
            complaint(about_staff="nobody"),
            {"about_staff": "没有账号为“nobody”的员工"},
            id="unknown-about-staff",
        ),
        pytest.param(
            complaint(priority="high"), {"priority": "未知字段"},
            id="unknown-field",
        ),
        pytest.param(
            complaint(description="a\u0000b"), {"description": "NUL"}, id="nul-in-text"
        ),
        pytest.param(
            complaint(dealer_code="SH\u0000001"), {"dealer_code": "NUL"}, id="nul-in-dealer"
        ),
        pytest.param(
            complaint(vin="", plate="ß" * 16), {"plate": "最多 16"}, id="plate-grows-upper-cased"
        ),
        pytest.param(
            complaint(description="bad \ud800 text"), {"description": "Unicode"},
            id="lone-surrogate",
        ),
    ],
)
async def test_invalid_complaint_gets_422_naming_each_field(
    client, body: dict[str, Any], expected: dict[str, str]
) -> None:
    """422 with one message per bad field (and no others); nothing written."""
    before = await row_counts()

    response = await post(client, body)

    assert response.status == 422
    answer = await response.json()
    assert answer["error"] == INVALID
    assert set(answer["fields"]) == set(expected)
    for name, fragment in expected.items():
        assert fragment in answer["fields"][name], (name, answer["fields"][name])
    assert await row_counts() == before


async def test_r11_every_bad_field_is_named_at_once_in_chinese(client) -> None:
    """Schema errors and the directory's (unknown dealer, unknown employee) come
    in one 422: the call-centre agent fixes everything in one go."""
    before = await row_counts()
    response = await post(client, complaint(customer_phone="12", dealer_code="XX999",
                                            about_staff="nobody", channel="pigeon", vin="",
                                            plate=""))
    assert response.status == 422
    fields = (await response.json())["fields"]
    assert set(fields) == {"customer_phone", "dealer_code", "about_staff", "channel", "vin"}
    assert fields["customer_phone"].startswith("客户电话不是有效的电话号码")
    assert fields["dealer_code"] == "经销商代码“XX999”不存在"
    for message in fields.values():
        assert any("\u4e00" <= ch <= "\u9fff" for ch in message), message
    assert await row_counts() == before


@pytest.mark.parametrize("phone", ["12", "1234567", "23812345678", "138123456789"])
async def test_r11_a_phone_that_cannot_be_called_is_refused(client, phone) -> None:
    response = await post(client, complaint(customer_phone=phone))
    assert response.status == 422
    assert set((await response.json())["fields"]) == {"customer_phone"}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("１３８１２３４５６７８", "13812345678"),
        ("138.1234.5678", "13812345678"),
        ("(138)1234_5678", "13812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("021-6234 5678", "02162345678"),
    ],
)
async def test_r11_phones_as_people_type_them_are_stored_plain(client, given, stored) -> None:
    """Full-width digits (Chinese input methods) and separators are normalised."""
    body = await create(client, customer_phone=given, vin="ＬＦＶ２Ａ２１Ｋ６-Ａ３０１ ２３４５")
    row = await Ticket.get(id=body["number"])
    assert (row.customer_phone, row.vin) == (stored, "LFV2A21K6A3012345")


async def test_r11_the_201_answer_carries_creation_and_dispatch_times(client, clock) -> None:
    body = await create(client)
    assert body["created_at"] == body["dispatched_at"] == clock[0].isoformat()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param('{"customer_name": "李先生",'.encode(), "请求体不是有效的 JSON",
                     id="truncated"),
        pytest.param(b"", "请求体不是有效的 JSON", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", "请求体不是有效的 JSON", id="not-text"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "请求体不是有效的 JSON", id="nested-too-deep"),
        pytest.param(json.dumps([VALID]).encode(), "请求体必须是 JSON 对象", id="array"),
        pytest.param(b'"a complaint"', "请求体必须是 JSON 对象", id="string"),
        pytest.param(b"null", "请求体必须是 JSON 对象", id="null"),
    ],
)
async def test_a_body_that_is_not_a_json_object_gets_400(client, data, fragment) -> None:
    """400 for broken JSON and for JSON that is not an object; nothing written."""
    before = await row_counts()
    response = await post(client, data)
    assert response.status == 400
    assert fragment in (await response.json())["error"]
    assert await row_counts() == before


async def test_a_body_over_the_limit_gets_413(client) -> None:
    """413 for a body larger than max_body_bytes (16384 here); nothing written."""
    before = await row_counts()
    response = await post(client, complaint(description="很" * 6000))  # 18 kB of UTF-8
    assert response.status == 413
    assert (await response.json())["error"] == "请求体超过 16384 字节的上限。"
    assert await row_counts() == before


async def test_a_body_just_under_the_limit_is_read(client) -> None:
    """The limit is the limit: a body under it is parsed (here: 422 for length)."""
    response = await post(client, complaint(description="x" * 15000))
    assert response.status == 422
    assert set((await response.json())["fields"]) == {"description"}


@pytest.mark.parametrize("number", ["1", "99999", "2147483648", "99999999999999999999", "-1"])
async def test_unknown_ticket_is_404(client, number) -> None:
    """404 for a number no ticket has, however large."""
    response = await client.get(f"/api/complaints/{number}", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"].startswith("没有编号为 #")
    # Readable as it comes, with curl or in a proxy's log: not \u-escaped.
    assert "没有编号为 #" in await response.text()


@pytest.mark.parametrize("number", ["abc", "1.5", "1e3", "%23"])
async def test_non_integer_ticket_number_is_400(client, number) -> None:
    response = await client.get(f"/api/complaints/{number}", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"] == "投诉编号须是正整数。"


# --- health ---------------------------------------------------------------------------


async def test_healthz_reports_the_database(client) -> None:
    """The health check needs no token and says the database answers."""
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert body.get("oldest_overdue_seconds", 0) == 0


# --- fuzzing --------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field_values = st.one_of(
    _json,
    st.sampled_from(["SH001", "XX999", "sh.zhang", "phone", "central_media", "recall", ""]),
    st.lists(st.sampled_from(["recall", "airbag", "fire", "nope"]), max_size=3),
    st.from_regex(r"\A[A-HJ-NPR-Z0-9]{17}\Z"),
    st.from_regex(r"\A\+?[0-9 ]{4,22}\Z"),
)
_bodies = st.one_of(
    # a valid complaint about anything, over any channel, with any flags
    st.builds(
        complaint,
        description=st.text(min_size=1, max_size=200),
        channel=st.sampled_from([c.value for c in Channel]),
        flags=st.lists(st.sampled_from([f.value for f in Flag]), max_size=3),
    ),
    # a valid complaint with a few fields replaced, removed or added
    st.builds(
        lambda changes, drop: {k: v for k, v in {**VALID, **changes}.items() if k not in drop},
        st.dictionaries(
            st.sampled_from([*VALID, "category", "flags", "about_staff", "extra"]),
            _field_values,
            max_size=3,
        ),
        st.sets(st.sampled_from(list(VALID)), max_size=2),
    ),
    st.dictionaries(st.text(max_size=12), _json, max_size=6),
    _json,
    st.binary(max_size=200),
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=_bodies)
async def test_fuzzed_bodies_never_fail_the_server_nor_write_on_refusal(client, body) -> None:
    """Whatever is posted, the answer is 201, 400 or 422 (never 5xx), and a
    refusal writes nothing while an acceptance writes one ticket."""
    before = await row_counts()
    response = await post(client, body)
    after = await row_counts()
    event(f"HTTP {response.status}")
    assert response.status in (201, 400, 422), (response.status, await response.text())
    if response.status == 201:
        assert after["tickets"] == before["tickets"] + 1
        assert after["events"] == before["events"] + 1
    else:
        assert "error" in await response.json()
        assert after == before
