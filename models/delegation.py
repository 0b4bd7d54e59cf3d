"""Delegation: an approver on leave names someone to decide in their name."""

from tortoise import fields
from tortoise.models import Model


class Delegation(Model):
    """An approver on leave lets `delegate` decide in their name until `until`."""

    id = fields.IntField(primary_key=True)
    approver = fields.CharField(max_length=64, db_index=True)
    delegate = fields.CharField(max_length=64)
    until = fields.DatetimeField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "delegation"
