"""Leases: one replica at a time does a job that must have one doer."""

from tortoise import fields
from tortoise.models import Model


class Lease(Model):
    """Who (`holder`, one process) holds the job `name` until `expires_at`.

    The smart robot accepts one live long connection: the replicas take turns
    through this row (bot/wecom/lease.py), on SQLite and PostgreSQL alike."""

    name = fields.CharField(max_length=128, primary_key=True)
    holder = fields.CharField(max_length=128)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "lease"
