"""GET /metrics after a small scenario: a complaint through the API, commands
in the group through the emulated WeChat Work, a send WeChat Work refuses.
The counters move by exactly what happened; the gauges read the database."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from models import Notification
from schedulers.outbox import deliver_due
from tests.conftest import T0, TOKEN, WeComWorld
from tests.test_outbox import complaint, delivering

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GROUP = "wrGRP-SH001"


async def scrape(bot: TestClient) -> Samples:
    answer = await bot.get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    text = await answer.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_counters_move_by_what_happened_and_gauges_read_the_queue(
    wecom: WeComWorld, clock
) -> None:
    before = await scrape(wecom.bot)
    answer = await wecom.bot.post("/api/complaints", json=complaint().model_dump(mode="json"),
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 201
    number = (await answer.json())["number"]

    clock[0] = T0 + timedelta(hours=2, minutes=10)  # R12's response deadline is 10 min late
    late = await scrape(wecom.bot)
    assert value(late, "complaintbot_deadlines_due") == 1
    assert value(late, "complaintbot_deadline_oldest_overdue_seconds") == 600
    waiting = await Notification.filter(medium="group", status="pending").count()
    assert waiting >= 1
    assert value(late, "complaintbot_outbox_depth", medium="group", status="pending") == waiting
    assert value(late, "complaintbot_outbox_depth", medium="email", status="dead") == 0

    # WeChat Work refuses the group post: 60020 (IP not trusted) cannot be retried.
    wecom.emulator.fail_next(1, errcode=60020)
    async with delivering(wecom.emulator, clock) as delivery:
        stats = await deliver_due({"group": delivery.transports["group"]}, now=clock[0])
    assert (stats.sent, stats.dead) == (waiting - 1, 1)

    reply = await wecom.emulator.robot_message("sh.zhang", GROUP, f"@投诉助手 /respond {number}")
    assert f"#{number}" in reply["stream"]["content"]
    refused = await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 999")
    assert "#999" in refused["stream"]["content"]
    await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1", msgid="twice")
    await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /respond 1", msgid="twice")
    # A command that changes nothing is answered each time, retries too, not "applied".
    for _ in range(2):
        await wecom.emulator.robot_message("sh.zhang", GROUP, "@投诉助手 /show 1", msgid="shown")

    after = await scrape(wecom.bot)
    assert moved(before, after, "complaintbot_commands_total",
                 command="respond", outcome="ok") == 1
    assert moved(before, after, "complaintbot_commands_total",
                 command="respond", outcome="refused") == 2, "no #999; #1 already responded"
    assert moved(before, after, "complaintbot_callbacks_total",
                 endpoint="robot", outcome="applied") == 3
    assert moved(before, after, "complaintbot_callbacks_total",
                 endpoint="robot", outcome="duplicate") == 1
    assert moved(before, after, "complaintbot_callbacks_total",
                 endpoint="robot", outcome="answered") == 2
    assert moved(before, after, "complaintbot_wecom_api_errors_total", errcode="60020") == 1
    assert moved(before, after, "complaintbot_outbox_failures_total", medium="group") == 1
    assert value(after, "complaintbot_outbox_depth", medium="group", status="dead") == 1
    assert value(after, "complaintbot_deadlines_due") == 0, "responded: the deadline is moot"
    assert value(after, "complaintbot_deadline_oldest_overdue_seconds") == 0
