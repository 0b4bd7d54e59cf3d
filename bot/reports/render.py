"""R24: a report's figures as people read them: a markdown summary for a group,
an XLSX workbook, a PNG chart, and CSV for the API. Customer phones are masked
everywhere; times are shown in the configured zone."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt
import structlog
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from openpyxl import Workbook

from bot.domain.enums import Category, Status
from bot.render.privacy import local_time, mask_phone
from bot.reports.figures import LABELS, Figures
from bot.reports.fonts import INSTALL_HINT, cjk_font

CHART_SIZE = (1200, 800)  # pixels
_DPI = 100
# Margins of a chart without a ranking (fractions of the figure), as
# tight_layout finds them for a dealer's chart at CHART_SIZE.
_DEALER_LAYOUT = {"left": 0.05, "right": 0.99, "bottom": 0.1, "top": 0.95, "wspace": 0.12}
# Titles just above their axes, placed, not searched for: matplotlib's search
# (clear of the top ticks, which have no labels here) measured every tick label.
_TITLE_Y = 1.0
log = structlog.get_logger(__name__)

# (attribute, label, how to show it) of the headline figures, in reading order.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("received", "受理投诉", "count"),
    ("first_call_resolutions", "其中首次来电解决", "count"),
    ("repeats", "重复投诉", "count"),
    ("escalations", "升级次数", "count"),
    ("responded_in_time", "2小时内响应率", "share"),
    ("first_solution_in_time", "24小时内首次方案率", "share"),
    ("resolved_in_time", "3天内解决率", "share"),
    ("response_median_min", "响应时长中位数（分钟）", "number"),
    ("response_p90_min", "响应时长90分位（分钟）", "number"),
    ("resolution_median_h", "解决时长中位数（小时）", "number"),
    ("resolution_p90_h", "解决时长90分位（小时）", "number"),
    ("backlog", "期末未结案", "count"),
    ("overdue", "期末超期未解决", "count"),
    ("staged_closures", "阶段性结案", "count"),
    ("compensation_approved", "批准补偿金额（元）", "number"),
    ("satisfaction", "平均满意度", "number"),
    ("survey_response_rate", "满意度评价回复率", "share"),
    ("survey_mean", "客户评价平均星级", "number"),
)
_KIND = {"weekly": "周报", "monthly": "月报"}


def _show(value: float | None, how: str) -> str:
    if value is None:
        return "—"
    if how == "share":
        return f"{value:.0%}"
    if how == "count":
        return str(int(value))
    return f"{value:.1f}".removesuffix(".0")


def _change(value: float | None, how: str) -> str:
    if value is None:
        return "—"
    if how == "share":
        return f"{value * 100:+.0f}个百分点"
    return f"{value:+.1f}".removesuffix(".0") if how == "number" else f"{int(value):+d}"


def as_of_text(figures: Figures) -> str:
    """截至 03-04 10:00 (local) while the period runs, else empty."""
    return f"截至 {figures.as_of:%m-%d %H:%M}" if figures.running else ""


def label_of(figures: Figures, label: str) -> str:
    """A headline label as it reads for this report: "期末…" counts at the
    period's end, which a running period has not reached: 截至 03-04 10:00 …"""
    return label.replace("期末", as_of_text(figures) + " ", 1) if figures.running else label


def _counts(counts: dict[str, int]) -> str:
    return "、".join(f"{LABELS.get(k, k)} {n}" for k, n in counts.items()) or "无"


def markdown_summary(figures: Figures, max_bytes: int | None = None) -> str:
    """The report as WeChat Work markdown for a group, in Chinese. With
    `max_bytes` (a group message holds 4096) a long ranking keeps its top rows
    and says how many more the workbook has."""
    period = figures.period
    lines = [f"### 投诉{_KIND[period.kind]} {period.title}",
             f"> 范围：{figures.scope_name}"]
    if figures.running:
        lines.append(f"> 本期尚未结束，数据{as_of_text(figures)}")
    lines.append("")
    for name, label, how in HEADLINE:
        value = getattr(figures, name)
        change = figures.change(name) if name in Figures.HEADLINE else None
        suffix = f"（较上期 {_change(change, how)}）" if change is not None else ""
        lines.append(f"- {label_of(figures, label)}：**{_show(value, how)}**{suffix}")
    lines += ["", f"按类别：{_counts(figures.by_category)}",
              f"按渠道：{_counts(figures.by_channel)}",
              f"按标记：{_counts(figures.by_flag)}"]
    if figures.ranking:
        unit = "经销商" if figures.scope.level == "region" else "区域"
        lines += ["", f"**{unit}排名**（按2小时内响应率）"]
        rows = [f"{r.rank}. {r.name}（{r.code}）受理 {r.received}，响应率 "
                f"{_show(r.responded_in_time, 'share')}，3天解决率 "
                f"{_show(r.resolved_in_time, 'share')}，未结案 {r.backlog}"
                for r in figures.ranking]

        def fitted(shown: int) -> list[str]:
            rest = len(rows) - shown
            return lines + rows[:shown] + ([f"……其余 {rest} 个{unit}见邮件附件"] if rest else [])

        shown = len(rows)
        while max_bytes and shown and len("\n".join(fitted(shown)).encode()) > max_bytes:
            shown -= 1
        lines = fitted(shown)
    return "\n".join(lines)


