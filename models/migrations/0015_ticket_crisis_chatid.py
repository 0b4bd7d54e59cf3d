from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0014_lease')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Ticket',
            name='crisis_chatid',
            field=fields.CharField(null=True, max_length=32),
        ),
    ]
