from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.domain.enums import Clock, Source
from tortoise import fields
from models.migration_operations import AddFieldKeepingRows, AlterFieldInStateOnly

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0016_ticket_survey')]

    initial = False

    operations = [
        # A new clock in the same VARCHAR: AlterField would rebuild the SQLite table.
        AlterFieldInStateOnly(
            model_name='Deadline',
            name='clock',
            field=fields.CharEnumField(description='RESPONSE: response\nFIRST_SOLUTION: first_solution\nSOLUTION_EMAIL: solution_email\nFOLLOWUP: followup\nRESOLUTION: resolution\nCALLBACK: callback\nSTAGED_DECISION: staged_decision\nMAJOR_WARNING: major_warning\nNO_AGREEMENT: no_agreement\nSTORE_CONFIRM: store_confirm', enum_type=Clock, max_length=32),
        ),
        ops.AddField(
            model_name='Ticket',
            name='confirmed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # NOT NULL on a table with rows: PostgreSQL needs the default in the database.
        AddFieldKeepingRows(
            model_name='Ticket',
            name='resolved_on_call',
            field=fields.BooleanField(default=False),
            default_sql="FALSE",
        ),
        AddFieldKeepingRows(
            model_name='Ticket',
            name='source',
            field=fields.CharEnumField(default=Source.API, description='API: api\nCHAT: chat\nSTORE: store', enum_type=Source, max_length=16),
            default_sql="'api'",
        ),
    ]