def summary_rows(figures: Figures) -> list[tuple[str, Any, Any, Any]]:
    """(figure, this period, previous period, change) for the headline figures."""
    previous = figures.previous
    return [(label_of(figures, label), getattr(figures, name),
             getattr(previous, name) if previous else None, figures.change(name))
            for name, label, _ in HEADLINE]


def csv_text(figures: Figures) -> str:
    """The headline figures and the counts as CSV (the API's text/csv)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["指标", figures.period.label, "上期", "变化"])
    writer.writerows(("" if v is None else v for v in row) for row in summary_rows(figures))
    for title, counts in (("类别", figures.by_category), ("渠道", figures.by_channel),
                          ("标记", figures.by_flag)):
        writer.writerows([f"{title}:{LABELS.get(k, k)}", n, "", ""] for k, n in counts.items())
    return out.getvalue()


class ReportBook:
    """An XLSX workbook written as it goes: 汇总 (headline and counts),
    经销商排名 (the ranking; 区域排名 for the brand) and 投诉明细 (the tickets
    received, phones masked), whose rows are added page by page.

    Write-only: rows stream to temporary files as they are appended, so a
    brand's month of 100,000+ tickets never sits in memory (the in-memory
    workbook took 3x the time and the memory)."""

    def __init__(self, figures: Figures, zone: ZoneInfo) -> None:
        self.zone = zone
        self.book = Workbook(write_only=True)
        summary = self.book.create_sheet("汇总")
        summary.append([f"投诉{_KIND[figures.period.kind]}", figures.period.title,
                        figures.scope_name, as_of_text(figures)])
        summary.append(["指标", "本期", "上期", "变化"])
        for row in summary_rows(figures):
            summary.append(list(row))
        for title, counts in (("类别", figures.by_category), ("渠道", figures.by_channel),
                              ("标记", figures.by_flag)):
            for key, count in counts.items():
                summary.append([f"{title}：{LABELS.get(key, key)}", count])

        ranking = self.book.create_sheet("区域排名" if figures.scope.level == "brand"
                                         else "经销商排名")
        ranking.append(["名次", "代码", "名称", "受理", "首次来电解决", "2小时内响应率",
                        "3天内解决率", label_of(figures, "期末未结案"), "满意度评价回复率",
                        "客户评价平均星级"])
        for r in figures.ranking:
            ranking.append([r.rank, r.code, r.name, r.received, r.first_call_resolutions,
                            r.responded_in_time, r.resolved_in_time, r.backlog,
                            r.survey_response_rate, r.survey_mean])

        self.detail = self.book.create_sheet("投诉明细")
        self.detail.append(["编号", "派单时间", "经销商", "区域", "类别", "渠道", "状态", "客户",
                            "电话", "车型", "标记", "重复自", "响应时间", "首次方案时间",
                            "解决时间", "结案时间", "满意度", "客户评价星级"])

    def add_tickets(self, tickets: Iterable[dict[str, Any]]) -> None:
        """Append tickets (rows as `figures.ticket_pages` reads them) to 投诉明细."""
        zone = self.zone
        for t in tickets:
            # R22: the employee a complaint is about may be a manager this goes to.
            customer = (["—", "—"] if t["about_staff"] or t["about_staff_name"]
                        else [t["customer_name"], mask_phone(t["customer_phone"])])
            self.detail.append([
                t["id"], local_time(t["dispatched_at"], zone), t["dealer_code"],
                t["region_code"], Category(t["category"]).label,
                LABELS.get(str(t["channel"]), str(t["channel"])), Status(t["status"]).label,
                *customer, t["car_model"], "、".join(LABELS.get(f, f) for f in t["flags"]),
                t["repeat_of"],
                *(local_time(t[k], zone) if t[k] else "" for k in (
                    "responded_at", "first_solution_at", "resolved_at", "closed_at")),
                t["satisfaction"], t["survey_score"],
            ])

    def finish(self) -> bytes:
        """The workbook's bytes; the book takes no more rows."""
        out = io.BytesIO()
        self.book.save(out)
        return out.getvalue()


