"""The benchmark suite: ``bayescale bench`` / ``python -m benchmarks``.

One entry point measures the standard suite, each bayescale method side by side with its
baseline in the same process, and writes machine-readable results:

``single_fit``
    One 4-chain NUTS fit of the Chinchilla law (Hoffmann et al. 2022) on Epoch's 240 digitised
    runs (Besiroglu et al. 2024): :func:`bayescale.fit` (compile and sampling time apart, ESS
    per second) against the textbook NumPyro ``MCMC(NUTS)`` on the *same* NumPyro model and
    settings (``chain_method`` ``"vectorized"``, ``"sequential"``, and ``"parallel"`` with 4+
    devices) and against ``emcee`` (Foreman-Mackey et al. 2013) sampling the *same* log density
    (the model's potential energy in unconstrained space, vectorised over walkers).
``map_fit``
    The estimator of Hoffmann et al. 2022 (Approach 3) as replicated by Besiroglu et al. 2024:
    Huber loss from the 4,500-start grid. :func:`bayescale.infer.optimize.optimize` with
    ``starts="hoffmann"`` (one compiled JAX program) and its default (variable projection)
    against SciPy's L-BFGS-B loop over the starts (:func:`scipy_loop`, analytic gradient).
``batch``
    :func:`bayescale.fit_many` on K = 10 ... 10,000 synthetic ``power_n`` curves (100,000 on a
    GPU) against (a) a loop of single NumPyro ``MCMC(NUTS)`` fits and (b) a loop of
    ``scipy.optimize.curve_fit`` point fits; the loops are timed on a sample of curves and
    reported per curve. *Sampler overhead*: one batched log-density-gradient evaluation is timed
    on each chunk's padded arrays (same curves, same shapes, same devices), and the sampling
    time is divided by (gradient evaluations x that time), with the gradient evaluations
    counted from NUTS ``num_steps`` (warm-up and draws) of the real curves: 1 would be an engine
    that costs nothing beyond the model's own gradients on perfectly filled vector lanes.
``sbc``
    Simulation-based calibration (Talts et al. 2018) through ``bayescale.check.sbc`` when the
    installed bayescale has it (recorded as ``"skipped: not available"`` otherwise), timed
    against the NumPyro loop's per-curve time measured in the batch section.

Every section records ``status`` (``ok``, ``skipped: <why>``, ``error: <why>``), and the
document records the device, platform, versions (python, jax, jaxlib, numpyro, bayescale, git
commit), dtype and date. :data:`SCHEMA` is its JSON schema; :func:`validate` checks a document
(with the ``jsonschema`` package). Timings on a busy machine are indicative; the ratios are
measured side by side in one run.

Examples
--------
.. code-block:: console

    $ bayescale bench --quick --out bench-quick
    $ python -m benchmarks --device gpu --sizes 10 100 1000 10000 100000 --out results-gpu

>>> from bayescale import bench
>>> doc = bench.run_suite(quick=True)        # doctest: +SKIP
>>> bench.validate(doc)                      # doctest: +SKIP
>>> print(bench.to_markdown(doc))            # doctest: +SKIP

References
----------
Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556;
Besiroglu, Erdil, Barnett & You 2024, "Chinchilla Scaling: A replication attempt",
arXiv:2404.10102; Hoffman & Gelman 2014, "The No-U-Turn Sampler", JMLR 15;
Foreman-Mackey, Hogg, Lang & Goodman 2013, "emcee: The MCMC Hammer", PASP 125;
Talts, Betancourt, Simpson, Vehtari & Gelman 2018, "Validating Bayesian Inference Algorithms
with Simulation-Based Calibration", arXiv:1804.06788.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SIZES",
    "GPU_SIZES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SECTIONS",
    "add_arguments",
    "bench_batch",
    "bench_map",
    "bench_sbc",
    "bench_single",
    "curve_fit_loop",
    "environment",
    "huber_objective_and_grad",
    "load_results",
    "main",
    "numpyro_loop",
    "plot_results",
    "plot_time_per_curve",
    "run_suite",
    "scipy_loop",
    "to_markdown",
    "validate",
    "write_outputs",
]

SCHEMA_VERSION = 1
#: The suite's sections, in the order they run.
SECTIONS = ("single", "map", "batch", "sbc")
#: Batch sizes K of the full suite on CPU, and on a GPU.
DEFAULT_SIZES = (10, 100, 1000, 10000)
GPU_SIZES = (10, 100, 1000, 10000, 100000)
#: Huber delta of the Hoffmann et al. 2022 / Besiroglu et al. 2024 objective.
HUBER_DELTA = 1e-3
_MAP_NAMES = ("E", "A", "B", "alpha", "beta")

#: Settings of the full suite and of ``--quick`` (tiny sizes: a CI smoke run of every code path
#: in about 2 minutes on 2 CPU cores; its numbers are not benchmarks).
FULL = {
    "single": {
        "num_warmup": 500,
        "num_samples": 1000,
        "numpyro_methods": ("vectorized", "sequential"),
        "emcee_walkers": 32,
        "emcee_burn": 1000,
        "emcee_steps": 4000,
    },
    "map": {"scipy_stride": 1, "repeats": 3, "default_repeats": 20},
    "batch": {
        "num_warmup": 500,
        "num_samples": 1000,
        "num_chains": 2,
        "batch_size": 1024,
        "loop_sample": 12,
        "curve_fit_sample": 200,
    },
    "sbc": {"num_simulations": 200},
}
QUICK = {
    "single": {
        "num_warmup": 100,
        "num_samples": 100,
        "numpyro_methods": ("vectorized",),
        "emcee_walkers": 32,
        "emcee_burn": 100,
        "emcee_steps": 300,
    },
    "map": {"scipy_stride": 20, "repeats": 1, "default_repeats": 2, "lm_grid": False},
    "batch": {
        "num_warmup": 100,
        "num_samples": 100,
        "num_chains": 2,
        "batch_size": 16,
        "loop_sample": 1,
        "curve_fit_sample": 20,
    },
    "sbc": {"num_simulations": 16},
}
QUICK_SIZES = (16, 32)

# ============================================================================ the JSON schema
_NUM = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_POS = {"type": "number", "exclusiveMinimum": 0}
_NUM_OR_NULL = {"type": ["number", "null"]}
_NONNEG_OR_NULL = {"type": ["number", "null"], "minimum": 0}
_STR_OR_NULL = {"type": ["string", "null"]}
_STATUS = {"type": "string", "pattern": "^(ok|skipped: .+|error: .+)$"}


def _section(rows: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A section: a status, and when the status is ``ok`` at least one row of the given shape."""
    return {
        "type": "object",
        "required": ["status", "rows"],
        "properties": {"status": _STATUS, "rows": {"type": "array", "items": rows}, **extra},
        "if": {"properties": {"status": {"const": "ok"}}},
        "then": {"properties": {"rows": {"minItems": 1}}},
    }


_SINGLE_ROW = {
    "type": "object",
    "required": [
        "method",
        "status",
        "compile_s",
        "sampling_s",
        "min_ess",
        "ess_per_s",
        "ess_per_s_ratio",
    ],
    "properties": {
        "method": {"type": "string", "minLength": 1},
        "status": _STATUS,
        "compile_s": _NONNEG_OR_NULL,
        "sampling_s": _NONNEG_OR_NULL,
        "min_ess": _NONNEG_OR_NULL,
        "ess_per_s": _NONNEG_OR_NULL,
        "ess_per_s_ratio": _NONNEG_OR_NULL,
        "sampling_ratio": _NONNEG_OR_NULL,
    },
}
_MAP_ROW = {
    "type": "object",
    "required": ["method", "compile_s", "run_s", "speedup_vs_scipy", "value", "same_optimum"],
    "properties": {
        "method": {"type": "string", "minLength": 1},
        "compile_s": _NONNEG,
        "run_s": _POS,
        "cpu_s": _NONNEG_OR_NULL,
        "speedup_vs_scipy": _POS,
        "value": _NUM,
        "same_optimum": {"type": "boolean"},
        "params": {
            "type": "object",
            "required": list(_MAP_NAMES),
            "additionalProperties": _NUM,
        },
    },
}
_BATCH_ROW = {
    "type": "object",
    "required": [
        "K",
        "compile_s",
        "sampling_s",
        "wall_s",
        "time_per_curve_s",
        "curves_per_s",
        "median_ess",
        "ess_per_s",
        "ok_fraction",
        "numpyro_loop_time_per_curve_s",
        "curve_fit_loop_time_per_curve_s",
        "speedup_vs_numpyro_loop",
        "speedup_vs_curve_fit_loop",
        "gradient_evaluations",
        "gradient_s",
        "sampler_overhead",
    ],
    "properties": {
        "K": {"type": "integer", "minimum": 1},
        "compile_s": _NONNEG,
        "sampling_s": _POS,
        "wall_s": _POS,
        "time_per_curve_s": _POS,
        "curves_per_s": _POS,
        "median_ess": _NONNEG_OR_NULL,
        "ess_per_s": _NONNEG_OR_NULL,
        "ok_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "numpyro_loop_time_per_curve_s": _NONNEG_OR_NULL,
        "curve_fit_loop_time_per_curve_s": _NONNEG_OR_NULL,
        "speedup_vs_numpyro_loop": _NONNEG_OR_NULL,
        "ess_per_s_ratio_vs_numpyro_loop": _NONNEG_OR_NULL,
        "speedup_vs_curve_fit_loop": _NONNEG_OR_NULL,
        "num_chunks": {"type": "integer", "minimum": 1},
        "gradient_evaluations": {"type": "number", "minimum": 1},
        "gradient_s": _POS,
        "sampler_overhead": _POS,
        "lane_utilisation": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    },
}
_LOOP = {
    "type": "object",
    "required": ["status", "time_per_curve_s", "timed_curves"],
    "properties": {
        "status": _STATUS,
        "time_per_curve_s": _NONNEG_OR_NULL,
        "timed_curves": {"type": "integer", "minimum": 0},
    },
}

