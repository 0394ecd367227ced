"""Over-training law and loss-to-error link of Gadre et al. (2024).

Gadre et al. (2024, arXiv:2403.08540) scale the loss of models trained far beyond the
Chinchilla-optimal ``M = D / N = 20`` tokens per parameter with

    L(N, M) = a N^b + c 6^(b/2) (M N)^b + E,      b < 0,

(their scaling law in N and M, as fitted in ``mlfoundations/scaling``) — a Chinchilla law whose
two exponents are equal, written in ``M = D / N`` — and map the loss to the average top-1 error
on downstream tasks with

    Err(L) = eps - k exp(-gamma L).

:data:`overtraining` is the law (inputs ``N`` and ``D``; ``M N = D``). :func:`fit_error_link`
fits the link to (loss, error) pairs with NUTS, and :func:`loss_to_error` turns a loss
forecast of a :class:`~bayescale.results.Fit` into an error forecast, propagating the
posterior of both fits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from . import _priors
from .base import Law, Parameter

GADRE_2024 = (
    "Gadre et al. 2024, Language models scale reliably with over-training and on downstream "
    "tasks, arXiv:2403.08540"
)

#: Gadre et al.'s reference fit of L(N, M) on five RedPajama runs (4 small models at M = 20
#: and the d=96 model at M = 320; C4 validation loss), as stored in mlfoundations/scaling's
#: scaling_explorer.ipynb (commit a003c49): a, b, c, E.
GADRE_2024_RPJ = {"a": 166.21, "b": -0.27285, "c": 366.69, "E": 1.8366}


def overtraining_loss(N: Any, M: Any, params: Mapping[str, float]) -> Any:
    """``L(N, M) = a N^b + c 6^(b/2) (M N)^b + E`` in natural units (NumPy or JAX arrays).

    Parameters
    ----------
    N, M
        Parameters and tokens per parameter (``M = D / N``).
    params
        ``a``, ``b`` (< 0), ``c``, ``E``, e.g. :data:`GADRE_2024_RPJ`.

    Examples
    --------
    >>> round(float(overtraining_loss(6.889e9, 20.0, GADRE_2024_RPJ)), 4)
    2.4427
    """
    a, b, c, e = params["a"], params["b"], params["c"], params["E"]
    return a * N**b + c * 6.0 ** (b / 2.0) * (M * N) ** b + e


def _fraction_prior(ref):
    import numpyro.distributions as dist

    return dist.Beta(1.5, 1.5)


def _terms(p):
    log_frac = jnp.log(p["frac"])
    log_e = p["log_L_ref"] + jnp.log1p(-p["frac"])
    log_a = p["log_L_ref"] + log_frac + jnp.log(p["split"])
    log_c = p["log_L_ref"] + log_frac + jnp.log1p(-p["split"])
    return log_e, log_a, log_c


def _log_predict(p, log_x, ref):
    # a N^b + c 6^(b/2) D^b + E with eta = -b, reference-centred like the Chinchilla law
    log_e, log_a, log_c = _terms(p)
    term_n = log_a - p["eta"] * (log_x["N"] - ref["N"])
    term_d = log_c - p["eta"] * (log_x["D"] - ref["D"])
    return logsumexp(jnp.stack([jnp.broadcast_to(log_e, term_n.shape), term_n, term_d]), axis=0)


def _natural(p, ref):
    log_e, log_a, log_c = _terms(p)
    eta = p["eta"]
    return {
        "E": jnp.exp(log_e),
        "a": jnp.exp(log_a + eta * ref["N"]),
        "b": -eta,
        # c 6^(b/2) D^b = C_ref (D / D_ref)^b  =>  c = C_ref D_ref^eta 6^(eta/2)
        "c": jnp.exp(log_c + eta * ref["D"] + 0.5 * eta * math.log(6.0)),
    }


# Sampled at the reference point (N_ref, D_ref) like `chinchilla`: the loss there, its
# reducible fraction, the share of the reducible loss due to parameters, and eta = -b.
overtraining = Law(
    name="overtraining",
    inputs=("N", "D"),
    parameters=(
        Parameter("log_L_ref", _priors.log_loss_at_reference, "log loss at (N_ref, D_ref)"),
        Parameter("frac", _fraction_prior, "reducible fraction of the loss at the reference"),
        Parameter("split", _fraction_prior, "share of the reducible loss due to parameters"),
        Parameter("eta", _priors.exponent, "common exponent of N and M N = D (b = -eta)"),
    ),
    log_predict=_log_predict,
    natural=_natural,
    natural_names=("E", "a", "b", "c"),
    formula="L = a * N^b + c * 6^(b/2) * (M * N)^b + E,  M = D / N",
    citation=GADRE_2024 + " (scaling law in N and M)",
)


# ----------------------------------------------------------------------- loss-to-error link
def error_from_loss(loss: Any, eps: Any, k: Any, gamma: Any) -> Any:
    """Gadre et al.'s link ``Err = eps - k exp(-gamma L)`` (broadcasting NumPy/JAX arrays)."""
    xp = jnp if isinstance(loss, jax.Array) else np
    return eps - k * xp.exp(-gamma * xp.asarray(loss))


