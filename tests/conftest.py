"""Shared test fixtures: strict JAX, paths to the shared real datasets, fast sampler settings."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# Start the backend now, with the device count of the environment: the in-process CLI tests set
# XLA_FLAGS (4 host devices), and in a pytest-xdist worker whose first test file is
# test_cli.py that would otherwise decide the devices, and with them the chain layout
# (chain_method="auto"), of every later fit in that worker.
jax.devices()

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """Import the script ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def call_cli(argv) -> tuple[int, str, str]:
    """``bayescale.cli.main(argv)`` in-process: (exit code, stdout, stderr); ``XLA_FLAGS``,
    which the CLI sets, is left as it was."""
    import contextlib
    import io

    from bayescale import cli

    saved = os.environ.get("XLA_FLAGS")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main([str(a) for a in argv])
    finally:
        if saved is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = saved
    return rc, out.getvalue(), err.getvalue()


def fake_run_batch(spec, config, *, keys, log_x, ref, log_loss, mask, devices=None, dtype=None):
    """``bayescale.infer.batch.run_batch`` without NUTS (monkeypatch it in): uniform draws in
    (0.1, 0.5) of every site, so fit_many's input handling and output run in milliseconds
    (the statuses are then some convergence failure, never ``invalid_input``)."""
    import numpy as np

    shape = (len(log_loss), config.num_chains, config.num_samples)
    rng = np.random.default_rng(0)
    draws = {
        "samples": {k: rng.uniform(0.1, 0.5, shape) for k in spec.site_names},
        "diverging": np.zeros(shape, dtype=bool),
        "energy": rng.standard_normal(shape),
        "num_steps": np.full(shape, 7, dtype=np.int32),
        "accept_prob": np.full(shape, 0.9),
        "potential_energy": rng.standard_normal(shape),
        "step_size": np.full(shape[:2], 0.5),
        "warmup_num_steps": np.full(shape[:2], 7),
        "warmup_divergences": np.zeros(shape[:2], dtype=np.int32),
    }
    return draws, {"compile_s": 0.0, "sampling_s": 0.0}


@pytest.fixture
def fake_nuts(monkeypatch):
    """fit_many (and everything built on it) without NUTS: :func:`fake_run_batch` in place of
    the batch program, for tests of input handling and output."""
    import bayescale.infer.batch as engine

    monkeypatch.setattr(engine, "run_batch", fake_run_batch)


#: Sampler settings for tests: 4 chains x (400 + 600) draws keeps bulk ESS well above 400 on the
#: shipped laws while a fit costs well under a second once compiled. One settings tuple means one
#: compiled program per (law, data shape) for the whole suite.
FAST = {"num_warmup": 400, "num_samples": 600}


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared datasets are missing: expected {SHARED} beside the checkout")
    return SHARED


class CompileCounter(logging.Handler):
    """Counts XLA compilations reported by ``jax.log_compiles``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "Compiling" in msg or "compiling" in msg:
            self.messages.append(msg)


@pytest.fixture
def count_compiles():
    """Context: ``with count_compiles() as c: ...; assert not c.messages``."""
    from contextlib import contextmanager

    @contextmanager
    def counter():
        handler = CompileCounter()
        logger = logging.getLogger("jax")
        old = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            with jax.log_compiles(True):
                yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old)

    return counter


@pytest.fixture
def with_rhat():
    """``with_rhat(batch, {curve_index: r_hat})``: the batch with the R-hat of ``alpha`` of
    those curves replaced and their status recomputed (to test the convergence gate of
    ``BatchFit.predict`` and ``bayescale fit-many`` on otherwise real fits)."""
    import dataclasses

    import numpy as np

    from bayescale.batch import _status

    def replace(batch, rhat):
        diag = {k: np.array(v) for k, v in batch.diagnostics.items()}
        col = list(batch.spec.site_names).index("alpha")
        for i, value in rhat.items():
            diag["r_hat"][i, col] = value
        return dataclasses.replace(batch, diagnostics=diag, status=_status(diag, batch.fitted))

    return replace
