"""A lease row: which replica holds a one-holder job (the robot's long connection).

Taking or renewing is one conditional UPDATE (held by me, or expired), else an
INSERT of a missing row; the database decides a race, so two replicas never
both believe they hold it. A holder that dies stops renewing and another
takes over once `expires_at` passes. Works alike on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models import Lease


async def take_lease(name: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take or renew lease `name` for `holder` until now + `seconds`; True when held."""
    until = now + timedelta(seconds=seconds)
    updated = await Lease.filter(Q(name=name) & (Q(holder=holder) | Q(expires_at__lt=now))).update(
        holder=holder, expires_at=until)
    if updated:
        return True
    if await Lease.exists(name=name):
        return False
    try:
        await Lease.create(name=name, holder=holder, expires_at=until)
    except IntegrityError:
        return False  # another replica inserted it first
    return True


async def release_lease(name: str, holder: str) -> None:
    """Give lease `name` up at once (a clean shutdown), if `holder` has it."""
    await Lease.filter(name=name, holder=holder).delete()
