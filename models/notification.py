"""The outbox: every message a change causes, written in the change's
transaction and delivered later by the outbox worker."""

from tortoise import fields
from tortoise.models import Model


class Notification(Model):
    """One message to one recipient over one medium.

    `dedupe_key` names what happened (ticket, event or clock and due time,
    recipient, medium), so the same cause never sends twice."""

    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="notifications", null=True, on_delete=fields.RESTRICT,
        db_index=True,
    )
    event: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "complaintbot.TicketEvent", related_name="notifications", null=True,
        on_delete=fields.RESTRICT,
    )
    kind = fields.CharField(max_length=48)
    medium = fields.CharField(max_length=8)
    audience = fields.CharField(max_length=32)
    recipient = fields.CharField(max_length=254)
    dedupe_key = fields.CharField(max_length=255, unique=True)
    status = fields.CharField(max_length=16, default="pending")
    tries = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.TextField(default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    # Ad-hoc content rendered when the row was written (a chat reply, a card
    # update), for rows that belong to no ticket event; see webhooks/app.py.
    payload = fields.JSONField(null=True)
    # While "sending": when the claim lapses, so a crashed worker's rows go out again.
    lease_until = fields.DatetimeField(null=True)

    class Meta:
        table = "notification"
        indexes = (("status", "next_attempt_at"),)
