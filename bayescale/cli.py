"""Command-line interface: ``bayescale demo | fit | fit-many | optimal | laws | bench``.

The console script ``bayescale`` (declared in ``pyproject.toml``) calls :func:`main`, whose first
act is :func:`configure_xla`: unless ``XLA_FLAGS`` already says otherwise it asks XLA for
``min(4, CPU cores)`` host devices, so that the four NUTS chains run in parallel on CPU cores.
This module imports bayescale's own modules only inside functions. (Importing ``bayescale.cli``
does run the package ``__init__``, which imports JAX; that is early enough, because JAX reads
``XLA_FLAGS`` when its backend starts, at the first computation, not on import.)

Bad input (a NaN in the CSV, an unknown law, a missing column, an empty file, a prediction target
<= 0, an unconverged fit without ``--force``) gives one line ``bayescale: error: <message>`` on
stderr and exit status 2, never a traceback (DESIGN.md §5). With several curves, a curve that
cannot be fitted does not stop the others: ``fit --curve`` skips it with a warning line, fits and
forecasts the others (writing ``--csv``), then exits 2 naming it; ``fit-many`` reports it as
``invalid_input`` and exits 0, or 2 when no curve at all can be fitted. Warnings of bayescale
(:class:`~bayescale.ConvergenceWarning`, :class:`~bayescale.DataWarning`,
:class:`~bayescale.ExtrapolationWarning`) print as one line ``bayescale: warning: <message>``.

Examples
--------
.. code-block:: console

    $ bayescale demo --quick
    $ bayescale fit runs.csv --law chinchilla --predict N=70B,D=1.4T --out fit.nc
    $ bayescale optimal fit.nc --compute 5.88e23 --compute 1e25
    $ bayescale laws
    $ bayescale bench --quick --out bench-results

References
----------
Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556;
Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:  # pragma: no cover - typing only; keeps JAX out of the import
    import pandas as pd

    from bayescale.results import Fit

__all__ = ["build_parser", "configure_xla", "main"]

PROG = "bayescale"
#: XLA flag that splits the host CPU into several JAX devices (one per chain).
DEVICE_FLAG = "xla_force_host_platform_device_count"
#: Sampler settings of ``demo --quick``: the test suite's settings (tests/conftest.py ``FAST``),
#: so that a test run compiles one NUTS program for all of them; 4 x 600 draws keep ESS > 400.
QUICK = {"num_warmup": 400, "num_samples": 600}
#: Compute budgets (FLOP) of the demo's allocation table: the top of the synthetic data, the
#: Chinchilla budget 6 x 70e9 x 1.4e12, and 1e25.
DEMO_BUDGETS = (1e21, 5.88e23, 1e25)
#: bayescale.model.LIKELIHOODS (kept here so that building the parser does not import JAX).
_LIKELIHOODS = ("lognormal", "student_t", "laplace", "normal", "beta", "binomial")
_EPILOG = """\
parallel chains:
  Before JAX starts, bayescale adds --{flag}=K to XLA_FLAGS with
  K = min(4, CPU cores) (K = {k} on this machine) unless XLA_FLAGS already sets it, so the
  4 NUTS chains run in parallel on CPU cores. Set XLA_FLAGS yourself to override, e.g.
  XLA_FLAGS=--{flag}=1 for one device (chains then run one after another).

exit status: 0 success, 2 bad input or usage (one line "bayescale: error: ..." on stderr).
"""


# ----------------------------------------------------------------------------- environment
def configure_xla(environ: Any = None) -> str:
    """Ask XLA for ``min(4, cpu_count)`` host devices unless ``XLA_FLAGS`` already decides.

    Takes effect when called before JAX starts its backend (the first computation or
    ``jax.devices()`` call); importing JAX earlier is fine. Harmless afterwards.

    Parameters
    ----------
    environ
        Mapping to update; ``os.environ`` by default.

    Returns
    -------
    str
        The resulting value of ``XLA_FLAGS``.
    """
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    if DEVICE_FLAG not in flags:
        count = min(4, os.cpu_count() or 1)
        flags = f"{flags} --{DEVICE_FLAG}={count}".strip()
        environ["XLA_FLAGS"] = flags
    return flags


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` replacement: one line ``bayescale: warning: ...`` on stderr."""
    ours = category.__module__.split(".")[0] == "bayescale"
    prefix = "" if ours else f"{category.__name__}: "
    print(f"{PROG}: warning: {prefix}{_one_line(message)}", file=sys.stderr)


def _progress(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad user input: one line on stderr and exit status 2."""
    from bayescale import DataError, ModelError, UnconvergedError, UnknownLawError
    from bayescale.datasets import DatasetError

    return (
        DataError,
        ModelError,
        UnknownLawError,
        UnconvergedError,
        DatasetError,
        OSError,  # FileNotFoundError, IsADirectoryError, PermissionError, disk full on output
        ValueError,
    )


@contextmanager
def _cli_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.showwarning = _showwarning
        yield


# ----------------------------------------------------------------------------- formatting
def _human(x: float) -> str:
    """70e9 -> '70B', 1.4e12 -> '1.4T', 5.88e23 -> '5.88e+23'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if scale <= abs(x) < 1000 * scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.4f}, {hi:.4f}]"


def _table(df: pd.DataFrame, formats: dict[str, Callable[[Any], str]] | None = None) -> str:
    """Plain-text table; floats as 4 significant digits unless ``formats`` says otherwise."""
    formats = dict(formats or {})
    for name in df.columns:
        if name not in formats and df[name].dtype.kind == "f":
            formats[name] = lambda v: f"{v:.4g}"
    return df.to_string(index=False, formatters=formats)


def _prob_label(prob: float) -> str:
    return f"{100 * prob:g}%"


