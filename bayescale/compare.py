"""Compare fitted laws: PSIS-LOO table (Vehtari, Gelman & Gabry 2017) and held-out forecasts.

``compare([fit_a, fit_b, ...])`` ranks fits of the *same* runs by their expected log pointwise
predictive density estimated with Pareto-smoothed importance-sampling leave-one-out
cross-validation (PSIS-LOO, computed by ArviZ through :mod:`bayescale._arviz_compat`), with the
standard error of each difference and stacking weights (Yao et al. 2018). Pareto shape
estimates ``k > 0.7`` mark runs whose LOO estimate is unreliable (Vehtari et al. 2024); they are
counted per fit and raise a :class:`LOOWarning`.

All densities are of the **loss itself**: a law fitted with a likelihood on the log loss
(``lognormal``, ``student_t``, ``laplace``) has its pointwise log-likelihood shifted by the
Jacobian ``-log L``, so it can be compared with a ``normal`` (loss-scale) fit.

With ``holdout=`` (runs not used in any fit, e.g. the largest budgets; see
:func:`holdout_split`) the table adds the extrapolation score of each fit: the mean log
predictive density of the held-out runs, the median absolute relative error of the forecast
median, and the coverage of the central predictive interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp

from . import _arviz_compat as azc
from .data import DataError, ScalingData, as_scaling_data, check_positive_targets
from .infer.nuts import log_likelihood
from .results import ConvergenceWarning, ExtrapolationWarning, Fit

#: Inputs a run may carry (U: unique tokens, where ScalingData has it).
_INPUTS = ("N", "D", "C", "U")
#: Pareto shape above which a PSIS-LOO point estimate is unreliable.
PARETO_K_MAX = 0.7
METHODS = ("stacking", "pseudo-bma")


class LOOWarning(UserWarning):
    """PSIS-LOO is unreliable for some runs of a fit (Pareto k > 0.7)."""


# --------------------------------------------------------------------------- helpers
def _names(fits: Sequence[Fit], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(fits):
            raise ValueError(f"got {len(names)} names for {len(fits)} fits")
    else:
        names = [f.law.name for f in fits]
        if len(set(names)) < len(names):  # same law twice: tell them apart by likelihood
            names = [f"{f.law.name} ({f.spec.likelihood})" for f in fits]
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate fit names {dup}; pass names=[...]")
    return names


def _check_same_data(fits: Sequence[Fit], names: Sequence[str]) -> None:
    first = fits[0].data
    for fit, name in zip(fits[1:], names[1:], strict=True):
        d = fit.data
        same = len(d) == len(first) and np.array_equal(d.loss, first.loss)
        for k in _INPUTS:
            a, b = getattr(d, k, None), getattr(first, k, None)
            if a is not None and b is not None:
                same = same and np.allclose(a, b, rtol=1e-12)
        if not same:
            raise ValueError(
                f"fit {name!r} was fitted to different runs ({len(d)} rows) than "
                f"{names[0]!r} ({len(first)} rows); LOO compares fits of the same data"
            )


#: Likelihoods whose density is already of the loss (or accuracy) itself.
_LOSS_SCALE = ("normal", "beta")
#: Likelihoods of the log loss, whose density needs the Jacobian -log L.
_LOG_SCALE = ("lognormal", "student_t", "laplace")


def _loss_scale(fit: Fit, ll: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Pointwise log density of the loss itself, whatever the likelihood's scale.

    Log-loss likelihoods get the Jacobian ``-log L``; a count likelihood of ``n`` items
    (``"binomial"``, mass on accuracies ``k / n``) becomes a density with ``+log n``.
    """
    lik = fit.spec.likelihood
    if lik in _LOSS_SCALE:
        return ll
    if lik in _LOG_SCALE:
        return ll - np.log(loss)
    trials = getattr(fit.spec, "trials", None)
    if lik == "binomial" and trials:
        return ll + np.log(trials)
    raise ValueError(f"compare() does not know the scale of the {lik!r} likelihood")


