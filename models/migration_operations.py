"""Migration operations of our own, for what tortoise's defaults get wrong."""

from __future__ import annotations

from typing import Any

from tortoise.migrations import operations as ops


class AlterFieldInStateOnly(ops.AlterField):
    """Record a field change that leaves its column alone (an enum's members in
    the same VARCHAR). Tortoise's AlterField rebuilds the table on SQLite and
    drops its unique constraints and indexes; this one touches no table."""

    async def database_forward(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def database_backward(self, *args: Any, **kwargs: Any) -> None:
        return None
