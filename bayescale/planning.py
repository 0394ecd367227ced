"""Compute-optimal planning with posterior uncertainty: N*(C), D*(C), tokens per parameter.

Under the training-compute approximation ``C = 6 N D`` (Kaplan et al. 2020), a law of parameters
``N`` and tokens ``D`` has, for every budget ``C``, a loss-minimising allocation
``N*(C) = argmin_N L(N, C / (6 N))`` and ``D*(C) = C / (6 N*)``. Everything here is evaluated
**for every posterior draw** and then summarised (median and central interval) -- never by
plugging a point estimate into the formula -- so the intervals carry the full, correlated
uncertainty of the law's parameters.

* Chinchilla law ``L = E + A/N^alpha + B/D^beta``: closed form (Hoffmann et al. 2022, Eq. 4)
  ``N* = G (C/6)^a``, ``D* = G^-1 (C/6)^b``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
  ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``; and the compute that reaches a loss
  ``L`` is ``C = 6 ((L - E) / (A G^-alpha + B G^beta))^(-(alpha+beta)/(alpha beta))``.
* Any other law of N and D (``kaplan_nd``, or a user law with inputs ``("N", "D")``): a dense
  grid in log N refined by bisection on the derivative, per draw and per budget, in JAX (vmapped
  over draws, mapped over budgets); the compute for a target loss by bisection in log C.

Every function takes a :class:`~bayescale.results.Fit` or a plain mapping of published
constants (e.g. :data:`bayescale.datasets.HOFFMANN_2022`), which counts as a single draw; a
mapping of equal-length arrays (e.g. bootstrap replicates) counts as that many draws.

References
----------
Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556.
Besiroglu, Erdil, Barnett & You 2024, Chinchilla Scaling: A replication attempt,
arXiv:2404.10102.
Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .data import check_positive_targets
from .laws import Law, Parameter
from .laws import chinchilla as _chinchilla_law
from .laws import kaplan_nd as _kaplan_nd_law
from .model import PROPORTION_LIKELIHOODS, beta_binomial_cdf, beta_shapes
from .results import EXTRAPOLATION_WARN, ExtrapolationWarning, Fit, _check_prob, _mean_fn

__all__ = [
    "CHINCHILLA_COMPUTE",
    "FAMOUS_MODELS",
    "HOFFMANN_2022_A_INTERVAL",
    "HOFFMANN_2022_UNROUNDED",
    "PlanningWarning",
    "allocation_exponents",
    "compute_for_loss",
    "optimal_allocation",
    "prob_beats",
]

#: FLOP per parameter per training token (forward + backward pass; Kaplan et al. 2020).
FLOP_PER_PARAM_TOKEN = 6.0
_LOG6 = math.log(FLOP_PER_PARAM_TOKEN)

#: Chinchilla's training compute, 6 x 70e9 parameters x 1.4e12 tokens = 5.88e23 FLOP.
CHINCHILLA_COMPUTE = 6.0 * 70e9 * 1.4e12

#: Hoffmann et al. (2022) Approach 3 estimates as given in the paper's TeX source (the body
#: prints them rounded: E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28); values as used by
#: Besiroglu et al. (2024, arXiv:2404.10102) in their analysis notebook (``true_params``:
#: log A = 6.0073404, log B = 6.0179186, log E = 0.5267228). The rounding matters: at
#: 5.88e23 FLOP the rounded constants give 92.8 tokens per parameter, these give 59.0.
HOFFMANN_2022_UNROUNDED: dict[str, float] = {
    "E": math.exp(0.5267228),
    "A": math.exp(6.0073404),
    "B": math.exp(6.0179186),
    "alpha": 0.33917084,
    "beta": 0.2849083,
}

#: Hoffmann et al. (2022, Table 2, Approach 3): 80% interval of the allocation exponent a of
#: N*(C) ~ C^a (point estimate 0.46). Besiroglu et al. (2024) evaluate Hoffmann's policy with
#: the midpoint a = 0.4545 and G from :data:`HOFFMANN_2022_UNROUNDED`.
HOFFMANN_2022_A_INTERVAL: tuple[float, float] = (0.454, 0.455)

#: Well-known dense language models: parameters ``N``, training tokens ``D``, compute
#: ``C = 6 N D`` and tokens per parameter. Shared by the CLI, the plots and the notebooks.
FAMOUS_MODELS: pd.DataFrame = pd.DataFrame(
    {
        "N": [175e9, 280e9, 70e9, 70e9],
        "D": [300e9, 300e9, 1.4e12, 2e12],
        "citation": [
            "Brown et al. 2020, arXiv:2005.14165",
            "Rae et al. 2021, arXiv:2112.11446",
            "Hoffmann et al. 2022, arXiv:2203.15556",
            "Touvron et al. 2023, arXiv:2307.09288",
        ],
    },
    index=pd.Index(["GPT-3", "Gopher", "Chinchilla", "Llama 2 70B"], name="model"),
)
FAMOUS_MODELS.insert(2, "C", FLOP_PER_PARAM_TOKEN * FAMOUS_MODELS["N"] * FAMOUS_MODELS["D"])
FAMOUS_MODELS.insert(3, "tokens_per_param", FAMOUS_MODELS["D"] / FAMOUS_MODELS["N"])

# Numerical optimum: grid in log N of half-width _GRID_HALF (natural-log units) around the
# data's tokens-per-parameter ratio, _GRID_POINTS points, then bisection on the derivative.
_GRID_HALF = 18.0
_GRID_POINTS = 145
_REFINE_STEPS = 52
# compute_for_loss (numerical laws): coarse grid in log C, then bisection.
_LOG_C_RANGE = (math.log(1e6), math.log(1e40))
_LOG_C_STEP = 2.0
_BISECT_STEPS = 48
_CHINCHILLA_KEYS = ("E", "A", "B", "alpha", "beta")
_KAPLAN_ND_KEYS = ("N_c", "D_c", "alpha_N", "alpha_D")


class PlanningWarning(UserWarning):
    """Some posterior draws have no interior optimum or cannot reach a target loss."""


# ---------------------------------------------------------------------------------- posterior
@dataclass(frozen=True, eq=False)
class _Posterior:
    """Flat posterior draws of a law of N and D, from a Fit or from published constants."""

    law: Law
    sampled: dict[str, np.ndarray]  # sampled (reference-centred) parameters, (S,)
    natural: dict[str, np.ndarray]  # published parameters, (S,)
    ref: dict[str, float]
    fit: Fit | None = None
    a_override: np.ndarray | None = None  # (S,) allocation exponent of a published policy
    log_ratio0: float = math.log(20.0)  # centre of the numerical search: log(D/N)

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.sampled.values())).shape[0])

    @property
    def closed_form(self) -> bool:
        """Chinchilla's closed form applies (it needs only the natural parameters)."""
        return self.law.name == "chinchilla" and set(_CHINCHILLA_KEYS) <= set(self.natural)

    def log_mean(self, vals: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log mean loss, shape (draws, points), at inputs ``vals`` (natural units)."""
        params = {k: jnp.asarray(v) for k, v in self.sampled.items()}
        log_x = {k: jnp.log(jnp.asarray(vals[k], dtype=jnp.float64)) for k in self.law.inputs}
        ref = {k: jnp.asarray(v) for k, v in self.ref.items()}
        return np.asarray(_mean_fn(self.law)(params, log_x, ref))


def _as_posterior(
    source: Any, *, allow_unconverged: bool = False, gate: bool = True, need_nd: bool = True
):
    """A :class:`_Posterior` from a Fit or a mapping of published constants.

    ``gate`` applies the convergence gate of ``Fit.predict`` (plots pass ``gate=False``).
    """
    if isinstance(source, Fit):
        if gate:
            source._check_gate(allow_unconverged)
        law = source.law
        if need_nd:
            _require_nd(law)
        sampled = {k: np.asarray(source.samples[k]).reshape(-1) for k in law.param_names}
        natural = {k: np.asarray(v).reshape(-1) for k, v in source.params.items()}
        data = source.data
        ratio0 = math.log(20.0)
        if data.N is not None and data.D is not None:
            ratio0 = float(np.median(np.log(data.D) - np.log(data.N)))
        return _Posterior(
            law=law,
            sampled=sampled,
            natural=natural,
            ref=dict(source.ref),
            fit=source,
            log_ratio0=ratio0,
        )
    if isinstance(source, Mapping):
        return _from_constants(source)
    raise TypeError(
        f"expected a bayescale Fit or a mapping of law constants, got {type(source).__name__}"
    )


def _posterior_for_intervals(fit: Any, prob: float, allow_unconverged: bool) -> Any:
    """:func:`_as_posterior`, after checking the interval mass ``prob`` against its draws."""
    _check_prob(prob)
    post = _as_posterior(fit, allow_unconverged=allow_unconverged)
    if post.num_draws > 1:  # law constants are one draw: no interval to speak of
        _check_prob(prob, post.num_draws, stacklevel=4)
    return post


def _require_nd(law: Law) -> None:
    if "N" not in law.inputs or "D" not in law.inputs or not set(law.inputs) <= {"N", "D", "C"}:
        raise ValueError(
            f"compute-optimal planning needs a law of N and D (with C = 6ND); law {law.name!r} "
            f"has inputs {law.inputs}"
        )


def _constant_array(params: Mapping[str, Any], key: str) -> np.ndarray:
    try:
        value = np.asarray(params[key], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"constant {key!r} must be a number, got {params[key]!r}") from None
    if value.size == 0 or not np.all(np.isfinite(value)):
        raise ValueError(f"constant {key!r} must be finite, got {params[key]!r}")
    return value


def _natural_chinchilla(p, log_x, ref):
    terms = jnp.stack(
        jnp.broadcast_arrays(
            jnp.log(p["E"]),
            jnp.log(p["A"]) - p["alpha"] * log_x["N"],
            jnp.log(p["B"]) - p["beta"] * log_x["D"],
        )
    )
    return jax.scipy.special.logsumexp(terms, axis=0)


def _natural_kaplan_nd(p, log_x, ref):
    ratio = p["alpha_N"] / p["alpha_D"]
    return p["alpha_D"] * jnp.logaddexp(
        ratio * (jnp.log(p["N_c"]) - log_x["N"]), jnp.log(p["D_c"]) - log_x["D"]
    )


# Published constants are evaluated with these laws of the natural parameters (no reference
# point), so planning does not depend on how the fitted laws are parametrised for sampling.
_CHINCHILLA_NATURAL = Law(
    name="chinchilla",
    inputs=("N", "D"),
    parameters=tuple(Parameter(k, None) for k in _CHINCHILLA_KEYS),
    log_predict=_natural_chinchilla,
    formula=_chinchilla_law.formula,
    citation=_chinchilla_law.citation,
)
_KAPLAN_ND_NATURAL = Law(
    name="kaplan_nd",
    inputs=("N", "D"),
    parameters=tuple(Parameter(k, None) for k in _KAPLAN_ND_KEYS),
    log_predict=_natural_kaplan_nd,
    formula=_kaplan_nd_law.formula,
    citation=_kaplan_nd_law.citation,
)


def _from_constants(params: Mapping[str, Any]) -> _Posterior:
    keys = set(params)
    if set(_CHINCHILLA_KEYS) <= keys:
        names, law = _CHINCHILLA_KEYS, _CHINCHILLA_NATURAL
    elif set(_KAPLAN_ND_KEYS) <= keys:
        names, law = _KAPLAN_ND_KEYS, _KAPLAN_ND_NATURAL
    else:
        raise ValueError(
            f"constants {sorted(keys)} name no law of N and D; give {list(_CHINCHILLA_KEYS)} "
            f"(chinchilla) or {list(_KAPLAN_ND_KEYS)} (kaplan_nd), or pass a Fit"
        )
    extra = ["a"] if "a" in keys else []
    values = {k: _constant_array(params, k) for k in (*names, *extra)}
    try:
        values = dict(zip(values, np.broadcast_arrays(*values.values()), strict=True))
    except ValueError:
        shapes = {k: v.shape for k, v in values.items()}
        raise ValueError(f"constants must have equal lengths, got {shapes}") from None
    for k in names:
        if k != "E" and np.any(values[k] <= 0):
            raise ValueError(f"constant {k!r} must be > 0, got {params[k]!r}")
    if "E" in values and np.any(values["E"] < 0):
        raise ValueError(f"constant 'E' must be >= 0, got {params['E']!r}")
    if extra and np.any((values["a"] <= 0) | (values["a"] >= 1)):
        raise ValueError(f"allocation exponent 'a' must be in (0, 1), got {params['a']!r}")
    ref = {"N": 0.0, "D": 0.0, "loss": 0.0}
    sampled = {k: values[k] for k in names}
    natural = {k: values[k] for k in names}
    return _Posterior(
        law=law,
        sampled=sampled,
        natural=natural,
        ref=ref,
        a_override=values.get("a"),
    )


# ---------------------------------------------------------------------------------- summaries
def _quantiles(x: np.ndarray, probs: list[float], axis: int = 0) -> np.ndarray:
    """NaN-ignoring quantiles along ``axis`` that keep +inf draws.

    A quantile that reaches into the +inf draws is +inf (NumPy would give inf - inf = NaN).
    """
    big = np.finfo(np.float64).max
    y = np.where(np.isposinf(x), big, x)
    q = np.nanquantile(y, probs, axis=axis)
    finite_max = np.nanmax(np.where(np.isposinf(x), -np.inf, x), axis=axis)
    return np.where(q > finite_max, np.inf, q)


def _summarise(draws: Mapping[str, np.ndarray], prob: float) -> dict[str, np.ndarray]:
    """``{name}_median/_lower/_upper`` columns from (S, K) draws."""
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    out: dict[str, np.ndarray] = {}
    for name, x in draws.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            q = _quantiles(x, [0.5, lo, hi], axis=0)
        out[f"{name}_median"], out[f"{name}_lower"], out[f"{name}_upper"] = q
    return out


def _compute_array(compute: Any, name: str = "compute") -> np.ndarray:
    try:
        c = np.asarray(compute, dtype=np.float64).reshape(-1)
    except OverflowError:  # a Python int beyond float64 (10**400)
        raise ValueError(f"{name} must be finite and > 0; {compute!r} overflows a float") from None
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {compute!r}") from None
    bad = ~np.isfinite(c) | (c <= 0)
    if c.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite and > 0; got {float(c[i])!r} at position {i}")
    return c


# ---------------------------------------------------------------------------------- closed form
def _chinchilla_terms(nat: Mapping[str, np.ndarray], a_override: np.ndarray | None):
    """Per-draw (S, 1) arrays: log G, a, and the natural parameters."""
    p = {k: np.asarray(nat[k], dtype=np.float64)[:, None] for k in _CHINCHILLA_KEYS}
    s = p["alpha"] + p["beta"]
    log_g = (np.log(p["alpha"]) + np.log(p["A"]) - np.log(p["beta"]) - np.log(p["B"])) / s
    a = p["beta"] / s if a_override is None else np.asarray(a_override)[:, None]
    return p, log_g, a


def _chinchilla_loss(p, log_n, log_d):
    return (
        p["E"]
        + np.exp(np.log(p["A"]) - p["alpha"] * log_n)
        + np.exp(np.log(p["B"]) - p["beta"] * log_d)
    )


def _closed_form_opt(post: _Posterior, log_c: np.ndarray) -> dict[str, np.ndarray]:
    p, log_g, a = _chinchilla_terms(post.natural, post.a_override)
    lc6 = log_c[None, :] - _LOG6
    log_n = log_g + a * lc6
    log_d = lc6 - log_n
    return {"log_N": log_n, "log_D": log_d, "loss": _chinchilla_loss(p, log_n, log_d)}


# ---------------------------------------------------------------------------------- numerical
_SOLVERS: dict[int, dict[str, Any]] = {}


def _solvers(law: Law) -> dict[str, Any]:
    """Jitted numerical optimum of log L(N, C/(6N)) over log N, per draw (cached per law)."""
    if id(law) in _SOLVERS:
        return _SOLVERS[id(law)]
    offsets = jnp.linspace(-_GRID_HALF, _GRID_HALF, _GRID_POINTS)

    def objective(p, ref, x, lc):
        # x: log N (any shape); D = C / (6N); C itself for laws that also read C.
        lc = jnp.broadcast_to(lc, jnp.shape(x))
        log_x = {"N": x, "D": lc - _LOG6 - x, "C": lc}
        out = law.log_predict(p, {k: log_x[k] for k in law.inputs}, ref)
        return jnp.where(jnp.isnan(out), jnp.inf, out)

    def one(p, ref, lc, log_ratio0):
        """(log N*, log L*, at_boundary) for one draw ``p`` and log budget ``lc``."""
        centre = 0.5 * (lc - _LOG6 - log_ratio0)
        xs = centre + offsets
        vals = objective(p, ref, xs, lc)
        i = jnp.argmin(vals)
        boundary = (i == 0) | (i == _GRID_POINTS - 1) | ~jnp.isfinite(vals[i])
        lo = xs[jnp.maximum(i - 1, 0)]
        hi = xs[jnp.minimum(i + 1, _GRID_POINTS - 1)]

        def f(x):
            return objective(p, ref, jnp.reshape(x, (1,)), lc)[0]

        grad = jax.grad(f)

        def step(_, state):
            # Bisection on the sign of dL/dlogN: exact to round-off, unlike a search on the
            # (flat, sqrt(eps)-limited) loss values themselves.
            a, b = state
            mid = 0.5 * (a + b)
            rising = grad(mid) > 0
            return jnp.where(rising, a, mid), jnp.where(rising, mid, b)

        a, b = jax.lax.fori_loop(0, _REFINE_STEPS, step, (lo, hi))
        x = 0.5 * (a + b)
        return x, f(x), boundary

    per_draw = jax.vmap(one, in_axes=(0, None, 0, None))  # each draw its own budget

    @jax.jit
    def over_budgets(params, ref, log_c, log_ratio0):
        """(K, S) optima for every draw at every budget in ``log_c`` (K,)."""

        def at(lc):
            lcs = jnp.full(jnp.shape(next(iter(params.values()))), lc)
            return per_draw(params, ref, lcs, log_ratio0)

        return jax.lax.map(at, log_c)

    @jax.jit
    def per_draw_budget(params, ref, log_c, log_ratio0):
        """(S,) optima, draw s at its own budget ``log_c[s]``."""
        return per_draw(params, ref, log_c, log_ratio0)

    @jax.jit
    def bisect_compute(params, ref, lo, hi, log_target, log_ratio0):
        """(S,) log C where the optimal log loss crosses ``log_target``, inside [lo, hi]."""

        def step(_, state):
            a, b = state
            mid = 0.5 * (a + b)
            _, log_l, boundary = per_draw(params, ref, mid, log_ratio0)
            above = (log_l > log_target) | boundary
            return jnp.where(above, mid, a), jnp.where(above, b, mid)

        a, b = jax.lax.fori_loop(0, _BISECT_STEPS, step, (lo, hi))
        return 0.5 * (a + b)

    _SOLVERS[id(law)] = {
        "over_budgets": over_budgets,
        "per_draw": per_draw_budget,
        "bisect_compute": bisect_compute,
    }
    return _SOLVERS[id(law)]


def _jax_inputs(post: _Posterior):
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in post.sampled.items()}
    ref = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in post.ref.items()}
    return params, ref


def _numeric_opt(post: _Posterior, log_c: np.ndarray) -> dict[str, np.ndarray]:
    params, ref = _jax_inputs(post)
    x, log_l, boundary = _solvers(post.law)["over_budgets"](
        params, ref, jnp.asarray(log_c), post.log_ratio0
    )
    x, log_l, boundary = (np.asarray(v).T for v in (x, log_l, boundary))  # (S, K)
    x = np.where(boundary, np.nan, x)
    loss = np.where(boundary, np.nan, np.exp(log_l))
    return {
        "log_N": x,
        "log_D": log_c[None, :] - _LOG6 - x,
        "loss": loss,
        "boundary": boundary,
    }


def _optimum(post: _Posterior, log_c: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Optimum of every draw at every budget: (S, K) arrays ``log_N``, ``log_D``, ``loss``."""
    method = _optimum_method(post, method)
    out = _closed_form_opt(post, log_c) if method == "closed_form" else _numeric_opt(post, log_c)
    out["method"] = method
    return out


def _optimum_method(post: _Posterior, method: str) -> str:
    if method not in ("auto", "closed_form", "numerical"):
        raise ValueError(f"method must be 'auto', 'closed_form' or 'numerical', got {method!r}")
    if method == "closed_form" and not post.closed_form:
        raise ValueError(f"no closed form for law {post.law.name!r}; use method='numerical'")
    if post.a_override is not None and method == "numerical":
        raise ValueError("constants with an allocation exponent 'a' need method='closed_form'")
    closed = method == "closed_form" or (method == "auto" and post.closed_form)
    return "closed_form" if closed else "numerical"


def _log_n_per_draw(post: _Posterior, log_c: np.ndarray, method: str) -> np.ndarray:
    """log N* of draw s at its own budget ``log_c[s]``, shape (S,)."""
    if method == "closed_form":
        _, log_g, a = _chinchilla_terms(post.natural, post.a_override)
        return log_g[:, 0] + a[:, 0] * (log_c - _LOG6)
    params, ref = _jax_inputs(post)
    x, _, boundary = _solvers(post.law)["per_draw"](
        params, ref, jnp.asarray(log_c), post.log_ratio0
    )
    return np.where(np.asarray(boundary), np.nan, np.asarray(x))


def _warn_boundary(boundary: np.ndarray | None, what: str) -> None:
    if boundary is not None and np.any(boundary):
        warnings.warn(
            f"{np.mean(boundary):.1%} of posterior draws have no interior optimum {what} (the "
            "loss keeps falling towards tiny or huge models); they are NaN in the summary",
            PlanningWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------- public API
def optimal_allocation(
    fit: Fit | Mapping[str, Any],
    compute: Any = CHINCHILLA_COMPUTE,
    *,
    prob: float = 0.9,
    method: str = "auto",
    return_draws: bool = False,
    allow_unconverged: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Posterior of the compute-optimal allocation N*(C), D*(C) at one or many budgets.

    For each posterior draw the loss ``L(N, C/(6N))`` is minimised over ``N``: in closed form
    for the Chinchilla law (Hoffmann et al. 2022, Eq. 4: ``N* = G (C/6)^(beta/(alpha+beta))``,
    ``G = (alpha A/(beta B))^(1/(alpha+beta))``, ``D* = C/(6 N*)``), numerically otherwise
    (a 145-point grid over ±18 in log N, then 52 bisection steps on the sign of
    ``dL/dlog N`` by JAX autodiff; relative error about 1e-12 in N*). The draws are then summarised by their median and central interval.

    Parameters
    ----------
    fit
        A fit of a law of N and D, or published constants: ``{E, A, B, alpha, beta}``
        (Chinchilla) or ``{N_c, D_c, alpha_N, alpha_D}`` (Kaplan). Scalars count as one
        draw, equal-length arrays as many. An extra key ``a`` fixes the allocation exponent
        (``N* = G (C/6)^a``, ``D* = G^-1 (C/6)^(1-a)``) as Besiroglu et al. (2024) do to
        evaluate Hoffmann's reported policy.
    compute
        Training budget(s) in FLOP, scalar or array (vectorised: one row per budget).
    prob
        Mass of the central interval.
    method
        ``"auto"`` (closed form where there is one), ``"closed_form"`` or ``"numerical"``.
    return_draws
        Also return the per-draw arrays ``N_opt``, ``D_opt``, ``tokens_per_param``,
        ``loss_opt``, each of shape (draws, budgets).
    allow_unconverged
        Plan from a fit that fails the convergence gate badly (see ``Fit.predict``).

    Returns
    -------
    pandas.DataFrame
        One row per budget: ``compute``; ``N_opt``, ``D_opt``, ``tokens_per_param`` and
        ``loss_opt`` (the law's mean loss at the optimum), each as ``_median``, ``_lower``,
        ``_upper``; and ``extrapolation``, how many times the median optimum's N or D lies
        beyond the fitted data (1 inside; NaN for constants). ``attrs`` holds ``prob``,
        ``law``, ``method`` and ``num_draws``.

    Warns
    -----
    ExtrapolationWarning
        When a budget's median optimum lies more than 10x beyond the fitted data in N or D,
        as :meth:`Fit.predict` warns.

    References
    ----------
    Hoffmann et al. 2022, arXiv:2203.15556 (Eq. 4); Besiroglu et al. 2024, arXiv:2404.10102.

    Examples
    --------
    >>> from bayescale.datasets import BESIROGLU_2024
    >>> row = optimal_allocation(BESIROGLU_2024, compute=5.88e23).iloc[0]
    >>> round(float(row["tokens_per_param_median"]), 1)
    18.4
    >>> optimal_allocation(fit, compute=[1e22, 1e23, 1e24])  # doctest: +SKIP
    """
    post = _posterior_for_intervals(fit, prob, allow_unconverged)
    c = _compute_array(compute)
    log_c = np.log(c)
    opt = _optimum(post, log_c, method)
    _warn_boundary(opt.get("boundary"), "at some budgets")
    n, d = np.exp(opt["log_N"]), np.exp(opt["log_D"])
    draws = {
        "N_opt": n,
        "D_opt": d,
        "tokens_per_param": np.exp(opt["log_D"] - opt["log_N"]),
        "loss_opt": opt["loss"],
    }
    table = pd.DataFrame({"compute": c, **_summarise(draws, prob)})
    table["extrapolation"] = _extrapolation(post, table["N_opt_median"], table["D_opt_median"])
    extra = table["extrapolation"].to_numpy()
    if np.any(extra > EXTRAPOLATION_WARN):  # as Fit.predict warns
        worst = int(np.nanargmax(extra))
        row = table.iloc[worst]
        warnings.warn(
            f"the optimum at {row['compute']:.3g} FLOP (N*={row['N_opt_median']:.3g}, "
            f"D*={row['D_opt_median']:.3g}) lies {extra[worst]:.0f}x beyond the fitted data; "
            "the allocation assumes the law holds that far",
            ExtrapolationWarning,
            stacklevel=2,
        )
    table.attrs.update(
        {"prob": prob, "law": post.law.name, "method": opt["method"], "num_draws": post.num_draws}
    )
    return (table, draws) if return_draws else table


def _extrapolation(post: _Posterior, n: Any, d: Any) -> np.ndarray:
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    if post.fit is None or post.fit.data.N is None or post.fit.data.D is None:
        return np.full(n.shape, np.nan)
    data = post.fit.data
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.ones(n.shape)
        for v, obs in ((n, data.N), (d, data.D)):
            factor = np.fmax(factor, np.fmax(v / obs.max(), obs.min() / v))
    return factor


def _log_optimal_loss_numeric(post, params, ref, log_c_grid):
    solver = _solvers(post.law)["over_budgets"]
    _, log_l, boundary = solver(params, ref, jnp.asarray(log_c_grid), post.log_ratio0)
    log_l = np.where(np.asarray(boundary), np.nan, np.asarray(log_l))
    return log_l.T  # (S, G)


def _bisect_log_c(f, lo: np.ndarray, hi: np.ndarray, target: np.ndarray, steps: int):
    """Per-draw bisection of a decreasing ``f(log C) -> log loss`` between ``lo`` and ``hi``."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        above = f(mid) > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def compute_for_loss(
    fit: Fit | Mapping[str, Any],
    loss: Any,
    *,
    prob: float = 0.9,
    method: str = "auto",
    return_draws: bool = False,
    allow_unconverged: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Posterior of the least compute (and its allocation) that reaches a target loss.

    Per draw, the budget ``C`` solves ``L*(C) = loss`` where ``L*(C)`` is the loss at the
    compute-optimal allocation (decreasing in ``C``). Chinchilla law: closed form
    ``C = 6 ((loss - E)/(A G^-alpha + B G^beta))^(-(alpha+beta)/(alpha beta))``; other laws:
    a grid over log C in [1e6, 1e40] FLOP (steps of e^2) and 48 bisection steps. A draw whose irreducible
    loss ``E`` is at or above the target can never reach it: its compute is ``inf`` and the
    fraction of such draws is reported (``unreachable``). On the numerical path a draw that
    could reach the target, but only beyond 1e40 FLOP, also has compute ``inf`` and is
    counted apart (``beyond_range``).

    Parameters
    ----------
    fit
        A fit of a law of N and D or published constants (see :func:`optimal_allocation`).
    loss
        Target loss(es), scalar or array.
    prob
        Mass of the central interval.
    method
        ``"auto"``, ``"closed_form"`` or ``"numerical"``.
    return_draws
        Also return per-draw ``compute``, ``N_opt``, ``D_opt``, ``tokens_per_param`` of shape
        (draws, targets).
    allow_unconverged
        Plan from a fit that fails the convergence gate badly.

    Returns
    -------
    pandas.DataFrame
        One row per target: ``loss``; ``compute`` (``_median/_lower/_upper``; ``inf`` where
        that quantile falls among unreachable draws); ``N_opt``, ``D_opt``,
        ``tokens_per_param`` summarised over the draws that reach the target;
        ``unreachable``, the fraction of draws that cannot reach it; ``beyond_range``, the
        fraction that reach it only beyond the numerical search's 1e40 FLOP (0 for the closed
        form).

    Warns
    -----
    PlanningWarning
        When some draws cannot reach a target, reach it only beyond 1e40 FLOP, or reach it
        below 1e6 FLOP.

    References
    ----------
    Hoffmann et al. 2022, arXiv:2203.15556; Besiroglu et al. 2024, arXiv:2404.10102
    (``optimal_compute_from_reducible_loss``).

    Examples
    --------
    >>> from bayescale.datasets import BESIROGLU_2024
    >>> row = compute_for_loss(BESIROGLU_2024, loss=2.0).iloc[0]
    >>> f"{row['compute_median']:.3g}"
    '2.47e+23'
    """
    post = _posterior_for_intervals(fit, prob, allow_unconverged)
    targets = _compute_array(loss, "loss")
    closed = _optimum_method(post, method) == "closed_form"
    s, k = post.num_draws, targets.size
    log_c = np.full((s, k), np.nan)
    if closed:
        p, log_g, a = _chinchilla_terms(post.natural, post.a_override)
        reducible = targets[None, :] - p["E"]
        if post.a_override is None:
            log_k = np.logaddexp(
                np.log(p["A"]) - p["alpha"] * log_g, np.log(p["B"]) + p["beta"] * log_g
            )
            expo = (p["alpha"] + p["beta"]) / (p["alpha"] * p["beta"])
            with np.errstate(divide="ignore", invalid="ignore"):
                log_c = _LOG6 - expo * (np.log(reducible) - log_k)
        else:  # a published policy: bisection along N = G (C/6)^a
            for j in range(k):

                def path_loss(lc, _p=p, _g=log_g, _a=a):
                    lc6 = lc[:, None] - _LOG6
                    log_n = _g + _a * lc6
                    return np.log(_chinchilla_loss(_p, log_n, lc6 - log_n))[:, 0]

                lo = np.full(s, _LOG_C_RANGE[0])
                hi = np.full(s, _LOG_C_RANGE[1] + 100.0)
                log_c[:, j] = _bisect_log_c(path_loss, lo, hi, np.log(targets[j]), 200)
        log_c = np.where(reducible > 0, log_c, np.inf)
        below = np.zeros_like(log_c, dtype=bool)
    else:
        log_c, below = _numeric_compute_for_loss(post, targets)
    reachable = np.isfinite(log_c)
    # Not reached by the end of the numerical search (1e40 FLOP): never, where the draw's
    # irreducible loss is at or above the target; otherwise later than the search looks.
    unreachable = np.isposinf(log_c)
    beyond = np.zeros_like(unreachable)
    if not closed and unreachable.any():
        beyond = unreachable & ~_never_reached(post, targets)
        unreachable = unreachable & ~beyond
    compute = np.exp(log_c)
    opt_n = np.full((s, k), np.nan)
    for j in range(k):
        ok = reachable[:, j]
        if np.any(ok):
            sub = _subset(post, ok)
            log_n = _log_n_per_draw(sub, log_c[ok, j], "closed_form" if closed else "numerical")
            opt_n[ok, j] = np.exp(log_n)
    opt_d = compute / (FLOP_PER_PARAM_TOKEN * opt_n)
    masked = {
        "N_opt": opt_n,
        "D_opt": np.where(reachable, opt_d, np.nan),
        "tokens_per_param": np.where(reachable, opt_d / opt_n, np.nan),
    }
    table = pd.DataFrame({"loss": targets, **_summarise({"compute": compute}, prob)})
    for key, value in _summarise(masked, prob).items():
        table[key] = value
    table["unreachable"] = unreachable.mean(axis=0)
    table["beyond_range"] = beyond.mean(axis=0)
    table.attrs.update(
        {
            "prob": prob,
            "law": post.law.name,
            "method": "closed_form" if closed else "numerical",
            "num_draws": s,
        }
    )
    if np.any(unreachable):
        worst = int(np.argmax(unreachable.mean(axis=0)))
        warnings.warn(
            f"{unreachable[:, worst].mean():.1%} of posterior draws cannot reach loss "
            f"{targets[worst]:g} at any compute (irreducible loss at or above the target); "
            "their compute is inf",
            PlanningWarning,
            stacklevel=2,
        )
    if np.any(beyond):
        worst = int(np.argmax(beyond.mean(axis=0)))
        warnings.warn(
            f"{beyond[:, worst].mean():.1%} of posterior draws need more than "
            f"{math.exp(_LOG_C_RANGE[1]):.0e} FLOP, the end of the numerical search, to reach "
            f"loss {targets[worst]:g}; their compute is inf",
            PlanningWarning,
            stacklevel=2,
        )
    if np.any(below):
        warnings.warn(
            f"{below.mean():.1%} of draws reach the target below 1e6 FLOP; reported as NaN",
            PlanningWarning,
            stacklevel=2,
        )
    draws = {"compute": compute, **masked}
    return (table, draws) if return_draws else table


def _subset(post: _Posterior, mask: np.ndarray) -> _Posterior:
    return _Posterior(
        law=post.law,
        sampled={k: v[mask] for k, v in post.sampled.items()},
        natural={k: v[mask] for k, v in post.natural.items()},
        ref=post.ref,
        fit=post.fit,
        a_override=None if post.a_override is None else post.a_override[mask],
        log_ratio0=post.log_ratio0,
    )


def _never_reached(post: _Posterior, targets: np.ndarray) -> np.ndarray:
    """(draws, targets): whether a draw's optimal loss stays at or above a target at any
    compute. Exact from the irreducible loss when the law names it (``E``, or
    ``law.extra["irreducible"]``); otherwise read from the optimal loss at 1e100 FLOP (a
    law whose floor has another name, or has none, as Kaplan's, whose optimal loss there is
    0.001; the numerical optimum has no answer much beyond)."""
    from .check import _irreducible

    floor = post.natural.get(_irreducible(post.law))
    if floor is None:
        params, ref = _jax_inputs(post)
        far = _log_optimal_loss_numeric(post, params, ref, np.array([math.log(1e100)]))
        floor = np.exp(np.where(np.isnan(far), np.inf, far))[:, 0]  # no optimum: never
    return floor[:, None] >= targets[None, :]


def _numeric_compute_for_loss(post: _Posterior, targets: np.ndarray):
    params, ref = _jax_inputs(post)
    grid = np.arange(_LOG_C_RANGE[0], _LOG_C_RANGE[1], _LOG_C_STEP)
    grid = np.append(grid, _LOG_C_RANGE[1])  # the search ends at 1e40 FLOP, not 0.74e40
    log_l = _log_optimal_loss_numeric(post, params, ref, grid)  # (S, G)
    log_l = np.where(np.isnan(log_l), np.inf, log_l)
    # Enforce monotonicity (L* is non-increasing in C); guards against round-off wiggles.
    log_l = np.minimum.accumulate(log_l, axis=1)
    solver = _solvers(post.law)["bisect_compute"]
    s = post.num_draws
    out = np.full((s, targets.size), np.nan)
    below = np.zeros((s, targets.size), dtype=bool)
    for j, t in enumerate(np.log(targets)):
        count = np.sum(log_l > t, axis=1)  # grid points still above the target
        never = count == grid.size
        below[:, j] = count == 0
        i = np.clip(count, 1, grid.size - 1)
        lo, hi = grid[i - 1].astype(float), grid[i].astype(float)

        res = np.asarray(
            solver(params, ref, jnp.asarray(lo), jnp.asarray(hi), float(t), post.log_ratio0)
        )
        out[:, j] = np.where(never, np.inf, np.where(below[:, j], np.nan, res))
    return out, below


def allocation_exponents(
    fit: Fit | Mapping[str, Any],
    prob: float = 0.8,
    *,
    compute: float = CHINCHILLA_COMPUTE,
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """Posterior of the allocation exponents ``N* ~ C^a`` and ``D* ~ C^b`` (``a + b = 1``).

    Chinchilla law: ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)`` per draw (Hoffmann
    et al. 2022, Eq. 4). Other laws: the local slope ``d log N*/d log C`` at ``compute``, by
    a central difference of the numerical optimum over ``compute * e^(±1)``.

    Hoffmann et al. (2022, Table 2) report an 80% interval of (0.454, 0.455) for ``a``
    (:data:`HOFFMANN_2022_A_INTERVAL`); Besiroglu et al.'s (2024) bootstrap on the data
    digitised from the same paper gives an interval about 0.05 wide. Compare the ``width``
    column of this table to both.

    Parameters
    ----------
    fit
        A fit of a law of N and D or published constants (see :func:`optimal_allocation`).
    prob
        Mass of the central interval (0.8 matches the intervals Hoffmann et al. report).
    compute
        Budget at which local exponents are taken for laws without a closed form.
    allow_unconverged
        Summarise a fit that fails the convergence gate badly.

    Returns
    -------
    pandas.DataFrame
        Index ``a``, ``b``; columns ``median``, ``mean``, ``sd``, ``lower``, ``upper``,
        ``width`` (upper - lower).

    Examples
    --------
    >>> from bayescale.datasets import BESIROGLU_2024
    >>> round(float(allocation_exponents(BESIROGLU_2024).loc["a", "median"]), 4)
    0.5126
    """
    post = _posterior_for_intervals(fit, prob, allow_unconverged)
    method = _optimum_method(post, "auto")
    if method == "closed_form":
        nat = post.natural
        a = nat["beta"] / (nat["alpha"] + nat["beta"])
        if post.a_override is not None:
            a = post.a_override
    else:
        c = _compute_array(compute)[0]
        opt = _numeric_opt(post, np.log(c) + np.array([-1.0, 1.0]))
        _warn_boundary(opt["boundary"], f"near C = {c:.3g}")
        a = (opt["log_N"][:, 1] - opt["log_N"][:, 0]) / 2.0
    draws = {"a": a, "b": 1.0 - a}
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows = {}
    for k, v in draws.items():
        q = np.nanquantile(v, [0.5, lo, hi])
        rows[k] = {
            "median": q[0],
            "mean": np.nanmean(v),
            "sd": np.nanstd(v, ddof=1) if v.size > 1 else 0.0,
            "lower": q[1],
            "upper": q[2],
            "width": q[2] - q[1],
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs.update(
        {"prob": prob, "law": post.law.name, "method": method, "num_draws": post.num_draws}
    )
    return table


def prob_beats(
    fit: Fit | Mapping[str, Any],
    N: Any = None,
    D: Any = None,
    C: Any = None,
    *,
    loss: float,
    predictive: bool = False,
    allow_unconverged: bool = False,
) -> float | np.ndarray:
    """Posterior probability that a training plan reaches a loss below ``loss``.

    With ``predictive=False`` (default) this is ``P(L(N, D) < loss)`` for the law's mean loss,
    the fraction of posterior draws whose expected loss beats the target. With
    ``predictive=True`` the run's noise is included (the fitted likelihood: log-normal,
    Student-t, Laplace, normal, beta or beta-binomial), i.e. the probability that an observed
    run beats it. For a law of a score to maximise (``law.higher_is_better``: the sigmoids'
    accuracy, whatever the likelihood) higher is better: the plan beats the target ``loss``
    (an accuracy) when it lies *above* it, ``P(acc > loss)``. An error rate fitted with the
    Beta or binomial likelihood beats its target from below, as a loss does.

    Parameters
    ----------
    fit
        A fit, or published constants (then the answer is 0 or 1 per plan).
    N, D, C
        The plan: two of parameters, tokens and FLOP (``C = 6ND`` fills the third); scalars or
        arrays, broadcast together.
    loss
        Target loss (a scalar; an accuracy for a law with ``higher_is_better``).
    predictive
        Include the observation noise (fits only).
    allow_unconverged
        Use a fit that fails the convergence gate badly.

    Returns
    -------
    float or numpy.ndarray
        The probability for each plan (a float for scalar inputs).

    Examples
    --------
    >>> from bayescale.datasets import BESIROGLU_2024
    >>> prob_beats(BESIROGLU_2024, N=70e9, D=1.4e12, loss=2.0)
    1.0
    """
    post = _as_posterior(fit, allow_unconverged=allow_unconverged, need_nd=False)
    targets = _compute_array(loss, "loss")
    if targets.size != 1:
        raise ValueError(
            f"loss must be one target, got {targets.size} values: call prob_beats once per "
            "target (the plans N, D, C may be arrays)"
        )
    target = float(targets[0])
    vals = _plan_inputs(post.law, N, D, C)
    shape = next(iter(vals.values())).shape
    log_mu = post.log_mean({k: v.reshape(-1) for k, v in vals.items()})  # (S, M)
    higher = post.law.higher_is_better  # an accuracy beats its target from above
    if not predictive:
        beats = log_mu > math.log(target) if higher else log_mu < math.log(target)
        p = np.mean(beats, axis=0)
    else:
        if post.fit is None:
            raise ValueError("predictive=True needs a Fit (constants carry no noise model)")
        # below: P(y < target); above: 1 - P(y <= target)
        cdf = _predictive_cdf(post.fit, log_mu, target, strict=not higher).mean(axis=0)
        p = 1.0 - cdf if higher else cdf
    p = p.reshape(shape)
    return float(p) if p.ndim == 0 else p


def _plan_inputs(law: Law, N: Any, D: Any, C: Any) -> dict[str, np.ndarray]:
    given = {}
    for k, v in (("N", N), ("D", D), ("C", C)):
        if v is not None:  # parsed as predict's targets are: "70B", 10**22, Decimal, ...
            given[k] = check_positive_targets(k, v)
    if given:
        given = dict(zip(given, np.broadcast_arrays(*given.values()), strict=True))
    if "D" not in given and {"N", "C"} <= given.keys():
        given["D"] = given["C"] / (FLOP_PER_PARAM_TOKEN * given["N"])
    if "N" not in given and {"D", "C"} <= given.keys():
        given["N"] = given["C"] / (FLOP_PER_PARAM_TOKEN * given["D"])
    if "C" not in given and {"N", "D"} <= given.keys():
        given["C"] = FLOP_PER_PARAM_TOKEN * given["N"] * given["D"]
    missing = [k for k in law.inputs if k not in given]
    if missing:
        raise ValueError(
            f"law {law.name!r} needs {', '.join(law.inputs)}; missing {', '.join(missing)} "
            "(C = 6ND fills one of N, D, C from the other two)"
        )
    return {k: np.asarray(given[k], dtype=np.float64) for k in law.inputs}


def _predictive_cdf(
    fit: Fit, log_mu: np.ndarray, target: float, *, strict: bool = True
) -> np.ndarray:
    """``P(y < target)`` per posterior draw and plan under the fitted likelihood (``strict``
    False: ``P(y <= target)``; they differ only for the beta-binomial's discrete accuracies)."""
    from scipy import stats

    sigma = np.asarray(fit.samples["sigma"]).reshape(-1)[:, None]
    lik = fit.spec.likelihood
    if lik in PROPORTION_LIKELIHOODS:
        a, b = beta_shapes(log_mu, sigma)
        if lik == "beta":
            return stats.beta.cdf(target, a, b)
        n = int(fit.spec.trials)  # accuracy k / n with k ~ BetaBinomial(n, a, b)
        x = target * n
        x = round(x) if abs(x - round(x)) <= 1e-9 * n else x  # 0.57 * 100 = 56.999...
        k = math.ceil(x) - 1 if strict else math.floor(x)
        return beta_binomial_cdf(k, n, a, b)  # SciPy's betabinom errs at precisions >= 1e10
    z = (math.log(target) - log_mu) / sigma
    if lik == "lognormal":
        return stats.norm.cdf(z)
    if lik == "laplace":
        return stats.laplace.cdf(z)
    if lik == "student_t":
        nu = fit.spec.df if fit.spec.df is not None else fit.samples["nu"].reshape(-1)[:, None]
        return stats.t.cdf(z, nu)
    return stats.norm.cdf((target - np.exp(log_mu)) / sigma)
