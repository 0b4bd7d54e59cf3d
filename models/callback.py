"""Callbacks already applied, so a retried or duplicated one is never applied twice."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class ProcessedCallback(Model):
    id = fields.BigIntField(primary_key=True)
    endpoint = fields.CharField(max_length=16)
    key = fields.CharField(max_length=200)
    received_at = fields.DatetimeField()
    response = fields.TextField(default="")

    class Meta:
        table = "processed_callback"
        unique_together = (("endpoint", "key"),)
        # The scheduler deletes the rows older than CALLBACK_RETENTION_DAYS. An
        # index of the table, not db_index on the field: tortoise alters a field
        # on SQLite by rebuilding the table, which loses the unique constraint.
        indexes = (Index(fields=["received_at"]),)