#: JSON schema (draft 2020-12) of a results document written by :func:`run_suite`.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "bayescale benchmark results",
    "type": "object",
    "required": [
        "schema_version",
        "suite",
        "quick",
        "environment",
        "settings",
        "single_fit",
        "map_fit",
        "batch",
        "sbc",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "suite": {"const": "bayescale-bench"},
        "quick": {"type": "boolean"},
        "total_s": _NONNEG,
        "environment": {
            "type": "object",
            "required": [
                "date",
                "device",
                "backend",
                "num_devices",
                "platform",
                "cpu_count",
                "python",
                "jax",
                "jaxlib",
                "numpyro",
                "bayescale",
                "git_commit",
                "dtype",
            ],
            "properties": {
                "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}"},
                "device": {"type": "string", "minLength": 1},
                "backend": {"enum": ["cpu", "gpu", "tpu"]},
                "num_devices": {"type": "integer", "minimum": 1},
                "platform": {"type": "string"},
                "cpu_count": {"type": ["integer", "null"], "minimum": 1},
                "python": {"type": "string", "pattern": r"^\d+\.\d+"},
                "jax": {"type": "string", "pattern": r"^\d+\.\d+"},
                "jaxlib": {"type": "string", "pattern": r"^\d+\.\d+"},
                "numpyro": {"type": "string", "pattern": r"^\d+\.\d+"},
                "bayescale": {"type": "string", "pattern": r"^\d+\.\d+"},
                "emcee": _STR_OR_NULL,
                "scipy": {"type": "string"},
                "git_commit": {"type": ["string", "null"], "pattern": "^[0-9a-f]{40}$"},
                "git_dirty": {"type": ["boolean", "null"]},
                "dtype": {"enum": ["float64", "float32"]},
                "xla_flags": {"type": "string"},
            },
        },
        "settings": {"type": "object"},
        "single_fit": _section(_SINGLE_ROW),
        "map_fit": _section(_MAP_ROW, same_optimum={"type": ["boolean", "null"]}),
        "batch": _section(_BATCH_ROW, numpyro_loop=_LOOP, curve_fit_loop=_LOOP),
        "sbc": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": _STATUS,
                "num_simulations": {"type": "integer", "minimum": 1},
                "wall_s": _POS,
                "passed": {"type": ["boolean", "null"]},
                "numpyro_loop_estimate_s": _NONNEG_OR_NULL,
                "speedup_vs_numpyro_loop_estimate": _NONNEG_OR_NULL,
            },
        },
    },
}


def validate(doc: Mapping[str, Any]) -> None:
    """Check a results document against :data:`SCHEMA`.

    Parameters
    ----------
    doc
        A document as written by :func:`run_suite` (or read back from ``results.json``).

    Raises
    ------
    jsonschema.ValidationError
        The first violation, naming the path in the document (a ``ValueError`` subclass is not
        guaranteed: catch ``jsonschema.ValidationError``).
    ImportError
        ``jsonschema`` is not installed (``pip install bayescale[bench]``).

    Examples
    --------
    >>> validate({"schema_version": 1})      # doctest: +SKIP
    Traceback (most recent call last):
    jsonschema.exceptions.ValidationError: 'suite' is a required property
    """
    import jsonschema

    jsonschema.Draft202012Validator(SCHEMA).validate(dict(doc))


# ============================================================================ environment
def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit_label() -> str | None:
    """Short ``HEAD`` of the checkout, ``+dirty`` with uncommitted changes to tracked files
    (None outside git): the code version stored with benchmark results."""
    commit = _git("rev-parse", "--short", "HEAD")
    if commit is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def sbc_variant_report(result: Any, seconds: float) -> str:
    """What the SBC scripts of unshipped variants print (``benchmarks/bnsl_variants.py``,
    ``benchmarks/datablations_variants.py``): time, the result, the convergence gate, the
    status counts and each fit's largest R-hat."""
    max_rhat = np.round(np.asarray(result.diagnostics["max_rhat"], float), 3)
    return "\n".join(
        [
            f"{seconds:.0f} s",
            str(result),
            f"gate: {result.gate()}",
            f"status: {result.status_counts()}",
            f"max R-hat per fit: {max_rhat}",
        ]
    )


def environment(dtype: str = "float64") -> dict[str, Any]:
    """Where and with what the benchmark runs: device, platform, versions, git commit, date.

    ``git_commit`` is the checkout's ``HEAD`` when bayescale runs from a git checkout (else
    ``None``), ``git_dirty`` whether it has uncommitted changes.

    Examples
    --------
    >>> env = environment()
    >>> env["backend"] in ("cpu", "gpu", "tpu") and env["dtype"] == "float64"
    True
    """
    import jax
    import numpyro
    import scipy

    import bayescale

    devices = jax.local_devices()
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    backend = jax.default_backend()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": getattr(devices[0], "device_kind", str(devices[0])) or str(devices[0]),
        "backend": "gpu" if backend in ("cuda", "rocm") else backend,
        "num_devices": len(devices),
        "devices": [str(d) for d in devices],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib") or jax.__version__,
        "numpyro": numpyro.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "emcee": _version("emcee"),
        "bayescale": bayescale.__version__,
        "git_commit": commit if commit and len(commit) == 40 else None,
        "git_dirty": None if status is None else bool(status),
        "dtype": dtype,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# ============================================================================ helpers
def _np_dtype(dtype: str):
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return np.float64 if dtype == "float64" else np.float32


def _x64(dtype: str):
    """JAX traces float32 programs with x64 off (NumPyro's NUTS mixes float64 constants into
    a float32 state under x64), as :mod:`bayescale.infer.batch` does."""
    import jax

    return jax.enable_x64(dtype != "float32")


def _min_ess(draws: Mapping[str, np.ndarray]) -> float:
    """Smallest bulk or tail ESS over sites of (chain, draw) arrays (ArviZ, Vehtari et al.)."""
    from . import _arviz_compat as azc

    bulk = azc.ess(draws, "bulk").values()
    tail = azc.ess(draws, "tail").values()
    return float(min(min(bulk), min(tail)))


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (b > 0) or not np.isfinite(a):
        return None
    return float(a / b)


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, float, Any]:
    """(first-call seconds, median wall and process-CPU seconds of ``repeats`` warm calls,
    result of the last call)."""
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    runs, cpus = [], []
    for _ in range(max(int(repeats), 1)):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        runs.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return first, _median(runs), _median(cpus), out


def _skipped(why: str) -> dict[str, Any]:
    return {"status": f"skipped: {why}", "rows": []}


