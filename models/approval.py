"""Approval requests: R19 staged closure and R25 compensation."""

from tortoise import fields
from tortoise.models import Model


class ApprovalRequest(Model):
    """One request for a decision by the person holding an approving role.

    Written in the transaction of the ticket event that opened it; `status`
    goes from "open" to "approved", "rejected" or "cancelled" exactly once.
    `decided_on_behalf_of` is the approver when a delegate decided."""

    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="approvals", on_delete=fields.RESTRICT, db_index=True
    )
    kind = fields.CharField(max_length=16)  # "staged_closure" | "compensation"
    requested_by = fields.CharField(max_length=64)
    requested_at = fields.DatetimeField()
    reason = fields.TextField()
    approver_role = fields.CharField(max_length=32)
    approver_userid = fields.CharField(max_length=64)
    amount = fields.DecimalField(max_digits=12, decimal_places=2, null=True)
    status = fields.CharField(max_length=16, default="open", db_index=True)
    decided_by = fields.CharField(max_length=64, null=True)
    decided_on_behalf_of = fields.CharField(max_length=64, null=True)
    decided_at = fields.DatetimeField(null=True)
    decision_reason = fields.TextField(default="")

    class Meta:
        table = "approval_request"