def _loo_parts(result: Any) -> dict[str, Any]:
    """elpd, se, p_loo, pointwise elpd and Pareto k from an ArviZ 0.x or 1.x ELPDData."""

    def pick(*names):
        for n in names:
            try:
                value = result[n]  # ArviZ 0.x: a pandas Series
            except (KeyError, TypeError, IndexError):
                value = getattr(result, n, None)  # ArviZ 1.x: attributes
            if value is not None:
                return value
        raise KeyError(f"ArviZ loo result lacks all of {names}")

    return {
        "elpd": float(pick("elpd_loo", "elpd")),
        "se": float(pick("se")),
        "p_loo": float(pick("p_loo", "p")),
        "elpd_i": np.asarray(pick("loo_i", "elpd_i"), dtype=float).reshape(-1),
        "pareto_k": np.asarray(pick("pareto_k"), dtype=float).reshape(-1),
    }


def loo(fit: Fit) -> dict[str, Any]:
    """PSIS-LOO of one fit on the loss scale.

    Returns
    -------
    dict
        ``elpd`` (expected log pointwise predictive density), ``se``, ``p_loo`` (effective
        number of parameters), ``elpd_i`` and ``pareto_k`` (per run, shape (n,)).

    References
    ----------
    Vehtari, Gelman & Gabry 2017, *Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC*, Statistics and Computing 27, arXiv:1507.04544.
    """
    ll = _loss_scale(fit, fit.log_likelihood(), fit.data.loss)
    posterior = dict(fit.samples)  # as in fit.to_arviz(): ArviZ's relative ESS reads it
    for k, v in fit.params.items():
        posterior.setdefault(k, v)
    container = azc.from_dict(
        {"posterior": posterior, "log_likelihood": {"loss": ll}}, dims={"loss": ["run_index"]}
    )
    with warnings.catch_warnings():
        # ArviZ warns about high Pareto k in its own words; compare() reports them per fit
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _loo_parts(azc.loo(container, pointwise=True))


def stacking_weights(elpd_i: np.ndarray) -> np.ndarray:
    """Stacking weights of predictive distributions (Yao et al. 2018).

    Maximises ``sum_i log sum_k w_k exp(elpd_ik)`` over the simplex, as ArviZ's
    ``compare(method="stacking")`` does.

    Parameters
    ----------
    elpd_i
        Pointwise LOO log predictive densities, shape (n runs, K fits).

    References
    ----------
    Yao, Vehtari, Simpson & Gelman 2018, *Using stacking to average Bayesian predictive
    distributions*, Bayesian Analysis 13(3), arXiv:1704.02030.
    """
    x = np.asarray(elpd_i, dtype=float)
    dens = np.exp(x - x.max(axis=1, keepdims=True))  # per-run shift: same optimum
    k = dens.shape[1]
    if k == 1:
        return np.ones(1)

    def full(w):
        return np.concatenate([w, [max(1.0 - np.sum(w), 0.0)]])

    def objective(w):
        return -np.sum(np.log(dens @ full(w)))

    def gradient(w):
        mix = dens @ full(w)
        g = dens / mix[:, None]
        return -(g[:, :-1] - g[:, -1:]).sum(axis=0)

    res = minimize(
        objective,
        np.full(k - 1, 1.0 / k),
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * (k - 1),
        constraints=[
            {"type": "ineq", "fun": lambda w: 1.0 - np.sum(w)},
            {"type": "ineq", "fun": np.sum},
        ],
    )
    w = np.clip(full(res.x), 0.0, None)
    return w / w.sum()


def _pseudo_bma_weights(elpd: np.ndarray) -> np.ndarray:
    z = np.exp(elpd - np.max(elpd))
    return z / z.sum()


