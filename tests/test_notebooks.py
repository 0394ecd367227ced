"""Every notebook runs top to bottom in fast mode (short chains), as a user would run it."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {
        "forecasting.ipynb",
        "batch_fitting.ipynb",
        "benchmarking.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, shared, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    monkeypatch.setenv("BAYESCALE_FAST", "1")
    monkeypatch.setenv("BAYESCALE_DATA_DIR", str(shared))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    if path.stem == "batch_fitting":
        # a grid of panels says once how many show unconverged fits (fast mode: 18 warnings,
        # one per stamped panel, before)
        streams = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream"]
        err = "".join(o.text for o in streams if o.name == "stderr")
        out = "".join(o.text for o in streams if o.name == "stdout")
        assert "plotting a fit that" not in err, err[:2000]
        assert "panels show a fit that missed the convergence policy" in out


def test_import_in_a_notebook_without_ipywidgets_is_quiet():
    """NumPyro imports tqdm.auto, which in a notebook kernel without ipywidgets warned
    "IProgress not found. Please update jupyter and ipywidgets" at ``import bayescale``, in
    the first cell of every notebook. Run in a fresh process that looks like a kernel."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import importlib.util, sys, types, warnings
        import IPython
        class ZMQInteractiveShell: pass
        IPython.get_ipython = lambda: ZMQInteractiveShell()
        sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
        assert importlib.util.find_spec("ipywidgets") is None, "test needs no ipywidgets"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import tqdm.notebook
            assert tqdm.notebook.IProgress is None
            import bayescale
        print([str(w.message) for w in caught if "IProgress" in str(w.message)])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
