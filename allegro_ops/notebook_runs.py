"""Dated runs through papermill: the run notebook, executed into ``<home>/runs/``.

The only engine module that imports papermill (lazily, inside ``run_notebook``), so the engine
and the CLI work without the notebooks extra. The run notebook is built here (``build_notebook``)
and kept in the repository as notebooks/run_schedule.ipynb (``python -m allegro_ops.notebook_runs
notebooks/run_schedule.ipynb`` rewrites it; a test keeps the two equal).

An action the state rules refuse is the notebook's outcome (the report shows why), not a failure
of the notebook; any other error makes the notebook fail. Either way papermill saves the output
notebook first, so the evidence stays in runs/.
"""
from __future__ import annotations

import datetime as dt
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AllegroOpsError

if TYPE_CHECKING:
    import nbformat

__all__ = [
    "NotebookRun",
    "NotebookFailed",
    "check_installed",
    "build_notebook",
    "output_path",
    "run_notebook",
    "read_outcome",
    "render_html",
]

KERNEL_NAME = "python3"
_KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]  # no transport warning on every run; errors still show
OUTCOME_TAG = "outcome"
_PARAMETERS = '''\
# Parameters (papermill -p NAME VALUE)
home = None  # workspace folder; None: $ALLEGRO_OPS_HOME, else the current folder
client = None  # e.g. "acme"
schedule = None  # e.g. "daily-billing"
run_date = None  # YYYY-MM-DD
action = "process"  # process | reprocess | create | reset | recreate
actor = None  # who the audit log names; None: $ALLEGRO_OPS_ACTOR, else the OS user'''

_CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("markdown", "# Schedule run\n\nPerforms one action on a schedule's execution for a run date through the "
     "allegro-ops engine, then shows the outcome: status per job, errors by code, processed and errored work "
     "items per job, and the first errored work items. A refused action is shown as the outcome; any other "
     "error fails the notebook.", ()),
    ("code", _PARAMETERS, ("parameters",)),
    ("code", "import json\n\nfrom IPython.display import display\n\nfrom allegro_ops import Workspace, run_report\n\n"
     "ws = Workspace(home, actor=actor)\n"
     "outcome = run_report.perform(ws, client, schedule, run_date, action)\n"
     "summary = run_report.summary(ws, outcome)\n"
     "display({\"application/json\": summary, \"text/plain\": json.dumps(summary, indent=1)}, raw=True)\n"
     "print(f\"{action} {outcome.outcome}: {client}/{schedule} {run_date} is {summary['status']}\"\n"
     "      + (f\" ({outcome.reason})\" if outcome.reason else \"\"))", (OUTCOME_TAG,)),
    ("markdown", "## Status per job", ()),
    ("code", "jobs = run_report.jobs_frame(outcome.execution)\njobs", ()),
    ("markdown", "## Errors by code", ()),
    ("code", "run_report.errors_frame(ws, outcome.execution)", ()),
    ("markdown", "## Processed and errored work items per job", ()),
    ("code", "import plotly.graph_objects as go\nimport plotly.io as pio\n\n"
     "pio.renderers.default = \"plotly_mimetype\"  # small .ipynb; the HTML report inlines plotly.js\n"
     "fig = go.Figure([\n"
     "    go.Bar(name=\"processed\", x=jobs[\"job\"], y=jobs[\"processed\"], marker_color=\"#2e7d32\"),\n"
     "    go.Bar(name=\"error\", x=jobs[\"job\"], y=jobs[\"error\"], marker_color=\"#c62828\"),\n"
     "    go.Bar(name=\"pending\", x=jobs[\"job\"], y=jobs[\"pending\"], marker_color=\"#9e9e9e\"),\n"
     "])\n"
     "fig.update_layout(barmode=\"stack\", height=360, title=f\"{client}/{schedule} {run_date}\")\n"
     "fig.show()", ()),
    ("markdown", "## First errored work items", ()),
    ("code", "run_report.first_errors(ws, outcome.execution, limit=10)", ()),
]


class NotebookFailed(AllegroOpsError):
    """The run notebook raised; the output notebook is saved at ``path``."""

    def __init__(self, path: Path, error: str) -> None:
        self.path = path
        self.error = error
        super().__init__(f"run notebook failed: {error} (see {path})")


@dataclass(frozen=True)
class NotebookRun:
    path: Path
    outcome: dict[str, Any]
    html: Path | None = None


