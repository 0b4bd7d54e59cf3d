from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0006_ticket_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SendSlot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(max_length=200)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'send_slot', 'app': 'complaintbot', 'indexes': [Index(fields=['key', 'at'])], 'pk_attr': 'id', 'table_description': 'One message to one app member, or through one group webhook (`key`),'},
            bases=['Model'],
        ),
    ]
