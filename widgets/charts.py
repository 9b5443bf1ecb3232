"""The history charts of a schedule's last N dates: status, busy time per job, errors per date by
job or by error code, in ONE plotly FigureWidget per dashboard.

A FigureWidget ships plotly.js (~5 MB) to the browser when it is created, so the figure is built
once, on the first history there is to show, and every later change is sent in place: new values
as one batched restyle when the traces are the same (same jobs, same codes), else the old traces
deleted and the new ones added on the same widget (a few kB either way; measured: restyle 1.2 kB,
delete + add 3.0 kB for the same 9 traces). The figure's synced state is brought up to date too,
for a browser that connects after the change. Names from the data (jobs, error codes) are
escaped: plotly reads a little HTML in text.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from allegro_ops import Workspace

from .job_tile import make_html, show
from .views import STATUS_COLOURS, esc

__all__ = ["HistorySeries", "history_series", "busy_seconds", "errors_by_code_history", "history_traces",
           "new_history_figure", "update_history_figure", "Charts", "figure_widgets_available"]

STATUS_ORDER = ["PENDING", "IN_PROGRESS", "COMPLETED", "ERRORED"]
PALETTE = ["#5c6bc0", "#26a69a", "#ab47bc", "#ff7043", "#8d6e63", "#29b6f6", "#d4e157", "#78909c"]
BUSY_TITLE = "Busy time per job (s)"
ELAPSED_TITLE = "Elapsed per job, first start to last finish (s)"
Busy = Mapping[tuple[dt.date, str], float]  # (run date, job) -> busy seconds


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
    busy: bool = False  # duration is busy time (the runs only); else elapsed from first start to last finish

    @property
    def duration_title(self) -> str:
        return BUSY_TITLE if self.busy else ELAPSED_TITLE


def history_series(rows: list[dict[str, Any]], busy: Busy | None = None) -> HistorySeries:
    """Reshape ws.history() rows (per date and job) into per-job series over the dates. With
    ``busy`` (see busy_seconds) a finished job's duration is its busy time; without it, the
    elapsed time from its first start to its last finish, which includes any wait before a
    Reprocess or Retry (the title says which)."""
    dates = sorted({r["run_date"] for r in rows})
    status = {r["run_date"]: r["execution_status"] for r in rows}
    jobs = list(dict.fromkeys(r["job"] for r in sorted(rows, key=lambda r: (r["sequence"], r["run_date"]))))
    by_key = {(r["run_date"], r["job"]): r for r in rows}
    duration: dict[str, tuple[float | None, ...]] = {}
    errors: dict[str, tuple[int, ...]] = {}
    for job in jobs:
        cells = [by_key.get((d, job)) for d in dates]
        duration[job] = tuple(_seconds(c, busy) for c in cells)
        errors[job] = tuple(int(c["error"]) if c else 0 for c in cells)
    return HistorySeries(tuple(d.isoformat() for d in dates), tuple(status[d] for d in dates), tuple(jobs),
                         duration, errors, busy is not None)


def _seconds(row: dict[str, Any] | None, busy: Busy | None) -> float | None:
    started, finished = (row or {}).get("started_at"), (row or {}).get("finished_at")
    if not isinstance(started, dt.datetime) or not isinstance(finished, dt.datetime):
        return None  # not run, or running now
    if busy is not None:
        seconds = busy.get((row["run_date"], row["job"]))
        return None if seconds is None else round(seconds, 3)
    return round((finished - started).total_seconds(), 3)


def busy_seconds(ws: Workspace, client: str, schedule: str,
                 rows: list[dict[str, Any]]) -> dict[tuple[dt.date, str], float]:
    """Busy seconds per (run date, job) of the history rows' dates: the time the job's runs
    (Process, Reprocess, Retry) spent on its work items, summed, so the wait between a failure and
    its Reprocess does not count. From the analysts' query API (``busy_s`` of job_history)."""
    if not rows:
        return {}
    from allegro_ops import query

    days = [r["run_date"] for r in rows]
    frame = query.job_history(ws, client=client, schedule=schedule, date_from=min(days), date_to=max(days))
    out: dict[tuple[dt.date, str], float] = {}
    for day, job, seconds in zip(frame["run_date"], frame["job"], frame["busy_s"]):
        if seconds is not None and not (isinstance(seconds, float) and math.isnan(seconds)):
            out[(day.date() if isinstance(day, dt.datetime) else day, job)] = float(seconds)
    return out


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


