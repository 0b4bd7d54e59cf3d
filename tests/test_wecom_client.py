"""The WeChat Work API client against the emulator, over real HTTP: one token
shared through the database, refreshed when refused, transient failures
retried, permanent ones raised, sends paced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.wecom.client import RateLimited, WeComClient, WeComError
from bot.wecom.emulator import WeComEmulator
from models import AccessToken
from tests.conftest import T0, WECOM_SECRETS

CARD: dict[str, Any] = {
    "card_type": "button_interaction",
    "main_title": {"title": "#1 新投诉"},
    "task_id": "ticket1-abc",
    "button_list": [{"text": "处理", "key": "respond:1"}],
}


def make_client(emulator: WeComEmulator, clock: list, **kw: Any) -> WeComClient:
    options: dict[str, Any] = {"backoff": 0.01, "timeout": 2.0, **kw}
    return WeComClient(
        api_base=f"{emulator.url}/cgi-bin",
        corp_id=WECOM_SECRETS["wecom_corp_id"],
        secret=WECOM_SECRETS["wecom_secret"],
        agent_id=WECOM_SECRETS["wecom_agent_id"],
        clock=lambda: clock[0],
        **options,
    )


@pytest.fixture
async def api(db: str, emulator: WeComEmulator, clock: list) -> AsyncIterator[WeComClient]:
    """A client on the test database, talking to the emulator."""
    client = make_client(emulator, clock)
    yield client
    await client.close()


async def test_one_gettoken_serves_many_sends_and_other_replicas(
    api: WeComClient, emulator: WeComEmulator, clock: list
) -> None:
    for n in range(5):
        await api.send_app_markdown(["sh.zhang"], f"**#1** 第{n}条")
    assert len(emulator.sent("gettoken")) == 1
    sent = emulator.sent("message/send")
    assert [r["json"]["markdown"]["content"] for r in sent] == [f"**#1** 第{n}条" for n in range(5)]
    assert sent[0]["json"]["touser"] == "sh.zhang"
    assert sent[0]["json"]["agentid"] == WECOM_SECRETS["wecom_agent_id"]
    stored = await AccessToken.get(name=f"app:{WECOM_SECRETS['wecom_corp_id']}:1000002")
    assert stored.expires_at == T0 + timedelta(seconds=7200)

    replica = make_client(emulator, clock)  # another process: reads the token from the database
    try:
        await replica.send_app_markdown(["sh.chen"], "#1 另一副本")
    finally:
        await replica.close()
    assert len(emulator.sent("gettoken")) == 1


async def test_a_token_near_expiry_is_refreshed_before_use(
    api: WeComClient, emulator: WeComEmulator, clock: list
) -> None:
    await api.send_app_markdown(["sh.zhang"], "#1 a")
    clock[0] = T0 + timedelta(seconds=7200 - 60)
    await api.send_app_markdown(["sh.zhang"], "#1 b")
    assert len(emulator.sent("gettoken")) == 2
    assert all(r["answer"]["errcode"] == 0 for r in emulator.sent("message/send"))


async def test_an_expired_token_is_refetched_and_the_call_repeated(
    api: WeComClient, emulator: WeComEmulator
) -> None:
    await api.send_app_markdown(["sh.zhang"], "#1 first")
    emulator.expire_tokens()
    answer = await api.send_app_markdown(["sh.zhang"], "#1 second")
    assert answer["errcode"] == 0
    assert len(emulator.sent("gettoken")) == 2
    codes = [r["answer"]["errcode"] for r in emulator.sent("message/send")]
    assert codes == [0, 42001, 0]


@pytest.mark.parametrize("fault", [{"status": 502}, {"errcode": 45009}, {"errcode": -1}])
async def test_transient_failures_are_retried(
    api: WeComClient, emulator: WeComEmulator, fault: dict[str, int]
) -> None:
    emulator.fail_next(2, **fault)
    answer = await api.send_app_markdown(["sh.zhang"], "#1 重试")
    assert answer["errcode"] == 0
    assert len(emulator.sent("message/send")) == 3


async def test_a_slow_answer_times_out_and_is_retried(
    db: str, emulator: WeComEmulator, clock: list
) -> None:
    slow = make_client(emulator, clock, timeout=0.2)
    try:
        await slow.send_app_markdown(["sh.zhang"], "#1 warm-up")
        emulator.fail_next(1, delay=0.5)
        answer = await slow.send_app_markdown(["sh.zhang"], "#1 slow")
    finally:
        await slow.close()
    assert answer["errcode"] == 0


async def test_retries_are_bounded_and_the_error_stays_retryable(
    api: WeComClient, emulator: WeComEmulator
) -> None:
    emulator.fail_next(5, status=503)
    with pytest.raises(WeComError) as failed:
        await api.send_app_markdown(["sh.zhang"], "#1")
    assert failed.value.retryable
    assert len(emulator.sent("message/send")) == 3


@pytest.mark.parametrize("errcode", [60020, 81013])
async def test_permanent_errors_raise_at_once(
    api: WeComClient, emulator: WeComEmulator, errcode: int
) -> None:
    emulator.fail_next(1, errcode=errcode)
    with pytest.raises(WeComError) as failed:
        await api.send_app_markdown(["sh.zhang"], "#1")
    assert failed.value.errcode == errcode
    assert not failed.value.retryable
    assert len(emulator.sent("message/send")) == 1


async def test_no_valid_recipient_is_81013(api: WeComClient, emulator: WeComEmulator) -> None:
    emulator.known_users = {"sh.zhang"}
    with pytest.raises(WeComError) as failed:
        await api.send_app_markdown(["nobody"], "#1")
    assert failed.value.errcode == 81013


async def test_a_card_is_sent_and_then_updated_once(
    api: WeComClient, emulator: WeComEmulator
) -> None:
    answer = await api.send_app_card(["sh.zhang", "sh.chen"], CARD)
    code = answer["response_code"]
    assert emulator.sent("message/send")[0]["json"]["template_card"]["task_id"] == "ticket1-abc"
    updated = {**CARD, "button_list": [{"text": "已处理", "key": "respond:1", "style": 2}]}
    assert (await api.update_template_card(["sh.zhang"], code, updated))["errcode"] == 0
    body = emulator.sent("message/update_template_card")[0]["json"]
    assert body["response_code"] == code and body["userids"] == ["sh.zhang"]
    with pytest.raises(WeComError):
        await api.update_template_card(["sh.zhang"], code, updated)
    with pytest.raises(WeComError) as duplicate:
        await api.send_app_card(["sh.zhang"], CARD)
    assert duplicate.value.errcode == 42014


async def test_a_response_code_older_than_72_hours_is_refused(
    api: WeComClient, emulator: WeComEmulator, clock: list
) -> None:
    code = (await api.send_app_card(["sh.zhang"], {**CARD, "task_id": "ticket1-old"})
            )["response_code"]
    clock[0] += timedelta(hours=72)
    with pytest.raises(WeComError) as expired:
        await api.update_template_card(["sh.zhang"], code, CARD)
    assert expired.value.errcode == 40035 and "expired" in expired.value.errmsg


async def test_group_posts_by_webhook_and_app_chat(
    api: WeComClient, emulator: WeComEmulator
) -> None:
    await api.send_webhook_markdown("hook-sh001", "**#1** 2 小时未响应")
    with pytest.raises(WeComError) as unknown:
        await api.send_appchat_markdown("wrAPPCHAT1", "**#1** 已升级")
    assert unknown.value.errcode == 86001  # a chat the app never created
    emulator.appchats.adopt("wrAPPCHAT1", ["sh.zhang", "sh.li"])
    await api.send_appchat_markdown("wrAPPCHAT1", "**#1** 已升级")
    hook = emulator.sent("webhook/send")[0]
    assert hook["query"] == {"key": "hook-sh001"}
    assert hook["json"] == {"msgtype": "markdown", "markdown": {"content": "**#1** 2 小时未响应"}}
    chat = emulator.sent("appchat/send")[0]["json"]
    assert chat["chatid"] == "wrAPPCHAT1" and chat["markdown"]["content"] == "**#1** 已升级"


async def test_a_wrong_secret_fails_without_retrying(
    db: str, emulator: WeComEmulator, clock: list
) -> None:
    api = WeComClient(api_base=f"{emulator.url}/cgi-bin", corp_id=WECOM_SECRETS["wecom_corp_id"],
                      secret="wrong", agent_id=1000002, backoff=0.01)
    try:
        with pytest.raises(WeComError) as failed:
            await api.send_app_markdown(["sh.zhang"], "#1")
    finally:
        await api.close()
    assert failed.value.errcode == 40001
    assert emulator.sent("message/send") == []


async def test_sends_to_one_member_are_paced_across_replicas(
    db: str, emulator: WeComEmulator, clock: list
) -> None:
    """Two clients (two replicas) share a member's limit through the database:
    a send with no room is not made, and says how long to wait."""
    first, second = (make_client(emulator, clock, member_limits=((2, 60.0),)) for _ in "12")
    try:
        await first.send_app_markdown(["sh.chen"], "#1 one")
        clock[0] += timedelta(seconds=10)
        await second.send_app_markdown(["sh.chen"], "#1 two")
        await second.send_app_markdown(["sh.wu"], "#1 other member")
        with pytest.raises(RateLimited) as paced:
            await first.send_app_markdown(["sh.chen"], "#1 three")
        assert paced.value.retry_after == pytest.approx(50.0)
        clock[0] += timedelta(seconds=50)
        await first.send_app_markdown(["sh.chen"], "#1 three")
    finally:
        await first.close()
        await second.close()
    sent = [r["json"]["markdown"]["content"] for r in emulator.sent("message/send")]
    assert sent == ["#1 one", "#1 two", "#1 other member", "#1 three"]


async def test_posts_into_an_app_chat_are_paced_across_replicas(
    db: str, emulator: WeComEmulator, clock: list
) -> None:
    """appchat/send drops what a group's members get past their limit without
    an error: two replicas count each group's posts together, and a post with
    no room is not made. Another group is not held back."""
    first, second = (make_client(emulator, clock, appchat_limits=((2, 60.0),)) for _ in "12")
    for chatid in ("wrAPPCHAT1", "wrAPPCHAT2"):
        emulator.appchats.adopt(chatid, ["sh.zhang", "sh.li"])
    try:
        await first.send_appchat_markdown("wrAPPCHAT1", "#1 one")
        assert (await second.appchat_room("wrAPPCHAT1")).free == 1
        clock[0] += timedelta(seconds=10)
        await second.send_appchat_markdown("wrAPPCHAT1", "#2 two")
        await second.send_appchat_markdown("wrAPPCHAT2", "#3 other group")
        full = await first.appchat_room("wrAPPCHAT1")
        assert (full.free, full.wait, full.since_last) == (0, 50.0, 0.0)
        with pytest.raises(RateLimited) as paced:
            await first.send_appchat_markdown("wrAPPCHAT1", "#4 three")
        assert paced.value.retry_after == pytest.approx(50.0)
        clock[0] += timedelta(seconds=50)
        await first.send_appchat_markdown("wrAPPCHAT1", "#4 three")
    finally:
        await first.close()
        await second.close()
    posted = [(r["json"]["chatid"], r["json"]["markdown"]["content"])
              for r in emulator.sent("appchat/send")]
    assert posted == [("wrAPPCHAT1", "#1 one"), ("wrAPPCHAT1", "#2 two"),
                      ("wrAPPCHAT2", "#3 other group"), ("wrAPPCHAT1", "#4 three")]
