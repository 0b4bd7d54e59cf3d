"""Messages sent under WeChat Work's rate limits, counted by every replica."""

from tortoise import fields
from tortoise.models import Model


class SendSlot(Model):
    """One message to one app member, or through one group webhook (`key`),
    taken at `at`. WeChat Work silently drops app messages past 30 a minute or
    1,000 an hour per member; the replicas count their sends here, so together
    they keep under the limits (bot/wecom/pacing.py). Rows older than the
    longest window are deleted as new ones are taken."""

    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=200)
    at = fields.DatetimeField()

    class Meta:
        table = "send_slot"
        indexes = (("key", "at"),)