def history_traces(series: HistorySeries, by_code: dict[str, dict[str, int]] | None = None) -> list[Any]:
    """The figure's traces: the status per date (panel 1), a bar per job (panel 2), and a bar per job
    or per error code (panel 3); each names its panel's axes, so they fit the figure as they are."""
    x = list(series.dates)
    traces: list[Any] = [go.Scatter(
        x=x, y=list(series.statuses), mode="markers", name="status", showlegend=False, xaxis="x", yaxis="y",
        marker={"size": 14, "color": [STATUS_COLOURS.get(s, "#9e9e9e") for s in series.statuses]})]
    colour = {job: PALETTE[i % len(PALETTE)] for i, job in enumerate(series.jobs)}
    traces += [go.Bar(x=x, y=list(series.duration[job]), name=esc(job), legendgroup=esc(job), xaxis="x2",
                      yaxis="y2", marker={"color": colour[job]}) for job in series.jobs]
    if by_code is None:
        traces += [go.Bar(x=x, y=list(series.errors[job]), name=esc(job), legendgroup=esc(job), xaxis="x3",
                          yaxis="y3", marker={"color": colour[job]}, showlegend=False) for job in series.jobs]
    else:
        codes = sorted({c for day in by_code.values() for c in day})
        traces += [go.Bar(x=x, y=[by_code.get(d, {}).get(code, 0) for d in x], name=esc(code), xaxis="x3",
                          yaxis="y3", marker={"color": PALETTE[-1 - i % len(PALETTE)]})
                   for i, code in enumerate(codes)]
    return traces


def new_history_figure() -> go.FigureWidget:
    """The empty figure: three panels sharing the date axis (traces come from update_history_figure)."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Status per date", BUSY_TITLE, "Errors per date by job"))
    fig.update_layout(barmode="stack", height=520, margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.08})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=STATUS_ORDER, row=1, col=1)
    return go.FigureWidget(fig)


def _shape(traces: Any) -> list[tuple[str, str, str]]:
    return [(t.type, t.name, t.xaxis) for t in traces]


def update_history_figure(fig: go.FigureWidget, series: HistorySeries,
                          by_code: dict[str, dict[str, int]] | None = None) -> str:
    """Show the series on the existing figure: "restyle" when the traces are the same ones (only
    values change, one message), "replace" when they were swapped for others (other jobs or codes)."""
    traces = history_traces(series, by_code)
    how = "restyle" if _shape(fig.data) == _shape(traces) else "replace"
    if how == "replace":
        fig.data = []
        fig.add_traces(traces)
    titles = (series.duration_title, "Errors per date by " + ("error code" if by_code is not None else "job"))
    retitle = [(a, t) for a, t in zip(fig.layout.annotations[1:], titles) if a.text != t]
    with fig.batch_update():
        if how == "restyle":
            for old, new in zip(fig.data, traces):
                old.update(x=new.x, y=new.y, marker=new.marker)
        for annotation, title in retitle:
            annotation.text = title
    _snapshot(fig, layout=bool(retitle) or how == "replace")
    return how


def _snapshot(fig: go.FigureWidget, layout: bool) -> None:
    """Bring the figure's synced state up to date with its traces (and layout). plotly sends
    changes as messages to the views open now, but a browser that connects later (every Voilà
    page: the notebook ran first) builds its view from this state, which plotly itself refreshes
    only when a figure is displayed on its own (FigureWidget._repr_mimebundle_ does the same)."""
    fig._widget_data = deepcopy(fig._data)
    if layout:
        fig._widget_layout = deepcopy(fig._layout_obj._props)


class Charts(widgets.VBox):
    """The history charts of the selected schedule; a switch stacks errors by job or by error code."""

    def __init__(self, on_mode: Callable[[], None] | None = None) -> None:
        self.title = make_html("<b>History</b>", "ao-charts-title")
        self.mode = widgets.ToggleButtons(options=["by job", "by error code"], value="by job")
        self.mode.add_class("ao-charts-mode")
        self.mode.style.button_width = "110px"
        if on_mode is not None:
            self.mode.observe(lambda _ch: on_mode(), names="value")
        self.empty = make_html("", "ao-charts-empty")
        self.holder = widgets.VBox([])
        self.holder.add_class("ao-charts-holder")
        self.figure: go.FigureWidget | None = None  # built once, then updated in place
        self.last_update = ""  # how the figure took the last series: "new", "restyle" or "replace"
        super().__init__([self.title, self.mode, self.holder])
        self.add_class("ao-charts")

    @property
    def by_code(self) -> bool:
        return self.mode.value == "by error code"

    def render(self, series: HistorySeries | None, by_code: dict[str, dict[str, int]] | None = None) -> None:
        """Show the series on the one figure (built on first use); a note when there is no history."""
        has_dates = series is not None and bool(series.dates)
        show(self.mode, has_dates)
        if not has_dates or not figure_widgets_available():
            self.empty.value = ("<i>No executions of this schedule yet.</i>" if not has_dates
                                else "<i>Charts need the anywidget package.</i>")
            self._hold(self.empty)
            return
        if self.figure is None:
            self.figure = new_history_figure()
            self.last_update = "new"
            update_history_figure(self.figure, series, by_code if self.by_code else None)
        else:
            self.last_update = update_history_figure(self.figure, series, by_code if self.by_code else None)
        self._hold(self.figure)

    def _hold(self, child: widgets.Widget) -> None:
        """Swap what the holder shows; the figure stays alive (its model and plotly.js stay loaded)."""
        if list(self.holder.children) != [child]:
            self.holder.children = [child]

    def close(self) -> None:
        if self.figure is not None:
            self.figure.close()
        self.empty.close()
        super().close()
