"""GET /api/reports/{weekly|monthly}?period=…&scope=… (R24): a report's figures
as JSON, or as CSV with `Accept: text/csv`, behind the API token."""

from __future__ import annotations

from aiohttp import web

from bot.keys import CLOCK, LEDGER, SETTINGS
from bot.reports.figures import Kind, Limits, Scope, compute_figures, parse_period
from bot.reports.render import csv_text
from webhooks.api import authorised, json_answer, json_error


async def get_report(request: web.Request) -> web.Response:
    """The figures of one scope (default: the brand) for one period (default:
    the last complete one)."""
    if (refusal := authorised(request)) is not None:
        return refusal
    kind: Kind = "weekly" if request.match_info["kind"] == "weekly" else "monthly"
    zone = request.app[SETTINGS].zone
    try:
        now = request.app[CLOCK]()
        period = parse_period(kind, request.query.get("period"), now, zone)
        scope = Scope.parse(request.query.get("scope", "brand"))
    except ValueError as exc:
        return json_error(400, str(exc))
    limits = Limits.of(request.app[LEDGER].policies.current)
    figures = await compute_figures(period, scope, limits, zone, now=now)
    if "text/csv" in request.headers.get("Accept", ""):
        name = f"report-{kind}-{period.label}-{scope}.csv".replace(":", "-")
        return web.Response(text=csv_text(figures), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return json_answer(figures.as_dict())


def setup(app: web.Application) -> None:
    """Register the report route."""
    app.router.add_get(r"/api/reports/{kind:weekly|monthly}", get_report)
