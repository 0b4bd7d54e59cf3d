"""The smart robot's callback as WeChat Work drives it: the emulator posts
encrypted callbacks over real HTTP and reads the bot's encrypted passive reply.
Bad callbacks are refused with a 4xx and leave the database as it was."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bot.app import create_app
from bot.intake import open_complaint, parse_complaint
from bot.keys import LEDGER, WECOM
from bot.wecom.crypto import CallbackCipher, signature
from models import Notification, PendingAttachment, ProcessedCallback, Ticket, TicketEvent
from tests.conftest import T0, WeComWorld, wecom_settings
from tests.factories import CALL_CENTRE

GROUP = "wrGRP-SH001"
TS = str(int(T0.timestamp()))


async def open_ticket(world: WeComWorld) -> int:
    """Dispatch a general complaint to SH001, as the call centre would."""
    complaint = parse_complaint({
        "customer_name": "李先生", "customer_phone": "13812345678", "car_model": "速腾",
        "plate": "沪A12345", "vin": "LFV2A21K6A3012345", "channel": "phone",
        "description": "变速箱顿挫，多次维修未解决", "dealer_code": "SH001",
    })
    outcome = await open_complaint(complaint, world.bot.app[LEDGER], actor=CALL_CENTRE,
                                   source="api", now=T0)
    return outcome.ticket.number


async def counts() -> dict[str, int]:
    return {
        "callbacks": await ProcessedCallback.all().count(),
        "events": await TicketEvent.all().count(),
        "notifications": await Notification.all().count(),
    }


def message(text: str, *, userid: str = "sh.zhang", msgid: str = "msg-1") -> dict[str, Any]:
    return {"msgid": msgid, "aibotid": "aib", "chatid": GROUP, "chattype": "group",
            "from": {"userid": userid}, "response_url": "", "msgtype": "text",
            "text": {"content": text}}


async def test_url_verification_echoes_the_decrypted_echostr(wecom: WeComWorld) -> None:
    params = wecom.emulator.robot_cipher.url_check("robot-echo-1", timestamp=TS)
    response = await wecom.bot.get("/wecom/robot", params=params)
    assert response.status == 200
    assert await response.text() == "robot-echo-1"
    response = await wecom.bot.get("/wecom/robot", params={**params, "msg_signature": "0" * 40})
    assert response.status == 403


async def test_respond_in_the_group_is_applied_and_answered_with_a_stream(
    wecom: WeComWorld,
) -> None:
    number = await open_ticket(wecom)
    reply = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户")
    assert reply["msgtype"] == "stream"
    assert reply["stream"]["finish"] is True
    assert f"#{number}" in reply["stream"]["content"]
    ticket = await Ticket.get(id=number)
    assert ticket.status.value == "responded"
    event = await TicketEvent.filter(ticket_id=number).order_by("-id").first()
    assert event is not None and event.actor == "sh.zhang" and event.source == "chat"


async def test_a_duplicated_callback_is_applied_once_and_answered_alike(
    wecom: WeComWorld,
) -> None:
    await open_ticket(wecom)
    first = await wecom.emulator.robot_message("sh.zhang", GROUP, "/respond 1 @投诉助手 已联系",
                                                msgid="dup-1")
    before = await counts()
    again = await wecom.emulator.robot_message("sh.zhang", GROUP, "/respond 1 @投诉助手 已联系",
                                               msgid="dup-1")
    assert again == first
    assert await counts() == before
    assert await TicketEvent.filter(kind="responded").count() == 1


async def test_concurrent_copies_of_a_callback_are_applied_once(wecom: WeComWorld) -> None:
    await open_ticket(wecom)
    replies = await asyncio.gather(*(
        wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1", msgid="same")
        for _ in range(3)
    ))
    assert replies[0] == replies[1] == replies[2]
    assert await TicketEvent.filter(kind="responded").count() == 1
    assert await ProcessedCallback.all().count() == 1


async def test_a_command_that_changes_nothing_claims_nothing_and_a_copy_answers_afresh(
    wecom: WeComWorld,
) -> None:
    number = await open_ticket(wecom)
    first = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /list", msgid="ro")
    await wecom.emulator.robot_message("sh.zhang", GROUP, f"@投诉助手 /respond {number}")
    again = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /list", msgid="ro")
    assert f"#{number}" in first["stream"]["content"]
    assert first["stream"]["content"] != again["stream"]["content"]  # 已响应 now
    assert not await ProcessedCallback.filter(key="ro").exists()


async def test_the_emulator_log_shows_the_conversation(wecom: WeComWorld) -> None:
    await open_ticket(wecom)
    await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系客户")
    async with wecom.bot.session.get(f"{wecom.emulator.url}/emulator/log") as response:
        log = await response.json()
    callback = log["requests"][-1]
    assert callback["direction"] == "callback" and callback["path"] == "/wecom/robot"
    assert callback["json"]["text"]["content"] == "@投诉助手 /respond 1 已联系客户"
    assert "#1" in callback["reply"]["stream"]["content"]
    assert log["next"] == len(log["requests"])


async def test_show_answers_with_a_card_whose_button_responds(wecom: WeComWorld) -> None:
    number = await open_ticket(wecom)
    reply = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /show 1")
    assert reply["msgtype"] == "template_card"
    card = reply["template_card"]
    keys = [b["key"] for b in card.get("button_list", [])]
    assert f"respond:{number}" in keys
    update = await wecom.emulator.robot_click("sh.zhang", GROUP, card["task_id"],
                                              f"respond:{number}")
    assert update["response_type"] == "update_template_card"
    assert update["template_card"]["task_id"] == card["task_id"]
    assert (await Ticket.get(id=number)).status.value == "responded"


async def test_flat_event_fields_are_accepted(wecom: WeComWorld) -> None:
    number = await open_ticket(wecom)
    click = {
        "msgid": "evt-flat", "create_time": int(T0.timestamp()), "aibotid": "aib",
        "chatid": GROUP, "chattype": "group", "from": {"userid": "sh.zhang"},
        "response_url": "", "msgtype": "event",
        "event": {"eventtype": "template_card_event", "event_key": f"respond:{number}",
                  "task_id": "ticket1-flat"},
    }
    update = await wecom.emulator.deliver_robot(click)
    assert update["template_card"]["task_id"] == "ticket1-flat"
    assert (await Ticket.get(id=number)).status.value == "responded"


async def test_a_click_answered_without_a_card_goes_out_through_response_url(
    wecom: WeComWorld,
) -> None:
    await open_ticket(wecom)
    reply = await wecom.emulator.robot_click("sh.zhang", GROUP, "ticket1-x", "nonsense:1")
    assert reply == {}
    row = await Notification.get(medium="robot", kind="reply")
    assert row.recipient == GROUP and row.status == "pending"
    assert row.payload is not None and row.payload["markdown"]
    # What the outbox worker will do with it: post once to the response_url.
    client = wecom.bot.app[WECOM]
    answer = await client.post_response_url(
        row.payload["response_url"],
        {"msgtype": "markdown", "markdown": {"content": row.payload["markdown"]}},
    )
    assert answer["errcode"] == 0
    posted = [r for r in wecom.emulator.requests if r["path"].startswith("/emulator/response_url")]
    assert posted[0]["json"]["markdown"]["content"] == row.payload["markdown"]


async def test_an_unknown_member_is_told_so(wecom: WeComWorld) -> None:
    await open_ticket(wecom)
    reply = await wecom.emulator.robot_message("ghost.user", GROUP, "@投诉助手 /respond 1")
    assert "ghost.user" in reply["stream"]["content"]
    assert await TicketEvent.filter(kind="responded").count() == 0


async def test_an_image_that_cannot_be_downloaded_is_told_and_changes_no_ticket(
    wecom: WeComWorld,
) -> None:
    """Images are attachments now (tests/test_attachments.py); one whose URL
    no longer works is answered in Chinese and nothing of it is kept."""
    before = await counts()
    image = {**message(""), "msgtype": "image", "image": {"url": "http://127.0.0.1:9/gone"}}
    del image["text"]
    reply = await wecom.emulator.deliver_robot(image)
    assert "下载失败" in reply["stream"]["content"]
    after = await counts()
    assert (after["events"], after["notifications"]) == (before["events"], before["notifications"])
    assert await PendingAttachment.all().count() == 0


def _post_args(world: WeComWorld, case: str) -> tuple[dict[str, str], bytes]:
    """Query and body of a bad robot callback."""
    cipher = world.emulator.robot_cipher
    good = message("/respond 1")
    query, body = cipher.robot_callback(good, timestamp=TS)
    params = query.as_params()
    if case == "bad signature":
        params["msg_signature"] = "f" * 40
    elif case == "stale timestamp":
        query, body = cipher.robot_callback(good, timestamp=str(int(T0.timestamp()) - 7200))
        params = query.as_params()
    elif case == "missing nonce":
        del params["nonce"]
    elif case == "bad base64":
        garbage = "%%%%"
        params = {"msg_signature": signature(cipher.token, TS, "n", garbage), "timestamp": TS,
                  "nonce": "n"}
        body = json.dumps({"encrypt": garbage}).encode()
    elif case == "wrong receive id":
        other = CallbackCipher(cipher.token, world.settings.wecom_robot_aes_key, "wwother")
        query, body = other.robot_callback(good, timestamp=TS)
        params = query.as_params()
    elif case == "body not json":
        body = b"<xml/>"
    elif case == "plaintext not json":
        query, body = _sealed(cipher, "not json at all")
        params = query.as_params()
    elif case == "no msgid":
        query, body = cipher.robot_callback({**good, "msgid": ""}, timestamp=TS)
        params = query.as_params()
    elif case == "no sender":
        query, body = cipher.robot_callback({**good, "from": "sh.zhang"}, timestamp=TS)
        params = query.as_params()
    elif case == "click without task_id":
        click = {**good, "msgtype": "event",
                 "event": {"eventtype": "template_card_event",
                           "template_card_event": {"event_key": "respond:1"}}}
        query, body = cipher.robot_callback(click, timestamp=TS)
        params = query.as_params()
    elif case == "oversized body":
        body = json.dumps({"encrypt": "A" * 20000}).encode()
    return params, body


def _sealed(cipher: CallbackCipher, plaintext: str) -> tuple[Any, bytes]:
    encrypted, query = cipher.seal(plaintext, timestamp=TS, nonce="n0")
    return query, json.dumps({"encrypt": encrypted}).encode()


REFUSALS = {
    "bad signature": 403, "stale timestamp": 403, "missing nonce": 400, "bad base64": 400,
    "wrong receive id": 403, "body not json": 400, "plaintext not json": 400, "no msgid": 400,
    "no sender": 400, "click without task_id": 400, "oversized body": 413,
}


async def test_bad_callbacks_are_refused_and_store_nothing(wecom: WeComWorld) -> None:
    await open_ticket(wecom)
    before = await counts()
    for case, status in REFUSALS.items():
        params, body = _post_args(wecom, case)
        with capture_logs() as logs:
            response = await wecom.bot.post("/wecom/robot", params=params, data=body)
        assert response.status == status, (case, await response.text())
        assert "error" in await response.json(), case
        assert await counts() == before, case
        assert [(e["event"], e["log_level"]) for e in logs] == [
            ("wecom_callback_refused", "warning")], case
    assert (await Ticket.get(id=1)).status.value == "dispatched"


async def test_an_unconfigured_robot_answers_503(aiohttp_client, database_url: str) -> None:
    settings = wecom_settings(database_url).model_copy(
        update={"wecom_robot_token": "", "wecom_robot_aes_key": ""}
    )
    bot = await aiohttp_client(create_app(settings, scheduler=False))
    response = await bot.post("/wecom/robot", params={"msg_signature": "x", "timestamp": TS,
                                                      "nonce": "n"}, data=b"{}")
    assert response.status == 503


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=4),
    max_leaves=12,
)
_robotish = st.fixed_dictionaries(
    {}, optional={
        "msgid": st.text(max_size=12) | st.integers(),
        "from": st.fixed_dictionaries({}, optional={"userid": st.text(max_size=12) | _json}),
        "chatid": st.text(max_size=12) | _json,
        "response_url": st.text(max_size=12) | _json,
        "msgtype": st.sampled_from(["text", "mixed", "event", "stream", "image"]) | _json,
        "text": st.fixed_dictionaries({}, optional={"content": st.text(max_size=40) | _json}),
        "mixed": _json,
        "event": st.fixed_dictionaries({}, optional={
            "eventtype": st.just("template_card_event") | _json,
            "template_card_event": _json, "event_key": _json, "task_id": _json,
        }),
    },
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    params=st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]),
                           st.text(max_size=50), max_size=4),
    body=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()),
    signed=_robotish | _json,
)
async def test_fuzzed_callbacks_never_fail_the_server(
    wecom: WeComWorld, params: dict[str, str], body: bytes, signed: Any
) -> None:
    """Random query and body: refused with a 4xx, nothing stored. A validly
    signed random message: never a 5xx, and no ticket changes."""
    before = await counts()
    response = await wecom.bot.post("/wecom/robot", params=params, data=body)
    assert 400 <= response.status < 500
    assert await counts() == before
    query, sealed = wecom.emulator.robot_cipher.robot_callback(signed, timestamp=TS)
    response = await wecom.bot.post("/wecom/robot", params=query.as_params(), data=sealed)
    assert response.status < 500
    assert await TicketEvent.all().count() == before["events"]
