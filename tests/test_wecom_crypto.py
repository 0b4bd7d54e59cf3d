"""Callback crypto against wechatpy: what we build, wechatpy reads, and what
wechatpy builds, we read; and every way a callback can be bad is refused."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.wecom.crypto import CallbackCipher, CallbackRefused, SignedQuery, signature
from tests.conftest import T0, WECOM_SECRETS
from webhooks.callback import strip_mention

CORP = WECOM_SECRETS["wecom_corp_id"]
TOKEN = WECOM_SECRETS["wecom_token"]
KEY = WECOM_SECRETS["wecom_aes_key"]
NOW = T0
TS = str(int(T0.timestamp()))


def app_cipher(**kw: int) -> CallbackCipher:
    return CallbackCipher(TOKEN, KEY, CORP, **kw)


def robot_cipher() -> CallbackCipher:
    return CallbackCipher(TOKEN, KEY, "")


def test_robot_callback_decrypts_with_wechatpy() -> None:
    message = {"msgid": "m1", "from": {"userid": "sh.zhang"}, "msgtype": "text",
               "text": {"content": "@投诉助手 /show 1"}}
    query, body = robot_cipher().robot_callback(message, timestamp=TS, nonce="n0nce")
    plain = WeChatCrypto(TOKEN, KEY, "").decrypt_message(
        {"Encrypt": json.loads(body)["encrypt"]}, query.msg_signature, TS, "n0nce"
    )
    assert json.loads(plain) == message


def test_robot_reply_envelope_opens_with_wechatpy() -> None:
    reply = {"msgtype": "stream", "stream": {"id": "s", "finish": True, "content": "#1 已响应"}}
    envelope = robot_cipher().robot_reply(reply, timestamp=TS, nonce="abc123")
    assert set(envelope) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert envelope["nonce"] == "abc123" and envelope["timestamp"] == TS
    plain = WeChatCrypto(TOKEN, KEY, "").decrypt_message(
        {"Encrypt": envelope["encrypt"]}, envelope["msgsignature"], TS, "abc123"
    )
    assert json.loads(plain) == reply


def test_app_callback_from_wechatpy_decrypts() -> None:
    xml = "<xml><FromUserName><![CDATA[sh.zhang]]></FromUserName><Content>你好</Content></xml>"
    envelope = WeChatCrypto(TOKEN, KEY, CORP).encrypt_message(xml, "nonce7", TS)
    signed = xmltodict.parse(envelope)["xml"]
    query = SignedQuery(msg_signature=signed["MsgSignature"], timestamp=TS, nonce="nonce7")
    assert app_cipher().decrypt_app(query, envelope.encode(), now=NOW) == xml


def test_app_callback_decrypts_with_wechatpy() -> None:
    query, body = app_cipher().app_callback("<xml><A>1</A></xml>", agent_id=1, timestamp=TS)
    plain = WeChatCrypto(TOKEN, KEY, CORP).decrypt_message(
        body.decode(), query.msg_signature, TS, query.nonce
    )
    assert plain == "<xml><A>1</A></xml>"


def test_url_check_echo_verified_by_wechatpy_and_us() -> None:
    params = app_cipher().url_check("echo-42", timestamp=TS, nonce="n1")
    assert WeChatCrypto(TOKEN, KEY, CORP).check_signature(
        params["msg_signature"], TS, "n1", params["echostr"]
    ) == "echo-42"
    query = SignedQuery(params["msg_signature"], TS, "n1")
    assert app_cipher().verify_url(query, params["echostr"], now=NOW) == "echo-42"


def _garbage(cipher: CallbackCipher, encrypted: str) -> tuple[SignedQuery, str]:
    """A correctly signed query over a ciphertext that does not decrypt."""
    return SignedQuery(signature(TOKEN, TS, "n", encrypted), TS, "n"), encrypted


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bad signature", 403),
        ("stale timestamp", 403),
        ("future timestamp", 403),
        ("timestamp not a number", 400),
        ("bad base64", 400),
        ("not a block multiple", 400),
        ("wrong receive id", 403),
    ],
)
def test_bad_callbacks_are_refused(case: str, status: int) -> None:
    cipher = app_cipher(max_skew=300)
    encrypted, query = cipher.seal("<xml/>", timestamp=TS, nonce="n")
    now = NOW
    if case == "bad signature":
        query = SignedQuery("0" * 40, TS, "n")
    elif case == "stale timestamp":
        now = NOW + timedelta(seconds=301)
    elif case == "future timestamp":
        now = NOW - timedelta(seconds=301)
    elif case == "timestamp not a number":
        query = SignedQuery(query.msg_signature, "12ab", "n")
    elif case == "bad base64":
        query, encrypted = _garbage(cipher, "@@@not base64@@@")
    elif case == "not a block multiple":
        query, encrypted = _garbage(cipher, base64.b64encode(b"x" * 20).decode())
    elif case == "wrong receive id":
        other = CallbackCipher(TOKEN, KEY, "wwsomeoneelse")
        encrypted, query = other.seal("<xml/>", timestamp=TS, nonce="n")
    with pytest.raises(CallbackRefused) as refused:
        cipher.verify_url(query, encrypted, now=now)
    assert refused.value.status == status


def test_timestamp_inside_the_window_is_accepted() -> None:
    cipher = app_cipher(max_skew=300)
    encrypted, query = cipher.seal("ok", timestamp=TS, nonce="n")
    assert cipher.verify_url(query, encrypted, now=NOW + timedelta(seconds=299)) == "ok"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"encrypt": 5}', b"{}"])
def test_robot_envelope_must_be_json_with_encrypt(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        robot_cipher().decrypt_robot(SignedQuery("s", TS, "n"), body, now=NOW)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "body", [b"not xml", b"<xml><Other>1</Other></xml>", b"<other><Encrypt>x</Encrypt></other>",
             b"<xml><Encrypt><a>1</a></Encrypt></xml>", b""]
)
def test_app_envelope_must_be_xml_with_encrypt(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        app_cipher().decrypt_app(SignedQuery("s", TS, "n"), body, now=NOW)
    assert refused.value.status == 400


@pytest.mark.parametrize("key", ["short", "", "!" * 43])
def test_an_invalid_aes_key_is_a_configuration_error(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        CallbackCipher(TOKEN, key, CORP)


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("@投诉助手 /respond 1 已联系客户", "/respond 1 已联系客户"),
        ("/respond 1 已联系客户 @投诉助手", "/respond 1 已联系客户"),
        ("/respond @投诉助手\u20051 已联系客户", "/respond 1 已联系客户"),
        ("@投诉助手", ""),
    ],
)
def test_the_robot_mention_is_stripped_wherever_typed(typed: str, command: str) -> None:
    assert strip_mention(typed, "投诉助手") == command