def _likelihood_text(spec: Any) -> str:
    """``binomial likelihood (trials=100)``, ``student_t likelihood (df=4)``, ..."""
    extra = ""
    if spec.trials is not None:
        extra = f" (trials={spec.trials:g})"
    elif spec.likelihood == "student_t":
        extra = " (df learnt)" if spec.df is None else f" (df={spec.df:g})"
    return f"{spec.likelihood} likelihood{extra}"


def _fit_header(fit: Fit) -> str:
    law = fit.law
    return (
        f"Fit of {law.name} ({law.formula}) to {len(fit.data)} runs, "
        f"{_likelihood_text(fit.spec)}; {fit.num_chains} chains x {fit.num_draws} draws."
    )


def _retry_text(fit: Fit) -> str:
    """What the automatic retry ran (its settings depend on why the first pass failed)."""
    c = fit.config
    text = (
        f"after one automatic retry ({c.num_warmup} warm-up + {c.num_samples} draws per chain, "
        f"target_accept_prob={c.target_accept_prob:g}"
    )
    return text + ("" if c.regularize_mass else ", unshrunk mass matrix") + ")"


def _convergence_report(fit: Fit) -> str:
    conv = fit.convergence
    # The gate reads the sampled coordinates; the summary table shows the published ones.
    sites = list(fit.spec.site_names)
    over = f" over the sampled {', '.join(sites)};" if set(sites) - set(fit.params) else ","
    numbers = (
        f"max R-hat {conv.max_rhat:.3f}, min ESS bulk {conv.min_ess_bulk:.0f} / tail "
        f"{conv.min_ess_tail:.0f}{over} {conv.divergences} divergent transitions, min E-BFMI "
        f"{conv.min_bfmi:.2f} ({fit.num_chains} chains x {fit.num_draws} draws"
        + (f", {_retry_text(fit)}" if conv.retried else "")
        + ")"
    )
    if conv.converged:
        return f"Convergence: OK ({numbers})."
    bar = "!" * 78
    verdict = "FAILS the gate badly" if conv.fails_badly else "misses the policy"
    advice = []
    if conv.disagreement:  # separate modes or a free direction: more draws rarely help
        advice = [
            f"!!! Forecasts from this fit are unreliable. The chains disagree on "
            f"{conv.worst_rhat}: the data",
            "!!! may not identify it (separate modes, or a direction they leave free). Check",
            "!!! that the data support this law (a break inside the data, a visible floor),",
            "!!! use a simpler law, or give that parameter an informative prior.",
        ]
    if conv.deep_trees:  # trajectories cut short: deeper trees before more draws
        advice += [
            ("!!! Also, the" if advice else "!!! Forecasts from this fit are unreliable. The")
            + " sampler's trajectories were cut short:",
            f"!!! re-run with --max-tree-depth {conv.max_tree_depth + 2} (each level doubles "
            "the cost per draw).",
        ]
    if not advice:
        advice = [
            "!!! Forecasts from this fit are unreliable. Re-run with more --num-warmup /",
            "!!! --num-samples, or check the data and the law.",
        ]
    head = f"!!! NOT CONVERGED ({verdict}): {'; '.join(conv.problems)}"
    return "\n".join([bar, head, f"!!! {numbers}", *advice, bar])


def _timing_report(fit: Fit, wall_s: float) -> str:
    t = fit.timing
    text = (
        f"Timing: compile {t.get('compile_s', float('nan')):.1f} s, sampling "
        f"{t.get('sampling_s', float('nan')):.2f} s"
    )
    if fit.convergence.retried:
        text += " (of the retry)"
    return text + f"; whole fit {wall_s:.1f} s."


def _forecast_text(
    df: pd.DataFrame,
    prob: float,
    *,
    label: str,
    quantity: str = "loss",
    inputs: Sequence[str] = ("N", "D"),
) -> str:
    """The forecast table: inputs, mean-function and predictive median with intervals; the
    header names the ``quantity`` forecast and the law's ``inputs``."""
    import pandas as pd

    pct = _prob_label(prob)
    show = pd.DataFrame({label: df[label]})
    if "curve" in df:
        show.insert(0, "curve", df["curve"])
    for k in ("N", "D", "C"):
        if k in df:
            show[k] = [_human(v) for v in df[k]]
    show["loss_median"] = df["loss_median"]
    show[f"loss {pct}"] = [
        _interval(a, b) for a, b in zip(df["loss_lower"], df["loss_upper"], strict=True)
    ]
    show["pred_median"] = df["pred_median"]
    show[f"pred {pct}"] = [
        _interval(a, b) for a, b in zip(df["pred_lower"], df["pred_upper"], strict=True)
    ]
    if "true_loss" in df:
        show["true_loss"] = df["true_loss"]
    show["extrapolation"] = [f"{v:.1f}x" for v in df["extrapolation"]]
    four = {k: (lambda v: f"{v:.4f}") for k in ("loss_median", "pred_median", "true_loss")}
    head = (
        f"Forecast of the {quantity} ({pct} central intervals). loss_*: the law's mean "
        f"{quantity} (expected {quantity} of a run at {', '.join(inputs)}); pred_*: posterior "
        f"predictive of one new observed run (adds the noise); extrapolation: times beyond the "
        f"fitted range."
    )
    return head + "\n" + _table(show, four)


_ALLOCATION = (
    ("N_opt", "N*", "size"),
    ("D_opt", "D*", "size"),
    ("tokens_per_param", "D*/N*", "ratio"),
    ("loss_opt", "loss*", "loss"),
)


