"""Callbacks already applied, so a retried or duplicated one is never applied twice."""

from tortoise import fields
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
