from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0010_ticket_about_staff')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Heartbeat',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('beat_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('pad', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'heartbeat', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': "The health probe's row (id 1), rewritten by every probe under a"},
            bases=['Model'],
        ),
    ]