class _LinkModel:
    """NumPyro model of the link, in the calling convention of ``bayescale.infer.nuts``.

    ``log_x["L"]`` holds the losses, ``log_loss`` the observed errors (not logs) and
    ``ref["loss"]`` the mean loss; the compiled sampler of ``run_nuts`` is then reused (one
    program per data shape, cached), instead of a NumPyro ``MCMC`` that compiles per call.
    """

    key = ("bayescale.laws.overtraining.error_link", 1)
    site_names = ("eps", "share", "gamma", "sigma")

    def prior(self, name, ref):
        import numpyro.distributions as dist

        return {
            "eps": lambda: dist.Beta(2.0, 1.5),
            "share": lambda: dist.Beta(1.5, 1.5),
            "gamma": lambda: dist.LogNormal(0.0, 1.0),
            "sigma": lambda: dist.HalfNormal(0.05),
        }[name]()

    def __call__(self, log_x, ref, log_loss=None, mask=None):
        import numpyro
        import numpyro.distributions as dist
        from numpyro import handlers

        p = {name: numpyro.sample(name, self.prior(name, ref)) for name in self.site_names}
        # k exp(-gamma L_ref) = share * eps: the gain over eps at the data's mean loss
        shift = log_x["L"] - ref["loss"]
        mu = p["eps"] - p["share"] * p["eps"] * jnp.exp(-p["gamma"] * shift)
        with (
            numpyro.plate("obs_plate", jnp.shape(mu)[-1]),
            handlers.mask(mask=True if mask is None else mask),
        ):
            numpyro.sample("obs", dist.Normal(mu, p["sigma"]), obs=log_loss)


_LINK_MODEL = _LinkModel()


@dataclass(frozen=True, eq=False)
class ErrorLink:
    """Posterior of the loss-to-error link ``Err = eps - k exp(-gamma L)``.

    Attributes
    ----------
    draws
        ``eps``, ``k``, ``gamma``, ``sigma`` (noise of an observed error), each (chain, draw).
    loss_range
        Smallest and largest loss of the fitted pairs.
    convergence
        R-hat, ESS, divergences and E-BFMI of the sampled parameters (``eps``, ``share``,
        ``gamma``, ``sigma``), a :class:`bayescale.Convergence`.
    """

    draws: Mapping[str, np.ndarray]
    loss_range: tuple[float, float]
    convergence: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "draws", MappingProxyType(dict(self.draws)))

    @property
    def converged(self) -> bool:
        """Whether the fit meets bayescale's convergence policy."""
        return bool(self.convergence.converged)

    def flat(self) -> dict[str, np.ndarray]:
        """Draws with chains merged, each (S,)."""
        return {k: np.asarray(v).reshape(-1) for k, v in self.draws.items()}

    def error(self, loss: Any) -> np.ndarray:
        """Draws of the mean error at ``loss`` (scalar or (M,)): shape (S, M)."""
        d = self.flat()
        loss = np.atleast_1d(np.asarray(loss, dtype=float))
        return d["eps"][:, None] - d["k"][:, None] * np.exp(-d["gamma"][:, None] * loss[None])

    def summary(self, prob: float = 0.9):
        """Median and central ``prob`` interval of ``eps``, ``k``, ``gamma``, ``sigma``."""
        import pandas as pd

        from ..results import _check_prob

        _check_prob(prob, len(next(iter(self.flat().values()))))
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        rows = {
            k: dict(zip(("lower", "median", "upper"), np.percentile(v, [lo, 50, hi]), strict=True))
            for k, v in self.flat().items()
        }
        return pd.DataFrame.from_dict(rows, orient="index")