def _allocation_text(table: pd.DataFrame, prob: float, truth: dict[str, Any] | None = None) -> str:
    """The table of :func:`bayescale.planning.optimal_allocation`, medians with intervals."""
    import pandas as pd

    pct = _prob_label(prob)
    head = (
        f"Compute-optimal allocation (C = 6ND; median and {pct} central interval over the "
        "posterior draws; D*/N*: tokens per parameter; loss*: the law's mean loss there):"
    )
    fmt = {"size": _human, "ratio": lambda v: f"{v:.3g}", "loss": lambda v: f"{v:.4f}"}
    show = pd.DataFrame({"C": [f"{c:.3g}" for c in table["compute"]]})
    for key, label, kind in _ALLOCATION:
        f = fmt[kind]
        show[label] = [f(v) for v in table[f"{key}_median"]]
        show[f"{label} {pct}"] = [
            f"[{f(a)}, {f(b)}]"
            for a, b in zip(table[f"{key}_lower"], table[f"{key}_upper"], strict=True)
        ]
        if truth is not None and key in truth:
            show[f"true {label}"] = [f(v) for v in truth[key]]
    show["extrapolation"] = [f"{v:.1f}x" for v in table["extrapolation"]]
    return head + "\n" + show.to_string(index=False)


def _summary_text(fit: Fit, prob: float, truth: dict[str, float] | None = None) -> str:
    table = fit.summary(prob)
    if truth is not None:
        table.insert(0, "true", [truth.get(k, float("nan")) for k in table.index])
    return (
        f"Posterior summary ({_prob_label(prob)} central intervals; published parametrisation):\n"
        + table.to_string(float_format=lambda v: f"{v:.4g}")
        + "".join(f"\nWarning: {message}" for message in table.attrs.get("warnings", ()))
    )


# ----------------------------------------------------------------------------- inputs
def _parse_target(text: str) -> dict[str, float]:
    """``"N=70e9,D=1.4T"`` -> ``{"N": 7e10, "D": 1.4e12}`` (suffixes k, M, B/G, T accepted)."""
    from bayescale.data import INPUTS, DataError, check_positive_targets

    out: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key = key.strip().upper() if key.strip().upper() in INPUTS else key.strip()
        if not sep or key not in INPUTS or not value.strip():
            raise ValueError(
                f"--predict {text!r}: expected comma-separated N=..., D=..., C=... (and U=... "
                f"for the datablations law; e.g. N=70B,D=1.4T or N=7e10,D=1.4e12), got "
                f"{part.strip()!r}"
            )
        if key in out:
            raise ValueError(f"--predict {text!r}: {key} is given twice")
        try:
            out[key] = float(check_positive_targets(key, value.strip()))
        except DataError as exc:
            why = str(exc).split(": ", 1)[-1]
            raise DataError(f"--predict {text!r}: {key} {why}", column=key, value=value) from None
    return out


def _parse_budgets(values: Sequence[str]) -> list[float]:
    from bayescale.data import DataError, check_positive_targets

    out = []
    for text in values:
        try:
            out.append(float(check_positive_targets("C", text.strip())))
        except DataError as exc:
            why = str(exc).split(": ", 1)[-1]
            raise DataError(f"--compute {text!r}: {why}", column="C", value=text) from None
    return out


def _read_data(args: argparse.Namespace):
    import bayescale as bs

    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, expected a CSV file")
    if path.suffix == ".nc":
        raise ValueError(f"{path} is a saved fit (netCDF), not a CSV table of runs")
    return bs.read_csv(path, sep=args.sep, **_read_options(args, ("curve",)))