def _error(exc: BaseException) -> str:
    return "error: " + " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[str]:
    """Run the SciPy baselines with one BLAS thread, their fastest form for these tiny problems
    (a multi-threaded OpenBLAS made L-BFGS-B ~50x slower per start on the loaded 2-core machine);
    JAX does not use BLAS. Yields what was done, recorded in the results."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pinned = os.environ.get("OPENBLAS_NUM_THREADS") == "1"
        yield "1 (OPENBLAS_NUM_THREADS=1)" if pinned else "library default (no threadpoolctl)"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "1 (threadpoolctl)"


def _epoch_data(data_dir: str | os.PathLike[str] | None):
    from .datasets import load

    return load("epoch-chinchilla", data_dir=data_dir, drop_highest_loss=5)


# ============================================================================ single fit
def bench_single(
    data: Any = None,
    *,
    law: str = "chinchilla",
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    numpyro_methods: Sequence[str] = ("vectorized", "sequential"),
    emcee_walkers: int = 32,
    emcee_burn: int = 1000,
    emcee_steps: int = 4000,
    dtype: str = "float64",
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Single fit: ``bayescale.fit`` vs NumPyro ``MCMC`` vs ``emcee``, side by side.

    ``bayescale.fit`` is timed on a fresh program (its compile cache is emptied first, so
    ``compile_s`` is a real compile; later fits in the same process compile once more) and then
    warm. NumPyro ``MCMC(NUTS(dense_mass=True,
    target_accept_prob=0.9))`` runs the *same* NumPyro model with the same settings, once cold
    (compile = cold - warm) and once warm, for each ``chain_method`` (plus ``"parallel"`` when
    there are at least ``num_chains`` devices). ``emcee``'s affine-invariant ensemble sampler
    (``emcee_walkers`` walkers from bayescale's dispersed initial points, ``emcee_burn`` burn-in
    steps then ``emcee_steps`` kept steps) samples the same log density: minus the model's
    potential energy in unconstrained space, jit-compiled and vectorised over walkers.

    ESS is the smallest bulk or tail ESS over sites (ArviZ; for emcee the walkers are its
    chains, and ``ess_autocorr`` beside it is emcee's own estimate from the integrated
    autocorrelation time). ``sampling_s`` includes warm-up (burn-in), so ``ess_per_s`` is ESS
    per second of a whole warm run. ``ess_per_s_ratio`` is bayescale's ESS/s over the row's
    (> 1: bayescale is ahead); ``sampling_ratio`` is the row's sampling time over bayescale's.

    Parameters
    ----------
    data
        A :class:`~bayescale.data.ScalingData` (default: Epoch's Chinchilla runs with the 5
        highest losses dropped, via :func:`bayescale.datasets.load` and ``data_dir``).
    law, num_warmup, num_samples, num_chains
        Model and NUTS settings shared by bayescale and NumPyro.
    numpyro_methods
        NumPyro ``chain_method`` values to time.
    emcee_walkers, emcee_burn, emcee_steps
        emcee ensemble size and run length (0 walkers: no emcee row).
    dtype
        ``"float64"`` or ``"float32"`` for every method.

    Returns
    -------
    dict
        ``{"status": "ok", "data": ..., "rows": [...]}``, one row per method.

    Examples
    --------
    >>> section = bench_single(num_warmup=200, num_samples=300)  # doctest: +SKIP
    >>> [r["method"] for r in section["rows"]]                    # doctest: +SKIP
    ['bayescale.fit', 'numpyro.MCMC[vectorized]', 'numpyro.MCMC[sequential]', 'emcee']
    """
    import jax

    import bayescale as bs
    from bayescale._fit import reference_point
    from bayescale.infer import nuts
    from bayescale.model import build_model

    np_dtype = _np_dtype(dtype)
    if data is None:
        data = _epoch_data(data_dir)
    spec = build_model(law)
    inputs = spec.law.inputs
    rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------- bayescale.fit
    kw = {
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "num_chains": num_chains,
        "retry": False,
        "dtype": dtype,
    }
    nuts._EXECUTABLES.clear()  # a real compile, not a cache hit from earlier in the process
    nuts._RUNNERS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = bs.fit(data, law=law, rng_key=0, **kw)
        start = time.perf_counter()
        fit = bs.fit(data, law=law, rng_key=1, **kw)
        warm_call = time.perf_counter() - start
    sampling = float(fit.timing["sampling_s"])
    ess = _min_ess(fit.samples)
    rows.append(
        {
            "method": "bayescale.fit",
            "status": "ok",
            "compile_s": float(cold.timing["compile_s"]),
            "sampling_s": sampling,
            "min_ess": ess,
            "ess_per_s": ess / sampling,
            "warm_call_s": warm_call,
            "divergences": int(fit.convergence.divergences),
            "max_rhat": float(fit.convergence.max_rhat),
        }
    )

    # ------------------------------------------------------------- NumPyro MCMC, same model
    from numpyro.infer import MCMC, NUTS

    ref = reference_point(data, inputs)
    log_x = {k: np.asarray(v, np_dtype) for k, v in data.log_inputs().items() if k in inputs}
    ref_arr = {k: np.asarray(v, np_dtype) for k, v in ref.items()}
    log_loss = np.asarray(data.log_loss, np_dtype)

    def model():  # the same NumPyro model, data bound by closure as in a hand-written script
        spec(log_x, ref_arr, log_loss)

    methods = list(numpyro_methods)
    if jax.local_device_count() >= num_chains and "parallel" not in methods:
        methods.append("parallel")
    for method in methods:
        try:
            with _x64(dtype), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mcmc = MCMC(
                    NUTS(model, target_accept_prob=0.9, dense_mass=True),
                    num_warmup=num_warmup,
                    num_samples=num_samples,
                    num_chains=num_chains,
                    chain_method=method,
                    progress_bar=False,
                )
                start = time.perf_counter()
                mcmc.run(jax.random.PRNGKey(0))
                jax.block_until_ready(mcmc.get_samples())
                first = time.perf_counter() - start
                start = time.perf_counter()
                mcmc.run(jax.random.PRNGKey(1))
                jax.block_until_ready(mcmc.get_samples())
                warm = time.perf_counter() - start
            draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            ess = _min_ess(draws)
            rows.append(
                {
                    "method": f"numpyro.MCMC[{method}]",
                    "status": "ok",
                    "compile_s": max(first - warm, 0.0),
                    "sampling_s": warm,
                    "min_ess": ess,
                    "ess_per_s": ess / warm,
                }
            )
        except Exception as exc:
            rows.append(_failed_row(f"numpyro.MCMC[{method}]", exc))

    # ------------------------------------------------------------- emcee, same log density
    if emcee_walkers > 0:
        try:
            rows.append(
                _emcee_row(
                    spec, log_x, ref_arr, log_loss, emcee_walkers, emcee_burn, emcee_steps, dtype
                )
            )
        except ImportError:
            rows.append(_failed_row("emcee", None, "skipped: emcee is not installed"))
        except Exception as exc:
            rows.append(_failed_row("emcee", exc))

    base = rows[0]
    for r in rows:
        r["ess_per_s_ratio"] = _ratio(base["ess_per_s"], r["ess_per_s"])
        r["sampling_ratio"] = _ratio(r["sampling_s"], base["sampling_s"])
    return {
        "status": "ok",
        "data": f"{getattr(data, 'source', 'data')} ({len(data)} rows)",
        "law": law,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "emcee": {"walkers": emcee_walkers, "burn": emcee_burn, "steps": emcee_steps},
        "rows": rows,
    }


def _failed_row(method: str, exc: BaseException | None, status: str | None = None) -> dict:
    return {
        "method": method,
        "status": status or _error(exc),
        "compile_s": None,
        "sampling_s": None,
        "min_ess": None,
        "ess_per_s": None,
    }


def _emcee_row(spec, log_x, ref, log_loss, walkers, burn, steps, dtype) -> dict[str, Any]:
    import emcee
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import potential_energy

    from bayescale.infer.nuts import _transforms, dispersed_init

    np_dtype = _np_dtype(dtype)
    mask = np.ones(np.shape(log_loss), dtype=bool)
    with _x64(dtype):
        data = (
            {k: jnp.asarray(v) for k, v in log_x.items()},
            {k: jnp.asarray(v) for k, v in ref.items()},
            jnp.asarray(log_loss),
            jnp.asarray(mask),
        )
        init = dispersed_init(spec, data[1], jax.random.PRNGKey(0), walkers)
        init = {k: jnp.asarray(v, np_dtype) for k, v in init.items()}
        _, unravel = ravel_pytree({k: v[0] for k, v in init.items()})
        p0 = np.stack([np.asarray(init[k]) for k in spec.site_names], axis=-1)
        unravel_names = list(unravel(jnp.zeros(p0.shape[1], np_dtype)))
        if unravel_names != list(spec.site_names):  # ravel_pytree sorts keys
            order = [list(spec.site_names).index(k) for k in unravel_names]
            p0 = p0[:, order]

        def log_density(u):
            return -potential_energy(spec, data, {}, unravel(u))

        batched = jax.jit(jax.vmap(log_density))

        def log_prob(x):
            out = np.asarray(batched(np.asarray(x, np_dtype)), dtype=np.float64)
            return np.where(np.isfinite(out), out, -np.inf)

        start = time.perf_counter()
        log_prob(p0)
        compile_s = time.perf_counter() - start
        sampler = emcee.EnsembleSampler(walkers, p0.shape[1], log_prob, vectorize=True)
        start = time.perf_counter()
        sampler.run_mcmc(p0.astype(np.float64), burn + steps, progress=False)
        sampling = time.perf_counter() - start
        chain = sampler.get_chain(discard=burn)  # (steps, walkers, dim), unconstrained
        t = _transforms(spec, data[1])
        draws = {
            k: np.asarray(t[k](jnp.asarray(chain[:, :, i].T))) for i, k in enumerate(unravel_names)
        }
        tau = sampler.get_autocorr_time(discard=burn, tol=0)
    ess = _min_ess(draws)
    return {
        "method": "emcee",
        "status": "ok",
        "compile_s": compile_s,
        "sampling_s": sampling,
        "min_ess": ess,
        "ess_per_s": ess / sampling,
        "ess_autocorr": float(walkers * steps / np.max(tau)),
        "acceptance": float(np.mean(sampler.acceptance_fraction)),
        "log_density_evaluations": int(walkers * (burn + steps)),
    }


