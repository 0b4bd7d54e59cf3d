"""WeChat Work's send limits, kept by all replicas together.

App messages past 30 a minute or 1,000 an hour per member are dropped without
an error; a group webhook refuses more than 20 a minute (45009); in a group
the app created (`appchat/send`) each member takes at most 200 of the app's
messages a minute and 10,000 a day, and the rest are dropped without an
error. The smart robot's long connection (doc 101463) takes at most 30
messages a minute and 1,000 an hour into one chat, its replies and its pushes
(`aibot_send_msg`) together. Each replica pacing on its own would let two of
them send twice the limit, so a send first takes a slot in the database (models.SendSlot): under a
per-key advisory lock on PostgreSQL (one process on SQLite), count the key's
slots in each window and take one if every window has room. A send with no
room is not made: the caller is told how long to wait, and the outbox puts
the row back until then rather than holding up every other recipient's
messages. The outbox asks `room` first, before it renders anything, and
merges a group's posts into a digest when more wait than the limit lets
through (schedulers/outbox.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.transactions import in_transaction

from models import SendSlot

Limits = Sequence[tuple[int, float]]
"""(count, seconds) windows: at most `count` sends in any `seconds`."""

MEMBER_LIMITS: Limits = ((30, 60.0), (1000, 3600.0))
WEBHOOK_LIMITS: Limits = ((20, 60.0),)
# appchat/send's limits are per member, over all the app's groups; counted per
# group, which every member of it receives (a member of two busy groups is the
# one case this does not cover).
APPCHAT_LIMITS: Limits = ((200, 60.0), (10000, 86400.0))
# "无论是回复还是主动推送消息，总共给某个会话发消息的限制为 30 条/分钟，1000 条/小时"
# (doc 101463): one chat's budget, whichever of the two uses it.
ROBOT_CHAT_LIMITS: Limits = ((30, 60.0), (1000, 3600.0))


def robot_chat_key(chatid: str) -> str:
    """The SendSlot key of the robot's replies and pushes into chat `chatid`
    (a group's chatid, or a member's userid for a one-to-one chat)."""
    return f"robot-chat:{chatid}"


@dataclass(frozen=True)
class Room:
    """What a key's limits let through at one moment: `free` sends now, and
    when none, `wait` seconds until the next. `count` in `seconds` is its
    shortest window, `since_last` the seconds since its latest send in it
    (None: none), for callers that spread their sends over the window."""

    free: int
    wait: float = 0.0
    count: int = 1
    seconds: float = 0.0
    since_last: float | None = None


async def room(key: str, limits: Limits, now: datetime) -> Room:
    """How many sends `key` has room for at `now` (nothing taken): a look
    before the work of a send, which still takes its slot."""
    (count, seconds), *longer = sorted(limits, key=lambda limit: limit[1])
    window = timedelta(seconds=seconds)
    # The shortest window holds few sends: read them, not just count them.
    recent = sorted(await SendSlot.filter(key=key, at__gt=now - window).values_list(
        "at", flat=True))
    free = count - len(recent)
    # The send that frees first, for a send now to fit, is the (over + 1)-th oldest.
    wait = (recent[-free] + window - now).total_seconds() if free <= 0 else 0.0
    for longer_count, longer_seconds in longer:
        span = timedelta(seconds=longer_seconds)
        taken = SendSlot.filter(key=key, at__gt=now - span)
        over = await taken.count() - longer_count
        free = min(free, -over)
        if over >= 0:
            [oldest] = await taken.order_by("at").offset(over).limit(1).values_list(
                "at", flat=True)
            wait = max(wait, (oldest + span - now).total_seconds())
    return Room(free=max(0, free), wait=wait if free <= 0 else 0.0, count=count,
                seconds=seconds,
                since_last=(now - recent[-1]).total_seconds() if recent else None)


async def take_slot(key: str, limits: Limits, now: datetime) -> float:
    """Take a send slot for `key` at `now`: 0.0 when taken, else the seconds
    until one is free (nothing taken)."""
    longest = timedelta(seconds=max(window for _, window in limits))
    async with in_transaction():
        connection = connections.get("default")
        if connection.capabilities.dialect == "postgres":
            # Serialises the replicas' counts of this key until commit.
            await connection.execute_query("SELECT pg_advisory_xact_lock(hashtext($1))", [key])
        found = await room(key, limits, now)
        if found.free == 0:
            return found.wait
        await SendSlot.filter(key=key, at__lte=now - longest).delete()
        await SendSlot.create(key=key, at=now)
    return 0.0


async def give_back(key: str, at: datetime) -> None:
    """Return the slot taken for `key` at `at` by a send that was refused
    before it was made (a chat not open to the robot's pushes): the limit
    counts what arrives, and the send goes another way."""
    slot = await SendSlot.filter(key=key, at=at).order_by("-id").first()
    if slot is not None:
        await slot.delete()
