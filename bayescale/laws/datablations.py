"""Data-constrained scaling law with repeated epochs (Muennighoff et al. 2023).

Muennighoff et al. (2023, arXiv:2305.16264 and the ``huggingface/datablations`` README)
extend the Chinchilla law to repeated data. With ``U_D`` unique tokens seen ``D / U_D`` times,
repetitions lose value exponentially:

    R_D = D / U_D - 1,                      D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)),
    U_N = min(N, N_opt(U_D)),  R_N = N / U_N - 1,  N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),
    L = E + A / N'^alpha + B / D'^beta,

where ``N_opt(D) = G (D G)^(beta / alpha)``, ``G = (alpha A / (beta B))^(1 / (alpha + beta))`` is
the compute-optimal model size for ``D`` tokens under the same law: parameters beyond what the
unique data can use are "excess" and decay like repeated tokens. Without repetition
(``D <= U_D`` and ``N <= N_opt(U_D)``) the law is exactly Chinchilla's.

The inputs are ``N``, ``D`` (total tokens) and ``U`` (unique tokens). :func:`datablations_loss`
is the published formula in natural units (NumPy or JAX); the :class:`~bayescale.laws.Law`
``datablations`` (reference-centred like ``chinchilla`` plus ``R*_N``, ``R*_D``) needs the input
``"U"``, which ``Law`` and ``ScalingData`` accept once the ``U`` extension is wired in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from . import _priors
from .base import Law, Parameter

MUENNIGHOFF_2023 = (
    "Muennighoff et al. 2023, Scaling Data-Constrained Language Models, arXiv:2305.16264 "
    "(NeurIPS 2023); constants from the huggingface/datablations README"
)

#: The published fit (huggingface/datablations README, "Parametric Fit"; C4): ``a, b, e`` are
#: the logs of ``A, B, E``.
MUENNIGHOFF_2023_LOG = {
    "a": 6.255414,
    "b": 7.3049974,
    "e": 0.6254804,
    "alpha": 0.3526596,
    "beta": 0.3526596,
    "rd_star": 15.387756,
    "rn_star": 5.309743,
}
#: The same constants as natural parameters ``E, A, B, alpha, beta, R_N_star, R_D_star``.
MUENNIGHOFF_2023_PARAMS = {
    "E": math.exp(MUENNIGHOFF_2023_LOG["e"]),
    "A": math.exp(MUENNIGHOFF_2023_LOG["a"]),
    "B": math.exp(MUENNIGHOFF_2023_LOG["b"]),
    "alpha": MUENNIGHOFF_2023_LOG["alpha"],
    "beta": MUENNIGHOFF_2023_LOG["beta"],
    "R_N_star": MUENNIGHOFF_2023_LOG["rn_star"],
    "R_D_star": MUENNIGHOFF_2023_LOG["rd_star"],
}


def optimal_params_for_tokens(D: Any, params: Mapping[str, float]) -> Any:
    """Chinchilla-optimal ``N`` for ``D`` tokens: ``G (D G)^(beta/alpha)`` (Muennighoff et al.)."""
    xp = jnp if isinstance(D, jax.Array) else np
    A, B, alpha, beta = params["A"], params["B"], params["alpha"], params["beta"]
    G = ((alpha * A) / (beta * B)) ** (1.0 / (alpha + beta))
    return (xp.asarray(D) * G) ** (beta / alpha) * G


def datablations_loss(N: Any, D: Any, U: Any, params: Mapping[str, float]) -> Any:
    """Muennighoff et al.'s data-constrained loss ``L(N, D, U)`` in natural units.

    Parameters
    ----------
    N, D, U
        Parameters, total training tokens and unique tokens (``U <= D``), broadcasting.
    params
        ``E, A, B, alpha, beta, R_N_star, R_D_star``, e.g. :data:`MUENNIGHOFF_2023_PARAMS`.

    Returns
    -------
    array
        The loss (NumPy, or JAX when ``N`` is a JAX array).

    References
    ----------
    Muennighoff et al. 2023, arXiv:2305.16264; huggingface/datablations README.

    Examples
    --------
    >>> float(datablations_loss(6.34e9, 242e9, 25e9, MUENNIGHOFF_2023_PARAMS))
    2.2256440889984477
    """
    xp = jnp if isinstance(N, jax.Array) else np
    N, D, U = xp.asarray(N), xp.asarray(D), xp.asarray(U)
    U_D = xp.minimum(U, D)
    R_D = xp.maximum(D / U_D - 1.0, 0.0)
    U_N = xp.minimum(N, optimal_params_for_tokens(U_D, params))
    R_N = xp.maximum(N / U_N - 1.0, 0.0)
    rn, rd = params["R_N_star"], params["R_D_star"]
    N_eff = U_N + U_N * rn * (1.0 - xp.exp(-R_N / rn))
    D_eff = U_D + U_D * rd * (1.0 - xp.exp(-R_D / rd))
    return (
        params["E"] + params["A"] / N_eff ** params["alpha"] + params["B"] / D_eff ** params["beta"]
    )


# ----------------------------------------------------------------------- the Law (log space)
def _fraction_prior(ref):
    import numpyro.distributions as dist

    return dist.Beta(1.5, 1.5)


def _decay_prior(ref):
    """LogNormal(log 10, 1) on R*: repetitions keep value for 1.9..52 epochs (90%)."""
    import numpyro.distributions as dist

    return dist.LogNormal(math.log(10.0), 1.0)


def _terms(p):
    log_frac = jnp.log(p["frac"])
    log_e = p["log_L_ref"] + jnp.log1p(-p["frac"])
    log_a = p["log_L_ref"] + log_frac + jnp.log(p["split"])
    log_b = p["log_L_ref"] + log_frac + jnp.log1p(-p["split"])
    return log_e, log_a, log_b


#: Cap on ``log(R / R*)`` in :func:`_log_effective`: ``exp(-R / R*)`` is below 1e-300 there.
_LOG_DECAY_CAP = 6.6


def _log_effective(log_unique, log_total, r_star):
    """log of U + U R* (1 - exp(-R / R*)) with R = total / unique - 1 >= 0.

    ``R / R*`` is formed in logs and capped where ``exp(-R / R*)`` underflows: ``expm1`` of a
    log-ratio above 709.8 is inf, and its gradient times ``exp(-inf) = 0`` was NaN (a
    divergent transition) wherever a trajectory of a small exponent put ``N_opt(U)`` that far
    below a model size; forward values are unchanged.
    """
    excess = jnp.maximum(log_total - log_unique, 0.0)
    repeated = excess > 0.0
    safe = jnp.where(repeated, excess, 1.0)  # keeps log(expm1) and its gradient finite at 0
    log_repeats = safe + jnp.log(-jnp.expm1(-safe))  # log R = log(exp(excess) - 1)
    log_ratio = jnp.minimum(log_repeats - jnp.log(r_star), _LOG_DECAY_CAP)
    ratio = jnp.where(repeated, jnp.exp(log_ratio), 0.0)
    return log_unique + jnp.log1p(-r_star * jnp.expm1(-ratio))


def log_predict(p: Mapping[str, Any], log_x: Mapping[str, Any], ref: Mapping[str, Any]):
    """Log loss of the data-constrained law, reference-centred like ``chinchilla``.

    ``p`` holds ``log_L_ref`` (log loss at (N_ref, D_ref) without repetition), ``frac``,
    ``split``, ``alpha``, ``beta``, ``R_N_star``, ``R_D_star``; ``log_x`` the logs of ``N``,
    ``D`` and ``U``.
    """
    log_e, log_a, log_b = _terms(p)
    alpha, beta = p["alpha"], p["beta"]
    log_A = log_a + alpha * ref["N"]
    log_B = log_b + beta * ref["D"]
    log_G = (jnp.log(alpha) + log_A - jnp.log(beta) - log_B) / (alpha + beta)
    log_u_d = jnp.minimum(log_x["U"], log_x["D"])
    log_n_opt = (beta / alpha) * (log_u_d + log_G) + log_G
    log_u_n = jnp.minimum(log_x["N"], log_n_opt)
    log_n_eff = _log_effective(log_u_n, log_x["N"], p["R_N_star"])
    log_d_eff = _log_effective(log_u_d, log_x["D"], p["R_D_star"])
    term_n = log_a - alpha * (log_n_eff - ref["N"])
    term_d = log_b - beta * (log_d_eff - ref["D"])
    return logsumexp(jnp.stack([jnp.broadcast_to(log_e, term_n.shape), term_n, term_d]), axis=0)


def natural(p: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """Published parameters ``E, A, B, alpha, beta, R_N_star, R_D_star``."""
    log_e, log_a, log_b = _terms(p)
    return {
        "E": jnp.exp(log_e),
        "A": jnp.exp(log_a + p["alpha"] * ref["N"]),
        "B": jnp.exp(log_b + p["beta"] * ref["D"]),
        "alpha": p["alpha"],
        "beta": p["beta"],
        "R_N_star": p["R_N_star"],
        "R_D_star": p["R_D_star"],
    }


PARAMETERS = (
    Parameter("log_L_ref", _priors.log_loss_at_reference, "log loss at (N_ref, D_ref), 1 epoch"),
    Parameter("frac", _fraction_prior, "reducible fraction of the loss at the reference"),
    Parameter("split", _fraction_prior, "share of the reducible loss due to parameters"),
    Parameter("alpha", _priors.exponent, "exponent of (effective) parameters"),
    Parameter("beta", _priors.exponent, "exponent of (effective) tokens"),
    Parameter("R_N_star", _decay_prior, "decay constant of excess parameters (R*_N)"),
    Parameter("R_D_star", _decay_prior, "decay constant of repeated epochs (R*_D)"),
)


@cache
def _build() -> Law:
    return Law(
        name="datablations",
        inputs=("N", "D", "U"),
        parameters=PARAMETERS,
        log_predict=log_predict,
        natural=natural,
        natural_names=("E", "A", "B", "alpha", "beta", "R_N_star", "R_D_star"),
        formula="L = E + A / N'^alpha + B / D'^beta,  D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D))",
        citation=MUENNIGHOFF_2023,
    )


def __getattr__(name: str) -> Any:
    # `datablations` is built on first access: the Law needs the input "U", which
    # `Law.__post_init__` accepts only with the U extension of bayescale.laws.base. Once that
    # is in place this can become a plain module attribute `datablations = _build()`.
    if name == "datablations":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
