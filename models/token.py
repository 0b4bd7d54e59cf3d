"""Access tokens of the WeChat Work API, shared by every replica of the bot."""

from tortoise import fields
from tortoise.models import Model


class AccessToken(Model):
    """The current token of one credential (`name`, e.g. "app:<corpid>:<agentid>").

    gettoken is rate-limited, so one replica fetches and the others read it here."""

    name = fields.CharField(max_length=128, primary_key=True)
    token = fields.CharField(max_length=512)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "access_token"