def workbook(figures: Figures, tickets: Iterable[dict[str, Any]], zone: ZoneInfo) -> bytes:
    """The workbook (see `ReportBook`) of a report and its tickets."""
    book = ReportBook(figures, zone)
    book.add_tickets(tickets)
    return book.finish()


@contextmanager
def chart_style() -> Iterator[None]:
    """Draw in the Chinese font `cjk_font` finds, named explicitly (tick labels
    are laid out when drawn, so drawing happens inside this too). Without one
    the chart still renders, with boxes, and a log line says what to install."""
    font = cjk_font()
    with plt.rc_context({"font.family": [font or "DejaVu Sans"]}), warnings.catch_warnings():
        if font is None:
            log.warning("chart_without_cjk_font", hint=INSTALL_HINT)
            # Boxes must not stop a report; `complaintbot check` fails on this.
            warnings.filterwarnings("ignore", message="Glyph .* missing", category=UserWarning)
        yield


def figure(figures: Figures, history: Sequence[tuple[str, dict[str, int]]],
           size: tuple[int, int] = CHART_SIZE) -> Figure:
    """The chart as a matplotlib figure of `size` pixels: tickets by category
    over the recent periods (left) and SLA compliance per dealer or region, by
    name (right). Counts have whole-number ticks; a unit with no tickets is a
    zero bar. The caller closes it (`plt.close`)."""
    with chart_style():
        fig, (volume, sla) = plt.subplots(1, 2, figsize=(size[0] / _DPI, size[1] / _DPI),
                                          dpi=_DPI)
        labels = [label for label, _ in history]
        bottom = [0] * len(history)
        for category in Category:
            counts = [by.get(category.value, 0) for _, by in history]
            volume.bar(labels, counts, bottom=bottom, label=category.label)
            bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
        volume.set_title(f"{figures.scope_name} 各期受理量（按类别）", y=_TITLE_Y)
        volume.tick_params(axis="x", labelrotation=45)
        # Tickets come whole: no 0.2 steps, and an empty history still shows 0 to 1.
        volume.yaxis.set_major_locator(MaxNLocator(integer=True))
        volume.set_ylim(0, max([*bottom, 1]))
        volume.set_ylabel("件")
        volume.legend()

        units = figures.ranking or []
        names = [r.name for r in units] or [figures.scope_name]
        responded = [r.responded_in_time or 0 for r in units] or [
            figures.responded_in_time or 0]
        resolved = [r.resolved_in_time or 0 for r in units] or [figures.resolved_in_time or 0]
        positions = range(len(names))
        sla.bar([p - 0.2 for p in positions], [v * 100 for v in responded], width=0.4,
                label="2小时内响应率")
        sla.bar([p + 0.2 for p in positions], [v * 100 for v in resolved], width=0.4,
                label="3天内解决率")
        sla.set_xticks(list(positions), names)
        if len(names) > 3:
            sla.tick_params(axis="x", labelrotation=45)
        sla.set_ylim(0, 100)
        sla.yaxis.set_major_locator(MaxNLocator(integer=True))
        sla.set_ylabel("%")
        sla.set_title(f"{figures.period.label} 时效达标率", y=_TITLE_Y)
        sla.legend()
        if units:
            fig.tight_layout()  # unit names of any length, rotated: measure them
        else:
            # A dealer's chart: fixed labels whose room is known. Measuring
            # them (tight_layout) was 2/3 of the chart's cost, and a monthly
            # run draws one per dealer.
            fig.subplots_adjust(**_DEALER_LAYOUT)
    return fig


def chart(figures: Figures, history: Sequence[tuple[str, dict[str, int]]],
          size: tuple[int, int] = CHART_SIZE) -> bytes:
    """The chart (see `figure`) as a PNG of `size` pixels."""
    with chart_style():
        fig = figure(figures, history, size)
        try:
            out = io.BytesIO()
            fig.savefig(out, format="png", dpi=_DPI)
        finally:
            plt.close(fig)
    return out.getvalue()


def write_files(figures: Figures, tickets: Sequence[dict[str, Any]],
                history: Sequence[tuple[str, dict[str, int]]], zone: ZoneInfo, out_dir: Path
                ) -> list[Path]:
    """Write the workbook and the chart into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"report-{figures.period.kind}-{figures.period.label}-{figures.scope}".replace(":", "-")
    xlsx, png = out_dir / f"{stem}.xlsx", out_dir / f"{stem}.png"
    xlsx.write_bytes(workbook(figures, tickets, zone))
    png.write_bytes(chart(figures, history))
    return [xlsx, png]
