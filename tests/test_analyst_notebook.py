"""notebooks/errored_payloads.ipynb runs end to end as a papermill report on a workspace with history."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from analyst_history import history_copy

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "errored_payloads.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> nbformat.NotebookNode:
    """The notebook executed for acme over the whole history, with Jupyter's state in a temporary HOME."""
    papermill = pytest.importorskip("papermill")
    home = history_copy(tmp_path_factory)
    jupyter = tmp_path_factory.mktemp("jupyter-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(jupyter))
        for name, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                          ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
            mp.setenv(name, str(jupyter / sub))
        mp.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]))
        out = jupyter / "report.ipynb"
        papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                                   parameters={"home": str(home), "client": "acme"}, cwd=str(jupyter))
    return nbformat.read(out, as_version=4)


def cell(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    [found] = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return found


def text_of(c: nbformat.NotebookNode) -> str:
    parts = []
    for o in c.outputs:
        parts.append(o.get("text", ""))
        parts.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def test_notebook_is_stored_without_outputs_and_with_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    source = cell(nb, "parameters").source
    for name in ("home = None", "client = ", "date_from = ", "date_to = ", "error_code = None"):
        assert name in source


def test_report_runs_every_cell_without_error(report):
    errors = [o for c in report.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert "injected-parameters" in {t for c in report.cells for t in c.metadata.get("tags", [])}


def test_report_lists_the_accounts_to_fix_for_the_chosen_client(report):
    accounts = text_of(cell(report, "accounts-to-fix"))
    assert "ACME-000044" in accounts and "ACME-000012" in accounts  # errored on two dates / on one
    assert "8 accounts" not in accounts and "5 accounts to fix" in accounts
    assert "GLOBEX" not in accounts


def test_report_draws_the_error_trend_and_the_payload_breakdown(report):
    for tag in ("error-trend", "error-by-job", "payload-breakdown"):
        assert any(PLOTLY in o.get("data", {}) for o in cell(report, tag).outputs), tag
    trend = next(o.data[PLOTLY] for o in cell(report, "error-trend").outputs if PLOTLY in o.get("data", {}))
    assert {t["name"] for t in trend["data"]} == {"INVALID_EMAIL", "RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"}


def test_report_names_the_payload_value_behind_a_code(report):
    causes = text_of(cell(report, "cause-candidates"))
    assert "tax_region" in causes and "PR-SJ" in causes
    assert "no payload value stands out" in causes  # INVALID_EMAIL: the e-mail is not in the payload
    examples = text_of(cell(report, "examples"))
    assert "ACME-000044" in examples and "invoice_id" in examples
