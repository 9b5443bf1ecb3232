"""Plotly charts: a schedule's last N dates (status, duration per job, errors per date by job or
by error code) and one job's processed/error/pending donut for the stats drawer.

Names from the data (jobs, error codes) are escaped: plotly reads a little HTML in text."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from allegro_ops import Workspace

from .job_tile import make_html, show
from .view_state import STATUS_COLOURS, StatsView, esc

__all__ = ["HistorySeries", "history_series", "errors_by_code_history", "history_figure",
           "job_progress_figure", "update_job_progress", "Charts", "figure_widgets_available"]

STATUS_ORDER = ["PENDING", "IN_PROGRESS", "COMPLETED", "ERRORED"]
DONUT_COLOURS = ["#43a047", "#e53935", "#1e88e5"]  # processed, error, pending
PALETTE = ["#5c6bc0", "#26a69a", "#ab47bc", "#ff7043", "#8d6e63", "#29b6f6", "#d4e157", "#78909c"]


def figure_widgets_available() -> bool:
    """FigureWidget needs anywidget (plotly >= 6); without it the charts say so instead."""
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class HistorySeries:
    dates: tuple[str, ...]  # ISO run dates, oldest first
    statuses: tuple[str, ...]  # execution status per date
    jobs: tuple[str, ...]  # job names in sequence order (first seen)
    duration: dict[str, tuple[float | None, ...]]  # job -> seconds per date (None: not finished)
    errors: dict[str, tuple[int, ...]]  # job -> error count per date


def history_series(rows: list[dict[str, Any]]) -> HistorySeries:
    """Reshape ws.history() rows (per date and job) into per-job series over the dates."""
    dates = sorted({r["run_date"] for r in rows})
    status = {r["run_date"]: r["execution_status"] for r in rows}
    jobs = list(dict.fromkeys(r["job"] for r in sorted(rows, key=lambda r: (r["sequence"], r["run_date"]))))
    by_key = {(r["run_date"], r["job"]): r for r in rows}
    duration: dict[str, tuple[float | None, ...]] = {}
    errors: dict[str, tuple[int, ...]] = {}
    for job in jobs:
        cells = [by_key.get((d, job)) for d in dates]
        duration[job] = tuple(_seconds(c) for c in cells)
        errors[job] = tuple(int(c["error"]) if c else 0 for c in cells)
    return HistorySeries(tuple(d.isoformat() for d in dates), tuple(status[d] for d in dates), tuple(jobs),
                         duration, errors)


def _seconds(row: dict[str, Any] | None) -> float | None:
    started, finished = (row or {}).get("started_at"), (row or {}).get("finished_at")
    if not isinstance(started, dt.datetime) or not isinstance(finished, dt.datetime):
        return None
    return round((finished - started).total_seconds(), 3)


def errors_by_code_history(ws: Workspace, client: str, schedule: str, rows: list[dict[str, Any]],
                           cap: int = 30) -> dict[str, dict[str, int]]:
    """Error count per run date (ISO) and error code: job_stats of the errored jobs only, at most
    ``cap`` calls, newest first; the history rows already say which jobs have errors."""
    out: dict[str, dict[str, int]] = {}
    for row in [r for r in rows if r["error"]][::-1][:cap]:
        day = out.setdefault(row["run_date"].isoformat(), {})
        for e in ws.job_stats(client, schedule, row["run_date"], row["job"]).errors_by_code:
            day[e.error_code] = day.get(e.error_code, 0) + e.count
    return out


def history_figure(series: HistorySeries, by_code: dict[str, dict[str, int]] | None = None) -> go.FigureWidget:
    """Three panels over the dates: status, duration per job, errors stacked by job (or by code)."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Status per date", "Duration per job (s)",
                                        "Errors per date by " + ("error code" if by_code is not None else "job")))
    x = list(series.dates)
    fig.add_trace(go.Scatter(x=x, y=list(series.statuses), mode="markers", name="status", showlegend=False,
                             marker={"size": 14, "color": [STATUS_COLOURS.get(s, "#9e9e9e") for s in series.statuses]}),
                  row=1, col=1)
    colour = {job: PALETTE[i % len(PALETTE)] for i, job in enumerate(series.jobs)}
    for job in series.jobs:
        fig.add_trace(go.Bar(x=x, y=list(series.duration[job]), name=esc(job), legendgroup=job,
                             marker_color=colour[job]), row=2, col=1)
    if by_code is None:
        for job in series.jobs:
            fig.add_trace(go.Bar(x=x, y=list(series.errors[job]), name=esc(job), legendgroup=job,
                                 marker_color=colour[job], showlegend=False), row=3, col=1)
    else:
        codes = sorted({c for day in by_code.values() for c in day})
        for i, code in enumerate(codes):
            fig.add_trace(go.Bar(x=x, y=[by_code.get(d, {}).get(code, 0) for d in x], name=esc(code),
                                 marker_color=PALETTE[-1 - i % len(PALETTE)]), row=3, col=1)
    fig.update_layout(barmode="stack", height=520, margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.08})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=STATUS_ORDER, row=1, col=1)
    return go.FigureWidget(fig)


def job_progress_figure(view: StatsView) -> go.FigureWidget:
    """A donut of the job's processed, error and pending work items."""
    fig = go.FigureWidget(go.Pie(labels=["Processed", "Error", "Pending"], values=view.donut, hole=0.55,
                                 sort=False, marker={"colors": DONUT_COLOURS}, textinfo="value"))
    fig.update_layout(height=220, width=300, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=True)
    return fig


def update_job_progress(fig: go.FigureWidget, view: StatsView) -> None:
    fig.data[0].values = view.donut


class Charts(widgets.VBox):
    """The history charts of the selected schedule; a switch stacks errors by job or by error code."""

    def __init__(self, on_mode: Callable[[], None] | None = None) -> None:
        self.title = make_html("<b>History</b>", "ao-charts-title")
        self.mode = widgets.ToggleButtons(options=["by job", "by error code"], value="by job")
        self.mode.add_class("ao-charts-mode")
        self.mode.style.button_width = "110px"
        if on_mode is not None:
            self.mode.observe(lambda _ch: on_mode(), names="value")
        self.holder = widgets.VBox([])
        self.figure: go.FigureWidget | None = None
        super().__init__([self.title, self.mode, self.holder])
        self.add_class("ao-charts")

    @property
    def by_code(self) -> bool:
        return self.mode.value == "by error code"

    def render(self, series: HistorySeries | None, by_code: dict[str, dict[str, int]] | None = None) -> None:
        """Replace the figure (the number of traces follows the jobs, so it is rebuilt)."""
        old, self.figure = self.holder.children, None
        if series is None or not series.dates:
            self.holder.children = [make_html("<i>No executions of this schedule yet.</i>", "ao-charts-empty")]
        elif not figure_widgets_available():
            self.holder.children = [make_html("<i>Charts need the anywidget package.</i>", "ao-charts-empty")]
        else:
            self.figure = history_figure(series, by_code if self.by_code else None)
            self.holder.children = [self.figure]
        for w in old:
            w.close()
        show(self.mode, series is not None and bool(series.dates))
