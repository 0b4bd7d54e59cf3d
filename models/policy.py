"""Every policy a ticket was ever opened under, kept by content hash."""

from tortoise import fields
from tortoise.models import Model


class PolicyVersion(Model):
    digest = fields.CharField(max_length=16, primary_key=True)
    version = fields.CharField(max_length=64)
    document = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "policy_version"
