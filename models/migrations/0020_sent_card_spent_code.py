from tortoise import migrations
from tortoise import fields
from models.migration_operations import AddFieldKeepingRows

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0019_ticket_dealer_dispatched')]

    initial = False

    operations = [
        AddFieldKeepingRows(
            model_name='SentCard',
            name='spent_code',
            field=fields.CharField(default='', max_length=256),
            default_sql="''",
        ),
    ]