def check_installed(html: bool = False) -> None:
    """Raise a one-line error when the notebooks extra (papermill, nbformat, ipykernel; nbconvert
    and plotly for HTML) is missing, before anything is created or started."""
    import importlib.util

    needed = ["papermill", "nbformat", "ipykernel"] + (["nbconvert", "plotly"] if html else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise AllegroOpsError(f"dated runs need the notebooks extra ({', '.join(missing)} missing): "
                              "pip install 'allegro-ops[notebooks]'")


def build_notebook() -> nbformat.NotebookNode:
    """The run notebook, without outputs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source, tags) in enumerate(_CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"cell-{i}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def output_path(home: str | Path, client: str, schedule: str, run_date: dt.date, action: str,
                now: dt.datetime) -> Path:
    """A new file ``<home>/runs/<run_date>/<client>/<schedule>-<action>-<timestamp>.ipynb``,
    reserved on disk so that two runs in the same second never share it."""
    folder = Path(home) / "runs" / run_date.isoformat() / client
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        path = folder / f"{schedule}-{action}-{stamp}{'' if n == 1 else f'-{n}'}.ipynb"
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            continue
    raise AllegroOpsError(f"too many runs of {client}/{schedule} {run_date} at {stamp}")


def run_notebook(home: str | Path, client: str, schedule: str, run_date: dt.date, action: str, *,
                 now: dt.datetime, actor: str | None = None, html: bool = False,
                 kernel_name: str = KERNEL_NAME) -> NotebookRun:
    """Execute the run notebook with papermill into runs/; raises NotebookFailed when it raised."""
    import nbformat
    import papermill  # lazily: only dated runs need it
    from papermill.exceptions import PapermillExecutionError

    home = Path(home).resolve()
    path = output_path(home, client, schedule, run_date, action, now)
    parameters = {"home": str(home), "client": client, "schedule": schedule, "run_date": run_date.isoformat(),
                  "action": action, "actor": actor}
    try:
        papermill.execute_notebook(build_notebook(), str(path), parameters=parameters, kernel_name=kernel_name,
                                   progress_bar=False, cwd=str(home), extra_arguments=_KERNEL_ARGS,
                                   kernel_manager_class=_own_python_kernel_manager())
    except PapermillExecutionError as exc:
        raise NotebookFailed(path, f"{exc.ename}: {_one_line(exc.evalue)}") from None
    nb = nbformat.read(path, as_version=4)
    outcome = read_outcome(nb)
    if outcome is None:
        raise NotebookFailed(path, "the notebook recorded no outcome")
    return NotebookRun(path, outcome, render_html(path) if html else None)


def _own_python_kernel_manager() -> type:
    """A kernel manager whose ``python3`` is always ipykernel in this very interpreter: a user's
    kernelspec named python3 that points to another Python (without allegro_ops) is ignored."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class OwnPythonKernelManager(KernelManager):
        @default("kernel_spec_manager")
        def _only_the_native_kernel(self) -> KernelSpecManager:
            return KernelSpecManager(parent=self, kernel_dirs=[])

    return OwnPythonKernelManager


def read_outcome(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The JSON summary the outcome cell displayed (None when it did not run)."""
    for cell in nb.cells:
        if OUTCOME_TAG in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "application/json" in data:
                    return dict(data["application/json"])
    return None


def render_html(path: str | Path) -> Path:
    """The executed notebook as a self-contained HTML report next to it (no CDN: plotly.js is
    inlined once, require.js, MathJax and Mermaid are left out; code cells are hidden)."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    _inline_plotly(nb)
    loader = DictLoader({"allegro_offline.html.j2": (
        "{%- extends 'index.html.j2' -%}\n"
        "{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}\n"
        "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
        "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n")})
    exporter = HTMLExporter(template_name="lab", extra_loaders=[loader], template_file="allegro_offline.html.j2",
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    target = path.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def _inline_plotly(nb: nbformat.NotebookNode) -> None:
    """Give each plotly figure output an HTML rendering (plotly.js inline in the first one)."""
    try:
        import plotly.io as pio
    except ImportError:  # without plotly the report simply has no chart
        return
    first = True
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            fig = out.get("data", {}).get("application/vnd.plotly.v1+json")
            if fig is not None and "text/html" not in out["data"]:
                out["data"]["text/html"] = pio.to_html(dict(fig), include_plotlyjs=first, full_html=False)
                first = False


def _one_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    return " ".join(text.split())[:500]


if __name__ == "__main__":
    import nbformat

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks/run_schedule.ipynb")
    nbformat.write(build_notebook(), target)
    print(target)
