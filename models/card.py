"""Every copy of a ticket card the bot has sent, so a change can update them all."""

from tortoise import fields
from tortoise.models import Model


class SentCard(Model):
    """One card instance: sent by the app to one member (channel "app"), or
    returned by the smart robot in a chat (channel "robot", `chatid` set).

    `response_code` is the one-time code that lets the app replace the card
    (message/update_template_card): the send's, then each click's. It works
    once, for 72 h from `code_at`; empty once used (or for robot cards, which
    only the answer to a click can change)."""

    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="sent_cards", on_delete=fields.RESTRICT, db_index=True
    )
    task_id = fields.CharField(max_length=128, unique=True)
    channel = fields.CharField(max_length=8)
    userid = fields.CharField(max_length=64)
    chatid = fields.CharField(max_length=128, default="")
    response_code = fields.CharField(max_length=256, default="")
    # The code last used up, kept for the update queued with it: taking a code
    # and reading it is then one UPDATE … RETURNING (bot/card_copies.py).
    spent_code = fields.CharField(max_length=256, default="")
    code_at = fields.DatetimeField()
    # Set from the bot's clock (not auto_now), like every other stored time.
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "sent_card"