# ============================================================================ MAP fit
def huber_objective_and_grad(
    p: np.ndarray,
    log_N: np.ndarray,
    log_D: np.ndarray,
    log_loss: np.ndarray,
    delta: float = HUBER_DELTA,
) -> tuple[float, np.ndarray]:
    """Epoch's objective in ``(a, b, e, alpha, beta)`` with its analytic gradient (NumPy).

    ``sum_i huber_delta(logsumexp(a - alpha log N_i, b - beta log D_i, e) - log L_i)``
    (Besiroglu et al. 2024, replicating Hoffmann et al. 2022, Approach 3).

    Examples
    --------
    >>> f, g = huber_objective_and_grad(np.zeros(5), np.ones(3), np.ones(3), np.ones(3))
    >>> g.shape
    (5,)
    """
    a, b, e, al, be = p
    u = np.stack([a - al * log_N, b - be * log_D, np.full_like(log_N, e)])
    m = u.max(axis=0)
    w = np.exp(u - m)
    s = w.sum(axis=0)
    r = m + np.log(s) - log_loss
    ar = np.abs(r)
    f = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum()
    psi = np.clip(r, -delta, delta)
    q = w / s
    g = np.array([psi @ q[0], psi @ q[1], psi @ q[2], -(psi * q[0]) @ log_N, -(psi * q[1]) @ log_D])
    return float(f), g