def _read_options(args: argparse.Namespace, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Keywords of :func:`bayescale.read_csv` from the column and reading flags: the columns
    given (``''`` for N, D, C or U ignores that input), ``parse_suffixes``, and the
    ``thousands``, ``decimal`` and ``encoding`` of ``pandas.read_csv`` when given."""
    out: dict[str, Any] = {}
    for key in ("N", "D", "C", "U", "loss", "run", *extra):
        value = getattr(args, key)
        if value is not None:
            out[key] = None if value == "" and key in ("N", "D", "C", "U") else value
    if args.parse_suffixes:
        out["parse_suffixes"] = True
    for key in ("thousands", "decimal", "encoding"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


def _check_targets(law_name: str, targets: Sequence[tuple[str, dict[str, float]]]) -> None:
    """Fail before fitting when a --predict target cannot feed the law (C = 6ND fills one)."""
    import bayescale as bs

    law = bs.laws.get(law_name)
    for text, target in targets:
        given = set(target)
        if len(given & {"N", "D", "C"}) >= 2:
            given |= {"N", "D", "C"}
        missing = [k for k in law.inputs if k not in given]
        if missing:
            raise ValueError(
                f"--predict {text!r}: law {law.name!r} needs {', '.join(law.inputs)} to "
                f"predict; missing {', '.join(missing)} (C = 6ND fills one of N, D, C from the "
                "other two)"
            )


def _sampler_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-tree-depth`` and ``--target-accept`` when given (else the function's defaults)."""
    options = {
        "max_tree_depth": getattr(args, "max_tree_depth", None),
        "target_accept_prob": getattr(args, "target_accept", None),
    }
    return {k: v for k, v in options.items() if v is not None}


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``likelihood``, ``df`` (None: Student-t learns it), ``trials`` and ``dtype`` of the
    command line, as :func:`bayescale.fit` and :func:`bayescale.fit_many` take them."""
    return {
        "likelihood": args.likelihood,
        "df": getattr(args, "df", None),
        "trials": getattr(args, "trials", None),
        "dtype": getattr(args, "dtype", "float64"),
    }


def _check_model(law: str, args: argparse.Namespace) -> Any:
    """The model spec of ``law`` under the command line's likelihood options, checked (an
    unknown law, ``binomial`` without ``--trials``, ``--trials`` or ``--df`` with a likelihood
    that takes none, ``float32`` with an accuracy likelihood) before any data is read."""
    import bayescale as bs
    from bayescale.model import PROPORTION_LIKELIHOODS

    options = _model_options(args)
    likelihood = options["likelihood"]
    # the library's checks, in the command line's words
    if options["df"] is not None and likelihood != "student_t":
        raise ValueError(f"--df applies to --likelihood student_t only, not {likelihood}")
    if likelihood == "binomial" and options["trials"] is None:
        raise ValueError("--likelihood binomial needs --trials N, the items per evaluation")
    if likelihood != "binomial" and options["trials"] is not None:
        raise ValueError(f"--trials applies to --likelihood binomial only, not {likelihood}")
    if options["dtype"] == "float32" and likelihood in PROPORTION_LIKELIHOODS:
        raise ValueError(
            f"--dtype float32 does not support --likelihood {likelihood}: its log density "
            "loses up to 1.6 nats to float32 rounding at precise data, which stalls warm-up; "
            "fit accuracies in float64"
        )
    return bs.build_model(law, likelihood=likelihood, df=options["df"], trials=options["trials"])


def _fit(data, args: argparse.Namespace, law: str, *, what: str = "") -> tuple[Fit, float]:
    import bayescale as bs
    from bayescale.model import check_proportions

    # Check the law, likelihood and data before announcing the (long) compile and sampling.
    spec = _check_model(law, args)
    data.require(spec.law.inputs, num_params=len(spec.site_names), law=spec.law.name)
    check_proportions(data.loss, spec, locate=data.locate)  # bs.fit warns with its note
    _progress(
        f"compiling and sampling {what}({args.num_chains} chains x ({args.num_warmup} warm-up "
        f"+ {args.num_samples} draws), law {law}, {len(data)} runs) ..."
    )
    start = time.perf_counter()
    fit = bs.fit(
        data,
        law,
        **_model_options(args),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        rng_key=args.seed,
        **_sampler_options(args),
    )
    wall = time.perf_counter() - start
    _progress(f"fit done in {wall:.1f} s")
    return fit, wall


def _refuse_unconverged(fit: Fit, force: bool) -> None:
    """Exit 2 (via UnconvergedError) when the fit fails the gate badly and --force is absent."""
    from bayescale import UnconvergedError

    conv = fit.convergence
    if conv.fails_badly and not force:
        raise UnconvergedError(
            f"refusing to forecast from a fit that fails the convergence gate badly "
            f"({'; '.join(conv.problems)}); {conv.remedy(cli=True)}, or pass --force to "
            "forecast anyway"
        )


def _predict(fit: Fit, target: dict[str, float], prob: float, force: bool) -> pd.DataFrame:
    """One forecast row; the third of N, D, C is filled in from C = 6ND for display."""
    _refuse_unconverged(fit, force)
    row = fit.predict(**target, prob=prob, allow_unconverged=force)
    _show_inputs(row, target)
    return row


def _show_inputs(rows: pd.DataFrame, target: dict[str, Any], at: int = 0) -> None:
    """Insert the target's N, D, C missing from the forecast rows (from position ``at``),
    the third of them filled in from C = 6ND, for display. The target's values (scalars or
    arrays) repeat to fill the rows."""
    import numpy as np

    full = {k: np.asarray(v, dtype=float) for k, v in target.items()}
    if len(full) == 2:
        if "C" not in full:
            full["C"] = 6.0 * full["N"] * full["D"]
        elif "D" not in full:
            full["D"] = full["C"] / (6.0 * full["N"])
        else:
            full["N"] = full["C"] / (6.0 * full["D"])
    for position, key in enumerate(k for k in ("N", "D", "C") if k in full):
        if key not in rows:
            value = full[key].reshape(-1)
            rows.insert(at + position, key, np.tile(value, len(rows) // value.size))


# ----------------------------------------------------------------------------- planning
def _allocation_table(fit: Any, budgets: Sequence[float], prob: float, force: bool):
    """:func:`bayescale.planning.optimal_allocation` at ``budgets`` (FLOP)."""
    from bayescale.planning import optimal_allocation

    return optimal_allocation(fit, compute=list(budgets), prob=prob, allow_unconverged=force)


def _true_chinchilla(N: Any, D: Any, p: dict[str, float]) -> Any:
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


# ----------------------------------------------------------------------------- commands
def _cmd_laws(args: argparse.Namespace) -> int:
    import bayescale as bs

    rows = [("name", "inputs", "formula", "citation")]
    for name in bs.laws.available():
        law = bs.laws.get(name)
        rows.append((name, ",".join(law.inputs), law.formula, law.citation))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[3]]).rstrip())
    return 0


def _fit_outputs(out: str | None, ids: list[str]) -> dict[str, Path]:
    """Where ``fit --out FIT.nc`` saves each curve: ``FIT.nc`` for one curve, else
    ``FIT-<curve>.nc`` with the characters of the id other than letters, digits, ``_ . -``
    replaced by ``_``. Two curves that would share a file are a usage error, before any fit
    (``run a`` and ``run/a`` both gave ``FIT-run_a.nc``, the second overwriting the first)."""
    if not out:
        return {}
    base = Path(out)
    if len(ids) == 1:
        return {ids[0]: base}
    paths: dict[str, Path] = {}
    for cid in ids:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", cid)
        paths[cid] = base.with_name(f"{base.stem}-{safe}{base.suffix}")
    seen: dict[Path, str] = {}
    for cid, path in paths.items():
        if path in seen:
            raise ValueError(
                f"--out {out}: curves {seen[path]!r} and {cid!r} would both be saved to "
                f"{path}; rename one of them in the curve column"
            )
        seen[path] = cid
    return paths


def _cmd_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from bayescale import DataError, UnconvergedError
    from bayescale.results import name_list

    targets = [(text, _parse_target(text)) for text in args.predict]
    _check_targets(args.law, targets)
    _check_model(args.law, args)
    data = _read_data(args)
    print(f"Data: {data.describe()}")
    curves = data.curves()
    outs = _fit_outputs(args.out, list(curves))
    frames = []
    refused: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []  # curves whose data the law cannot be fitted to
    for cid, sub in curves.items():
        many = len(curves) > 1
        if many:
            print(f"\n=== curve {cid!r} ===")
        try:
            fit, wall = _fit(sub, args, args.law, what=f"curve {cid!r} " if many else "")
        except DataError as exc:
            if not many:
                raise
            # Fit the other curves; the skipped ones end the command (exit 2) after them.
            why = str(exc).removeprefix(f"curve {cid!r}: ")
            skipped.append((cid, why))
            print(f"(curve {cid!r} not fitted: {why})")
            print(f"{PROG}: warning: skipping curve {cid!r}: {_one_line(why)}", file=sys.stderr)
            continue
        print(_fit_header(fit))
        print(_timing_report(fit, wall))
        print(_summary_text(fit, args.prob))
        print(_convergence_report(fit))
        if args.out:
            out = outs[cid]
            fit.save(out)
            print(f"Saved the posterior to {out}")
        rows = []
        try:
            for text, target in targets:
                row = _predict(fit, target, args.prob, args.force)
                row.insert(0, "target", text)
                rows.append(row)
        except UnconvergedError as exc:
            if not many:
                raise
            # Forecast the other curves; the refusal ends the command (exit 2) after them.
            refused.append((cid, str(exc)))
            print(f"(no forecasts for curve {cid!r}: it fails the convergence gate badly)")
            rows = []
        if rows:
            frame = pd.concat(rows, ignore_index=True)
            if many:
                frame.insert(0, "curve", cid)
            what = {"quantity": fit.law.quantity(fit.spec.likelihood), "inputs": fit.law.inputs}
            print(_forecast_text(frame, args.prob, label="target", **what))
            frames.append(frame)
    if not targets:
        print("(no --predict targets; e.g. --predict N=70B,D=1.4T to forecast a run)")
    if args.csv and frames:
        pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)
        print(f"Wrote forecasts to {args.csv}")
    problems = []
    if skipped:
        names = name_list([cid for cid, _ in skipped], 10)
        what = "no curve could be fitted: " if len(skipped) == len(curves) else ""
        problems.append(
            f"{what}skipped {len(skipped)} of {len(curves)} curves ({names}) whose data the law "
            f"cannot be fitted to; first: {skipped[0][1]}"
        )
    if refused:
        names = name_list([cid for cid, _ in refused], 10)
        problems.append(
            f"refused to forecast {len(refused)} of {len(curves)} curves ({names}): their fits "
            f"fail the convergence gate badly; first: {refused[0][1]}"
        )
    if problems:
        raise (DataError if skipped else UnconvergedError)("; ".join(problems))
    return 0


def _cmd_fit_many(args: argparse.Namespace) -> int:
    import pandas as pd

    import bayescale as bs
    from bayescale.results import name_list

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not args.curve:
        raise ValueError("fit-many needs --curve COL, the column of curve ids")
    targets = [(text, _parse_target(text)) for text in args.predict]
    _check_targets(args.law, targets)
    _check_model(args.law, args)
    if args.share and args.trials is not None:
        raise ValueError(
            "--share does not take --likelihood binomial yet: drop --share to fit the curves "
            "independently, or use --likelihood beta"
        )
    with _held_warnings() as held:
        batch = bs.fit_many(
            str(path),
            args.law,
            curve=args.curve,
            columns=_read_options(args),
            sep=args.sep,
            **_model_options(args),
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.num_chains,
            batch_size=args.batch_size,
            rng_key=args.seed,
            **_sampler_options(args),
            progress=not args.quiet,
            **({"pooling": "partial", "share": args.share} if args.share else {}),
        )
        if not batch.fitted.any():
            # The error below says it; not also "N of N curves ... could not be fitted".
            held.clear()
    summary = batch.summary(prob=args.prob)
    weak = summary.index[summary["identifiability"] != ""].tolist()
    summary = summary.drop(columns="identifiability")  # sentences: listed below the table
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary.to_string(float_format=lambda x: f"{x:.4g}"))
        if args.share:
            print(f"Population of the shared parameters ({args.prob:.0%} intervals):")
            print(
                batch.population_summary(prob=args.prob).to_string(
                    float_format=lambda x: f"{x:.4g}"
                )
            )
    counts = summary["status"].value_counts()
    print("status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not batch.fitted.any():
        raise bs.DataError(_none_fitted(batch.curve_ids, batch.messages))
    if weak:
        shown = name_list(weak, 10, str)
        print(
            f"Warning: the data do not constrain the irreducible loss of {len(weak)} curve(s) "
            f"({shown}); their forecasts beyond the data follow its prior (BatchFit.summary()"
            "['identifiability'] says how)"
        )
    if args.out:
        batch.save(args.out)
        print(f"Saved the batch posterior to {args.out}")
    if targets:
        _batch_forecasts(batch, targets, args)
    return 0


@contextmanager
def _held_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Hold the ConvergenceWarnings of the block (others show at once) and show them when it
    ends, also when it raises, except those the block removed from the list it gets."""
    from bayescale import ConvergenceWarning

    held: list[warnings.WarningMessage] = []
    show = warnings.showwarning

    def hold(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ConvergenceWarning):
            held.append(warnings.WarningMessage(message, category, filename, lineno))
        else:
            show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = hold
            yield held
    finally:
        for w in held:
            show(w.message, w.category, w.filename, w.lineno)