def holdout_split(
    data: Any,
    mask: Any = None,
    *,
    N: float | None = None,
    D: float | None = None,
    C: float | None = None,
) -> tuple[ScalingData, ScalingData]:
    """Split runs into a fitting set and a held-out extrapolation set.

    Parameters
    ----------
    data
        A :class:`~bayescale.data.ScalingData` or anything :func:`bayescale.as_scaling_data`
        accepts.
    mask
        Boolean array, True for the held-out runs.
    N, D, C
        Cuts instead of a mask: a run is held out when any of its inputs is >= the cut
        (e.g. ``C=1e21`` holds out every run of 1e21 FLOP or more).

    Returns
    -------
    (ScalingData, ScalingData)
        The runs to fit and the held-out runs.

    Examples
    --------
    >>> import bayescale as bs
    >>> train, test = holdout_split(bs.datasets.chinchilla_synthetic(seed=0), C=1e21)
    >>> len(test) > 0 and float(train.C.max()) < 1e21
    True
    """
    data = as_scaling_data(data)
    cuts = {k: v for k, v in (("N", N), ("D", D), ("C", C)) if v is not None}
    if (mask is None) == (not cuts):
        raise ValueError("give exactly one of mask= or cuts N=, D=, C=")
    if mask is not None:
        held = np.asarray(mask)
        if held.dtype != bool or held.shape != (len(data),):
            raise DataError(
                f"holdout mask must be boolean of shape ({len(data)},), got "
                f"{held.dtype} {held.shape}"
            )
    else:
        held = np.zeros(len(data), dtype=bool)
        for k, v in cuts.items():
            x = getattr(data, k)
            if x is None:
                raise DataError(f"cannot cut on {k}: the data has no {k!r}", column=k)
            try:  # 1e21, "1e21", [1e21], 10**21
                cut = check_positive_targets(k, v).reshape(-1)
            except DataError as exc:
                what = str(exc).split(": ", 1)[-1]
                raise DataError(f"holdout cut {k}=: {what}", column=k) from None
            if cut.size != 1:
                raise DataError(f"the cut {k}= must be one value, got {cut.size}", column=k)
            held |= x >= cut[0]
    if held.all() or not held.any():
        raise DataError(
            f"the split holds out {int(held.sum())} of {len(data)} runs; both parts must be "
            "non-empty"
        )
    return data.subset(~held), data.subset(held)


