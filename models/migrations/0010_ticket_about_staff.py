from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0009_sqlite_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Ticket',
            name='about_staff_name',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='Ticket',
            name='about_staff_role',
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
