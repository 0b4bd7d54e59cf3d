"""Processed callbacks (each with its stored reply, up to a few KB) are kept
as long as WeChat Work may redeliver one, then the scheduler deletes them, so
the table does not grow for ever (issue 13 item 7)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from tortoise.exceptions import IntegrityError

from models import ProcessedCallback, TicketEvent
from tests.conftest import T0, WeComWorld, run_scheduled_job
from tests.test_webhooks_robot import open_ticket

GROUP = "wrGRP-SH001"
DAY = timedelta(days=1)


async def _run_forget_job(world: WeComWorld, clock: list[datetime], **settings: object) -> None:
    await run_scheduled_job(world, clock, "forget_callbacks", **settings)


async def test_r7_callbacks_older_than_the_window_are_forgotten_newer_ones_answered_alike(
    wecom: WeComWorld, clock: list[datetime]
) -> None:
    await open_ticket(wecom)
    await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1 已联系",
                                       msgid="old")
    clock[0] = T0 + 6 * DAY
    first = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /attempt 1 再联系",
                                               msgid="recent")
    events = await TicketEvent.all().count()

    clock[0] = T0 + 7 * DAY + timedelta(hours=1)
    await _run_forget_job(wecom, clock)  # the default window: 7 days

    assert await ProcessedCallback.all().values_list("key", flat=True) == ["recent"]
    again = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /attempt 1 再联系",
                                               msgid="recent")
    assert again == first  # the stored reply, the command not applied twice
    assert await TicketEvent.all().count() == events


async def test_r7_the_window_is_a_setting(wecom: WeComWorld, clock: list[datetime]) -> None:
    for n in range(3):
        clock[0] = T0 + n * DAY
        # Refused (no such ticket) but claimed: a command that may change something.
        await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 999",
                                           msgid=f"m{n}")
    clock[0] = T0 + 2 * DAY + timedelta(hours=12)
    await _run_forget_job(wecom, clock, callback_retention_days=1)
    assert await ProcessedCallback.all().values_list("key", flat=True) == ["m2"]


async def test_r7_the_table_keeps_its_unique_key_beside_the_new_index(db: str) -> None:
    """The index came with a migration; the (endpoint, key) claim that stops a
    callback being applied twice must have survived it (on SQLite, altering a
    field rebuilds the table without it)."""
    await ProcessedCallback.create(endpoint="robot", key="k1", received_at=T0)
    with pytest.raises(IntegrityError):
        await ProcessedCallback.create(endpoint="robot", key="k1", received_at=T0)