def _none_fitted(ids: Sequence[str], messages: Sequence[str], limit: int = 3) -> str:
    """Error message of a batch in which no curve could be fitted: the first few reasons."""
    reasons = "; ".join(messages[:limit]) + ("; ..." if len(messages) > limit else "")
    return f"no curve could be fitted ({len(ids)} with bad input): {reasons}"


def _batch_forecasts(batch: Any, targets: Sequence[tuple[str, dict]], args) -> None:
    """fit-many's forecasts: every fitted curve at every --predict target, printed and written
    to --csv; curves that fail the convergence gate badly are left out and, without --force,
    end the command (exit 2) after the others, like ``fit --curve``."""
    import numpy as np
    import pandas as pd

    from bayescale import ConvergenceWarning, UnconvergedError
    from bayescale.results import name_list

    # One predict call per set of given inputs (N=..,D=.. and C=..,N=.. differ), so that its
    # extrapolation and identifiability warnings come once, not once per target.
    groups: dict[tuple[str, ...], list[int]] = {}
    for t, (_, target) in enumerate(targets):
        groups.setdefault(tuple(sorted(target)), []).append(t)
    frames = []
    for keys, members in groups.items():
        vals = {k: np.array([targets[t][1][k] for t in members]) for k in keys}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, once
            rows = batch.predict(**vals, prob=args.prob, allow_unconverged=args.force)
        reps = len(rows) // len(members)
        rows.insert(1, "target", np.tile([targets[t][0] for t in members], reps))
        _show_inputs(rows, vals, at=2)
        curve = np.repeat(np.arange(len(batch)), len(members))
        rows["order"] = curve * len(targets) + np.tile(members, reps)
        frames.append(rows)
    frame = pd.concat(frames).sort_values("order", kind="stable").drop(columns="order")
    refused = list(frames[0].attrs["refused"])
    frame = frame[batch.fitted[frame["curve"].map(batch.index)] & ~frame["refused"]]
    frame = frame.reset_index(drop=True)
    what = {"quantity": batch.law.quantity(batch.spec.likelihood), "inputs": batch.law.inputs}
    print(_forecast_text(frame, args.prob, label="target", **what))
    mild = sorted(set(frame.loc[frame["status"] != "ok", "curve"]), key=batch.index)
    if mild:
        shown = name_list(mild, 10)
        what = "miss the convergence policy" + ("" if not args.force else " (--force)")
        print(
            f"Warning: the fits of {len(mild)} forecast curve(s) {what} ({shown}): "
            "do not trust their intervals"
        )
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"Wrote forecasts to {args.csv}")
    if refused:
        shown = name_list(refused, 10)
        first = frames[0].attrs["refused"][refused[0]]
        remedy = batch.convergence(refused[0]).remedy(cli=True)
        raise UnconvergedError(
            f"refused to forecast {len(refused)} of {len(batch)} curves ({shown}): their fits "
            f"fail the convergence gate badly (first: {first}; {remedy}); pass --force to "
            "forecast them anyway"
        )