def scipy_loop(
    starts: np.ndarray,
    log_N: np.ndarray,
    log_D: np.ndarray,
    log_loss: np.ndarray,
    gradient: str = "analytic",
    stats: dict | None = None,
) -> tuple[float, dict[str, float]]:
    """Epoch's loop: ``scipy.optimize.minimize(method="L-BFGS-B")`` from every start.

    Call it with one BLAS thread (``OPENBLAS_NUM_THREADS=1`` before NumPy starts, or
    ``threadpoolctl.threadpool_limits(1)``, as :func:`bench_map` does): a multi-threaded
    OpenBLAS makes each tiny L-BFGS-B step far slower.

    Parameters
    ----------
    starts
        (start, 5) array of ``(a, b, e, alpha, beta)``.
    gradient
        ``"analytic"`` (:func:`huber_objective_and_grad`; the fastest SciPy version) or
        ``"finite-difference"`` (what Epoch ran).
    stats
        When given, receives per-start ``values``, ``evaluations`` and ``iterations``.

    Returns
    -------
    value, params
        Lowest objective and its published parameters ``E, A, B, alpha, beta``.
    """
    from scipy.optimize import minimize

    from bayescale.infer.optimize import huber_objective_hoffmann

    best = None
    values, nfev, nit = [], [], []
    if gradient == "analytic":
        fun, jac = huber_objective_and_grad, True
    elif gradient == "finite-difference":

        def fun(p, *args):
            return huber_objective_hoffmann(p, *args, HUBER_DELTA)

        jac = None
    else:
        raise ValueError(f"gradient must be 'analytic' or 'finite-difference', got {gradient!r}")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x0 in starts:
            res = minimize(fun, x0, args=(log_N, log_D, log_loss), jac=jac, method="L-BFGS-B")
            values.append(float(res.fun))
            nfev.append(int(res.nfev))
            nit.append(int(res.nit))
            if best is None or res.fun < best.fun:
                best = res
    if stats is not None:
        stats.update(values=np.asarray(values), evaluations=np.asarray(nfev), iterations=nit)
    a, b, e, al, be = best.x
    params = {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": al, "beta": be}
    return float(best.fun), {k: float(v) for k, v in params.items()}


def bench_map(
    data: Any = None,
    *,
    scipy_stride: int = 1,
    repeats: int = 3,
    default_repeats: int = 20,
    lm_grid: bool = True,
    scipy_gradient: str = "analytic",
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The 4,500-start Hoffmann MAP (Huber) fit: SciPy loop vs bayescale, side by side.

    Rows: ``scipy`` (:func:`scipy_loop` on every ``scipy_stride``-th start, its time scaled to
    all 4,500 starts), ``grid`` (``optimize(data, starts="hoffmann")``: the same starts in one
    compiled program; also with ``solver="lm"`` when ``lm_grid`` and ``optimize`` has that
    option) and
    ``default`` (``optimize(data)``: variable projection). Compile time
    (first call minus warm run) and run time (median of warm repeats) apart;
    ``speedup_vs_scipy`` is SciPy's run time over the row's; ``same_optimum`` checks every
    method reaches the optimum (parameters within 0.1% of ``default``'s).

    Examples
    --------
    >>> section = bench_map(scipy_stride=50, repeats=1)   # doctest: +SKIP
    >>> section["rows"][1]["speedup_vs_scipy"] > 1        # doctest: +SKIP
    True
    """
    from bayescale.infer.optimize import hoffmann_starts, huber_objective_hoffmann, optimize

    from .datasets import BESIROGLU_2024

    if data is None:
        data = _epoch_data(data_dir)
    log_N, log_D, log_loss = np.log(data.N), np.log(data.D), np.log(data.loss)
    starts = hoffmann_starts()[["a", "b", "e", "alpha", "beta"]].to_numpy()
    sub = starts[:: max(int(scipy_stride), 1)]
    with _one_blas_thread() as blas_threads:
        start, cpu = time.perf_counter(), time.process_time()
        value, params = scipy_loop(sub, log_N, log_D, log_loss, scipy_gradient)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    rows = [
        {
            "method": f"scipy L-BFGS-B loop ({scipy_gradient} gradient)",
            "compile_s": 0.0,
            "run_s": elapsed / len(sub) * len(starts),
            "cpu_s": cpu / len(sub) * len(starts),
            "starts_run": len(sub),
            "seconds_per_start": elapsed / len(sub),
            "blas_threads": blas_threads,
            "value": value,
            "params": params,
        }
    ]
    methods = [("bayescale grid (4,500 starts)", {"starts": "hoffmann"}, repeats)]
    if lm_grid and "solver" in inspect.signature(optimize).parameters:
        methods.append(
            ("bayescale grid, Levenberg-Marquardt", {"starts": "hoffmann", "solver": "lm"}, repeats)
        )
    methods.append(("bayescale default (variable projection)", {}, default_repeats))
    for name, kwargs, reps in methods:

        def fn(kwargs=kwargs):
            return optimize(data, **kwargs)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first, run, cpu_s, fit = _timed(fn, reps)
        rows.append(
            {
                "method": name,
                "compile_s": max(first - run, 0.0),
                "run_s": run,
                "cpu_s": cpu_s,
                "value": float(fit.value),
                "params": {k: float(fit.params[k]) for k in _MAP_NAMES},
                "converged": bool(fit.converged),
            }
        )
    best = min(r["value"] for r in rows)
    ref = rows[-1]["params"]
    for r in rows:
        r["speedup_vs_scipy"] = rows[0]["run_s"] / r["run_s"]
        r["cpu_ratio_vs_scipy"] = _ratio(rows[0]["cpu_s"], r["cpu_s"])
        rel = max(abs(r["params"][k] / ref[k] - 1) for k in _MAP_NAMES)
        # SciPy's default stopping rule leaves it ~1e-6 relative above the minimum
        r["same_optimum"] = bool(rel < 1e-3 and r["value"] <= best * (1 + 1e-5))
    return {
        "status": "ok",
        "data": f"{getattr(data, 'source', 'data')} ({len(data)} rows)",
        "starts": len(starts),
        "scipy_stride": int(scipy_stride),
        "epoch_published_objective": float(
            huber_objective_hoffmann(BESIROGLU_2024, log_N, log_D, log_loss)
        ),
        "same_optimum": all(r["same_optimum"] for r in rows),
        "rows": rows,
    }


# ============================================================================ batch
def numpyro_loop(
    curves: Sequence[Any],
    *,
    law: str = "power_n",
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    pad_to: int = 64,
    dtype: str = "float64",
) -> dict[str, Any]:
    """A Python loop of single NumPyro ``MCMC(NUTS)`` fits, timed per curve.

    The *same* NumPyro model and settings as ``fit_many`` (dense mass, target 0.9), one
    ``MCMC`` object with ``jit_model_args=True`` and every curve padded to ``pad_to`` points
    with the model's mask, so the loop compiles once (its best case). The first curve pays the
    compile (``compile_s``) and is not timed; the others give ``time_per_curve_s`` (mean) and
    ``median_ess`` (median over curves of the smallest bulk ESS over sites).

    Examples
    --------
    >>> data, _ = bayescale.batch.synthetic_curves(3)                    # doctest: +SKIP
    >>> numpyro_loop(list(data.curves().values()))["time_per_curve_s"]   # doctest: +SKIP
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    from bayescale._fit import reference_point
    from bayescale.infer import batch as engine
    from bayescale.model import build_model

    np_dtype = _np_dtype(dtype)
    spec = build_model(law)
    inputs = spec.law.inputs
    if len(curves) < 2:
        raise ValueError(f"numpyro_loop needs at least 2 curves (1 compiles), got {len(curves)}")
    with _x64(dtype):
        mcmc = MCMC(
            NUTS(spec, target_accept_prob=0.9, dense_mass=True),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="sequential",
            progress_bar=False,
            jit_model_args=True,
        )

    def one(d, seed):
        ref = reference_point(d, inputs)
        log_x = {k: v for k, v in d.log_inputs().items() if k in inputs}
        xs, ys, mask = engine.pad_curves([log_x], [d.log_loss], pad_to, np_dtype)
        with _x64(dtype), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mcmc.run(
                jax.random.PRNGKey(seed),
                {k: v[0] for k, v in xs.items()},
                {k: np_dtype(v) for k, v in ref.items()},
                ys[0],
                mask[0],
            )
            draws = mcmc.get_samples(group_by_chain=True)
            jax.block_until_ready(draws)
        return {k: np.asarray(v) for k, v in draws.items()}

    start = time.perf_counter()
    one(curves[0], 0)
    compile_s = time.perf_counter() - start
    times, ess = [], []
    for i, d in enumerate(curves[1:]):
        start = time.perf_counter()
        draws = one(d, i + 1)
        times.append(time.perf_counter() - start)
        stacked = np.stack([draws[k] for k in spec.site_names])
        ess.append(float(engine.ess_bulk(stacked).min()))
    return {
        "status": "ok",
        "compile_s": compile_s,
        "time_per_curve_s": float(np.mean(times)),
        "median_ess": float(np.median(ess)),
        "timed_curves": len(times),
        "padded_to": pad_to,
        "settings": {
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "num_chains": num_chains,
            "max_tree_depth": 10,
            "dense_mass": True,
            "target_accept_prob": 0.9,
        },
    }


def _power_n(n, e, log_a, alpha):
    return e + np.exp(log_a - alpha * np.log(n))


def curve_fit_loop(curves: Sequence[Any]) -> dict[str, Any]:
    """A loop of ``scipy.optimize.curve_fit`` point fits of ``L = E + A N^-alpha``, per curve.

    No posterior: the cheapest thing a practitioner would run. Fits that fail to converge
    count in the time and in ``failures``. Runs with one BLAS thread (see ``scipy_loop``).

    Examples
    --------
    >>> data, _ = bayescale.batch.synthetic_curves(20)                  # doctest: +SKIP
    >>> curve_fit_loop(list(data.curves().values()))["time_per_curve_s"] < 0.1  # doctest: +SKIP
    True
    """
    from scipy.optimize import curve_fit

    failures = 0
    with warnings.catch_warnings(), np.errstate(all="ignore"), _one_blas_thread() as blas:
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        for d in curves:
            p0 = (0.5 * d.loss.min(), np.log(d.loss.max()) + 0.3 * np.log(d.N.min()), 0.3)
            try:
                curve_fit(_power_n, d.N, d.loss, p0=p0, maxfev=5000)
            except RuntimeError:
                failures += 1
        elapsed = time.perf_counter() - start
    return {
        "status": "ok",
        "time_per_curve_s": elapsed / len(curves),
        "timed_curves": len(curves),
        "failures": failures,
        "blas_threads": blas,
    }


@contextlib.contextmanager
def _recording_chunks() -> Iterator[list[dict[str, Any]]]:
    """Record every chunk ``fit_many`` runs (its padded arrays, devices, dtype, leapfrog steps
    and timing) by wrapping :func:`bayescale.infer.batch.run_batch`; results are unchanged."""
    from bayescale.infer import batch as engine

    original = engine.run_batch
    chunks: list[dict[str, Any]] = []

    def recording(spec, config, **kwargs):
        draws, timing = original(spec, config, **kwargs)
        keys = np.asarray(kwargs["keys"])
        # fit_many fills a short chunk with copies of its first curve (same key): not real
        copies = int(np.all(keys[1:] == keys[0], axis=tuple(range(1, keys.ndim))).sum())
        real = len(keys) - copies
        steps = np.asarray(draws["num_steps"], dtype=np.int64)  # (curve, chain, draw)
        chunks.append(
            {
                "spec": spec,
                "arrays": {k: kwargs[k] for k in ("log_x", "ref", "log_loss", "mask")},
                "keys": keys,
                "devices": tuple(kwargs.get("devices") or ()),
                "dtype": kwargs.get("dtype", np.float64),
                "size": len(keys),
                "real": real,
                "length": int(np.shape(kwargs["log_loss"])[1]),
                "steps": int(steps[:real].sum())
                + int(np.asarray(draws["warmup_num_steps"])[:real].sum()),
                "draw_steps": steps,
                "timing": dict(timing),
            }
        )
        return draws, timing

    engine.run_batch = recording
    try:
        yield chunks
    finally:
        engine.run_batch = original


_GRADIENTS: dict[tuple, Any] = {}


def _gradient_time(chunk: Mapping[str, Any], evaluations: int = 100, repeats: int = 5) -> float:
    """Seconds of one batched value-and-gradient of the potential energy over a chunk's
    padded curves (one chain per curve: the batch program's chains run one after another),
    on the chunk's devices.

    Timed as the sampler runs it: inside one compiled program, ``evaluations`` dependent
    evaluations in a ``lax.scan`` (each moves the point by a negligible step along its
    gradient, so none can be hoisted), divided by ``evaluations``; the fastest of ``repeats``
    (the cost floor: other processes only ever add time). A single jitted call would mostly
    time Python dispatch at small K."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import NamedSharding, PartitionSpec
    from numpyro.infer.util import potential_energy

    from bayescale.infer.nuts import dispersed_init

    spec = chunk["spec"]
    dtype = np.dtype(chunk["dtype"])
    name = "float32" if dtype == np.float32 else "float64"
    devices = chunk["devices"] or tuple(jax.local_devices())
    with _x64(name):
        arrays = jax.tree_util.tree_map(
            lambda a: np.asarray(a, dtype=bool if np.asarray(a).dtype == bool else dtype),
            chunk["arrays"],
        )
        keys = np.asarray(chunk["keys"])
        inits = jax.vmap(lambda k, r: dispersed_init(spec, r, k, 1))(
            jnp.asarray(keys), arrays["ref"]
        )
        inits = {k: np.asarray(v[:, 0], dtype=dtype) for k, v in inits.items()}
        cache_key = (spec.key, chunk["size"], chunk["length"], name, devices, evaluations)
        if cache_key not in _GRADIENTS:

            def value_and_grad(u, log_x, ref, log_loss, mask):
                def pe(z):
                    return potential_energy(spec, (log_x, ref, log_loss, mask), {}, z)

                return jax.value_and_grad(pe)(u)

            batched = jax.vmap(value_and_grad)

            def repeated(u, log_x, ref, log_loss, mask):
                def body(z, _):
                    value, grad = batched(z, log_x, ref, log_loss, mask)
                    z = jax.tree_util.tree_map(lambda a, g: a - 1e-12 * g, z, grad)
                    return z, value

                return lax.scan(body, u, None, length=evaluations)

            _GRADIENTS[cache_key] = jax.jit(repeated)
        fn = _GRADIENTS[cache_key]
        args = (inits, arrays["log_x"], arrays["ref"], arrays["log_loss"], arrays["mask"])
        if len(devices) > 1:
            mesh = jax.sharding.Mesh(np.asarray(devices), ("curve",))
            args = jax.device_put(args, NamedSharding(mesh, PartitionSpec("curve")))
        else:
            args = jax.device_put(args, devices[0])
        jax.block_until_ready(fn(*args))  # compile and warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - start)
    return min(times) / evaluations


def _lane_utilisation(chunks: Sequence[Mapping[str, Any]]) -> float | None:
    """Useful leapfrog steps over the steps the vector lanes ran (draw phase): each chunk's
    lanes advance together, so every iteration costs its deepest tree."""
    used = ran = 0
    for c in chunks:
        steps = c["draw_steps"]  # (lane, chain, draw)
        used += int(steps[: c["real"]].sum())
        # shard_map: the lanes of each device wait for that device's deepest tree only
        shards = steps.reshape(max(len(c["devices"]), 1), -1, *steps.shape[1:])
        ran += int(shards.max(axis=1).sum()) * shards.shape[1]
    return used / ran if ran else None


def bench_batch(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    law: str = "power_n",
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    batch_size: int = 1024,
    loop_sample: int = 12,
    curve_fit_sample: int = 200,
    dtype: str = "float64",
    devices: Sequence[Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Batch NUTS: ``fit_many`` on K synthetic curves vs a NumPyro loop and a curve_fit loop.

    For each K in ``sizes``: :func:`bayescale.fit_many` on ``synthetic_curves(K, seed=K)``
    (``power_n``, 20-60 points per curve, known parameters), compile and sampling apart, ESS
    (median over curves of the smallest bulk ESS over sites) and the share of curves with
    status ``ok``. The loops do not depend on K: :func:`numpyro_loop` is timed on
    ``loop_sample`` curves (+1 that compiles) and :func:`curve_fit_loop` on
    ``curve_fit_sample`` curves, once, and reported per curve beside every K.

    Sampler overhead per K: ``gradient_s`` is one batched value-and-gradient evaluation of the
    potential energy over the chunk's padded curves (for several chunks, the mean weighted by
    their gradient evaluations), ``gradient_evaluations`` the leapfrog steps (= gradient
    evaluations) of the real curves over warm-up and draws divided by the lanes of their chunk
    (the batched evaluations a perfectly filled engine would need), and
    ``sampler_overhead = sampling_s / sum over chunks(evaluations x gradient time)``.
    ``lane_utilisation`` (draw phase) says how much of that is lanes waiting for the deepest
    NUTS tree of their chunk.

    Examples
    --------
    >>> section = bench_batch([16], batch_size=16, num_warmup=200, num_samples=200,
    ...                       loop_sample=2, curve_fit_sample=20)    # doctest: +SKIP
    >>> section["rows"][0]["sampler_overhead"] > 1                   # doctest: +SKIP
    True
    """
    from bayescale.batch import fit_many, synthetic_curves

    say = progress or (lambda message: None)
    sizes = [int(k) for k in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive numbers of curves, got {sizes}")
    settings = {
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "num_chains": num_chains,
    }
    # The loops do not depend on K: time them once on a sample, per curve.
    say(f"batch: NumPyro loop on {loop_sample} curves (+1 compiling)")
    sample, _ = synthetic_curves(loop_sample + 1, seed=999)
    try:
        loop = numpyro_loop(list(sample.curves().values()), law=law, dtype=dtype, **settings)
    except Exception as exc:
        loop = {"status": _error(exc), "time_per_curve_s": None, "timed_curves": 0}
    say(f"batch: curve_fit loop on {curve_fit_sample} curves")
    cf_data, _ = synthetic_curves(curve_fit_sample, seed=998)
    cf = curve_fit_loop(list(cf_data.curves().values()))
    loop_t, cf_t = loop.get("time_per_curve_s"), cf["time_per_curve_s"]
    loop_ess_per_s = _ratio(loop.get("median_ess"), loop_t)

    rows = []
    for K in sizes:
        say(f"batch: fit_many on K = {K} curves")
        data, _ = synthetic_curves(K, seed=K)
        with _recording_chunks() as chunks, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            batch = fit_many(
                data,
                law,
                batch_size=batch_size,
                retry=False,
                progress=False,
                rng_key=0,
                dtype=dtype,
                devices=devices,
                **settings,
            )
            wall = time.perf_counter() - start
        compile_s = float(batch.timing["compile_s"])
        sampling_s = float(batch.timing["sampling_s"])
        run_s = wall - compile_s
        ess = float(np.nanmedian(batch.diagnostics["ess_bulk"].min(axis=1)))
        cps = K / run_s
        # sampler overhead
        evaluations = ideal = 0.0
        for c in chunks:
            per_lane = c["steps"] / c["size"]  # batched evaluations on perfectly filled lanes
            g = _gradient_time(c)
            c["gradient_s"] = g
            evaluations += per_lane
            ideal += per_lane * g
        rows.append(
            {
                "K": K,
                "compile_s": compile_s,
                "sampling_s": sampling_s,
                "wall_s": wall,
                "run_s": run_s,
                "time_per_curve_s": run_s / K,
                "curves_per_s": cps,
                "median_ess": ess,
                "ess_per_s": ess * cps,
                "ok_fraction": float(np.mean(batch.status == "ok")),
                "numpyro_loop_time_per_curve_s": loop_t,
                "curve_fit_loop_time_per_curve_s": cf_t,
                "speedup_vs_numpyro_loop": None if loop_t is None else cps * loop_t,
                "ess_per_s_ratio_vs_numpyro_loop": _ratio(ess * cps, loop_ess_per_s),
                "speedup_vs_curve_fit_loop": cps * cf_t,
                "num_chunks": int(batch.timing["num_chunks"]),
                "chunks": [
                    {"curves": c["real"], "lanes": c["size"], "length": c["length"]} for c in chunks
                ],
                "gradient_evaluations": evaluations,
                "gradient_s": ideal / evaluations,
                "sampler_overhead": sampling_s / ideal,
                "lane_utilisation": _lane_utilisation(chunks),
            }
        )
        say(
            f"batch: K = {K}: {run_s / K * 1e3:.1f} ms per curve, "
            f"{rows[-1]['speedup_vs_numpyro_loop'] or float('nan'):.1f}x the NumPyro loop, "
            f"overhead {rows[-1]['sampler_overhead']:.1f}x"
        )
    return {
        "status": "ok",
        "law": law,
        "data": "synthetic_curves(K, seed=K): power_n, 20-60 points per curve",
        "settings": {**settings, "batch_size": batch_size, "max_tree_depth": 5},
        "numpyro_loop": loop,
        "curve_fit_loop": cf,
        "rows": rows,
    }


# ============================================================================ SBC
def bench_sbc(
    num_simulations: int = 200,
    *,
    law: str = "power_n",
    fit_kwargs: Mapping[str, Any] | None = None,
    numpyro_time_per_curve_s: float | None = None,
) -> dict[str, Any]:
    """Simulation-based calibration through ``bayescale.check.sbc``, when available.

    Calls ``bayescale.check.sbc(law, design, num_simulations=..., fit_kwargs=...)`` on the
    law's default design (``check.sbc_design``) and records its wall time and summary table.
    The baseline is ``num_simulations`` times the NumPyro loop's per-curve time measured in the
    batch section with the same law and sampler settings (``numpyro_loop_estimate_s``: an
    estimate, not a run). Without ``check.sbc`` the section is ``"skipped: not available"``.
    """
    from bayescale import check

    sbc = getattr(check, "sbc", None)
    if sbc is None:
        return {"status": "skipped: not available"}
    design_fn = getattr(check, "sbc_design", None)
    design = design_fn(law) if design_fn is not None else None
    kwargs: dict[str, Any] = {"num_simulations": int(num_simulations)}
    if fit_kwargs and "fit_kwargs" in inspect.signature(sbc).parameters:
        kwargs["fit_kwargs"] = dict(fit_kwargs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sbc(law, design, **kwargs)
    wall = time.perf_counter() - start
    estimate = (
        None if numpyro_time_per_curve_s is None else num_simulations * numpyro_time_per_curve_s
    )
    passed = getattr(result, "passed", None)
    return {
        "status": "ok",
        "law": law,
        "num_simulations": int(num_simulations),
        "fit_kwargs": dict(kwargs.get("fit_kwargs", {})),
        "passed": None if passed is None else bool(passed),
        "wall_s": wall,
        "numpyro_loop_estimate_s": estimate,
        "speedup_vs_numpyro_loop_estimate": _ratio(estimate, wall),
        "result": _jsonable(_summarise(result)),
    }


def _summarise(result: Any) -> Any:
    import pandas as pd

    for attr in ("summary", "table"):
        value = getattr(result, attr, None)
        if callable(value):
            with contextlib.suppress(Exception):
                value = value()
        if value is not None and not callable(value):
            result = value
            break
    if isinstance(result, pd.DataFrame):
        return result.reset_index().to_dict(orient="records")
    if isinstance(result, pd.Series):
        return result.to_dict()
    if isinstance(result, Mapping):
        return {str(k): _summarise(v) for k, v in result.items() if not _is_big(v)}
    return result if _is_small(result) else repr(result)[:500]


def _is_big(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.size > 1000


def _is_small(v: Any) -> bool:
    return isinstance(v, int | float | str | bool | type(None) | np.generic) or (
        isinstance(v, np.ndarray) and v.size <= 1000
    )


def _jsonable(x: Any) -> Any:
    """NumPy scalars/arrays to Python, NaN/inf to None, tuples to lists, recursively."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    return x


# ============================================================================ the suite
def _configure_platform(device: str | None) -> None:
    """Select the JAX backend for ``--device`` (before JAX starts its backend if possible)."""
    import jax

    if device is None:
        return
    if device not in ("cpu", "gpu"):
        raise ValueError(f"--device must be 'cpu' or 'gpu', got {device!r}")
    with contextlib.suppress(Exception):
        jax.config.update("jax_platforms", "cpu" if device == "cpu" else "cuda,rocm")
    try:
        backend = jax.default_backend()
    except RuntimeError as exc:  # e.g. no CUDA plugin or no GPU
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--device {device}: JAX cannot start that backend ({first})") from None
    got = "gpu" if backend in ("cuda", "rocm", "gpu") else backend
    if got != device:
        raise ValueError(
            f"--device {device}: JAX runs on {backend!r} "
            f"(devices {[str(d) for d in jax.devices()]}); "
            + (
                "no GPU is visible to JAX (install jax[cuda12])"
                if device == "gpu"
                else "start a fresh process with JAX_PLATFORMS=cpu"
            )
        )


def run_suite(
    *,
    quick: bool = False,
    sections: Sequence[str] = SECTIONS,
    sizes: Sequence[int] | None = None,
    dtype: str = "float64",
    device: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = _say,
) -> dict[str, Any]:
    """Run the benchmark suite and return its results document (see :data:`SCHEMA`).

    Parameters
    ----------
    quick
        Tiny sizes (:data:`QUICK`): a smoke run of every code path in about 2 minutes on 2 CPU
        cores. Its numbers are not benchmarks.
    sections
        Which of ``"single"``, ``"map"``, ``"batch"``, ``"sbc"`` to run; the others are
        recorded as ``"skipped: not selected"``.
    sizes
        Batch sizes K (default :data:`DEFAULT_SIZES`, :data:`GPU_SIZES` on a GPU, ``(16, 32)``
        with ``quick``).
    dtype
        ``"float64"`` (default) or ``"float32"`` for every bayescale method and baseline that
        has the choice (SciPy runs in float64).
    device
        ``"cpu"``, ``"gpu"`` or ``None`` (JAX's default backend).
    data_dir
        Directory holding ``epoch-chinchilla/`` (else ``$BAYESCALE_DATA_DIR``, the cache or a
        download; see :func:`bayescale.datasets.load`).
    overrides
        Per-section settings replacing those of :data:`FULL` / :data:`QUICK`, e.g.
        ``{"batch": {"num_chains": 4}}``.
    progress
        Called with one-line progress messages (default: print to stderr).

    Notes
    -----
    JAX's persistent compilation cache is switched off for the process, so that the compile
    times are those of real compiles; JAX reads that switch at the process's first compile, so
    call this before anything else compiles (``bayescale bench`` does).

    Returns
    -------
    dict
        The document: ``environment``, ``settings`` and one entry per section. A section that
        raises is recorded as ``"error: ..."`` and the others still run.

    Examples
    --------
    >>> doc = run_suite(quick=True, sections=["map"])   # doctest: +SKIP
    >>> doc["map_fit"]["rows"][1]["speedup_vs_scipy"]   # doctest: +SKIP
    """
    say = progress or (lambda message: None)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    _np_dtype(dtype)
    _configure_platform(device)
    # Compile times must time compiles: with JAX's persistent compilation cache on
    # (JAX_COMPILATION_CACHE_DIR, common on shared GPU machines) they would time reads from
    # disk. JAX decides at a process's first compile whether to use it, so this holds for the
    # CLI and for any process that has compiled nothing yet.
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    env = environment(dtype)
    settings = copy.deepcopy(QUICK if quick else FULL)
    for name, values in (overrides or {}).items():
        if name not in settings:
            raise ValueError(f"overrides: unknown section {name!r}; choose from {list(settings)}")
        settings[name].update(values)
    if sizes is None:
        sizes = QUICK_SIZES if quick else (GPU_SIZES if env["backend"] == "gpu" else DEFAULT_SIZES)
    settings["batch"]["sizes"] = [int(k) for k in sizes]
    settings["sections"] = list(sections)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "suite": "bayescale-bench",
        "quick": bool(quick),
        "environment": env,
        "settings": settings,
    }
    say(
        f"{'quick ' if quick else ''}suite on {env['device']} ({env['backend']}, "
        f"{env['num_devices']} device(s)), {dtype}, bayescale {env['bayescale']}"
    )
    total = time.perf_counter()

    def section(key: str, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in sections:
            doc[key] = _skipped("not selected")
            return
        say(f"{name} ...")
        start = time.perf_counter()
        try:
            doc[key] = fn()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            doc[key] = {"status": _error(exc), "rows": []}
        doc[key]["section_s"] = time.perf_counter() - start
        say(f"{name}: {doc[key]['status']} ({doc[key]['section_s']:.0f} s)")

    s = settings
    section(
        "single_fit",
        "single",
        lambda: bench_single(data_dir=data_dir, dtype=dtype, **s["single"]),
    )
    section("map_fit", "map", lambda: bench_map(data_dir=data_dir, **s["map"]))
    batch_settings = {k: v for k, v in s["batch"].items() if k != "sizes"}
    section(
        "batch",
        "batch",
        lambda: bench_batch(s["batch"]["sizes"], dtype=dtype, progress=say, **batch_settings),
    )
    loop = doc["batch"].get("numpyro_loop", {}) if isinstance(doc["batch"], dict) else {}
    if "sbc" in sections:
        say("sbc ...")
        try:
            doc["sbc"] = bench_sbc(
                s["sbc"]["num_simulations"],
                # retry=False like the batch section, whose NumPyro loop time per curve is the
                # baseline: the same fits on both sides of the ratio.
                fit_kwargs={
                    **{k: s["batch"][k] for k in ("num_warmup", "num_samples", "num_chains")},
                    "retry": False,
                },
                numpyro_time_per_curve_s=loop.get("time_per_curve_s"),
            )
        except Exception as exc:
            doc["sbc"] = {"status": _error(exc)}
        say(f"sbc: {doc['sbc']['status']}")
    else:
        doc["sbc"] = {"status": "skipped: not selected"}
    doc["total_s"] = time.perf_counter() - total
    return _jsonable(doc)


# ============================================================================ outputs
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    head = "| " + " | ".join(label for _, label in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_fmt(r.get(key)) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def to_markdown(doc: Mapping[str, Any]) -> str:
    """The results document as markdown: environment line and one table per section.

    Examples
    --------
    >>> print(to_markdown(doc))   # doctest: +SKIP
    """
    env = doc["environment"]
    commit = (env.get("git_commit") or "unknown")[:10] + (
        " (dirty)" if env.get("git_dirty") else ""
    )
    out = [
        f"# bayescale benchmark{' (--quick: smoke run, not a benchmark)' if doc['quick'] else ''}",
        "",
        f"{env['date']} · {env['device']} ({env['backend']}, {env['num_devices']} device(s), "
        f"{env.get('cpu_count')} CPU cores) · {env['dtype']} · python {env['python']}, jax "
        f"{env['jax']}, numpyro {env['numpyro']}, emcee {env.get('emcee') or '–'}, bayescale "
        f"{env['bayescale']} @ {commit}",
    ]
    single = doc["single_fit"]
    out += ["", f"## Single fit — {single['status']}"]
    if single["rows"]:
        out += [
            "",
            f"{single.get('data')}, law {single.get('law')}, {single.get('num_chains')} chains x "
            f"({single.get('num_warmup')} warm-up + {single.get('num_samples')} draws); emcee "
            f"{single.get('emcee', {}).get('walkers')} walkers x "
            f"({single.get('emcee', {}).get('burn')} + {single.get('emcee', {}).get('steps')}) "
            "steps on the same log density. Ratio: bayescale's ESS/s over the row's.",
            "",
            _table(
                single["rows"],
                [
                    ("method", "method"),
                    ("compile_s", "compile s"),
                    ("sampling_s", "sampling s"),
                    ("min_ess", "min ESS"),
                    ("ess_per_s", "ESS/s"),
                    ("ess_per_s_ratio", "bayescale ESS/s ratio"),
                    ("status", "status"),
                ],
            ),
        ]
    mapfit = doc["map_fit"]
    out += ["", f"## Hoffmann MAP fit (4,500 starts) — {mapfit['status']}"]
    if mapfit["rows"]:
        out += [
            "",
            f"{mapfit.get('data')}; SciPy measured on "
            + (
                "every start"
                if mapfit.get("scipy_stride") == 1
                else f"every {mapfit.get('scipy_stride')}th start and scaled to all starts"
            )
            + ". Speed-up: SciPy's run time over the row's.",
            "",
            _table(
                mapfit["rows"],
                [
                    ("method", "method"),
                    ("compile_s", "compile s"),
                    ("run_s", "run s"),
                    ("speedup_vs_scipy", "speed-up vs SciPy"),
                    ("value", "objective"),
                    ("same_optimum", "same optimum"),
                ],
            ),
        ]
    batch = doc["batch"]
    out += ["", f"## Batch NUTS (fit_many) — {batch['status']}"]
    if batch["rows"]:
        st = batch.get("settings", {})
        loop = batch.get("numpyro_loop", {})
        cf = batch.get("curve_fit_loop", {})
        out += [
            "",
            f"{batch.get('data')}; {st.get('num_chains')} chains x ({st.get('num_warmup')} + "
            f"{st.get('num_samples')}) per curve, chunks of {st.get('batch_size')}. NumPyro loop: "
            f"{_fmt(loop.get('time_per_curve_s'))} s per curve ({loop.get('timed_curves')} "
            f"timed curves, {loop.get('status')}); curve_fit loop: "
            f"{_fmt((cf.get('time_per_curve_s') or 0) * 1e3)} ms per curve "
            f"({cf.get('timed_curves')} curves). Time per curve excludes compilation. Overhead: "
            "sampling time / (gradient evaluations x one batched gradient); lanes: share of "
            "vector lanes doing useful leapfrog steps.",
            "",
            _table(
                batch["rows"],
                [
                    ("K", "K"),
                    ("compile_s", "compile s"),
                    ("run_s", "run s"),
                    ("time_per_curve_s", "s per curve"),
                    ("ess_per_s", "ESS/s"),
                    ("ok_fraction", "ok"),
                    ("speedup_vs_numpyro_loop", "vs NumPyro loop"),
                    ("ess_per_s_ratio_vs_numpyro_loop", "ESS/s vs NumPyro"),
                    ("speedup_vs_curve_fit_loop", "vs curve_fit loop"),
                    ("gradient_s", "gradient s"),
                    ("sampler_overhead", "overhead"),
                    ("lane_utilisation", "lanes"),
                ],
            ),
        ]
    sbc = doc["sbc"]
    out += ["", f"## SBC — {sbc['status']}"]
    if sbc["status"] == "ok":
        out += [
            "",
            f"{sbc.get('num_simulations')} simulations of {sbc.get('law')} "
            f"({sbc.get('fit_kwargs')}): {_fmt(sbc.get('wall_s'))} s, passed: "
            f"{_fmt(sbc.get('passed'))}; a NumPyro loop of the same fits would take about "
            f"{_fmt(sbc.get('numpyro_loop_estimate_s'))} s "
            f"({_fmt(sbc.get('speedup_vs_numpyro_loop_estimate'))}x, estimated from the batch "
            "section's loop time per curve).",
        ]
        table = sbc.get("result")
        if isinstance(table, list) and table and isinstance(table[0], dict):
            keys = [k for k in ("quantity", "p_value", "cov50", "cov90") if k in table[0]]
            if keys:
                out += ["", _table(table, [(k, k) for k in keys])]
    return "\n".join(out) + "\n"


def _label(doc: Mapping[str, Any]) -> str:
    env = doc["environment"]
    device = env["device"]
    if device.lower() == env["backend"]:  # CPUs report their kind as "cpu"
        device = f"{env.get('cpu_count') or '?'} cores"
    return f"{env['backend']}, {device}" + (" (quick)" if doc.get("quick") else "")


def _plain_log_ticks(axis, values=None) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    if values is not None:
        axis.set_major_locator(FixedLocator(sorted(set(values))))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(fmt)


def plot_time_per_curve(docs: Mapping[str, Any] | Sequence[Mapping[str, Any]], ax=None):
    """Seconds per curve against batch size K: fit_many (with and without compile), the NumPyro
    loop and the curve_fit loop, for one or several results documents (CPU, GPU, ...).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_time_per_curve(load_results("benchmarks/results"))   # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if isinstance(docs, Mapping):
        docs = [docs]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    markers = "os^vD"
    for i, doc in enumerate(docs):
        rows = doc["batch"]["rows"]
        if not rows:
            continue
        label = _label(doc)
        K = np.array([r["K"] for r in rows], dtype=float)
        color = f"C{i}"
        m = markers[i % len(markers)]
        ax.plot(
            K,
            [r["time_per_curve_s"] for r in rows],
            f"-{m}",
            color=color,
            label=f"fit_many, {label}",
        )
        ax.plot(
            K,
            [r["wall_s"] / r["K"] for r in rows],
            f":{m}",
            color=color,
            alpha=0.6,
            label=f"fit_many incl. compile, {label}",
        )
        for key, style, name in (
            ("numpyro_loop_time_per_curve_s", "--", "NumPyro loop"),
            ("curve_fit_loop_time_per_curve_s", "-.", "curve_fit loop (no posterior)"),
        ):
            values = [r.get(key) for r in rows]
            if all(v is not None for v in values):
                ax.plot(K, values, style, color=color, alpha=0.8, label=f"{name}, {label}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="curves K",
        ylabel="seconds per curve",
        title="Batch fitting: time per curve",
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    sizes = [r["K"] for doc in docs for r in doc["batch"]["rows"]]
    if sizes:
        _plain_log_ticks(ax.xaxis, sizes)
    return ax


def plot_results(doc: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the suite's figures as PNG files: ``batch_time_per_curve.png``,
    ``batch_overhead.png``, ``single_fit.png``, ``map_fit.png`` (those with data)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []

    def save(fig, name):
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(out / name)

    if doc["batch"]["rows"]:
        ax = plot_time_per_curve(doc)
        save(ax.figure, "batch_time_per_curve.png")
        rows = doc["batch"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        K = [r["K"] for r in rows]
        ax.plot(K, [r["sampler_overhead"] for r in rows], "-o", label="sampling / gradient work")
        util = [r.get("lane_utilisation") for r in rows]
        if all(u is not None for u in util):
            ax.plot(K, [1 / u for u in util], "--s", label="1 / lane utilisation")
        ax.axhline(1, color="grey", lw=0.8)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="curves K",
            ylabel="x the gradient cost",
            title="Sampler overhead of fit_many",
        )
        _plain_log_ticks(ax.xaxis, K)
        ax.legend(fontsize=8)
        save(fig, "batch_overhead.png")
    for key, metric, label, name in (
        ("single_fit", "ess_per_s", "ESS per second (higher is better)", "single_fit.png"),
        ("map_fit", "run_s", "run time, s (lower is better)", "map_fit.png"),
    ):
        rows = [r for r in doc[key]["rows"] if r.get(metric)]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
        ax.barh([r["method"] for r in rows], [r[metric] for r in rows], color="C0")
        ax.set(xscale="log", xlabel=label, title=f"{key.replace('_', ' ')} ({_label(doc)})")
        ax.invert_yaxis()
        save(fig, name)
    return written


def write_outputs(doc: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``results.json`` (validated against :data:`SCHEMA` when ``jsonschema`` is
    installed), ``results.md`` and the PNG figures to ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        validate(doc)
    except ImportError:
        _say("jsonschema is not installed: results.json written without validation")
    path = out / "results.json"
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    md = out / "results.md"
    md.write_text(to_markdown(doc))
    return [path, md, *plot_results(doc, out)]


def load_results(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[dict[str, Any]]:
    """Read results documents (files, or every ``*.json`` of a directory) that follow
    :data:`SCHEMA`; other JSON files (older per-script results) are skipped.

    Examples
    --------
    >>> docs = load_results("benchmarks/results")   # doctest: +SKIP
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    docs = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("suite") != "bayescale-bench":
            continue
        validate(doc)
        doc["path"] = str(f)
        docs.append(doc)
    return docs


# ============================================================================ command line
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the suite's options to ``parser`` (used by ``bayescale bench`` and
    ``python -m benchmarks``)."""
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a ~2 minute smoke run (CI)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "gpu"), help="JAX backend (default: JAX's default)"
    )
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="default float64"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="K",
        help=f"batch sizes K (default {' '.join(map(str, DEFAULT_SIZES))}; "
        f"{' '.join(map(str, QUICK_SIZES))} with --quick; up to {GPU_SIZES[-1]:,} on a GPU)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"sections to run (default all: {' '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--out", default="bench-results", help="output directory (default bench-results)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory with epoch-chinchilla/ (default: $BAYESCALE_DATA_DIR, cache, download)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="host CPU devices (XLA flag; default min(4, cores)); ignored once JAX started",
    )
    return parser


def _configure_devices(count: int | None) -> None:
    """Ask XLA for ``count`` host CPU devices (default ``min(4, cores)`` unless ``XLA_FLAGS``
    already says); effective only before JAX starts its backend."""
    import re

    flag = "xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "")
    if count is None:
        if flag in flags:
            return
        count = min(4, os.cpu_count() or 1)
    flags = re.sub(rf"\s*--{flag}=\d+", "", flags)
    os.environ["XLA_FLAGS"] = f"{flags} --{flag}={int(count)}".strip()


def run_from_args(args: argparse.Namespace) -> int:
    """Run the suite with parsed :func:`add_arguments` options; print the markdown table."""
    _configure_devices(args.devices)
    doc = run_suite(
        quick=args.quick,
        sections=args.only,
        sizes=args.sizes,
        dtype=args.dtype,
        device=args.device,
        data_dir=args.data_dir,
    )
    written = write_outputs(doc, args.out)
    print(to_markdown(doc))
    print("Wrote " + ", ".join(str(p) for p in written))
    failed = [
        k for k in ("single_fit", "map_fit", "batch", "sbc") if doc[k]["status"].startswith("error")
    ]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks [--quick] [--device cpu|gpu] [--dtype ...] [--sizes K ...]
    [--only SECTION ...] [--out DIR]``: run the suite, write results.json, results.md and
    PNG figures to ``--out``. Exit status 1 when a section raised, else 0."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="bayescale benchmark suite: single fit, Hoffmann MAP grid, batch NUTS, SBC, "
        "each against its baseline measured side by side.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