def _holdout_scores(fit: Fit, test: ScalingData, prob: float) -> dict[str, float]:
    missing = [k for k in fit.law.inputs if getattr(test, k, None) is None]
    if missing:
        raise DataError(
            f"held-out runs lack input(s) {missing} that law {fit.law.name!r} needs",
            column=missing[0],
        )
    log_x = {k: jnp.asarray(v) for k, v in test.log_inputs().items() if k in fit.law.inputs}
    ll = log_likelihood(
        fit.spec,
        {k: jnp.asarray(v) for k, v in fit.samples.items()},
        log_x,
        {k: jnp.asarray(v) for k, v in fit.ref.items()},
        jnp.asarray(test.log_loss),
        None,
    )
    ll = _loss_scale(fit, np.asarray(ll), test.loss).reshape(-1, len(test))
    lpd = logsumexp(ll, axis=0) - np.log(ll.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # held-out runs are beyond, by design
        warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the `converged` column
        # the law's own inputs only: held-out C may stray from 6ND (a DataWarning when read),
        # which predict() refuses among targets that give all of N, D and C
        targets = {k: getattr(test, k, None) for k in fit.law.inputs}
        targets = {k: v for k, v in targets.items() if v is not None}
        pred = fit.predict(**targets, prob=prob, allow_unconverged=True)
    are = np.abs(pred["loss_median"].to_numpy() - test.loss) / test.loss
    inside = (pred["pred_lower"].to_numpy() <= test.loss) & (
        test.loss <= pred["pred_upper"].to_numpy()
    )
    return {
        "holdout_lpd": float(np.mean(lpd)),
        "holdout_median_are": float(np.median(are)),
        "holdout_coverage": float(np.mean(inside)),
    }


# --------------------------------------------------------------------------- public API
def compare(
    fits: Sequence[Fit] | Mapping[str, Fit],
    names: Sequence[str] | None = None,
    *,
    holdout: Any = None,
    method: str = "stacking",
    prob: float = 0.9,
) -> pd.DataFrame:
    """Rank fits of the same runs by PSIS-LOO, optionally scoring held-out forecasts.

    Parameters
    ----------
    fits
        Two or more :class:`~bayescale.results.Fit` of the same data (any laws and
        likelihoods), or a mapping name -> fit.
    names
        Row labels; default the law names (with the likelihood when a law repeats).
    holdout
        Held-out runs (a ``ScalingData`` or a table :func:`bayescale.as_scaling_data` reads),
        not used in any fit; adds ``holdout_lpd`` (mean log predictive density per run, loss
        scale, higher is better), ``holdout_median_are`` (median absolute relative error of the
        forecast median) and ``holdout_coverage`` (share of runs inside the central ``prob``
        predictive interval). See :func:`holdout_split`.
    method
        Model weights: ``"stacking"`` (Yao et al. 2018, ArviZ's default) or ``"pseudo-bma"``
        (``exp(elpd)`` normalised).
    prob
        Mass of the predictive interval used for ``holdout_coverage``.

    Returns
    -------
    pandas.DataFrame
        One row per fit, best first: ``rank``, ``elpd_loo``, ``se``, ``p_loo``, ``elpd_diff``
        (best minus this, >= 0), ``dse`` (standard error of the difference), ``weight``,
        ``pareto_k_max``, ``n_bad_k`` (runs with k > 0.7), ``converged``, ``law``,
        ``likelihood``, then the hold-out columns. A difference of more than about 2 ``dse``
        (with ``n_bad_k == 0``) is a clear preference.

    Warns
    -----
    LOOWarning
        When a fit has runs with Pareto k > 0.7 (its elpd is then optimistic; refit without
        them or use K-fold cross-validation).

    References
    ----------
    Vehtari, Gelman & Gabry 2017, arXiv:1507.04544 (PSIS-LOO); Vehtari et al. 2024, *Pareto
    smoothed importance sampling*, JMLR 25, arXiv:1507.02646; Yao et al. 2018,
    arXiv:1704.02030 (stacking).

    Examples
    --------
    >>> import bayescale as bs
    >>> data = bs.datasets.chinchilla_synthetic(seed=0)
    >>> fits = [bs.fit(data, law=law) for law in ("chinchilla", "kaplan_nd")]  # doctest: +SKIP
    >>> bs.compare(fits)                                                     # doctest: +SKIP
    """
    if isinstance(fits, Mapping):
        if names is not None:
            raise ValueError("pass names only with a sequence of fits, not a mapping")
        names, fits = [str(k) for k in fits], list(fits.values())
    fits = list(fits)
    if len(fits) < 2:
        raise ValueError(f"compare needs at least 2 fits, got {len(fits)}")
    for i, f in enumerate(fits):
        if not isinstance(f, Fit):
            raise TypeError(f"fits[{i}] is a {type(f).__name__}, not a bayescale Fit")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    names = _names(fits, names)
    _check_same_data(fits, names)
    parts = [loo(f) for f in fits]
    elpd = np.array([p["elpd"] for p in parts])
    pointwise = np.stack([p["elpd_i"] for p in parts], axis=1)  # (n, K)
    order = np.argsort(-elpd, kind="stable")
    best = order[0]
    diff_i = pointwise[:, [best]] - pointwise
    n = pointwise.shape[0]
    weights = stacking_weights(pointwise) if method == "stacking" else _pseudo_bma_weights(elpd)
    rows = {}
    for j, (name, fit, p) in enumerate(zip(names, fits, parts, strict=True)):
        bad = p["pareto_k"] > PARETO_K_MAX
        rows[name] = {
            "elpd_loo": p["elpd"],
            "se": p["se"],
            "p_loo": p["p_loo"],
            "elpd_diff": float(np.sum(diff_i[:, j])),
            "dse": float(np.sqrt(n * np.var(diff_i[:, j]))),
            "weight": float(weights[j]),
            "pareto_k_max": float(np.max(p["pareto_k"])),
            "n_bad_k": int(np.sum(bad)),
            "converged": bool(fit.converged),
            "law": fit.law.name,
            "likelihood": fit.spec.likelihood,
        }
        if bad.any():
            worst = int(np.argmax(p["pareto_k"]))
            warnings.warn(
                f"{name}: PSIS-LOO is unreliable for {int(bad.sum())} of {n} runs (Pareto k > "
                f"{PARETO_K_MAX}; worst k = {p['pareto_k'][worst]:.2f} at row {worst}); its "
                "elpd is optimistic",
                LOOWarning,
                stacklevel=2,
            )
    table = pd.DataFrame.from_dict(rows, orient="index").iloc[order]
    table.insert(0, "rank", np.arange(len(table)))
    if holdout is not None:
        test = as_scaling_data(holdout)
        scores = {name: _holdout_scores(f, test, prob) for name, f in zip(names, fits, strict=True)}
        for col in ("holdout_lpd", "holdout_median_are", "holdout_coverage"):
            table[col] = [scores[name][col] for name in table.index]
        table.attrs["holdout_runs"] = len(test)
    table.attrs.update({"method": method, "runs": n, "scale": "log density of the loss"})
    return table
