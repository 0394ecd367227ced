"""Checks of trust: does a fitted law forecast held-out runs, and do the data identify it?

Sections
--------
Extrapolation backtests
    :func:`backtest`, :func:`backtest_points`, :func:`summarize`: hide the largest runs, fit the
    rest, and score the forecasts of the hidden runs (error of the median, interval coverage,
    log predictive density); :func:`synthetic_backtest_curves`: SYNTHETIC curves with known
    parameters to backtest against.
Identifiability
    :func:`identifiability`, :func:`identifiability_stats`, :class:`IdentifiabilityWarning`:
    does the posterior of the irreducible loss ``E`` say more than its prior?
Simulation-based calibration
    :func:`sbc`, :class:`SBCResult`, :func:`sbc_design`, :func:`coverage_band`: draw parameters
    from the prior, simulate, fit every simulation in one ``fit_many`` call and check that the
    ranks of the truths are uniform (is the posterior computed correctly?).

References
----------
Talts et al. 2018, *Validating Bayesian Inference Algorithms with Simulation-Based
Calibration*, arXiv:1804.06788; Modrák et al. 2023, *Simulation-Based Calibration Checking for
Bayesian Computation: The Choice of Test Quantities Shapes Sensitivity*, arXiv:2211.02383;
Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt*, arXiv:2404.10102;
Gadre et al. 2024, *Language models scale reliably with over-training and on downstream tasks*,
arXiv:2403.08540 (extrapolation from small runs); Alabdulmohsin, Neyshabur & Zhai 2022,
*Revisiting Neural Scaling Laws in Language and Vision*, arXiv:2209.06640 (held-out
extrapolation benchmark); Gneiting & Raftery 2007, *Strictly Proper Scoring Rules, Prediction,
and Estimation*, JASA 102 (log score).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from scipy.special import logsumexp

from .data import DataError, DataWarning, ScalingData, as_scaling_data
from .laws import Law
from .laws import get as get_law
from .model import (
    PROPORTION_LIKELIHOODS,
    beta_binomial_logpmf,
    beta_shapes,
    build_model,
    warn_proportions,
)
from .results import ConvergenceWarning, ExtrapolationWarning, Fit

__all__ = [
    "BACKTEST_COLUMNS",
    "E_CORR_MIN_RATIO",
    "E_CORR_WARN",
    "E_SD_RATIO_WARN",
    "SBC_ALPHA",
    "SYNTHETIC_LAWS",
    "IdentifiabilityWarning",
    "SBCResult",
    "backtest",
    "backtest_points",
    "coverage_band",
    "gate_by_band",
    "identifiability",
    "identifiability_stats",
    "sbc",
    "sbc_design",
    "summarize",
    "synthetic_backtest_curves",
]


# =============================================================================================
# Extrapolation backtests
# =============================================================================================

#: Columns of the table returned by :func:`backtest` / :func:`summarize`, in order (one
#: ``cov<percent>`` column per interval mass of ``prob``; grouping columns only where present).
BACKTEST_COLUMNS = (
    "dataset",
    "curve",
    "cut",
    "law",
    "likelihood",
    "n_fits",
    "n_train",
    "n_test",
    "n_unscored",
    "max_extrapolation",
    "median_are",
    "mean_are",
    "rmsle",
    "cov50",
    "cov90",
    "lpd",
    "weak_E",
    "status",
    "fit_s",
)
#: Relative tolerance of the cut: a run at exactly ``cut * max`` is a training run.
_CUT_RTOL = 1e-9
#: Status of a cut that leaves too few training runs for the law.
TOO_FEW = "too_few_runs"
#: Status of a curve that has no held-out run under the split.
NO_TEST = "no_test_runs"

FitFn = Callable[..., Fit]


def _cut_label(cut: float) -> str:
    """The cut as written in the ``cut`` column: ``"0.1"``, ``"0.01"``, ``"1e-05"`` (``:g``)
    when that reads back as the same float, else the shortest exact form (``repr``), so two
    cuts never share a label (``summarize`` groups on it)."""
    short = f"{cut:g}"
    return short if float(short) == float(cut) else repr(float(cut))


def interval_masses(prob: Any) -> tuple[float, ...]:
    """``prob`` (one mass: a number, a 0-d NumPy or JAX array, a Decimal; or a sequence of
    them) as floats, each checked to lie in (0, 1). Shared by the checks and the plots."""
    bad = ValueError(f"interval masses must be numbers in (0, 1), got {prob!r}")
    try:
        items = (prob,) if np.ndim(prob) == 0 else tuple(prob)
        if any(isinstance(p, str | bytes) for p in items):
            raise bad
        probs = tuple(float(p) for p in items)
    except (TypeError, ValueError):
        raise bad from None
    for p in probs:
        if not 0 < p < 1:
            raise ValueError(f"interval masses must lie in (0, 1), got {p!r}")
    return probs


def _check_probs(prob: float | Sequence[float]) -> tuple[float, ...]:
    probs = interval_masses(prob)
    if not probs:
        raise ValueError("prob must name at least one interval mass")
    labels = [round(100 * p) for p in probs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"interval masses {probs} round to the same percentage")
    return probs


def _pct(p: float) -> int:
    return round(100 * p)


def _num_sites(law: Law, fit_kwargs: Mapping[str, Any]) -> int:
    spec = build_model(
        law,
        likelihood=fit_kwargs.get("likelihood", "lognormal"),
        priors=fit_kwargs.get("priors"),
        df=fit_kwargs.get("df"),
        trials=fit_kwargs.get("trials"),
    )
    return len(spec.site_names)


def _too_few(train: ScalingData, law: Law, axis: str | None, num_sites: int) -> str | None:
    """Why ``train`` cannot support a fit of ``law`` (None when it can)."""
    if len(train) == 0:
        return "no training runs below the cut"
    if axis is not None:
        distinct = len(np.unique(getattr(train, axis)))
        if distinct < 3:
            return f"{distinct} distinct {axis} value(s) below the cut (need 3)"
    try:
        train.require(law.inputs, num_params=num_sites, law=law.name)
    except DataError as exc:
        return str(exc)
    return None


def _log_density(fit: Fit, log_mu: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """Log predictive density of held-out log losses, (M,): log mean over draws of p(log y).

    The density is that of the *log* loss for every continuous likelihood (for ``"normal"`` and
    ``"beta"``, the density of the loss times the Jacobian ``y``), so values compare across
    them; for ``"binomial"`` (counts of ``trials`` items) it is the beta-binomial log
    probability of the observed count.
    """
    sigma = np.asarray(fit.samples["sigma"]).reshape(-1)[:, None]
    lik = fit.spec.likelihood
    if lik == "lognormal":
        logp = stats.norm.logpdf(log_y, loc=log_mu, scale=sigma)
    elif lik == "student_t":
        nu = (
            fit.spec.df
            if fit.spec.df is not None
            else np.asarray(fit.samples["nu"]).reshape(-1)[:, None]
        )
        logp = stats.t.logpdf(log_y, nu, loc=log_mu, scale=sigma)
    elif lik == "laplace":
        logp = stats.laplace.logpdf(log_y, loc=log_mu, scale=sigma)
    elif lik == "beta":  # p(log y) = Beta(y; m phi, (1 - m) phi) * y, shapes as in the model
        logp = stats.beta.logpdf(np.exp(log_y), *beta_shapes(log_mu, sigma)) + log_y
    elif lik == "binomial":  # counts are discrete: the beta-binomial log probability
        trials = int(fit.spec.trials)
        count = np.round(np.exp(log_y) * trials)
        a, b = beta_shapes(log_mu, sigma)
        logp = beta_binomial_logpmf(count, float(trials), a, b, xp=np)
    else:  # normal on the loss: p(log y) = p(y) * y
        y = np.exp(log_y)
        logp = stats.norm.logpdf(y, loc=np.exp(log_mu), scale=sigma) + log_y
    return logsumexp(logp, axis=0) - math.log(logp.shape[0])


def _score(
    fit: Fit, test: ScalingData, probs: tuple[float, ...]
) -> dict[str, np.ndarray | float | str]:
    """Forecasts of the held-out runs ``test`` from ``fit`` and their scores."""
    law = fit.law
    targets = {k: np.asarray(getattr(test, k)) for k in law.inputs}
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        for i, p in enumerate(probs):
            table = fit.predict(**targets, prob=p, allow_unconverged=True)
            if i == 0:
                out["median"] = table["loss_median"].to_numpy()
                out["pred_median"] = table["pred_median"].to_numpy()
                out["extrapolation"] = table["extrapolation"].to_numpy()
            out[f"lower{_pct(p)}"] = table["pred_lower"].to_numpy()
            out[f"upper{_pct(p)}"] = table["pred_upper"].to_numpy()
    log_mu = fit._log_mean(targets)
    out["lpd"] = _log_density(fit, log_mu, test.log_loss)
    return out


def _split_indices(
    x: np.ndarray | None, mask: np.ndarray | None, cut: float | None
) -> tuple[np.ndarray, np.ndarray]:
    if mask is not None:
        return np.flatnonzero(mask), np.flatnonzero(~mask)
    assert x is not None and cut is not None
    train = x <= cut * x.max() * (1 + _CUT_RTOL)
    return np.flatnonzero(train), np.flatnonzero(~train)


#: The binomial rounding note of check_proportions, which a backtest gives once for all runs.
_ROUNDED = r".*is not a whole number of the trials="


def backtest_points(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    cuts: Sequence[float] = (0.1, 0.01),
    axis: str = "C",
    split: Any = None,
    prob: float | Sequence[float] = (0.5, 0.9),
    fit_kwargs: Mapping[str, Any] | None = None,
    fit_fn: FitFn | None = None,
    fit_many: Callable[..., Mapping[str, Fit]] | bool | None = None,
    dataset: str = "",
    check_identifiability: bool = True,
) -> pd.DataFrame:
    """Backtest forecasts run by run: one row per held-out run and cut.

    Same arguments as :func:`backtest`, which summarises this table with :func:`summarize`.
    Use it to pool several datasets: ``summarize(pd.concat([backtest_points(a, ...),
    backtest_points(b, ...)]), by=["cut"])`` (each call's fits keep their own ``fit_id``, so
    they are counted apart even without ``dataset=`` labels).

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, curve, cut, law, likelihood``, ``fit_id`` (an id of the fit, or of
        the cut left unfitted, unique to this call: random, not reproducible), ``row``
        (0-based row of ``data``), the axis value ``x``, observed ``loss``; the forecast
        ``median`` (posterior median of the law's mean loss), ``pred_median``, ``lower50 ..
        upper90`` (central posterior-predictive intervals, one pair per ``prob``),
        ``extrapolation`` (times beyond the training range, as in :meth:`Fit.predict`),
        ``are`` (absolute relative error of ``median``), ``lpd`` (log predictive density of
        the observed log loss, nats); and per fit ``n_train``,
        ``status`` (the fit's convergence status, ``"too_few_runs"`` or ``"no_test_runs"``),
        ``weak_E`` (number of identifiability warnings), ``fit_s`` (seconds) and ``note``.
        Held-out runs of a cut without a fit have NaN forecasts.

    Examples
    --------
    >>> import pandas as pd
    >>> import bayescale as bs
    >>> from bayescale.check import backtest_points, summarize
    >>> a = bs.datasets.chinchilla_synthetic(seed=0)
    >>> b = bs.datasets.chinchilla_synthetic(seed=1)
    >>> points = pd.concat([backtest_points(a, dataset="a"),
    ...                     backtest_points(b, dataset="b")])     # doctest: +SKIP
    >>> summarize(points, by=["cut"])                             # doctest: +SKIP
    """
    data = as_scaling_data(data)
    law_obj = get_law(law)
    kwargs = dict(fit_kwargs or {})
    likelihood = kwargs.get("likelihood", "lognormal")
    probs = _check_probs(prob)
    if fit_fn is None:
        from ._fit import fit as fit_fn
    missing = [k for k in law_obj.inputs if getattr(data, k) is None]
    if missing:
        raise DataError(
            f"law {law_obj.name!r} needs input(s) {', '.join(missing)}, which the data lack "
            f"(present: {', '.join(data.inputs)})",
            column=missing[0],
        )
    if likelihood in PROPORTION_LIKELIHOODS:  # held-out runs too (Beta at 1: lpd +inf)
        spec = build_model(law_obj, likelihood=likelihood, trials=kwargs.get("trials"))
        warn_proportions(data.loss, spec, locate=data.locate)
    mask = None
    if split is not None:
        mask = np.asarray(split)
        if mask.dtype != bool or mask.shape != (len(data),):
            raise DataError(
                f"split must be a boolean array of shape ({len(data)},) marking training runs, "
                f"got dtype {mask.dtype} and shape {mask.shape}"
            )
        plan = [("split", None)]
    else:
        if axis not in ("N", "D", "C") or getattr(data, axis) is None:
            raise DataError(
                f"backtest axis {axis!r} is not an input of the data "
                f"(present: {', '.join(data.inputs)})",
                column=axis,
            )
        cuts = [cuts] if np.ndim(cuts) == 0 else list(cuts)  # one cut: 0.1
        for cut in cuts:
            if not 0 < cut < 1:
                raise ValueError(f"cuts must lie in (0, 1), got {cut!r}")
        plan = [(_cut_label(c), float(c)) for c in cuts]
    num_sites = _num_sites(law_obj, kwargs)
    if fit_many is True:
        from .batch import fit_many as batch_fit

        fit_many = functools.partial(batch_fit, progress=False)
    curves = (
        {"all": np.arange(len(data))}
        if data.curve is None
        else {cid: np.flatnonzero(data.curve == cid) for cid in data.curve_ids}
    )
    call_id = uuid.uuid4().hex[:12]  # keeps this call's fits apart from any other's
    frames: list[pd.DataFrame] = []
    for label, cut in plan:
        jobs = []
        for cid, rows in curves.items():
            x = None if mask is not None else np.asarray(getattr(data, axis))[rows]
            train_i, test_i = _split_indices(x, None if mask is None else mask[rows], cut)
            train, test = data.subset(rows[train_i]), data.subset(rows[test_i])
            why = _too_few(train, law_obj, None if mask is not None else axis, num_sites)
            jobs.append((cid, rows[train_i], rows[test_i], train, test, why))
        fits: Any = {}
        batch_s = 0.0
        todo = [j for j in jobs if j[5] is None and len(j[2])]
        if fit_many and len(todo) > 1:
            start = time.perf_counter()
            combined = data.subset(np.concatenate([j[1] for j in todo]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", _ROUNDED, DataWarning)  # said once, above
                fits = fit_many(combined, law_obj, **kwargs)
            batch_s = (time.perf_counter() - start) / len(todo)
        for cid, train_rows, test_rows, train, test, why in jobs:
            frame = _points_of_job(
                _from_batch(fits, cid) if why is None else None,
                data,
                cid,
                label,
                law_obj,
                likelihood,
                axis if mask is None else None,
                train_rows,
                test_rows,
                train,
                test,
                why,
                probs,
                fit_fn,
                kwargs,
                batch_s,
                check_identifiability,
                dataset,
            )
            frame.insert(
                frame.columns.get_loc("likelihood") + 1, "fit_id", f"{call_id}-{len(frames)}"
            )
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _from_batch(fits: Any, cid: str) -> Fit | None:
    """The fit of curve ``cid`` from a batch result (None: fit it on its own)."""
    try:
        return fits[cid] if cid in fits else None
    except DataError:  # not fitted by the batch (invalid_input): the single fit says why
        return None


def _points_of_job(
    fit: Fit | None,
    data: ScalingData,
    cid: str,
    label: str,
    law: Law,
    likelihood: str,
    axis: str | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    train: ScalingData,
    test: ScalingData,
    why: str | None,
    probs: tuple[float, ...],
    fit_fn: FitFn,
    kwargs: Mapping[str, Any],
    batch_s: float,
    check_identifiability: bool,
    dataset: str,
) -> pd.DataFrame:
    n_test = len(test_rows)
    if n_test == 0:  # one placeholder row, so that the curve shows in the summary
        test_rows = np.array([-1])
    x_axis = axis if axis is not None else law.inputs[0]
    x = np.asarray(getattr(data, x_axis))
    frame = pd.DataFrame(
        {
            "dataset": dataset,
            "curve": cid,
            "cut": label,
            "law": law.name,
            "likelihood": likelihood,
            "row": test_rows.astype(np.int64),
            "x": x[test_rows] if n_test else np.nan,
            "loss": test.loss if n_test else np.nan,
        }
    )
    nan = np.full(len(frame), np.nan)
    scored: dict[str, Any] = {
        "median": nan,
        "pred_median": nan,
        "extrapolation": nan,
        "lpd": nan,
        **{f"{b}{_pct(p)}": nan for p in probs for b in ("lower", "upper")},
    }
    weak, seconds = 0, batch_s
    if n_test == 0:
        status, note = NO_TEST, "no held-out runs"
    elif why is not None:
        status, note = TOO_FEW, why
    else:
        if fit is None:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", _ROUNDED, DataWarning)  # said once, above
                fit = fit_fn(train, law, **kwargs)
            seconds = time.perf_counter() - start
        status, note = fit.convergence.status, "; ".join(fit.convergence.problems)
        scored = _score(fit, test, probs)
        if check_identifiability:
            weak = len(identifiability(fit))
    for k, v in scored.items():
        frame[k] = v
    frame["are"] = np.abs(frame["median"] - frame["loss"]) / frame["loss"]
    frame["n_train"] = len(train_rows)
    frame["status"] = status
    frame["weak_E"] = weak
    frame["fit_s"] = seconds
    frame["note"] = note
    return frame


def summarize(points: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Summarise a :func:`backtest_points` table per group (default: per dataset, curve, cut).

    Parameters
    ----------
    points
        Output of :func:`backtest_points`, or several of them concatenated. Fits are told
        apart by ``fit_id``; a table without that column (hand-made, or from an older
        version) by ``dataset, curve, cut, law, likelihood``, and a ValueError is raised when
        that key holds rows of two fits (label each call with ``dataset=``).
    by
        Grouping columns. ``["cut"]`` pools every dataset and curve per cut: medians and
        coverages are then taken over all held-out runs together.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n_fits`` (fits made in the group; curves with too few training
        runs or no held-out run are counted only in ``status``), ``n_train`` (training runs
        below the cut, summed over curves, fitted or not), ``n_test`` (held-out runs; the
        scores cover those of fitted cuts), ``n_unscored`` (held-out runs of fitted cuts
        whose forecast median is not finite, e.g. an overflow far beyond the data: left out
        of every score but counted in ``n_test``; a warning says so when there are any),
        ``max_extrapolation``, ``median_are`` and ``mean_are`` (absolute relative error of
        the median forecast), ``rmsle`` (root mean squared log error of the median, the
        metric of Alabdulmohsin et al. 2022), ``cov50``, ``cov90`` (fraction of held-out runs
        inside the central 50% / 90% posterior-predictive interval), ``lpd`` (mean log
        predictive density per held-out run, nats), ``weak_E`` (fits with identifiability
        warnings), ``status`` (the fit's convergence status, ``too_few_runs``, or for pooled
        groups the count of each status, e.g. ``"ok: 38, divergences: 2"``) and ``fit_s``
        (mean seconds per fit).

    Examples
    --------
    >>> points = backtest_points(data, "chinchilla")              # doctest: +SKIP
    >>> summarize(points, by=["cut"])[["cut", "median_are", "cov90"]]  # doctest: +SKIP
    """
    if by is None:
        by = [c for c in ("dataset", "curve", "cut", "law", "likelihood") if c in points]
    by = [by] if isinstance(by, str) else list(by)
    cover = sorted(
        {int(m.group(1)) for c in points.columns if (m := re.fullmatch(r"lower(\d+)", c))}
    )
    fit_key = [c for c in ("dataset", "curve", "cut", "law", "likelihood") if c in points]
    if "fit_id" in points:
        fit_key.append("fit_id")
    else:
        _check_one_fit_per_key(points, fit_key)
    rows = []
    unscored = 0
    for key, group in points.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        fits = group.drop_duplicates(fit_key)
        finite = np.isfinite(group["median"].to_numpy(dtype=float))
        scored = group[finite]
        loss = scored["loss"].to_numpy(dtype=float)
        med = scored["median"].to_numpy(dtype=float)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        for c in ("law", "likelihood"):
            if c not in row and c in group:
                row[c] = ", ".join(dict.fromkeys(group[c].astype(str)))
        made = fits[~fits["status"].astype(str).isin([TOO_FEW, NO_TEST])]
        row["n_fits"] = len(made)
        row["n_train"] = int(fits["n_train"].sum())
        held_out = np.isfinite(group["loss"].to_numpy(dtype=float))
        row["n_test"] = int(held_out.sum())
        fitted = ~group["status"].astype(str).isin([TOO_FEW, NO_TEST]).to_numpy()
        row["n_unscored"] = int((held_out & fitted & ~finite).sum())
        unscored += row["n_unscored"]
        row["max_extrapolation"] = float(scored["extrapolation"].max()) if len(scored) else np.nan
        are = scored["are"].to_numpy(dtype=float)
        row["median_are"] = float(np.median(are)) if len(are) else np.nan
        row["mean_are"] = float(np.mean(are)) if len(are) else np.nan
        row["rmsle"] = float(np.sqrt(np.mean(np.log(med / loss) ** 2))) if len(are) else np.nan
        for q in cover:
            inside = (scored[f"lower{q}"] <= scored["loss"]) & (
                scored["loss"] <= scored[f"upper{q}"]
            )
            row[f"cov{q}"] = float(inside.mean()) if len(scored) else np.nan
        row["lpd"] = float(scored["lpd"].mean()) if len(scored) else np.nan
        row["weak_E"] = int((fits["weak_E"] > 0).sum())
        counts = Counter(fits["status"].astype(str))
        row["status"] = (
            next(iter(counts))
            if len(counts) == 1 and len(fits) == 1
            else ", ".join(f"{k}: {v}" for k, v in counts.most_common())
        )
        row["fit_s"] = float(made["fit_s"].mean()) if len(made) else np.nan
        rows.append(row)
    if unscored:
        warnings.warn(
            f"{unscored} held-out run(s) of fitted cuts have no finite forecast median and are "
            "left out of the scores (column n_unscored)",
            stacklevel=2,
        )
    table = pd.DataFrame(rows)
    order = []
    for c in BACKTEST_COLUMNS:
        if c == "cov50":
            order += [f"cov{q}" for q in cover]
        elif c in table and c != "cov90":
            order.append(c)
    return table[order + [c for c in table.columns if c not in order]]


def _check_one_fit_per_key(points: pd.DataFrame, fit_key: list[str]) -> None:
    """Without ``fit_id``, fits are told apart by ``fit_key`` only: refuse a table in which one
    key holds rows of several fits (two unlabelled datasets concatenated)."""
    if not fit_key:
        return
    per_fit = [c for c in ("n_train", "status") if c in points]
    for key, group in points.groupby(fit_key, sort=False, dropna=False):
        several = bool(group[per_fit].nunique(dropna=False).gt(1).any())
        if "row" in group and group["row"].duplicated().any():
            several = True
        if several:
            key = key if isinstance(key, tuple) else (key,)
            named = ", ".join(f"{c}={v!r}" for c, v in zip(fit_key, key, strict=True))
            raise ValueError(
                f"the points with {named} come from more than one fit (different n_train or "
                "status, or a held-out row twice), and the table has no fit_id column to tell "
                "them apart; pass dataset= to each backtest_points call (or keep its fit_id "
                "column) before concatenating"
            )


def backtest(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    cuts: Sequence[float] = (0.1, 0.01),
    axis: str = "C",
    split: Any = None,
    prob: float | Sequence[float] = (0.5, 0.9),
    fit_kwargs: Mapping[str, Any] | None = None,
    fit_fn: FitFn | None = None,
    fit_many: Callable[..., Mapping[str, Fit]] | bool | None = None,
    dataset: str = "",
    check_identifiability: bool = True,
) -> pd.DataFrame:
    """Extrapolation backtest: fit the small runs, forecast the large ones, score the forecasts.

    For each cut, the runs with ``axis <= cut * max(axis)`` (e.g. compute at most a tenth of the
    largest run's) are fitted and every other run is forecast with :meth:`Fit.predict`. With
    curve ids in ``data`` each curve is cut and fitted on its own. With ``split=`` a boolean
    mask marks the training runs instead of a cut (e.g. the ``Training`` column of the
    revisiting-nsl benchmark). Priors are never tuned on the held-out runs: the fit sees the
    training runs only (the reference point of the priors included).

    Parameters
    ----------
    data
        Runs: a :class:`~bayescale.ScalingData`, DataFrame, CSV path or dict of arrays.
    law
        Law name or :class:`~bayescale.Law`.
    cuts
        Fractions of the largest ``axis`` value; each gives one training set.
    axis
        ``"C"`` (compute, default), ``"N"`` or ``"D"``: the input the runs are sorted by.
    split
        Boolean array, True for training runs; replaces ``cuts`` and ``axis``.
    prob
        Masses of the central predictive intervals whose coverage is reported.
    fit_kwargs
        Keywords of the fit (``likelihood=``, ``priors=``, ``num_warmup=``, ...).
    fit_fn
        ``fit_fn(train, law, **fit_kwargs) -> Fit``; :func:`bayescale.fit` by default.
    fit_many
        Batch fitter used when a cut leaves several curves to fit: ``True`` for
        :func:`bayescale.fit_many` (one compiled program for all curves of a length bucket), or
        any ``fit_many(train_runs_of_all_curves, law, **fit_kwargs)`` returning a mapping
        curve id -> :class:`~bayescale.Fit` (a :class:`~bayescale.batch.BatchFit` is one).
    dataset
        Label written in the ``dataset`` column.
    check_identifiability
        Count the :func:`identifiability` warnings of every fit (column ``weak_E``).

    Returns
    -------
    pandas.DataFrame
        One row per cut (per curve): see :func:`summarize`. A cut that leaves fewer training
        runs than the law needs, or fewer than 3 distinct ``axis`` values, has status
        ``"too_few_runs"`` and no scores.

    Notes
    -----
    Scores: ``median_are`` = median over held-out runs of ``|median - loss| / loss`` where
    ``median`` is the posterior median of the law's mean loss; ``cov50``/``cov90`` = fraction
    of held-out losses inside the central posterior-predictive interval (``pred_lower ..
    pred_upper`` of :meth:`Fit.predict`); ``lpd`` = mean over held-out runs of
    ``log mean_s p(log y | theta_s)`` over the posterior draws, the log score of Gneiting &
    Raftery 2007, of the log loss (comparable across likelihoods). Convergence and
    extrapolation warnings of the fits are recorded in ``status``, not raised.

    Examples
    --------
    >>> import bayescale as bs
    >>> data = bs.datasets.chinchilla_synthetic(seed=0)
    >>> bs.check.backtest(data, "chinchilla", cuts=(0.1,))     # doctest: +SKIP
    """
    points = backtest_points(
        data,
        law,
        cuts=cuts,
        axis=axis,
        split=split,
        prob=prob,
        fit_kwargs=fit_kwargs,
        fit_fn=fit_fn,
        fit_many=fit_many,
        dataset=dataset,
        check_identifiability=check_identifiability,
    )
    return summarize(points)


# ---------------------------------------------------------------------------------------------
# Synthetic designs with known truth
# ---------------------------------------------------------------------------------------------

#: Laws :func:`synthetic_backtest_curves` can simulate, with the axis their backtests cut on.
SYNTHETIC_LAWS = {"chinchilla": "C", "power_n": "N", "kaplan_n": "N"}
#: Model sizes of the single-input synthetic designs: 16 runs over three decades.
SYNTHETIC_N = np.geomspace(1e7, 1e10, 16)


def synthetic_backtest_curves(
    law: str, num_curves: int, *, seed: int = 0, noise: float = 0.01
) -> tuple[ScalingData, pd.DataFrame]:
    """**SYNTHETIC** curves with known parameters and one fixed design per law, for backtests.

    Every curve of a law has the same inputs (so single fits share one compiled program) and
    its own true parameters, drawn around published values, plus log-normal noise ``noise``:

    * ``chinchilla`` (Hoffmann et al. 2022): the IsoFLOP design of
      :func:`bayescale.datasets.chinchilla_synthetic` (7 budgets 1e18..1e21 FLOP x 9 sizes)
      around Besiroglu et al.'s 2024 refit, with ``alpha`` and ``beta`` shifted by up to
      +-0.04 (keeping each term's value at N = 1e9, D = 2e10) and ``E`` scaled by 0.9..1.1;
    * ``power_n`` (``E + A N^-alpha``, Hestness et al. 2017): N = 1e7..1e10 (16 runs),
      ``E`` in 1.5..2.5, ``alpha`` in 0.25..0.5, reducible loss at N = 1e7 of 0.5..2 ``E``;
    * ``kaplan_n`` (``(N_c / N)^alpha_N``, Kaplan et al. 2020): the same N, ``alpha_N`` in
      0.05..0.3, loss at N = 1e7 in 3..6.

    Parameters
    ----------
    law
        ``"chinchilla"``, ``"power_n"`` or ``"kaplan_n"``.
    num_curves
        Number of curves (ids ``s0000``, ``s0001``, ...).
    seed
        Seed of :func:`numpy.random.default_rng` (truths and noise).
    noise
        Standard deviation of the noise on the log loss.

    Returns
    -------
    data, truth
        Runs with curve ids, and a DataFrame of the true published parameters per curve id.

    Examples
    --------
    >>> data, truth = synthetic_backtest_curves("power_n", 3, seed=0)
    >>> len(data), list(truth.columns)
    (48, ['E', 'A', 'alpha'])
    """
    from .data import from_arrays
    from .datasets import BESIROGLU_2024, chinchilla_synthetic

    if law not in SYNTHETIC_LAWS:
        raise ValueError(f"law must be one of {', '.join(SYNTHETIC_LAWS)}, got {law!r}")
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {"N": [], "D": [], "C": [], "loss": [], "curve": []}
    truth = {}
    for k in range(num_curves):
        cid = f"s{k:04d}"
        if law == "chinchilla":
            p = dict(BESIROGLU_2024)
            da, db = rng.uniform(-0.04, 0.04, 2)
            p["A"] *= 1e9**da
            p["B"] *= 2e10**db
            p["alpha"] += da
            p["beta"] += db
            p["E"] *= rng.uniform(0.9, 1.1)
            frame = chinchilla_synthetic(
                params=p, noise=noise, seed=int(rng.integers(2**31)), as_data=False
            )
            for c in ("N", "D", "C", "loss"):
                cols[c].append(frame[c].to_numpy())
            n = len(frame)
        else:
            N = SYNTHETIC_N
            n = len(N)
            if law == "power_n":
                E, alpha = rng.uniform(1.5, 2.5), rng.uniform(0.25, 0.5)
                A = rng.uniform(0.5, 2.0) * E * N[0] ** alpha
                mean = E + A * N**-alpha
                p = {"E": E, "A": A, "alpha": alpha}
            else:
                alpha = rng.uniform(0.05, 0.3)
                N_c = N[0] * rng.uniform(3.0, 6.0) ** (1.0 / alpha)
                mean = (N_c / N) ** alpha
                p = {"N_c": N_c, "alpha_N": alpha}
            cols["N"].append(N)
            cols["loss"].append(mean * np.exp(noise * rng.standard_normal(n)))
        cols["curve"].append(np.full(n, cid, dtype=object))
        truth[cid] = p
    arrays = {k: np.concatenate(v) for k, v in cols.items() if v}
    data = from_arrays(**arrays)
    return data, pd.DataFrame.from_dict(truth, orient="index")


# =============================================================================================
# Identifiability of the irreducible loss
# =============================================================================================

#: Warn when the posterior sd of E exceeds this fraction of its prior sd at the data's loss level.
E_SD_RATIO_WARN = 0.5
#: Warn when |posterior correlation of E with an exponent| exceeds this ...
E_CORR_WARN = 0.95
#: ... and the sd ratio exceeds this (a strong correlation alone is normal for a pinned E).
E_CORR_MIN_RATIO = 0.2
#: Natural parameter names treated as exponents (alpha, beta, alpha_N, gamma, b, ...).
_EXPONENT = re.compile(r"^(alpha|beta|gamma|b)(_.*)?$")
#: Sampled site holding the loss level at the reference point in the shipped laws.
_LEVEL_SITE = "log_L_ref"


def _irreducible(law: Law) -> str:
    """Natural name of a law's irreducible loss: ``E``, or ``law.extra["irreducible"]`` (the
    broken power laws' ``a``)."""
    return str(law.extra.get("irreducible", "E"))


def _exponent_names(law: Law) -> list[str]:
    """Exponents whose posterior correlation with the irreducible loss is checked: the law's
    ``extra["exponents"]`` (natural or sampled names) when given, else its natural parameters
    named like exponents (``alpha``, ``beta``, ``gamma``, ``b``, with suffixes)."""
    if "exponents" in law.extra:
        return [str(n) for n in law.extra["exponents"]]
    e = _irreducible(law)
    return [n for n in law.natural_names if n != e and _EXPONENT.match(n)]


class IdentifiabilityWarning(UserWarning):
    """The data do not constrain the irreducible loss: forecasts far out rest on the prior."""


def _sample_prior(d: Any, rng: np.random.Generator, num: int, seed: int) -> np.ndarray:
    """``num`` draws of a NumPyro distribution: NumPy for the common families (no XLA compile:
    sampling a Beta in JAX compiles a rejection loop for seconds), JAX otherwise."""
    import numpyro.distributions as dist

    size = (num, *d.batch_shape)
    if type(d) is dist.Normal:
        return rng.normal(np.asarray(d.loc), np.asarray(d.scale), size)
    if type(d) is dist.LogNormal:
        return np.exp(rng.normal(np.asarray(d.loc), np.asarray(d.scale), size))
    if type(d) is dist.HalfNormal:
        return np.abs(rng.normal(0.0, np.asarray(d.scale), size))
    if type(d) is dist.Beta:
        return rng.beta(np.asarray(d.concentration1), np.asarray(d.concentration0), size)
    if type(d) is dist.Gamma:
        return rng.gamma(np.asarray(d.concentration), 1.0 / np.asarray(d.rate), size)
    if type(d) is dist.Uniform:
        return rng.uniform(np.asarray(d.low), np.asarray(d.high), size)
    return np.asarray(d.sample(jax.random.PRNGKey(seed), (num,)))


def identifiability_stats(
    fit: Fit, *, num_prior_draws: int = 20_000, seed: int = 0
) -> dict[str, float]:
    """How far the data constrain the irreducible loss ``E`` of a fitted law.

    Parameters
    ----------
    fit
        A fit of a law with a natural parameter ``E`` (or the one its ``extra["irreducible"]``
        names, ``a`` for the broken power laws).
    num_prior_draws
        Prior draws used to estimate the prior sd of ``E`` (Monte Carlo error of the sd
        about ``1/sqrt(2 num_prior_draws)``, 0.5% by default).
    seed
        Seed of the prior draws.

    Returns
    -------
    dict
        ``post_sd`` (posterior sd of E), ``prior_sd`` (sd of E under the prior at the data's
        loss level, see Notes), ``sd_ratio`` (their ratio) and ``corr_<name>`` (posterior
        correlation of E with each exponent). Empty for laws without ``E``.

    Notes
    -----
    The prior of ``E`` is sampled by drawing the sampled parameters from their priors and
    mapping them through ``law.natural``. In the shipped reference-centred laws ``E =
    L_ref (1 - frac)``; the level ``L_ref`` (the loss at the data's centre) is pinned by any
    data, however uninformative about E, and its LogNormal prior makes the plain prior sd of E
    some 30x the posterior sd. Comparing against that would call every design identified (a
    pure power-law truth over two decades still gives a ratio of 0.07). The prior is therefore
    taken *at the data's loss level*: ``log_L_ref`` is drawn from its posterior, the other
    parameters from their priors. Laws without ``log_L_ref`` (e.g. a custom law sampling E
    directly) use the plain prior.
    """
    e_name = _irreducible(fit.law)
    if e_name not in fit.law.natural_names:
        return {}
    post = np.asarray(fit.params[e_name]).reshape(-1)
    level = None
    if _LEVEL_SITE in fit.law.param_names:
        draws = np.asarray(fit.samples[_LEVEL_SITE]).reshape(-1)
        idx = np.random.default_rng(seed).integers(0, draws.size, num_prior_draws)
        level = draws[idx]
    ref = dict(fit.ref)
    rng = np.random.default_rng(seed)
    prior = {
        name: _sample_prior(fit.spec.prior(name, ref), rng, num_prior_draws, seed + i)
        for i, name in enumerate(fit.law.param_names)
    }
    if level is not None:
        prior[_LEVEL_SITE] = level
    prior_e = np.asarray(fit.law.natural(prior, ref)[e_name])
    prior_e = prior_e[np.isfinite(prior_e)]
    out = {
        "post_sd": float(post.std(ddof=1)),
        "prior_sd": float(prior_e.std(ddof=1)),
    }
    out["sd_ratio"] = out["post_sd"] / out["prior_sd"] if out["prior_sd"] > 0 else np.nan
    for name in _exponent_names(fit.law):
        source = fit.params if name in fit.params else fit.samples
        if name in source:
            other = np.asarray(source[name]).reshape(-1)
            if post.std() > 0 and other.std() > 0:
                out[f"corr_{name}"] = float(np.corrcoef(post, other)[0, 1])
    return out


def identifiability(
    fit: Fit,
    *,
    sd_ratio: float = E_SD_RATIO_WARN,
    corr: float = E_CORR_WARN,
    corr_min_ratio: float = E_CORR_MIN_RATIO,
    num_prior_draws: int = 20_000,
) -> list[str]:
    """Human-readable warnings when the data do not constrain the irreducible loss ``E``.

    Two symptoms are checked (statistics from :func:`identifiability_stats`):

    * the posterior sd of E is more than ``sd_ratio`` (0.5) times its prior sd at the data's
      loss level: the data removed less than half of the prior uncertainty of E;
    * ``|corr(E, exponent)| > corr`` (0.95) while the sd ratio exceeds ``corr_min_ratio``
      (0.2): the data pin a combination of E and the exponent, not E itself, and
      extrapolations depend on how the trade-off continues.

    Parameters
    ----------
    fit
        A fitted law; laws without an irreducible loss (Kaplan laws) give no warnings. The
        broken power laws' irreducible loss is ``a`` (Caballero et al.), checked against the
        slope of each segment (``alpha_0`` ..).
    sd_ratio, corr, corr_min_ratio
        Thresholds.
    num_prior_draws
        Prior draws behind the prior sd of E (:func:`identifiability_stats`).

    Returns
    -------
    list of str
        One sentence per symptom; empty when E is identified.

    Notes
    -----
    Thresholds, from fits of 4 chains x 600 draws. Designs that identify E: the synthetic
    Chinchilla IsoFLOP design (63 runs; seeds 0-2), sd ratio 0.04-0.05 with all runs,
    0.06-0.08 with the runs below a tenth of the largest compute and 0.13-0.14 below a
    hundredth, |corr(E, alpha)| 0.6-0.8; Epoch's 240 digitised Chinchilla runs, ratio 0.03-0.12
    and correlation 0.79-0.94 at every cut; the power laws of tests/test_recovery.py (20 runs
    over three to six decades, E within +-5%), ratio 0.09-0.15 but correlation 0.93-0.96 - a
    strong correlation alone is normal in a three-parameter power law, hence the second rule
    also asks for a ratio above 0.2. Designs that cannot identify E: a power law of N with
    exponent 0.05 over two decades, ratio 0.61-0.74 (0.44-0.51 at exponent 0.1); a pure power
    law (E = 0) over two decades, ratio 0.36-0.41 with |corr| 0.97-0.98.

    Examples
    --------
    >>> import bayescale as bs
    >>> fit = bs.fit(bs.datasets.chinchilla_synthetic(seed=0), "chinchilla")  # doctest: +SKIP
    >>> bs.check.identifiability(fit)                                        # doctest: +SKIP
    []
    """
    s = identifiability_stats(fit, num_prior_draws=num_prior_draws)
    if not s:
        return []
    e = _irreducible(fit.law)
    out = []
    if s["sd_ratio"] > sd_ratio:
        out.append(
            f"the data barely constrain the irreducible loss {e}: its posterior sd "
            f"{s['post_sd']:.3g} is {100 * s['sd_ratio']:.0f}% of its prior sd {s['prior_sd']:.3g} "
            f"(at the data's loss level); forecasts beyond the data follow the prior of {e} - "
            "add runs at larger scale or state an informative prior"
        )
    corrs = {k[5:]: v for k, v in s.items() if k.startswith("corr_")}
    if corrs:
        name, value = max(corrs.items(), key=lambda kv: abs(kv[1]))
        if abs(value) > corr and s["sd_ratio"] > corr_min_ratio:
            out.append(
                f"the irreducible loss {e} trades off against {name}: posterior correlation "
                f"{value:+.2f} (|corr| > {corr:g}); the data fix a combination of the two, not "
                f"{e} itself, so extrapolations depend on the prior of {e}"
            )
    return out


# =============================================================================================
# Simulation-based calibration
# =============================================================================================

#: Name of the log-likelihood test quantity: ``log p(y_sim | theta)`` summed over the design.
SBC_LOGLIK = "log_lik"
#: Name of the extrapolation test quantity: the law's mean loss at 10x every input's maximum.
SBC_EXTRAPOLATION = "loss_10x"
#: How far beyond the design the extrapolation test quantity is taken (each input's maximum).
SBC_EXTRAPOLATION_FACTOR = 10.0
#: Significance level of the uniformity test and of the coverage band of :attr:`SBCResult.passed`.
SBC_ALPHA = 0.001
#: Loss level that centres the priors of the default designs (nats; accuracy for sigmoids).
SBC_LOSS_LEVEL = 2.5
SBC_ACCURACY_LEVEL = 0.5
#: Status of a simulation that could not be fitted (invalid simulated data, non-finite draws).
SBC_FAILED = "failed"
#: Default band edges of :meth:`SBCResult.gate_by` on the noise scale ``sigma`` of the log loss.
SBC_NOISE_BANDS = (0.01, 0.03, 0.08)


def gate_by_band(values: ArrayLike, status: ArrayLike, edges: Sequence[float]) -> pd.DataFrame:
    """Share of fits that meet the convergence gate within bands of a true value.

    Parameters
    ----------
    values
        One true value per simulation (sim,), e.g. the noise scale ``sigma`` drawn by
        :func:`sbc`.
    status
        One status per simulation (sim,): ``"ok"`` meets the gate; any other status
        (``"divergences"``, ``"rhat_high"``, ``"ess_low"``, ``"bfmi_low"``, ``"failed"``)
        misses it.
    edges
        Strictly increasing inner band edges: bands ``(-inf, e0)``, ``[e0, e1)``, ...,
        ``[e_last, inf)``.

    Returns
    -------
    pandas.DataFrame
        One row per band: ``band`` (label), ``lower``, ``upper``, ``simulations``, ``met``
        (fits meeting the gate), ``share`` (``met / simulations``, NaN for an empty band) and
        one count column per status that missed the gate.

    Examples
    --------
    >>> from bayescale.check import gate_by_band
    >>> t = gate_by_band([0.005, 0.02, 0.2, 0.3], ["rhat_high", "ok", "ok", "divergences"],
    ...                  [0.01, 0.1])
    >>> t[["band", "simulations", "met"]].values.tolist()
    [['< 0.01', 1, 0], ['0.01-0.1', 1, 1], ['>= 0.1', 2, 1]]
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    status = np.asarray(status).astype(str).reshape(-1)
    if values.shape != status.shape:
        raise ValueError(
            f"gate_by_band: {values.size} values but {status.size} statuses (one each per "
            "simulation)"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.argmax(~np.isfinite(values)))
        raise ValueError(f"gate_by_band: value {bad} is {values[bad]} (values must be finite)")
    cuts = np.asarray(edges, dtype=np.float64).reshape(-1)
    if cuts.size == 0 or not np.all(np.isfinite(cuts)) or np.any(np.diff(cuts) <= 0):
        raise ValueError(
            f"gate_by_band: edges must be finite and strictly increasing, got {list(edges)}"
        )
    bounds = np.concatenate([[-np.inf], cuts, [np.inf]])
    missed = sorted({s for s in status.tolist() if s != "ok"})
    rows = []
    for lower, upper in itertools.pairwise(bounds):
        inside = (values >= lower) & (values < upper)
        if lower == -np.inf:
            label = f"< {upper:g}"
        elif upper == np.inf:
            label = f">= {lower:g}"
        else:
            label = f"{lower:g}-{upper:g}"
        n = int(inside.sum())
        met = int(np.sum(inside & (status == "ok")))
        row = {
            "band": label,
            "lower": lower,
            "upper": upper,
            "simulations": n,
            "met": met,
            "share": met / n if n else math.nan,
        }
        row.update({s: int(np.sum(inside & (status == s))) for s in missed})
        rows.append(row)
    return pd.DataFrame(rows)


#: Rounds of re-drawing the simulations whose data no fit can take (see :func:`sbc`).
SBC_MAX_REDRAWS = 20
#: Statuses reported per simulation, in the order of :data:`bayescale.batch.STATUSES`.
_GATE_CHECKS = ("rhat", "ess_bulk", "ess_tail", "divergences", "bfmi")

# Fixed-prior specs by (law id, likelihood, df, trials, reference, prior overrides): the priors
# are NumPyro distributions whose identity is part of the compile-cache key of the batch
# program, so a negative control on the same design reuses the positive run's program.
_SBC_SPECS: dict[tuple, Any] = {}


def _geom(lo: float, hi: float, n: int) -> np.ndarray:
    return np.geomspace(lo, hi, n)


#: Three decades of each single input, as in the recovery and backtest designs.
_SINGLE_RANGE = {"N": (1e7, 1e10), "D": (1e8, 1e11), "C": (1e17, 1e20)}


def sbc_design(law: str | Law, *, num_points: int | None = None) -> ScalingData:
    """Default simulation design of :func:`sbc` for a law: where the simulated runs lie.

    * one input (``power_*``, ``kaplan_*``, ``bnsl_*``): ``num_points`` log-spaced values over
      three decades (N 1e7..1e10, D 1e8..1e11, C 1e17..1e20); 24 points (40 for the broken
      power laws, whose 6-10 parameters need more, 30 for the sigmoid);
    * N and D (``chinchilla``, ``overtraining``, ``kaplan_nd``): an IsoFLOP grid, 5 compute
      budgets 1e18..1e21 FLOP x 6 model sizes from 1/4 to 4 times the 20-tokens-per-parameter
      size ``sqrt(C / 120)``, ``D = C / (6 N)`` (N spans 2.3e7..1.2e10);
    * N, D and U (``datablations``): 3 model sizes (1e8, 1e9, 1e10) x 2 unique-token budgets
      (2 N and 20 N) x 6 epoch counts (1, 2, 4, 8, 16, 32), ``D = epochs x U``.

    The ``loss`` column is the constant loss level that centres the default priors (2.5 nats;
    0.5 accuracy for ``sigmoid`` laws), see :func:`sbc`.

    Parameters
    ----------
    law
        Law name or :class:`~bayescale.laws.Law`.
    num_points
        Points of a single-input design (ignored for grids).

    Returns
    -------
    ScalingData

    Examples
    --------
    >>> d = sbc_design("power_n")
    >>> len(d), float(d.N.min()), float(d.N.max())
    (24, 10000000.0, 10000000000.0)
    """
    from .data import from_arrays

    law_obj = get_law(law)
    inputs = tuple(law_obj.inputs)
    names = set(law_obj.param_names)
    sigmoid_like = (
        law_obj.name.startswith("sigmoid") or names >= {"k", "logit_ref"} or "log_rise" in names
    )
    level = SBC_ACCURACY_LEVEL if sigmoid_like else SBC_LOSS_LEVEL
    if len(inputs) == 1 and inputs[0] in _SINGLE_RANGE:
        (x,) = inputs
        if num_points is None:
            num_points = 40 if law_obj.num_params >= 6 else (30 if sigmoid_like else 24)
        values = _geom(*_SINGLE_RANGE[x], int(num_points))
        return from_arrays(**{x: values}, loss=np.full(values.size, level))
    if set(inputs) == {"N", "D"}:
        budgets = _geom(1e18, 1e21, 5)
        n_opt = np.sqrt(budgets / 120.0)
        N = (n_opt[:, None] * _geom(0.25, 4.0, 6)[None, :]).ravel()
        D = (np.repeat(budgets, 6) / (6.0 * N)).ravel()
        return from_arrays(N=N, D=D, loss=np.full(N.size, level))
    if set(inputs) == {"N", "D", "U"}:
        grid = itertools.product((1e8, 1e9, 1e10), (2.0, 20.0), (1, 2, 4, 8, 16, 32))
        rows = np.array([(n, r * n, e * r * n) for n, r, e in grid])
        N, U, D = rows[:, 0], rows[:, 1], rows[:, 2]
        return from_arrays(N=N, D=D, U=U, loss=np.full(N.size, level))
    raise ValueError(
        f"no default SBC design for law {law_obj.name!r} with inputs {inputs}; pass design="
    )


def _sbc_bins(num: int) -> int:
    """Bins of the rank histogram: sqrt(n / 2) clipped to 2..20 (10 at 200, 5 at 50)."""
    return int(np.clip(math.floor(math.sqrt(num / 2.0)), 2, 20))


def coverage_band(num: int, prob: float = 0.9, alpha: float = SBC_ALPHA) -> tuple[float, float]:
    """Acceptance interval of the coverage of a central ``prob`` interval over ``num``
    independent simulations: the central ``1 - alpha`` binomial interval, as a fraction.

    >>> coverage_band(200)
    (0.825, 0.96)

    NaN bounds when ``num`` is 0 (no simulation to count).
    """
    if num <= 0:
        return math.nan, math.nan
    lo = stats.binom.ppf(alpha / 2, num, prob) / num
    hi = stats.binom.isf(alpha / 2, num, prob) / num
    return float(lo), float(hi)


def _fixed_prior_spec(spec: Any, ref: Mapping[str, float]) -> Any:
    """A copy of ``spec`` whose every prior is the distribution ``spec`` gives at ``ref``."""
    overrides = dict(spec.priors)
    key = (
        id(spec.law),
        spec.likelihood,
        spec.df,
        spec.trials,
        tuple(sorted((k, round(float(v), 12)) for k, v in ref.items())),
        tuple((k, id(v)) for k, v in overrides.items()),
    )
    if key not in _SBC_SPECS:
        fixed = {name: spec.prior(name, ref) for name in spec.site_names}
        _SBC_SPECS[key] = (
            build_model(
                spec.law,
                likelihood=spec.likelihood,
                priors=fixed,
                df=spec.df,
                trials=spec.trials,
            ),
            overrides,  # keep the user's prior objects alive: their ids are in the key
        )
    return _SBC_SPECS[key][0]


def _check_law_ignores_loss_level(law: Law, params: Mapping[str, np.ndarray], design, ref) -> None:
    """The fit recomputes ``ref["loss"]`` from each simulated data set; SBC is exact only if the
    law's prediction does not read it (the shipped laws read it only through their priors,
    which :func:`sbc` fixes)."""
    log_x = {k: np.log(getattr(design, k)) for k in law.inputs}
    one = {k: np.asarray(v[0]) for k, v in params.items()}
    shifted = {**ref, "loss": ref["loss"] + 0.7}
    a = np.asarray(law.log_predict(one, log_x, ref))
    b = np.asarray(law.log_predict(one, log_x, shifted))
    if not np.allclose(a, b, rtol=0, atol=1e-12, equal_nan=True):
        raise ValueError(
            f"law {law.name!r} reads ref['loss'] in log_predict; sbc() fixes the priors at one "
            "reference loss level but the fit recomputes the reference from each simulated "
            "data set, so the check would not be exact"
        )


def _simulate(spec, params, log_x, ref, noise_scale: float, rng) -> np.ndarray:
    """Observed losses (sim, point) drawn in NumPy from the model's likelihood around the law,
    with the noise scale multiplied by ``noise_scale`` (the truth keeps the unscaled value).

    Written apart from the NumPyro model (same distributions, independent code), so that a
    wrong likelihood in the model shows up as miscalibration instead of being shared by
    simulator and fit.
    """
    import jax.numpy as jnp

    from .model import beta_precision

    law = spec.law
    theta = {k: jnp.asarray(params[k])[:, None] for k in law.param_names}
    x = {k: jnp.asarray(v)[None, :] for k, v in log_x.items()}
    log_mu = np.asarray(law.log_predict(theta, x, ref), dtype=np.float64)
    sigma = noise_scale * np.asarray(params["sigma"], dtype=np.float64)[:, None]
    shape = log_mu.shape
    lik = spec.likelihood
    with np.errstate(over="ignore", invalid="ignore"):
        if lik == "lognormal":
            return np.exp(log_mu + sigma * rng.standard_normal(shape))
        if lik == "student_t":
            nu = spec.df if spec.df is not None else np.asarray(params["nu"])[:, None]
            return np.exp(log_mu + sigma * rng.standard_t(np.broadcast_to(nu, shape)))
        if lik == "laplace":
            return np.exp(log_mu + sigma * rng.laplace(size=shape))
        if lik == "normal":
            return np.exp(log_mu) + sigma * rng.standard_normal(shape)
        m = np.clip(np.exp(log_mu), 1e-9, 1.0 - 1e-9)
        phi = np.asarray(beta_precision(jnp.asarray(sigma)), dtype=np.float64)
        p = rng.beta(m * phi, (1.0 - m) * phi)
        if lik == "beta":
            return p
        return rng.binomial(int(spec.trials), p) / spec.trials  # beta-binomial


def _sbc_simulate(
    law: Law,
    design: Any,
    num: int,
    *,
    likelihood: str,
    noise_scale: float,
    seed: int,
    priors: Mapping[str, Any] | None,
    df: float | None,
    trials: float | None = None,
) -> dict[str, Any]:
    """Prior draws and simulated losses of :func:`sbc` (deterministic in ``seed``)."""
    from ._fit import reference_point

    design = sbc_design(law) if design is None else as_scaling_data(design)
    design.require(law.inputs, num_params=law.num_params + 1, law=law.name)
    ref = reference_point(design, law.inputs)
    base = build_model(law, likelihood=likelihood, priors=priors, df=df, trials=trials)
    spec = _fixed_prior_spec(base, ref)
    seeds = np.random.SeedSequence(int(seed)).spawn(5)
    rng = np.random.default_rng(seeds[0])

    def draw(rng, n, offset):
        return {
            name: np.asarray(_sample_prior(spec.prior(name, ref), rng, n, offset + j), np.float64)
            for j, name in enumerate(spec.site_names)
        }

    truth = draw(rng, num, int(seed))
    _check_law_ignores_loss_level(law, truth, design, ref)
    log_x = {k: np.log(np.asarray(getattr(design, k), dtype=np.float64)) for k in law.inputs}
    loss = _simulate(spec, truth, log_x, ref, noise_scale, np.random.default_rng(seeds[1]))
    upper = 1.0 if likelihood in ("beta", "binomial") else np.inf

    def is_valid(y):
        return np.all(np.isfinite(y) & (y > 0) & (y < upper), axis=1)

    # Data no fit can take (a Beta draw that rounds to exactly 1.0 in float64, an overflow)
    # are drawn again, parameters and data together, from a stream of their own: SBC ranks are
    # uniform given the data, so conditioning on valid data keeps them uniform.
    valid = is_valid(loss)
    redrawn = 0
    redraw_rng = np.random.default_rng(seeds[4])
    for _ in range(SBC_MAX_REDRAWS):
        bad = np.flatnonzero(~valid)
        if not bad.size:
            break
        redrawn += bad.size
        offset = int(redraw_rng.integers(2**31))
        new_truth = draw(redraw_rng, bad.size, offset)
        new_loss = _simulate(spec, new_truth, log_x, ref, noise_scale, redraw_rng)
        for name in truth:
            truth[name][bad] = new_truth[name]
        loss[bad] = new_loss
        valid = is_valid(loss)
    return {
        "redrawn": redrawn,
        "design": design,
        "ref": ref,
        "base": base,
        "spec": spec,
        "seeds": seeds,
        "truth": truth,
        "log_x": log_x,
        "loss": loss,
        "valid": valid,
    }


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Result of :func:`sbc`: ranks, uniformity tests, coverage and convergence per simulation.

    Attributes
    ----------
    law, likelihood
        The law's name and the likelihood of the model.
    noise_scale
        Multiplier of the noise scale in the simulator (1: the model is right).
    design
        The simulation design (its ``loss`` column is the prior's reference loss level).
    ref
        The reference point the priors were fixed at (log inputs, log loss level).
    quantities
        Test quantities, in table order: the sampled law parameters, the noise sites,
        ``log_lik`` and ``loss_10x``.
    truth
        Quantity -> true value per simulation (sim,).
    ranks
        Quantity -> rank of the truth among the thinned posterior draws (sim,), -1 for a failed
        simulation; ``num_rank_draws`` (sim,) is the number of thinned draws ``L`` (ranks lie in
        0..L).
    pit
        Quantity -> normalised rank ``(rank + V) / (L + 1)`` with ``V ~ U(0, 1)`` (sim,): uniform
        on (0, 1) under a calibrated sampler whatever each simulation's ``L``; NaN when failed.
    inside50, inside90
        Quantity -> whether the truth lies in the central 50% / 90% posterior interval (all
        draws, not thinned) (sim,).
    status
        Per simulation: the fit's convergence status (``ok``, ``divergences``, ``rhat_high``,
        ``ess_low``, ``bfmi_low``) or ``failed`` (no usable posterior: invalid simulated data
        or non-finite draws); ``messages`` says why a simulation failed or missed the
        convergence gate (the :class:`~bayescale.results.Convergence` problems); ``retried`` flags
        fits re-run by ``fit_many``'s automatic retry.
    diagnostics
        Per simulation (sim,): ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``,
        ``divergences``, ``min_bfmi`` of the sampled sites, and ``thin`` (thinning factor).
    simulated_loss
        The simulated losses (sim, point) on ``design`` (NaN-free only for valid simulations);
        :meth:`data` returns one simulation as a :class:`~bayescale.ScalingData`.
    num_bins
        Bins of the chi-square uniformity test.
    settings
        Sampler settings, seed and ``fit_kwargs``; ``timing`` the seconds spent.
    """

    law: str
    likelihood: str
    noise_scale: float
    design: ScalingData
    ref: Mapping[str, float]
    quantities: tuple[str, ...]
    truth: Mapping[str, np.ndarray]
    ranks: Mapping[str, np.ndarray]
    num_rank_draws: np.ndarray
    pit: Mapping[str, np.ndarray]
    inside50: Mapping[str, np.ndarray]
    inside90: Mapping[str, np.ndarray]
    status: np.ndarray
    messages: tuple[str, ...]
    retried: np.ndarray
    diagnostics: Mapping[str, np.ndarray]
    simulated_loss: np.ndarray
    num_bins: int
    settings: Mapping[str, Any]
    timing: Mapping[str, float]

    def data(self, i: int) -> ScalingData:
        """Simulation ``i`` as data (to refit it with :func:`bayescale.fit` and look closer)."""
        from .data import DataWarning, from_arrays

        inputs = {k: getattr(self.design, k) for k in self.design.inputs}
        with warnings.catch_warnings():  # simulated losses may exceed 15 ("perplexity?")
            warnings.simplefilter("ignore", DataWarning)
            return from_arrays(**inputs, loss=self.simulated_loss[i])

    @property
    def num_simulations(self) -> int:
        """Number of simulations, failed ones included."""
        return len(self.status)

    @property
    def failed(self) -> np.ndarray:
        """Boolean (sim,): the simulation has no usable posterior."""
        return self.status == SBC_FAILED

    @property
    def num_failed(self) -> int:
        """Simulations without a usable posterior (they count against :attr:`passed`)."""
        return int(self.failed.sum())

    def histogram(self, quantity: str, num_bins: int | None = None) -> np.ndarray:
        """Counts of the normalised ranks of ``quantity`` in ``num_bins`` equal bins."""
        bins = self.num_bins if num_bins is None else int(num_bins)
        u = self.pit[quantity][~self.failed]
        return np.histogram(u, bins=bins, range=(0.0, 1.0))[0]

    def chi2(self, quantity: str) -> tuple[float, float]:
        """Pearson chi-square statistic and p-value of the rank histogram against uniform."""
        counts = self.histogram(quantity)
        if counts.sum() == 0:
            return math.nan, math.nan
        res = stats.chisquare(counts)
        return float(res.statistic), float(res.pvalue)

    def coverage_band(self, prob: float = 0.9) -> tuple[float, float]:
        """Acceptance interval of the coverage at this number of fitted simulations."""
        return coverage_band(int((~self.failed).sum()), prob, SBC_ALPHA)

    def table(self) -> pd.DataFrame:
        """One row per test quantity: ``n`` (ranked simulations), ``chi2``, ``p_value``,
        ``cov50``, ``cov90``, ``mean_pit`` (0.5 when calibrated; below: the truth tends to lie
        below the posterior), ``passed`` (p >= 0.001 and cov90 within :meth:`coverage_band`)."""
        ok = ~self.failed
        lo, hi = self.coverage_band(0.9)
        rows = []
        for q in self.quantities:
            chi2, p = self.chi2(q)
            cov50 = float(self.inside50[q][ok].mean()) if ok.any() else math.nan
            cov90 = float(self.inside90[q][ok].mean()) if ok.any() else math.nan
            rows.append(
                {
                    "quantity": q,
                    "n": int(ok.sum()),
                    "chi2": chi2,
                    "p_value": p,
                    "cov50": cov50,
                    "cov90": cov90,
                    "mean_pit": float(np.mean(self.pit[q][ok])) if ok.any() else math.nan,
                    "passed": bool(p >= SBC_ALPHA and lo <= cov90 <= hi),
                }
            )
        table = pd.DataFrame(rows)
        table.attrs.update(
            law=self.law, num_bins=self.num_bins, cov90_band=(lo, hi), failed=self.num_failed
        )
        return table

    @property
    def min_p_value(self) -> float:
        """Smallest chi-square p-value over the test quantities; NaN when a quantity has none
        (no simulation was ranked: every one failed), never a p-value that hides it."""
        p = np.array([self.chi2(q)[1] for q in self.quantities], dtype=float)
        return math.nan if p.size == 0 or np.isnan(p).any() else float(p.min())

    @property
    def passed(self) -> bool:
        """Every quantity's rank histogram passes (p >= 0.001), every 90% coverage lies in the
        binomial band at level 0.001, and no simulation failed."""
        return self.num_failed == 0 and bool(self.table()["passed"].all())

    def gate(self) -> dict[str, float]:
        """Fractions of the simulations meeting each convergence criterion (DESIGN.md §5)
        after the automatic retry: ``rhat`` (R-hat <= 1.01), ``ess_bulk``, ``ess_tail``
        (>= 400), ``divergences`` (none), ``bfmi`` (E-BFMI >= 0.3) and ``all`` (status ``ok``);
        failed simulations count as misses. ``retried``: fraction re-fitted."""
        from .results import BFMI_MIN, ESS_MIN, RHAT_MAX

        d = self.diagnostics
        with np.errstate(invalid="ignore"):
            checks = {
                "rhat": d["max_rhat"] <= RHAT_MAX,
                "ess_bulk": d["min_ess_bulk"] >= ESS_MIN,
                "ess_tail": d["min_ess_tail"] >= ESS_MIN,
                "divergences": d["divergences"] == 0,
                "bfmi": d["min_bfmi"] >= BFMI_MIN,
            }
        out = {k: float(np.mean(v & ~self.failed)) for k, v in checks.items()}
        out["all"] = float(np.mean(self.status == "ok"))
        out["retried"] = float(np.mean(self.retried))
        return out

    def gate_by(
        self, quantity: str = "sigma", edges: Sequence[float] = SBC_NOISE_BANDS
    ) -> pd.DataFrame:
        """Share of simulations meeting the convergence gate per band of a true value.

        Shows where in the prior the sampler struggles. The default, the noise scale
        ``sigma`` in bands < 0.01, 0.01-0.03, 0.03-0.08 and >= 0.08, shows that the broken
        power laws miss the gate mostly on precise data (README, "Can I trust the forecast?").

        Parameters
        ----------
        quantity
            A test quantity with true values (:attr:`truth`): a sampled parameter or a noise
            site, ``log_lik`` or ``loss_10x``.
        edges
            Strictly increasing inner band edges (see :func:`gate_by_band`).

        Returns
        -------
        pandas.DataFrame
            One row per band (:func:`gate_by_band`): ``band``, ``lower``, ``upper``,
            ``simulations``, ``met``, ``share`` and a count per status that missed the gate.

        Raises
        ------
        ValueError
            For a quantity without true values (the message lists those that have them) or
            bad edges.

        Examples
        --------
        >>> from bayescale import check
        >>> res = check.sbc("power_n", num_simulations=20)  # doctest: +SKIP
        >>> res.gate_by("sigma")[["band", "simulations", "share"]]  # doctest: +SKIP
        """
        if quantity not in self.truth:
            raise ValueError(
                f"gate_by: no true values of {quantity!r}; the quantities of this SBC are "
                f"{', '.join(self.truth)}"
            )
        return gate_by_band(self.truth[quantity], self.status, edges)

    def status_counts(self) -> dict[str, int]:
        """How many simulations ended in each status."""
        return dict(Counter(self.status.tolist()).most_common())

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to re-check the result (JSON-serialisable)."""

        def arr(a: np.ndarray) -> list:
            a = np.asarray(a)
            if a.dtype.kind == "f":
                return [None if not np.isfinite(v) else float(v) for v in a]
            return a.tolist()

        return {
            "law": self.law,
            "likelihood": self.likelihood,
            "noise_scale": self.noise_scale,
            "num_simulations": self.num_simulations,
            "num_failed": self.num_failed,
            "passed": self.passed,
            "num_bins": self.num_bins,
            "cov90_band": list(self.coverage_band(0.9)),
            "table": self.table().to_dict(orient="records"),
            "gate": self.gate(),
            "status_counts": self.status_counts(),
            "settings": dict(self.settings),
            "timing": dict(self.timing),
            "ref": {k: float(v) for k, v in self.ref.items()},
            "design": {k: arr(getattr(self.design, k)) for k in self.design.inputs},
            "ranks": {q: arr(self.ranks[q]) for q in self.quantities},
            "num_rank_draws": arr(self.num_rank_draws),
            "pit": {q: arr(self.pit[q]) for q in self.quantities},
            "truth": {q: arr(self.truth[q]) for q in self.quantities},
            "status": arr(self.status),
            "retried": arr(self.retried),
            "messages": [m for m in self.messages],
            "diagnostics": {k: arr(v) for k, v in self.diagnostics.items()},
        }

    def to_json(self, path: str | None = None, **kwargs: Any) -> str:
        """The :meth:`to_dict` record as JSON text (also written to ``path`` when given)."""
        import json

        text = json.dumps(self.to_dict(), default=str, **kwargs)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"SBC of {self.law!r} ({self.likelihood}, noise x{self.noise_scale:g}): "
            f"{self.num_simulations} simulations, {self.num_failed} failed, {verdict}; "
            f"gate {100 * self.gate()['all']:.1f}% ok"
        ]
        lines.append(self.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        return "\n".join(lines)


def sbc(
    law: str | Law,
    design: Any = None,
    num_simulations: int = 200,
    *,
    likelihood: str = "lognormal",
    noise_scale: float = 1.0,
    thin: int | str = "ess",
    natural: bool = False,
    num_bins: int | None = None,
    seed: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SBCResult:
    """Simulation-based calibration: is the posterior of ``law`` honest on a design?

    Draws ``num_simulations`` parameter sets from the prior, simulates one data set per draw
    on ``design`` with the model's own likelihood, fits all of them in one
    :func:`bayescale.fit_many` call, and ranks each true value among its posterior draws.
    When the sampler computes the posterior correctly, every rank is uniform (Talts et al.
    2018), and central ``p`` intervals cover the truth in a fraction ``p`` of simulations.

    Test quantities: every sampled law parameter (``law.param_names``, e.g. ``log_L_ref``,
    ``frac``, ``alpha``) and the noise scale ``sigma``; the log-likelihood of the simulated
    data, ``log p(y | theta)`` (it reacts to a wrong likelihood that marginal ranks miss,
    Modrák et al. 2023); and the law's mean loss at 10x every input's largest design value
    (``loss_10x``: the extrapolation a user asks for). ``natural=True`` adds the published
    parameters (``E``, ``A``, ...).

    Parameters
    ----------
    law
        Law name or :class:`~bayescale.laws.Law`.
    design
        Where the runs lie: a :class:`~bayescale.ScalingData`, DataFrame, CSV path or dict of
        arrays with the law's inputs and a ``loss`` column; default :func:`sbc_design`. The
        ``loss`` values set only the reference loss level of the priors (their mean log), as
        in :func:`bayescale.fit`; they are not fitted.
    num_simulations
        Simulated data sets. The uniformity test has ``sqrt(n / 2)`` bins (10 at 200, 5 at 50);
        the Monte Carlo sd of a coverage is ``sqrt(p (1 - p) / n)`` (0.021 for 90% at 200).
    likelihood
        Likelihood of model and simulator: ``"lognormal"`` (default), ``"student_t"``,
        ``"laplace"``, ``"normal"`` or, for accuracies, ``"beta"`` or ``"binomial"`` (then
        ``fit_kwargs={"trials": n}``, the items per evaluation: the simulator draws counts of
        ``n`` items and the fit reads them back as accuracies ``k / n``).
    noise_scale
        Multiplier of the noise scale in the *simulator* only. 1 checks the sampler; 1.5 is
        the negative control: the model then underestimates the noise, and the check must
        fail (the ranks of ``sigma`` pile up at 0).
    thin
        ``"ess"`` (default): each fit's chains are thinned by ``ceil(draws / ESS)``, with ESS
        the smallest bulk or tail ESS over the test quantities, so the ranked draws are
        near-independent (Talts et al. 2018, Sec. 5.1); an integer thins by that factor
        (``1``: every draw; a bool is refused).
    natural
        Also rank the published parameters.
    num_bins
        Bins of the rank histogram (default ``sqrt(n / 2)`` clipped to 2..20).
    seed
        Seed of the prior draws, the simulated noise, the samplers and the rank jitter.
    fit_kwargs
        Keywords of :func:`bayescale.fit_many` (``num_chains``, ``num_warmup``,
        ``num_samples``, ``target_accept_prob``, ``max_tree_depth``, ``retry``, ``priors``,
        ``df``, ``trials``, ``batch_size``, ``client`` ...); its defaults otherwise.
    progress
        Show ``fit_many``'s progress bar.

    Returns
    -------
    SBCResult
        ``table()`` (chi-square p-value, 50%/90% coverage per quantity), ``passed``,
        ``gate()`` (convergence fractions), ``histogram(q)``, ``to_json()``.

    Notes
    -----
    *The reference point.* bayescale's default priors are centred on a reference point of the
    data: the log geometric-mean inputs and the mean log loss (:func:`bayescale._fit.
    reference_point`). A prior that reads the simulated data is not a prior, and SBC is exact
    only for a fixed one. So the reference is computed once, from the design, with
    ``reference_point(design, law.inputs)`` exactly as ``bs.fit`` does (the design's ``loss``
    column gives the loss level: 2.5 nats by default, 0.5 for accuracies), every prior is
    evaluated there, and these fixed distributions are passed to ``fit_many`` as ``priors=``
    overrides. The reference-centred parametrisation reads only the log inputs, which are the
    design's in every simulation, so simulator and fit share the same parameters. The check
    therefore tests the model code, the sampler (warm-up, adaptation, tree-depth cap of the
    batch engine, retry) and the diagnostics, under the prior a user with this design and
    loss level gets by default.

    *Invalid data.* A simulated data set that no fit can take (an accuracy that rounds to
    exactly 1.0 under the Beta likelihood, a count of 0 or of every item under the binomial
    one, an overflow) is drawn again, parameters and data, up to :data:`SBC_MAX_REDRAWS`
    times; ``settings["redrawn"]`` counts them. Ranks are uniform given the data (the truth and
    the draws are exchangeable given y), so conditioning on valid data keeps the check exact.

    *Ranks.* A simulation whose fit fails (data still invalid, non-finite draws) keeps its
    row with status ``failed`` and counts against ``passed``; unconverged fits are ranked like
    the others (dropping them would bias the ranks) and reported in ``status`` and
    ``gate()``.

    References
    ----------
    Talts, Betancourt, Simpson, Vehtari & Gelman 2018, *Validating Bayesian Inference
    Algorithms with Simulation-Based Calibration*, arXiv:1804.06788; Modrák, Moon, Kim,
    Bürkner, Huurre, Faltejsková, Gelman & Vehtari 2023, *Simulation-Based Calibration
    Checking for Bayesian Computation: The Choice of Test Quantities Shapes Sensitivity*,
    Bayesian Analysis, arXiv:2211.02383.

    Examples
    --------
    >>> import bayescale as bs
    >>> res = bs.check.sbc("power_n", num_simulations=50,
    ...                    fit_kwargs={"num_chains": 2})           # doctest: +SKIP
    >>> res.table()[["quantity", "p_value", "cov90"]]              # doctest: +SKIP
    >>> res.passed                                                 # doctest: +SKIP
    True
    """
    from .batch import _batch_loglik_fn, _batch_mean_fn, fit_many
    from .data import DataWarning

    start = time.perf_counter()
    law_obj = get_law(law)
    num = int(num_simulations)
    if num < 2:
        raise ValueError(f"num_simulations must be >= 2, got {num_simulations!r}")
    if not (noise_scale > 0 and math.isfinite(noise_scale)):
        raise ValueError(f"noise_scale must be a positive number, got {noise_scale!r}")
    integer = isinstance(thin, int | np.integer) and not isinstance(thin, bool | np.bool_)
    if not ((isinstance(thin, str) and thin == "ess") or (integer and thin >= 1)):
        raise ValueError(f"thin must be 'ess' or a positive integer, got {thin!r}")
    kwargs = dict(fit_kwargs or {})
    for bad in ("likelihood", "rng_key", "progress"):
        if bad in kwargs:
            raise ValueError(f"pass {bad} to sbc() itself, not in fit_kwargs")
    sim = _sbc_simulate(
        law_obj,
        design,
        num,
        likelihood=likelihood,
        noise_scale=noise_scale,
        seed=seed,
        priors=kwargs.pop("priors", None),
        df=kwargs.pop("df", 4.0),
        trials=kwargs.pop("trials", None),
    )
    design, ref, spec, base = sim["design"], sim["ref"], sim["spec"], sim["base"]
    truth_params, loss, sim_ok, log_x = sim["truth"], sim["loss"], sim["valid"], sim["log_x"]
    sites = spec.site_names
    seeds = sim["seeds"]
    upper = 1.0 if likelihood in ("beta", "binomial") else np.inf
    ids = [f"sim{i:04d}" for i in range(num)]
    curves = {}
    for i in np.flatnonzero(sim_ok):
        curves[ids[i]] = {**{k: getattr(design, k) for k in law_obj.inputs}, "loss": loss[i]}
    simulated_s = time.perf_counter() - start

    # ---- one fit_many call for every simulation
    fit_start = time.perf_counter()
    batch = None
    if curves:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DataWarning)
            batch = fit_many(
                curves,
                law_obj,
                likelihood=likelihood,
                priors=dict(spec.priors),
                df=spec.df,
                trials=spec.trials,
                rng_key=int(seeds[2].generate_state(1)[0] >> 1),
                progress=progress,
                **kwargs,
            )
    fit_s = time.perf_counter() - fit_start

    # ---- test quantities: truth (sim,) and posterior draws (sim, chain, draw)
    quantities = list(sites)
    nat_names: list[str] = []
    if natural:
        nat_names = [n for n in law_obj.natural_names if n not in sites]
        quantities[law_obj.num_params : law_obj.num_params] = nat_names
    quantities += [SBC_LOGLIK, SBC_EXTRAPOLATION]
    status = np.full(num, SBC_FAILED, dtype=object)
    messages = ["" for _ in range(num)]
    retried = np.zeros(num, dtype=bool)
    for i in np.flatnonzero(~sim_ok):
        bad = ~(np.isfinite(loss[i]) & (loss[i] > 0) & (loss[i] < upper))
        messages[i] = (
            f"simulated data invalid for the {likelihood} likelihood: point "
            f"{int(np.argmax(bad))} has loss {loss[i][np.argmax(bad)]!r}"
        )
    if batch is not None:
        chains, draws_per_chain = batch.config.num_chains, batch.config.num_samples
    else:  # nothing could be fitted: fit_many's defaults, for the shapes only
        chains = int(kwargs.get("num_chains", 4))
        draws_per_chain = int(kwargs.get("num_samples", 1000))
    post = {q: np.full((num, chains, draws_per_chain), np.nan) for q in quantities}
    diag = {
        k: np.full(num, np.nan)
        for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "min_bfmi", "thin")
    }
    diag["divergences"] = np.zeros(num, dtype=np.int64)
    rows = np.array([], dtype=int)
    if batch is not None:
        rows = np.array([int(cid[3:]) for cid in batch.curve_ids], dtype=int)
        status[rows] = batch.status
        retried[rows] = batch.retried
        for j, i in enumerate(rows):
            messages[i] = batch.message(batch.curve_ids[j])
        bd = batch.diagnostics
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            diag["max_rhat"][rows] = np.max(bd["r_hat"], axis=1)
            diag["min_ess_bulk"][rows] = np.min(bd["ess_bulk"], axis=1)
            diag["min_ess_tail"][rows] = np.min(bd["ess_tail"], axis=1)
        diag["min_bfmi"][rows] = bd["min_bfmi"]
        diag["divergences"][rows] = bd["divergences"]
        for name in sites:
            post[name][rows] = batch.samples[name]
        if nat_names:
            for name in nat_names:
                post[name][rows] = batch.params[name]
        post[SBC_LOGLIK][rows] = _sbc_loglik(
            _batch_loglik_fn(spec), batch.samples, sites, log_x, ref, loss[rows]
        )
        target = {
            k: np.log(SBC_EXTRAPOLATION_FACTOR * np.max(np.exp(v)))[None] for k, v in log_x.items()
        }
        post[SBC_EXTRAPOLATION][rows] = _sbc_extrapolate(
            _batch_mean_fn(law_obj), batch.samples, law_obj.param_names, target, ref
        )
    truth = {name: truth_params[name] for name in sites}
    if nat_names:
        nat = law_obj.natural({k: truth_params[k] for k in law_obj.param_names}, ref)
        truth.update({n: np.asarray(nat[n], dtype=np.float64) for n in nat_names})
    truth[SBC_LOGLIK] = np.full(num, np.nan)
    truth[SBC_EXTRAPOLATION] = np.full(num, np.nan)
    valid = np.flatnonzero(sim_ok)
    if valid.size:
        one = {k: v[valid][:, None, None] for k, v in truth_params.items()}
        truth[SBC_LOGLIK][valid] = _sbc_loglik(
            _batch_loglik_fn(spec), one, sites, log_x, ref, loss[valid]
        )[:, 0, 0]
        target = {
            k: np.log(SBC_EXTRAPOLATION_FACTOR * np.max(np.exp(v)))[None] for k, v in log_x.items()
        }
        truth[SBC_EXTRAPOLATION][valid] = _sbc_extrapolate(
            _batch_mean_fn(law_obj), one, law_obj.param_names, target, ref
        )[:, 0, 0]
    finite = np.all(
        [np.isfinite(post[q]).all(axis=(1, 2)) & np.isfinite(truth[q]) for q in quantities],
        axis=0,
    )
    for i in np.flatnonzero(~finite & (status != SBC_FAILED)):
        status[i] = SBC_FAILED
        messages[i] = messages[i] or "non-finite posterior draws or test quantity"
    ok = status != SBC_FAILED

    # ---- thinning, ranks, coverage
    jitter_rng = np.random.default_rng(seeds[3])
    jitter = jitter_rng.uniform(size=(len(quantities), num))
    stacked = np.stack([post[q] for q in quantities], axis=1)  # (sim, quantity, chain, draw)
    total = chains * draws_per_chain
    thin_f = np.ones(num, dtype=int)
    if ok.any():
        if thin == "ess":
            from .infer import batch as engine

            sub = stacked[ok]
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: handled below
                ess = np.nanmin(np.minimum(engine.ess_bulk(sub), engine.ess_tail(sub)), axis=1)
            # the smallest finite ESS sets the thinning; with none (never seen: fits with
            # non-finite draws are not ranked) every draw is kept rather than one per chain
            ess = np.where(np.isfinite(ess), ess, float(total))
            thin_f[ok] = np.maximum(1, np.ceil(total / np.maximum(ess, 1.0))).astype(int)
        else:
            thin_f[:] = int(thin)
    diag["thin"] = np.where(ok, thin_f, np.nan)
    ranks = {q: np.full(num, -1, dtype=np.int64) for q in quantities}
    pit = {q: np.full(num, np.nan) for q in quantities}
    inside50 = {q: np.zeros(num, dtype=bool) for q in quantities}
    inside90 = {q: np.zeros(num, dtype=bool) for q in quantities}
    num_rank = np.zeros(num, dtype=np.int64)
    for i in np.flatnonzero(ok):
        kept = stacked[i][:, :, :: thin_f[i]].reshape(len(quantities), -1)
        full = stacked[i].reshape(len(quantities), -1)
        num_rank[i] = kept.shape[1]
        q_lo50, q_hi50, q_lo90, q_hi90 = np.quantile(full, [0.25, 0.75, 0.05, 0.95], axis=1)
        for j, q in enumerate(quantities):
            t = truth[q][i]
            r = int(np.sum(kept[j] < t))
            ranks[q][i] = r
            pit[q][i] = (r + jitter[j, i]) / (num_rank[i] + 1)
            inside50[q][i] = q_lo50[j] <= t <= q_hi50[j]
            inside90[q][i] = q_lo90[j] <= t <= q_hi90[j]
    settings = {
        "num_simulations": num,
        "seed": int(seed),
        "thin": thin,
        "fit_kwargs": {k: v for k, v in kwargs.items() if k != "client"},
        "num_chains": chains,
        "num_samples": draws_per_chain,
        "priors": "defaults at the design's reference point"
        if not base.priors
        else "user overrides at the design's reference point",
        "df": spec.df,
        "trials": spec.trials,
        "redrawn": int(sim["redrawn"]),
    }
    timing = {
        "simulate_s": simulated_s,
        "fit_s": fit_s,
        "total_s": time.perf_counter() - start,
    }
    if batch is not None:
        timing.update({k: float(v) for k, v in batch.timing.items()})
    return SBCResult(
        law=law_obj.name,
        likelihood=likelihood,
        noise_scale=float(noise_scale),
        design=design,
        ref=ref,
        quantities=tuple(quantities),
        truth=truth,
        ranks=ranks,
        num_rank_draws=num_rank,
        pit=pit,
        inside50=inside50,
        inside90=inside90,
        status=status.astype(str),
        messages=tuple(messages),
        retried=retried,
        diagnostics=diag,
        simulated_loss=loss,
        num_bins=_sbc_bins(int(ok.sum())) if num_bins is None else int(num_bins),
        settings=settings,
        timing=timing,
    )


def _sbc_loglik(fn, samples, sites, log_x, ref, loss, chunk: int = 32) -> np.ndarray:
    """Total log-likelihood of each simulation's data under its draws: (sim, chain, draw)."""
    import jax.numpy as jnp

    num = len(loss)
    n = loss.shape[1]
    out = []
    for s in range(0, num, chunk):
        part = slice(s, min(s + chunk, num))
        k = part.stop - part.start
        ll = fn(
            {name: jnp.asarray(samples[name][part]) for name in sites},
            {name: jnp.asarray(np.broadcast_to(v, (k, n))) for name, v in log_x.items()},
            {name: jnp.full(k, float(v)) for name, v in ref.items()},
            jnp.asarray(np.log(loss[part])),
            jnp.ones((k, n), dtype=bool),
        )
        out.append(np.asarray(ll).sum(axis=-1))
    return np.concatenate(out, axis=0)


def _sbc_extrapolate(fn, samples, names, target, ref, chunk: int = 64) -> np.ndarray:
    """The law's mean loss at ``target`` under each simulation's draws: (sim, chain, draw)."""
    import jax.numpy as jnp

    first = np.asarray(samples[names[0]])
    num, shape = first.shape[0], first.shape[1:]
    out = []
    for s in range(0, num, chunk):
        part = slice(s, min(s + chunk, num))
        k = part.stop - part.start
        params = {
            name: jnp.asarray(np.asarray(samples[name][part]).reshape(k, -1)) for name in names
        }
        log_mu = fn(
            params,
            {name: jnp.asarray(v) for name, v in target.items()},
            {name: jnp.full(k, float(v)) for name, v in ref.items()},
        )
        out.append(np.exp(np.asarray(log_mu)[..., 0]).reshape(k, *shape))
    return np.concatenate(out, axis=0)
