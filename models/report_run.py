"""Scheduled reports already delivered: one row per report and period, the
claim that makes each go out once across restarts and replicas."""

from tortoise import fields
from tortoise.models import Model


class ReportRun(Model):
    """One scope's weekly or monthly report for one period, as it was sent.

    The unique (kind, period, scope_level, scope_code) is the claim: the replica
    whose insert commits delivers, any other rolls back. The rendered parts are
    kept so the outbox sends, and retries, exactly what was computed."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=8)  # weekly | monthly
    period = fields.CharField(max_length=16)  # 2026-W10 | 2026-03
    scope_level = fields.CharField(max_length=8)  # dealer | region | brand
    scope_code = fields.CharField(max_length=32, default="")
    scope_name = fields.CharField(max_length=200)
    created_at = fields.DatetimeField()
    markdown = fields.TextField()
    chart_png = fields.BinaryField()
    workbook_xlsx = fields.BinaryField()

    class Meta:
        table = "report_run"
        unique_together = (("kind", "period", "scope_level", "scope_code"),)