def fit_error_link(
    loss: Any,
    error: Any,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    rng_key: int = 0,
) -> ErrorLink:
    """Fit ``Err = eps - k exp(-gamma L)`` (Gadre et al. 2024) to (loss, error) pairs.

    Sampled reference-centred: ``eps`` (Beta(2, 1.5): the error of a model at infinite loss,
    i.e. chance), ``share`` (Beta(1.5, 1.5): ``k exp(-gamma L_ref) / eps`` at the mean loss
    ``L_ref``), ``gamma`` (LogNormal(0, 1)) and Gaussian noise ``sigma`` (HalfNormal(0.05)),
    with bayescale's compiled NUTS (compiled once per number of pairs).

    Parameters
    ----------
    loss, error
        Equal-length arrays of losses (> 0) and average top-1 errors in (0, 1).
    num_warmup, num_samples, num_chains
        NUTS settings.
    rng_key
        Integer seed.

    Returns
    -------
    ErrorLink
        Posterior draws of ``eps``, ``k``, ``gamma``, ``sigma`` and convergence diagnostics;
        warns with :class:`bayescale.ConvergenceWarning` when the policy is missed.

    References
    ----------
    Gadre et al. 2024, arXiv:2403.08540.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.linspace(2.4, 6.0, 30)
    >>> err = 0.85 - 4.0 * np.exp(-1.0 * L)
    >>> link = fit_error_link(L, err + 0.005 * np.sin(7 * L))  # doctest: +SKIP
    """
    from ..infer.nuts import SamplerConfig, run_nuts
    from ..results import ConvergenceWarning, diagnose

    loss = np.asarray(loss, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    if loss.ndim != 1 or loss.shape != error.shape:
        raise ValueError(
            f"loss and error must be 1-D of equal length, got {loss.shape}, {error.shape}"
        )
    if len(loss) < 5:
        raise ValueError(f"need at least 5 (loss, error) pairs for 4 parameters, got {len(loss)}")
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"loss must be finite and > 0; row {i} has {loss[i]!r}")
    bad = ~np.isfinite(error) | (error <= 0) | (error >= 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"error must be in (0, 1); row {i} has {error[i]!r}")
    ref_loss = float(loss.mean())
    config = SamplerConfig(
        num_warmup=int(num_warmup), num_samples=int(num_samples), num_chains=int(num_chains)
    )
    out, _ = run_nuts(
        _LINK_MODEL,
        config,
        log_x={"L": loss},
        ref={"loss": ref_loss},
        log_loss=error,
        rng_key=jax.random.PRNGKey(int(rng_key)),
    )
    s = {k: np.asarray(v, dtype=np.float64) for k, v in out["samples"].items()}
    _, conv = diagnose(s, np.asarray(out["energy"], dtype=np.float64), out["diverging"], False)
    draws = {
        "eps": s["eps"],
        "k": s["share"] * s["eps"] * np.exp(s["gamma"] * ref_loss),
        "gamma": s["gamma"],
        "sigma": s["sigma"],
    }
    link = ErrorLink(
        draws=draws, loss_range=(float(loss.min()), float(loss.max())), convergence=conv
    )
    if not link.converged:
        warnings.warn(
            f"loss-to-error link fit did not converge: {'; '.join(conv.problems)}",
            ConvergenceWarning,
            stacklevel=2,
        )
    return link


