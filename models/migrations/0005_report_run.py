from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0004_approvals')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReportRun',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=8)),
                ('period', fields.CharField(max_length=16)),
                ('scope_level', fields.CharField(max_length=8)),
                ('scope_code', fields.CharField(default='', max_length=32)),
                ('scope_name', fields.CharField(max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('markdown', fields.TextField(unique=False)),
                ('chart_png', fields.BinaryField()),
                ('workbook_xlsx', fields.BinaryField()),
            ],
            options={'table': 'report_run', 'app': 'complaintbot', 'unique_together': (('kind', 'period', 'scope_level', 'scope_code'),), 'pk_attr': 'id', 'table_description': "One scope's weekly or monthly report for one period, as it was sent."},
            bases=['Model'],
        ),
    ]
