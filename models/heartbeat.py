"""The row /healthz writes to prove the database takes writes."""

from tortoise import fields
from tortoise.models import Model


class Heartbeat(Model):
    """The health probe's row (id 1), rewritten by every probe under a
    short timeout. A database that answers SELECT but cannot store (a full
    disk, a read-only file or server) fails this write, so /healthz sees
    what intake would meet. `pad` makes a SQLite probe outgrow the recycled WAL space (16 KiB),
    so a full disk is met as a real write would meet it."""

    id = fields.IntField(primary_key=True)
    beat_at = fields.DatetimeField()
    pad = fields.TextField(default="")

    class Meta:
        table = "heartbeat"