def _cmd_optimal(args: argparse.Namespace) -> int:
    import bayescale as bs

    budgets = _parse_budgets(args.compute)
    path = Path(args.file)
    if path.suffix == ".nc":
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            fit = bs.load(path)
        except (KeyError, OSError, TypeError) as exc:
            raise ValueError(f"{path}: not a fit saved by bayescale ({_one_line(exc)})") from None
        if args.law is not None and args.law != fit.law.name:
            raise ValueError(
                f"{path} holds a {fit.law.name!r} fit but --law {args.law!r} was given"
            )
        if not isinstance(fit, bs.Fit):
            raise ValueError(
                f"{path} holds a batch of {len(fit)} curves (bs.fit_many); `bayescale optimal` "
                "plans from one fit: fit the curve alone (bayescale fit --out FILE.nc)"
            )
        print(f"Loaded {path}: {_fit_header(fit)}")
    else:
        from bayescale.planning import _require_nd

        _require_nd(_check_model(args.law or "chinchilla", args).law)  # before the fit
        data = _read_data(args)
        print(f"Data: {data.describe()}")
        if len(data.curves()) > 1:
            raise ValueError(
                f"{path} has {len(data.curves())} curves; `bayescale optimal` plans for one "
                "law fitted to one curve: select the rows of one curve"
            )
        fit, wall = _fit(data, args, args.law or "chinchilla")
        print(_fit_header(fit))
        print(_timing_report(fit, wall))
        print(_summary_text(fit, args.prob))  # the fit the plan rests on, as `fit` shows it
    print(_convergence_report(fit))
    _refuse_unconverged(fit, args.force)
    table = _allocation_table(fit, budgets, args.prob, args.force)
    print(_allocation_text(table, args.prob))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from bayescale.bench import run_from_args

    return run_from_args(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from bayescale.datasets import chinchilla_synthetic
    from bayescale.planning import FAMOUS_MODELS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = chinchilla_synthetic(seed=args.seed, as_data=False)
    truth = dict(frame.attrs["true_params"])  # bayescale.datasets.BESIROGLU_2024
    data = chinchilla_synthetic(seed=args.seed)
    settings = dict(QUICK) if args.quick else {"num_warmup": 500, "num_samples": 1000}
    args.num_warmup, args.num_samples = settings["num_warmup"], settings["num_samples"]
    args.num_chains, args.likelihood = 4, "lognormal"
    print(
        "bayescale demo on SYNTHETIC data: losses generated from the Chinchilla law "
        "L = E + A/N^alpha + B/D^beta with the Besiroglu et al. 2024 (arXiv:2404.10102) refit "
        "parameters " + ", ".join(f"{k}={v:g}" for k, v in truth.items()) + ", times "
        f"log-normal noise (sd {frame.attrs['noise']:g} on log loss). Not real measurements."
    )
    print(f"Data: {data.describe()}")
    fit, wall = _fit(data, args, "chinchilla")
    print(_fit_header(fit))
    print(_timing_report(fit, wall))
    # sigma of the lognormal likelihood is the generator's noise sd.
    print(_summary_text(fit, 0.9, truth={**truth, "sigma": float(frame.attrs["noise"])}))
    print(_convergence_report(fit))

    N = FAMOUS_MODELS["N"].to_numpy(dtype=float)
    D = FAMOUS_MODELS["D"].to_numpy(dtype=float)
    # The demo always shows its forecasts; the verdict above says how far to trust them.
    forecast = fit.predict(N=N, D=D, prob=0.9, allow_unconverged=True)
    forecast.insert(0, "model", [str(name) for name in FAMOUS_MODELS.index])
    if "C" not in forecast:
        forecast.insert(3, "C", 6.0 * N * D)
    forecast["true_loss"] = _true_chinchilla(N, D, truth)
    print(_forecast_text(forecast, 0.9, label="model"))

    table = _allocation_table(fit, DEMO_BUDGETS, 0.9, True)
    true = _allocation_table(truth, DEMO_BUDGETS, 0.9, True)  # constants: one exact draw
    true = {k: true[f"{k}_median"].to_numpy() for k, _, _ in _ALLOCATION}
    print(_allocation_text(table, 0.9, truth=true))

    written = [out / "fit.nc", out / "forecast.csv", out / "allocation.csv"]
    fit.save(written[0])
    forecast.to_csv(written[1], index=False)
    table.assign(**{f"true_{k}": v for k, v in true.items()}).to_csv(written[2], index=False)
    written += _demo_figures(fit, out)
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def _demo_figures(fit: Fit, out: Path) -> list[Path]:
    import matplotlib

    from bayescale.plot import plot_fit, plot_frontier

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _progress("drawing figures ...")
    written = []
    for name, draw in (("fit.png", plot_fit), ("frontier.png", plot_frontier)):
        figure = draw(fit).figure
        figure.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(figure)
        written.append(out / name)
    return written


# ----------------------------------------------------------------------------- parser
def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _seed(text: str) -> int:
    """A seed JAX and NumPy both take: an integer in [0, 2**63)."""
    value = _count(0)(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"must be < 2**63, got {value}")
    return value


def _data_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    cols = parent.add_argument_group("columns of the CSV (default: N, D, C, loss and aliases)")
    cols.add_argument("--N", metavar="COL", help="column of parameter counts N ('' ignores N)")
    cols.add_argument("--D", metavar="COL", help="column of training tokens D ('' ignores D)")
    cols.add_argument(
        "--C", metavar="COL", help="column of training compute C in FLOP ('' ignores C)"
    )
    cols.add_argument(
        "--U", metavar="COL", help="column of unique tokens U (datablations law; '' ignores U)"
    )
    cols.add_argument("--loss", metavar="COL", help="column of final losses")
    cols.add_argument(
        "--curve",
        metavar="COL",
        help="column of curve ids (fit: each curve fitted on its own; fit-many: one batch; "
        "optimal: the file must hold one curve)",
    )
    cols.add_argument("--run", metavar="COL", help="column of training-run ids")
    read = parent.add_argument_group("reading the CSV")
    read.add_argument("--sep", default=",", help="CSV delimiter (default ',')")
    read.add_argument(
        "--parse-suffixes",
        action="store_true",
        help="read magnitude suffixes in numbers: 70B, 1.4T, 300M, 2k",
    )
    read.add_argument("--thousands", metavar="CHAR", help="thousands separator, e.g. ','")
    read.add_argument("--decimal", metavar="CHAR", help="decimal mark, e.g. ',' (with --sep ';')")
    read.add_argument("--encoding", metavar="NAME", help="text encoding (default utf-8)")
    samp = parent.add_argument_group("model and sampler")
    samp.add_argument(
        "--likelihood",
        choices=_LIKELIHOODS,
        default="lognormal",
        help="noise model of the losses (default lognormal); beta models accuracies in (0, 1), "
        "binomial accuracies in (0, 1] on --trials items (sigmoid laws)",
    )
    samp.add_argument(
        "--trials",
        type=_count(1),
        default=None,
        metavar="N",
        help="items per evaluation (benchmark questions) of --likelihood binomial",
    )
    samp.add_argument(
        "--df",
        type=_positive,
        default=None,
        metavar="NU",
        help="degrees of freedom of --likelihood student_t (default: learnt from the data)",
    )
    samp.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="sampler precision (default float64; float32 is faster on GPUs, not for beta or "
        "binomial)",
    )
    samp.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    samp.add_argument("--num-warmup", type=_count(0), default=500, help="default 500")
    samp.add_argument("--num-samples", type=_count(2), default=1000, help="default 1000")
    samp.add_argument("--num-chains", type=_count(1), default=4, help="default 4")
    samp.add_argument(
        "--max-tree-depth",
        type=_count(1),
        default=None,
        help="NUTS tree-depth cap, at most 2^D - 1 leapfrog steps per draw (default 10 for "
        "fit, 5 for fit-many, whose re-fit uses at least 8)",
    )
    samp.add_argument(
        "--target-accept",
        type=_probability,
        default=None,
        help="NUTS target acceptance probability (default 0.9); higher: smaller steps, "
        "fewer divergences",
    )
    samp.add_argument(
        "--force",
        action="store_true",
        help="forecast even from a fit that fails the convergence gate badly",
    )
    return parent


