from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0019_ticket_dealer_dispatched')]

    initial = False

    operations = [
        ops.AddField(
            model_name='SentCard',
            name='spent_code',
            field=fields.CharField(default='', max_length=256),
        ),
    ]
