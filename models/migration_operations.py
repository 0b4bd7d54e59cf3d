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


class AddFieldKeepingRows(ops.AddField):
    """Add a NOT NULL column to a table that may hold rows. Tortoise's AddField
    adds it without a default, which PostgreSQL refuses on a table with rows
    (SQLite's table rebuild fills in the field's default); this one gives the
    column `default_sql` (an SQL literal both databases read alike, such as
    '' or FALSE) in the database too."""

    def __init__(self, model_name: str, name: str, field: Any, *, default_sql: str) -> None:
        super().__init__(model_name, name, field)
        self.default_sql = default_sql

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any,
                               state_editor: Any = None) -> None:
        if not state_editor:
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        field = model._meta.fields_map[self.name]
        column = model._meta.fields_db_projection[self.name]
        sql_type = field.get_for_dialect(state_editor.DIALECT, "SQL_TYPE")
        await state_editor.client.execute_script(
            f'ALTER TABLE "{model._meta.db_table}" ADD COLUMN "{column}" {sql_type} '
            f"NOT NULL DEFAULT {self.default_sql}")