def loss_to_error(
    fit: Any,
    N: Any = None,
    D: Any = None,
    C: Any = None,
    *,
    link: ErrorLink | None = None,
    eps: float | None = None,
    k: float | None = None,
    gamma: float | None = None,
    prob: float = 0.9,
    seed: int = 0,
    allow_unconverged: bool = False,
):
    """Forecast the downstream error of new runs from a loss fit (Gadre et al. 2024).

    Each posterior draw of the loss at the targets is mapped through ``Err = eps - k
    exp(-gamma L)``, with ``(eps, k, gamma)`` either fixed numbers or posterior draws of an
    :class:`ErrorLink` (paired with the loss draws at random), so the error interval carries the
    uncertainty of both fits.

    Parameters
    ----------
    fit
        A :class:`~bayescale.results.Fit` of a loss law (e.g. ``overtraining``, ``chinchilla``).
    N, D, C
        Targets, as for :meth:`Fit.predict`.
    link
        Posterior of the link from :func:`fit_error_link`; or give ``eps``, ``k``, ``gamma``.
    eps, k, gamma
        Fixed link constants (all three), used when ``link`` is None.
    prob
        Mass of the central intervals.
    seed
        Seed for pairing draws and for the noise of the predictive interval.
    allow_unconverged
        Forecast even from a loss fit that fails the convergence gate badly.

    Returns
    -------
    pandas.DataFrame
        One row per target: the inputs, ``loss_median``, ``loss_lower``, ``loss_upper``,
        ``error_median``, ``error_lower``, ``error_upper`` (mean error), and ``pred_lower``,
        ``pred_upper`` (one observed error: the link's noise ``sigma`` added; equal to the
        error interval for fixed constants).

    References
    ----------
    Gadre et al. 2024, arXiv:2403.08540.

    Examples
    --------
    >>> loss_to_error(fit, N=6.9e9, D=1.38e11, link=link)  # doctest: +SKIP
    """
    import pandas as pd

    from ..results import _check_prob

    _check_prob(prob, fit.num_chains * fit.num_draws)
    if link is None and None in (eps, k, gamma):
        raise ValueError("give either link= (from fit_error_link) or all of eps=, k=, gamma=")
    if link is not None and any(v is not None for v in (eps, k, gamma)):
        raise ValueError("give either link= or fixed eps=, k=, gamma=, not both")
    fit._check_gate(allow_unconverged)
    from ..data import prediction_inputs

    vals = prediction_inputs(fit.law.name, fit.law.inputs, N=N, D=D, C=C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss = np.exp(fit._log_mean(vals))  # (S, M)
    rng = np.random.default_rng(seed)
    if link is None:
        err = error_from_loss(loss, float(eps), float(k), float(gamma))
        noisy = err
    else:
        d = link.flat()
        pick = rng.integers(0, len(d["eps"]), size=loss.shape[0])
        e, kk, g, s = (d[n][pick, None] for n in ("eps", "k", "gamma", "sigma"))
        err = e - kk * np.exp(-g * loss)
        noisy = err + s * rng.standard_normal(err.shape)
    lo, hi = 50 * (1 - prob), 50 * (1 + prob)
    ql = np.percentile(loss, [lo, 50, hi], axis=0)
    qe = np.percentile(err, [lo, 50, hi], axis=0)
    qp = np.percentile(noisy, [lo, hi], axis=0)
    out = pd.DataFrame({n: vals[n] for n in ("N", "D", "C") if n in vals})
    out["loss_median"], out["loss_lower"], out["loss_upper"] = ql[1], ql[0], ql[2]
    out["error_median"], out["error_lower"], out["error_upper"] = qe[1], qe[0], qe[2]
    out["pred_lower"], out["pred_upper"] = qp[0], qp[1]
    out.attrs["prob"] = prob
    return out
