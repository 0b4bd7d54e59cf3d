"""The directory: regions, dealers, staff and the group chats bound to them."""

from tortoise import fields
from tortoise.models import Model

from bot.domain.enums import Role


class Region(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=100)

    class Meta:
        table = "region"


class Dealer(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=100)
    region: fields.ForeignKeyRelation[Region] = fields.ForeignKeyField(
        "complaintbot.Region", related_name="dealers", on_delete=fields.RESTRICT
    )

    class Meta:
        table = "dealer"


class Staff(Model):
    """A person with a WeChat Work userid. Dealer staff have a dealer (and so a
    region); region staff a region; HQ staff, the call centre, brand division
    and legal neither."""

    id = fields.IntField(primary_key=True)
    userid = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=64)
    role = fields.CharEnumField(Role, max_length=32)
    email = fields.CharField(max_length=254, default="")
    mobile = fields.CharField(max_length=32, default="")
    dealer: fields.ForeignKeyNullableRelation[Dealer] = fields.ForeignKeyField(
        "complaintbot.Dealer", related_name="staff", null=True, on_delete=fields.RESTRICT
    )
    region: fields.ForeignKeyNullableRelation[Region] = fields.ForeignKeyField(
        "complaintbot.Region", related_name="staff", null=True, on_delete=fields.RESTRICT
    )
    active = fields.BooleanField(default=True)

    class Meta:
        table = "staff"


class GroupChat(Model):
    """A WeChat Work group the bot serves, bound to one dealer, one region, HQ
    or the call centre. `chatid` is what the robot's callbacks carry; unprompted
    posts go through `webhook_key` or `app_chat_id`."""

    id = fields.IntField(primary_key=True)
    chatid = fields.CharField(max_length=128, unique=True)
    name = fields.CharField(max_length=100, default="")
    kind = fields.CharField(max_length=16)
    dealer: fields.ForeignKeyNullableRelation[Dealer] = fields.ForeignKeyField(
        "complaintbot.Dealer", related_name="groups", null=True, on_delete=fields.RESTRICT
    )
    region: fields.ForeignKeyNullableRelation[Region] = fields.ForeignKeyField(
        "complaintbot.Region", related_name="groups", null=True, on_delete=fields.RESTRICT
    )
    webhook_key = fields.CharField(max_length=128, default="")
    app_chat_id = fields.CharField(max_length=64, default="")

    class Meta:
        table = "group_chat"
