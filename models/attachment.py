"""Photos and files on tickets (bot/attachments.py). The bytes are in the
content-addressed store (bot/filestore.py), named by `sha256`; a row says what
the file is, whose ticket it belongs to, and who gave it when."""

from tortoise import fields
from tortoise.models import Model


class Attachment(Model):
    """One file attached to one ticket. The same bytes on two tickets (or twice
    on one) are two rows and one stored file. Never updated."""

    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="attachments", on_delete=fields.RESTRICT,
        db_index=True,
    )
    sha256 = fields.CharField(max_length=64, db_index=True)
    name = fields.CharField(max_length=255)
    content_type = fields.CharField(max_length=128)
    size = fields.IntField()
    uploaded_by = fields.CharField(max_length=64)
    uploaded_by_name = fields.CharField(max_length=64, default="")
    source = fields.CharField(max_length=16)
    uploaded_at = fields.DatetimeField()

    class Meta:
        table = "attachment"
        ordering = ["id"]


class PendingAttachment(Model):
    """A photo or file sent in chat without a ticket number, stored and waiting
    (policy `attachments.pending_window`) for `/attach 编号` from the same
    person in the same chat (`chatid` "" one to one)."""

    id = fields.BigIntField(primary_key=True)
    userid = fields.CharField(max_length=64, db_index=True)
    chatid = fields.CharField(max_length=128, default="")
    sha256 = fields.CharField(max_length=64)
    name = fields.CharField(max_length=255)
    content_type = fields.CharField(max_length=128)
    size = fields.IntField()
    source = fields.CharField(max_length=16)
    received_at = fields.DatetimeField()

    class Meta:
        table = "pending_attachment"
        ordering = ["id"]
