from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0002_outbox_tokens_payload')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SentCard',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ticket', fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_constraint=True, to_field='id', related_name='sent_cards', on_delete=OnDelete.RESTRICT)),
                ('task_id', fields.CharField(unique=True, max_length=128)),
                ('channel', fields.CharField(max_length=8)),
                ('userid', fields.CharField(max_length=64)),
                ('chatid', fields.CharField(default='', max_length=128)),
                ('response_code', fields.CharField(default='', max_length=256)),
                ('code_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sent_card', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': 'One card instance: sent by the app to one member (channel "app"), or'},
            bases=['Model'],
        ),
    ]
