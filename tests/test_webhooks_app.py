"""The self-built app's callback as WeChat Work drives it: the emulator posts
encrypted XML over real HTTP; the bot answers an empty 200 at once and puts
its reply in the outbox. Bad callbacks are refused and store nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.wecom.crypto import CallbackCipher, cdata, signature
from models import Notification, ProcessedCallback, Ticket, TicketEvent
from tests.conftest import T0, WeComWorld
from tests.test_webhooks_robot import counts, open_ticket
from webhooks.app import parse_app

TS = str(int(T0.timestamp()))


def text_xml(userid: str, text: str, msgid: int = 7001) -> str:
    return (f"<xml><ToUserName>{cdata('wwcorp0123456789')}</ToUserName>"
            f"<FromUserName>{cdata(userid)}</FromUserName><CreateTime>{TS}</CreateTime>"
            f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(text)}</Content>"
            f"<MsgId>{msgid}</MsgId><AgentID>1000002</AgentID></xml>")


async def test_url_verification_echoes_the_decrypted_echostr(wecom: WeComWorld) -> None:
    params = wecom.emulator.app_cipher.url_check("app-echo-9", timestamp=TS)
    response = await wecom.bot.get("/wecom/app", params=params)
    assert response.status == 200
    assert await response.text() == "app-echo-9"
    stale = wecom.emulator.app_cipher.url_check("x", timestamp=str(int(T0.timestamp()) - 3700))
    assert (await wecom.bot.get("/wecom/app", params=stale)).status == 403


async def test_a_command_is_answered_by_api_through_the_outbox(wecom: WeComWorld) -> None:
    number = await open_ticket(wecom)
    assert await wecom.emulator.app_message("sh.zhang", f"/respond {number} 已电话联系") == ""
    assert (await Ticket.get(id=number)).status.value == "responded"
    reply = await Notification.get(kind="reply", medium="app")
    assert reply.recipient == "sh.zhang" and reply.status == "pending"
    assert reply.audience == "sender"
    assert f"#{number}" in reply.payload["markdown"]


async def test_a_card_click_is_an_empty_200_and_a_card_update_in_the_outbox(
    wecom: WeComWorld,
) -> None:
    number = await open_ticket(wecom)
    before = await Notification.all().count()
    answer = await wecom.emulator.app_click("sh.zhang", "ticket1-app", f"respond:{number}",
                                            "RC-123")
    assert answer == ""
    assert (await Ticket.get(id=number)).status.value == "responded"
    update = await Notification.get(kind="card_update")
    assert update.medium == "app" and update.recipient == "sh.zhang"
    assert update.payload["response_code"] == "RC-123"
    assert update.payload["card"]["task_id"] == "ticket1-app"
    # The ticket's own notices (the ledger's) plus this one reply.
    assert await Notification.filter(audience="sender").count() == 1
    assert await Notification.all().count() > before


async def test_a_retried_click_is_applied_once(wecom: WeComWorld, clock: list) -> None:
    number = await open_ticket(wecom)
    for _ in range(3):  # WeChat Work retries after 5 s, three times in all
        await wecom.emulator.app_click("sh.zhang", "ticket1-app", f"respond:{number}", "RC-1")
    assert await TicketEvent.filter(kind="responded").count() == 1
    assert await Notification.filter(audience="sender").count() == 1
    assert await ProcessedCallback.filter(endpoint="app").count() == 1
    # The same button a second later is a new click: refused by the rules, answered again.
    clock[0] = T0 + timedelta(seconds=1)
    await wecom.emulator.app_click("sh.zhang", "ticket1-app", f"respond:{number}", "RC-2")
    assert await TicketEvent.filter(kind="responded").count() == 1
    assert await Notification.filter(audience="sender").count() == 2


async def test_a_retried_message_is_applied_once(wecom: WeComWorld) -> None:
    number = await open_ticket(wecom)
    for _ in range(2):
        await wecom.emulator.app_message("sh.zhang", f"/respond {number}", msgid=42)
    assert await TicketEvent.filter(kind="responded").count() == 1
    assert await Notification.filter(audience="sender").count() == 1


async def test_an_unknown_member_is_told_so(wecom: WeComWorld) -> None:
    await wecom.emulator.app_message("ghost.user", "/help")
    reply = await Notification.get(audience="sender")
    assert reply.recipient == "ghost.user"
    assert "ghost.user" in reply.payload["markdown"]


async def test_entering_the_app_is_ignored(wecom: WeComWorld) -> None:
    before = await counts()
    answer = await wecom.emulator.deliver_app({
        "ToUserName": "wwcorp0123456789", "FromUserName": "sh.zhang", "CreateTime": 1,
        "MsgType": "event", "Event": "enter_agent", "EventKey": "", "AgentID": 1000002,
    })
    assert answer == ""
    assert await counts() == before


def _sealed(cipher: CallbackCipher, plaintext: str, timestamp: str = TS) -> tuple[dict, bytes]:
    query, body = cipher.app_callback(plaintext, agent_id=1000002, timestamp=timestamp)
    return query.as_params(), body


def _post_args(world: WeComWorld, case: str) -> tuple[dict[str, str], bytes]:
    """Query and body of a bad app callback."""
    cipher = world.emulator.app_cipher
    good = text_xml("sh.zhang", "/respond 1")
    params, body = _sealed(cipher, good)
    if case == "bad signature":
        params["msg_signature"] = "a" * 40
    elif case == "stale timestamp":
        params, body = _sealed(cipher, good, timestamp=str(int(T0.timestamp()) - 3601))
    elif case == "missing signature":
        del params["msg_signature"]
    elif case == "bad base64":
        params = {"msg_signature": signature(cipher.token, TS, "n", "!!!"), "timestamp": TS,
                  "nonce": "n"}
        body = b"<xml><Encrypt><![CDATA[!!!]]></Encrypt></xml>"
    elif case == "wrong corp id":
        other = CallbackCipher(cipher.token, world.settings.wecom_aes_key, "wwother")
        params, body = _sealed(other, good)
    elif case == "envelope not xml":
        body = b'{"encrypt": "x"}'
    elif case == "plaintext not xml":
        params, body = _sealed(cipher, "<xml><unclosed>")
    elif case == "root not xml":
        params, body = _sealed(cipher, "<doc><MsgType>text</MsgType></doc>")
    elif case == "no sender":
        params, body = _sealed(cipher, good.replace("<FromUserName><![CDATA[sh.zhang]]>"
                                                    "</FromUserName>", ""))
    elif case == "click without ResponseCode":
        click = ("<xml><FromUserName>sh.zhang</FromUserName><CreateTime>1</CreateTime>"
                 "<MsgType>event</MsgType><Event>template_card_event</Event>"
                 "<EventKey>respond:1</EventKey><TaskId>t1</TaskId></xml>")
        params, body = _sealed(cipher, click)
    elif case == "oversized body":
        body = b"<xml><Encrypt>" + b"A" * 20000 + b"</Encrypt></xml>"
    return params, body


REFUSALS = {
    "bad signature": 403, "stale timestamp": 403, "missing signature": 400, "bad base64": 400,
    "wrong corp id": 403, "envelope not xml": 400, "plaintext not xml": 400,
    "root not xml": 400, "no sender": 400, "click without ResponseCode": 400,
    "oversized body": 413,
}


async def test_bad_callbacks_are_refused_and_store_nothing(wecom: WeComWorld) -> None:
    await open_ticket(wecom)
    before = await counts()
    for case, status in REFUSALS.items():
        params, body = _post_args(wecom, case)
        response = await wecom.bot.post("/wecom/app", params=params, data=body)
        assert response.status == status, (case, await response.text())
        assert "error" in await response.json(), case
        assert await counts() == before, case
    assert (await Ticket.get(id=1)).status.value == "dispatched"


_fields = st.dictionaries(
    st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId",
                     "Event", "EventKey", "TaskId", "ResponseCode", "AgentID"]),
    st.text(max_size=20) | st.sampled_from(["text", "event", "template_card_event", "1"]),
    max_size=11,
)


def _xml(fields: dict[str, str]) -> str:
    return "<xml>" + "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in fields.items()) + "</xml>"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    params=st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]),
                           st.text(max_size=50), max_size=4),
    body=st.binary(max_size=300) | st.text(max_size=200).map(
        lambda t: f"<xml><Encrypt>{t}</Encrypt></xml>".encode()),
    plaintext=_fields.map(_xml) | st.text(max_size=200),
)
async def test_fuzzed_callbacks_never_fail_the_server(
    wecom: WeComWorld, params: dict[str, str], body: bytes, plaintext: str
) -> None:
    """Random query and body: refused with a 4xx, nothing stored. A validly
    signed random plaintext: never a 5xx, and no ticket changes."""
    before = await counts()
    response = await wecom.bot.post("/wecom/app", params=params, data=body)
    assert 400 <= response.status < 500
    assert await counts() == before
    sealed_params, sealed = _sealed(wecom.emulator.app_cipher, plaintext)
    response = await wecom.bot.post("/wecom/app", params=sealed_params, data=sealed)
    assert response.status < 500, await response.text()
    assert await TicketEvent.all().count() == before["events"]


def test_template_card_fields_are_read_from_the_raw_xml() -> None:
    parsed = parse_app(
        "<xml><ToUserName>c</ToUserName><FromUserName>east.lin</FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType>event</MsgType>"
        "<Event>template_card_event</Event><EventKey>approve:12</EventKey>"
        "<TaskId>ticket12-ab</TaskId><CardType>button_interaction</CardType>"
        "<ResponseCode>RC9</ResponseCode><AgentID>1</AgentID></xml>"
    )
    click: Any = parsed.event
    assert (click.userid, click.event_key, click.task_id, click.response_code) == (
        "east.lin", "approve:12", "ticket12-ab", "RC9")
    assert parsed.key.startswith("evt:east.lin:1700000000:")