class _Parser(argparse.ArgumentParser):
    """``argparse`` with the CLI's one-line errors: a usage error prints ``bayescale: error:
    <what> (see <command> --help)`` on stderr, not the whole usage block, and exits 2, as a
    data error does."""

    def error(self, message: str) -> NoReturn:
        what = " ".join(str(message).split())
        self.exit(2, f"{PROG}: error: {what} (see `{self.prog} --help`)\n")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def build_parser() -> argparse.ArgumentParser:
    """The ``bayescale`` argument parser (``demo``, ``fit``, ``fit-many``, ``optimal``, ``laws``, ``bench``).

    Returns
    -------
    argparse.ArgumentParser
        Each sub-command stores its handler in ``args.handler``.

    Examples
    --------
    >>> args = build_parser().parse_args(["fit", "runs.csv", "--predict", "N=70B,D=1.4T"])
    >>> args.law, args.predict
    ('chinchilla', ['N=70B,D=1.4T'])
    """
    k = min(4, os.cpu_count() or 1)
    parser = _Parser(
        prog=PROG,
        description="Bayesian neural scaling laws: fit, forecast with credible intervals, plan.",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = _data_options()

    demo = sub.add_parser(
        "demo",
        help="fit SYNTHETIC Chinchilla data and forecast famous models",
        description="Fit the Chinchilla law to SYNTHETIC IsoFLOP data generated from the "
        "Besiroglu et al. 2024 parameters (bayescale.datasets.chinchilla_synthetic); print the "
        "posterior, diagnostics, forecasts for GPT-3, Gopher, Chinchilla and Llama 2 70B beside "
        "the true values, and the compute-optimal allocation; write fit.png, frontier.png, "
        "fit.nc, forecast.csv and allocation.csv to --out.",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    demo.add_argument("--out", default="bayescale-demo", help="output directory")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the data and the sampler")
    demo.add_argument(
        "--quick",
        action="store_true",
        help=f"fewer draws: 4 chains x ({QUICK['num_warmup']} + {QUICK['num_samples']})",
    )
    demo.set_defaults(handler=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        parents=[data],
        help="fit a law to a CSV of runs and forecast",
        description="Fit a scaling law to the runs in a CSV file with NUTS, print the "
        "posterior summary, convergence diagnostics and forecasts. With --curve, every curve "
        "is fitted on its own; a curve that cannot be fitted (e.g. too few runs) is skipped "
        "with a warning and the command exits 2 after forecasting the others.",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    fit.add_argument("file", metavar="FILE", help="CSV file, one row per training run")
    fit.add_argument("--law", default="chinchilla", help="law name (see `bayescale laws`)")
    fit.add_argument(
        "--predict",
        action="append",
        default=[],
        metavar="N=..,D=..",
        help="forecast target, e.g. N=70e9,D=1.4e12 or N=70B,D=1.4T (repeatable)",
    )
    fit.add_argument("--prob", type=_probability, default=0.9, help="interval mass (0.9)")
    fit.add_argument(
        "--out",
        metavar="FIT.nc",
        help="save the posterior (netCDF); with several curves one file per curve, FIT-<curve>.nc",
    )
    fit.add_argument("--csv", metavar="FORECAST.csv", help="write the forecasts as CSV")
    fit.set_defaults(handler=_cmd_fit)

    many = sub.add_parser(
        "fit-many",
        parents=[data],
        help="fit one law to every curve of a long-format CSV",
        description="Fit a law to every curve (rows sharing a --curve id) of a CSV in one "
        "compiled, vmapped NUTS program per shape; print one row per curve with parameter "
        "intervals, diagnostics and a status (ok, divergences, rhat_high, ess_low, bfmi_low, "
        "invalid_input). A curve with bad input is reported; the others still fit (exit 2 "
        "when no curve can be fitted). With "
        "--predict, forecast every fitted curve; a curve whose fit fails the convergence gate "
        "badly is refused (exit 2 after the others' forecasts) unless --force.",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    many.add_argument("file", metavar="FILE", help="long-format CSV, one row per point")
    many.add_argument("--law", default="power_n", help="law name (see `bayescale laws`)")
    many.add_argument("--prob", type=_probability, default=0.9, help="interval mass (0.9)")
    many.add_argument("--batch-size", type=_count(1), default=1024, help="curves per chunk")
    many.add_argument(
        "--share",
        nargs="+",
        metavar="PARAM",
        help="partially pool these parameters across curves (one hierarchical model; e.g. "
        "--share alpha) and print their population",
    )
    many.add_argument(
        "--predict",
        action="append",
        default=[],
        metavar="N=..,D=..",
        help="forecast every curve at this target, e.g. N=1e10 (repeatable)",
    )
    many.add_argument("--csv", metavar="FORECAST.csv", help="write the forecasts as CSV")
    many.add_argument("--quiet", action="store_true", help="no progress bar")
    many.add_argument("--out", metavar="BATCH.nc", help="save the batch posterior (netCDF)")
    many.set_defaults(handler=_cmd_fit_many)

    optimal = sub.add_parser(
        "optimal",
        parents=[data],
        help="compute-optimal N, D at given budgets",
        description="Compute-optimal model size N*, tokens D*, tokens per parameter and loss at "
        "each compute budget, with credible intervals, from a saved fit (.nc) or a CSV of runs "
        "(fitted first; the column, reading, model and sampler options apply to a CSV only).",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    optimal.add_argument("file", metavar="FILE_OR_FIT.nc", help="saved fit (.nc) or CSV of runs")
    optimal.add_argument(
        "--compute",
        action="append",
        required=True,
        metavar="FLOP",
        help="compute budget in FLOP, e.g. 5.88e23 (repeatable)",
    )
    optimal.add_argument("--law", default=None, help="law to fit a CSV with (chinchilla)")
    optimal.add_argument("--prob", type=_probability, default=0.9, help="interval mass (0.9)")
    optimal.set_defaults(handler=_cmd_optimal)

    laws = sub.add_parser(
        "laws", help="list the registered laws", description="List the registered laws."
    )
    laws.set_defaults(handler=_cmd_laws)

    from bayescale.bench import add_arguments as _bench_arguments

    bench = sub.add_parser(
        "bench",
        help="run the benchmark suite (single fit, MAP grid, batch, SBC vs baselines)",
        description="Run bayescale's benchmark suite: single fit (vs NumPyro MCMC and emcee), "
        "the 4,500-start Hoffmann MAP fit (vs a SciPy loop), batch NUTS over K curves (vs a "
        "NumPyro loop and a curve_fit loop, with the sampler overhead) and SBC; write "
        "results.json, results.md and PNG figures to --out.",
        epilog=_EPILOG.format(flag=DEVICE_FLAG, k=k),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _bench_arguments(bench)
    bench.set_defaults(handler=_cmd_bench)
    return parser


# ----------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayescale`` command line.

    Parameters
    ----------
    argv
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on bad input or usage (one line on stderr), 130 on Ctrl-C.

    Examples
    --------
    >>> main(["laws"])  # doctest: +SKIP
    0
    """
    configure_xla()  # before JAX starts its backend (bayescale is imported lazily below)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the sub-command, whose --help lists its flags
            command = _subparsers(parser).get(getattr(args, "command", None), parser)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    with _cli_warnings():
        try:
            return int(args.handler(args))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if isinstance(exc, _user_errors()):
                print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
                return 2
            raise


if __name__ == "__main__":
    raise SystemExit(main())
