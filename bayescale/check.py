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

References
----------
Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt*, arXiv:2404.10102;
Gadre et al. 2024, *Language models scale reliably with over-training and on downstream tasks*,
arXiv:2403.08540 (extrapolation from small runs); Alabdulmohsin, Neyshabur & Zhai 2022,
*Revisiting Neural Scaling Laws in Language and Vision*, arXiv:2209.06640 (held-out
extrapolation benchmark); Gneiting & Raftery 2007, *Strictly Proper Scoring Rules, Prediction,
and Estimation*, JASA 102 (log score).
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import logsumexp

from .data import DataError, ScalingData, as_scaling_data
from .laws import Law
from .laws import get as get_law
from .model import build_model
from .results import ConvergenceWarning, ExtrapolationWarning, Fit

__all__ = [
    "BACKTEST_COLUMNS",
    "E_CORR_MIN_RATIO",
    "E_CORR_WARN",
    "E_SD_RATIO_WARN",
    "SYNTHETIC_LAWS",
    "IdentifiabilityWarning",
    "backtest",
    "backtest_points",
    "identifiability",
    "identifiability_stats",
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
    return f"{cut:g}"


def _check_probs(prob: float | Sequence[float]) -> tuple[float, ...]:
    probs = (prob,) if isinstance(prob, int | float) else tuple(prob)
    if not probs:
        raise ValueError("prob must name at least one interval mass")
    for p in probs:
        if not 0 < p < 1:
            raise ValueError(f"interval masses must lie in (0, 1), got {p!r}")
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

    The density is that of the *log* loss for every likelihood (for ``"normal"``, the density of
    the loss times the Jacobian ``y``), so values compare across likelihoods.
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
    backtest_points(b, ...)]), by=["cut"])``.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, curve, cut, law, likelihood, row`` (0-based row of ``data``), the
        axis value ``x``, observed ``loss``; the forecast ``median`` (posterior median of the
        law's mean loss), ``pred_median``, ``lower50 .. upper90`` (central posterior-predictive
        intervals, one pair per ``prob``), ``extrapolation`` (times beyond the training range,
        as in :meth:`Fit.predict`), ``are`` (absolute relative error of ``median``), ``lpd``
        (log predictive density of the observed log loss, nats); and per fit ``n_train``,
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
                fits = fit_many(combined, law_obj, **kwargs)
            batch_s = (time.perf_counter() - start) / len(todo)
        for cid, train_rows, test_rows, train, test, why in jobs:
            frames.append(
                _points_of_job(
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
            )
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
        Output of :func:`backtest_points`, or several of them concatenated.
    by
        Grouping columns. ``["cut"]`` pools every dataset and curve per cut: medians and
        coverages are then taken over all held-out runs together.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n_fits`` (fits in the group), ``n_train`` (training runs, summed
        over fits), ``n_test`` (held-out runs; the scores cover those of fitted cuts),
        ``max_extrapolation``,
        ``median_are`` and ``mean_are`` (absolute relative error of the median forecast),
        ``rmsle`` (root mean squared log error of the median, the metric of Alabdulmohsin et
        al. 2022), ``cov50``, ``cov90`` (fraction of held-out runs inside the central 50% /
        90% posterior-predictive interval), ``lpd`` (mean log predictive density per held-out
        run, nats), ``weak_E`` (fits with identifiability warnings), ``status`` (the fit's
        convergence status, ``too_few_runs``, or for pooled groups the count of each status,
        e.g. ``"ok: 38, divergences: 2"``) and ``fit_s`` (mean seconds per fit).

    Examples
    --------
    >>> points = backtest_points(data, "chinchilla")              # doctest: +SKIP
    >>> summarize(points, by=["cut"])[["cut", "median_are", "cov90"]]  # doctest: +SKIP
    """
    if by is None:
        by = [c for c in ("dataset", "curve", "cut", "law", "likelihood") if c in points]
    by = list(by)
    cover = sorted(
        {int(m.group(1)) for c in points.columns if (m := re.fullmatch(r"lower(\d+)", c))}
    )
    fit_key = [c for c in ("dataset", "curve", "cut", "law", "likelihood") if c in points]
    rows = []
    for key, group in points.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        fits = group.drop_duplicates(fit_key)
        scored = group[np.isfinite(group["median"].to_numpy(dtype=float))]
        loss = scored["loss"].to_numpy(dtype=float)
        med = scored["median"].to_numpy(dtype=float)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        for c in ("law", "likelihood"):
            if c not in row and c in group:
                row[c] = ", ".join(dict.fromkeys(group[c].astype(str)))
        row["n_fits"] = len(fits)
        row["n_train"] = int(fits["n_train"].sum())
        row["n_test"] = int(np.isfinite(group["loss"].to_numpy(dtype=float)).sum())
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
        row["fit_s"] = float(fits["fit_s"].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    order = []
    for c in BACKTEST_COLUMNS:
        if c == "cov50":
            order += [f"cov{q}" for q in cover]
        elif c in table and c != "cov90":
            order.append(c)
    return table[order + [c for c in table.columns if c not in order]]


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
        A fit of a law with a natural parameter ``E``.
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
    if "E" not in fit.law.natural_names:
        return {}
    post = np.asarray(fit.params["E"]).reshape(-1)
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
    prior_e = np.asarray(fit.law.natural(prior, ref)["E"])
    prior_e = prior_e[np.isfinite(prior_e)]
    out = {
        "post_sd": float(post.std(ddof=1)),
        "prior_sd": float(prior_e.std(ddof=1)),
    }
    out["sd_ratio"] = out["post_sd"] / out["prior_sd"] if out["prior_sd"] > 0 else np.nan
    for name in fit.law.natural_names:
        if name != "E" and _EXPONENT.match(name):
            other = np.asarray(fit.params[name]).reshape(-1)
            if post.std() > 0 and other.std() > 0:
                out[f"corr_{name}"] = float(np.corrcoef(post, other)[0, 1])
    return out


def identifiability(
    fit: Fit,
    *,
    sd_ratio: float = E_SD_RATIO_WARN,
    corr: float = E_CORR_WARN,
    corr_min_ratio: float = E_CORR_MIN_RATIO,
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
        A fitted law; laws without a parameter ``E`` (Kaplan laws) give no warnings.
    sd_ratio, corr, corr_min_ratio
        Thresholds.

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
    s = identifiability_stats(fit)
    if not s:
        return []
    out = []
    if s["sd_ratio"] > sd_ratio:
        out.append(
            f"the data barely constrain the irreducible loss E: its posterior sd "
            f"{s['post_sd']:.3g} is {100 * s['sd_ratio']:.0f}% of its prior sd {s['prior_sd']:.3g} "
            f"(at the data's loss level); forecasts beyond the data follow the prior of E - "
            "add runs at larger scale or state an informative prior"
        )
    corrs = {k[5:]: v for k, v in s.items() if k.startswith("corr_")}
    if corrs:
        name, value = max(corrs.items(), key=lambda kv: abs(kv[1]))
        if abs(value) > corr and s["sd_ratio"] > corr_min_ratio:
            out.append(
                f"the irreducible loss E trades off against {name}: posterior correlation "
                f"{value:+.2f} (|corr| > {corr:g}); the data fix a combination of the two, not "
                "E itself, so extrapolations depend on the prior of E"
            )
    return out
