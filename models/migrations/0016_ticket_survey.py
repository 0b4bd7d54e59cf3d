from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0015_ticket_crisis_chatid')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Ticket',
            name='survey_answered_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Ticket',
            name='survey_comment',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='Ticket',
            name='survey_score',
            field=fields.SmallIntField(null=True),
        ),
    ]
