"""Facts about this deployment as a whole: one row."""

from tortoise import fields
from tortoise.models import Model


class Deployment(Model):
    """The deployment's first day (local date): no report is sent for a period
    that ended before it, so a first start does not post all-zero reports of
    weeks and months the bot did not run in."""

    id = fields.IntField(primary_key=True)
    first_day = fields.DateField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "deployment"
