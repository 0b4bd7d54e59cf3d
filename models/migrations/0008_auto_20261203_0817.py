from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.domain.enums import Channel, Clock
from tortoise import fields
from tortoise.indexes import Index
from models.migration_operations import AlterFieldInStateOnly

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0007_send_slot')]

    initial = False

    operations = [
        AlterFieldInStateOnly(
            model_name='Deadline',
            name='clock',
            field=fields.CharEnumField(description='RESPONSE: response\nFIRST_SOLUTION: first_solution\nSOLUTION_EMAIL: solution_email\nFOLLOWUP: followup\nRESOLUTION: resolution\nCALLBACK: callback\nSTAGED_DECISION: staged_decision\nMAJOR_WARNING: major_warning\nNO_AGREEMENT: no_agreement', enum_type=Clock, max_length=32),
        ),
        ops.AddIndex(
            model_name='ProcessedCallback',
            index=Index(fields=['received_at']),
        ),
        AlterFieldInStateOnly(
            model_name='Ticket',
            name='channel',
            field=fields.CharEnumField(description='PHONE: phone\nFAX: fax\nEMAIL: email\nWEB: web\nLETTER: letter\nWECHAT: wechat\nWEIBO: weibo\nWALK_IN: walk_in\nSURVEY: survey\nLOCAL_MEDIA: local_media\nCENTRAL_MEDIA: central_media\nLOCAL_AGENCY: local_agency\nNATIONAL_AGENCY: national_agency\nNEW_MEDIA: new_media\nMANUFACTURER: manufacturer\nGROUP_OFFICE: group_office\nLAW_FIRM: law_firm\nPARENT_COMPANY: parent_company', enum_type=Channel, max_length=32),
        ),
        ops.AddField(
            model_name='Ticket',
            name='no_agreement_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
