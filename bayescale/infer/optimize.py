"""Multi-start point fits: robust (Huber) and least-squares regression, and MAP estimates.

This is the method of Hoffmann et al. (2022, Approach 3) and of Epoch's replication (Besiroglu et
al. 2024): minimise the *summed* Huber loss of log-loss residuals from many starting points and
keep the best local minimum. All starts run in **one jit-compiled program**: a batched solver
whose lanes pull starts from a work queue inside a ``lax.while_loop``, so a lane whose start
has converged immediately takes the next start instead of idling until the slowest start of
its batch is done. With several XLA devices (e.g. ``XLA_FLAGS=
--xla_force_host_platform_device_count=2`` on a 2-core CPU) large start sets are dealt over
them, one queue per device.

Two local solvers, both run from every start on its own:

- ``solver="lbfgs"`` (the default for ``starts="hoffmann"``: Hoffmann et al.'s and Epoch's
  algorithm): L-BFGS with SciPy's L-BFGS-B settings (memory 10; stop at max-abs gradient
  ``1e-5`` or a relative decrease of ``2.2e-9``) and an Armijo backtracking line search, one
  objective-and-gradient evaluation per lane and loop iteration. A vmapped ``optax.lbfgs`` over
  the 4,500 Hoffmann starts is no faster than SciPy's loop (DESIGN.md §6): its zoom line search
  and its ``while_loop`` keep every lane busy until the slowest start of the batch is done. Here
  lanes never wait, the gradient is closed-form (four row sums in one small matrix product),
  many starts are first run in single precision (half the cost per evaluation on CPU) and then
  continued in double precision, and the best few optima are finished by the
  Levenberg–Marquardt solver, so that the reported optimum is certified to ``tol``.
- ``solver="lm"`` (the default otherwise): damped Newton (Levenberg–Marquardt). The objectives
  are sums of a few hundred terms in 2–6 parameters: exact Hessians cost a handful of weighted
  sums, and a Newton step with Marquardt damping converges in tens of iterations. For the Huber
  loss the solver uses the exact Hessian once at least as many residuals as parameters lie in
  the quadratic zone and that Hessian is positive definite, and the iteratively-reweighted
  (IRLS) Gauss–Newton majoriser ``J^T diag(min(1, delta/|r|)) J`` otherwise (Holland & Welsch
  1977): robust far from the optimum, quadratic near it. Each step moves each coordinate by at
  most 1 (a factor e in an amplitude): with this cap all 4,500 Hoffmann starts on Epoch's data
  reach the global optimum, against about half without it and about 10% for SciPy's L-BFGS-B
  (7% for the batched L-BFGS). Large start sets of the Chinchilla law are first taken near
  their minima in single precision (2.3x cheaper per iteration on CPU), then finished in double
  precision.

The default fit of the Chinchilla law is *variable projection* (Golub & Pereyra 1973): for fixed
exponents ``(alpha, beta)`` the law ``E + A N^-alpha + B D^-beta`` is linear in ``(E, A, B)``, so
a grid over the exponents with a non-negative least-squares solve (plus Huber reweighting) in the
linear parameters profiles the objective over the whole exponent plane at the price of a few
hundred 3x3 solves; the best few local minima of that profile are then polished by the full
five-parameter Levenberg–Marquardt solver. It reaches the optimum of the 4,500-start grid
hundreds of times faster (see ``benchmarks/bench_map.py``).

References
----------
Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556.
Besiroglu, Erdil, Barnett & You 2024, Chinchilla Scaling: A replication attempt, arXiv:2404.10102.
Huber 1964, Robust estimation of a location parameter, Ann. Math. Statist. 35(1); Holland &
Welsch 1977, Robust regression using iteratively reweighted least-squares, Comm. Stat. 6(9).
Moré 1978, The Levenberg–Marquardt algorithm: implementation and theory; Nielsen 1999, Damping
parameter in Marquardt's method (IMM-REP-1999-05).
Liu & Nocedal 1989, On the limited memory BFGS method for large scale optimization, Math.
Program. 45; Byrd, Lu, Nocedal & Zhu 1995, A limited memory algorithm for bound constrained
optimization, SIAM J. Sci. Comput. 16(5) (L-BFGS-B, SciPy's); Nocedal & Wright 2006, Numerical
Optimization, 2nd ed. (line search: Alg. 3.1, eq. 3.57; two-loop recursion: Alg. 7.4).
Golub & Pereyra 1973, The differentiation of pseudo-inverses and nonlinear least squares problems
whose variables separate, SIAM J. Numer. Anal. 10(2).
Efron & Tibshirani 1993, An Introduction to the Bootstrap (case resampling, percentile intervals).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax
from numpyro import handlers
from numpyro.distributions import biject_to

from ..data import (
    ScalingData,
    as_scaling_data,
    prediction_inputs,
)
from ..laws import Law
from ..model import ModelSpec, build_model, warn_proportions

__all__ = [
    "HUBER_DELTA",
    "OBJECTIVES",
    "SOLVERS",
    "OptimizationWarning",
    "PointFit",
    "UnconvergedOptimumError",
    "hoffmann_starts",
    "huber_objective_hoffmann",
    "optimize",
]

#: Huber threshold of Hoffmann et al. 2022 and Besiroglu et al. 2024 (on log-loss residuals).
HUBER_DELTA = 1e-3
#: Objective names accepted by :func:`optimize`.
OBJECTIVES = ("huber", "least_squares", "map")
#: Warn when a forecast lies further than this factor beyond the observed range of an input.
_EXTRAPOLATION_WARN = 10.0
#: Largest Marquardt damping before a start counts as stalled (no decrease is possible).
_LAMBDA_MAX = 1e16
#: A start with an unconstrained coordinate beyond this has diverged.
_Z_MAX = 1e3
#: Scale of the IRLS weights ``min(1, scale * delta / |r|)`` of residuals in Huber's linear
#: zone; 1 is the majoriser of the Huber loss (Holland & Welsch 1977).
_IRLS_SCALE = 1.0
#: Largest decrease of the damping after a good step (Nielsen 1999 uses 1/3).
_LAMBDA_DOWN = 0.1
#: Largest step of one iteration in each optimised coordinate (a factor e in an amplitude, 1 in
#: an exponent). This cap made every one of the 4,500 Hoffmann starts on Epoch's data reach the
#: global optimum (without it about half do: one unbounded Gauss-Newton step from a poor start
#: can switch a law term off for good).
_STEP_MAX = 1.0
#: Smallest damping: lower values make the climb back after a failed step long.
_LAMBDA_MIN = 1e-7
#: More starts than this are screened in single precision first (Chinchilla fast path), for at
#: most this many iterations, then finished in double precision on this many lanes.
_SCREEN_MIN_STARTS = 256
_SCREEN_MAX_ITER = 100
_POLISH_LANES = 64
#: Starting Marquardt damping (relative to the Hessian diagonal).
_LAMBDA0 = 1e-3
#: Lanes of the batched solver: starts in flight at once.
_DEFAULT_LANES = 256
#: Polished candidates of the variable-projection profile (its best local minima).
_VARPRO_CANDIDATES = 8
#: Exponent grid of the variable-projection profile: geometric, 0.02 .. 3 (alpha and beta).
_VARPRO_GRID = np.geomspace(0.02, 3.0, 36)

#: Batched L-BFGS (``solver="lbfgs"``): SciPy's L-BFGS-B defaults (Byrd et al. 1995; Zhu et al.
#: 1997): memory 10, stop at max-abs gradient <= 1e-5 or at a relative decrease of the objective
#: <= factr * eps = 1e7 * 2.2e-16 (``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1)``). Armijo
#: backtracking with safeguarded quadratic interpolation (Nocedal & Wright 2006, Alg. 3.1/3.5).
_LBFGS_MEMORY = 10
_LBFGS_PGTOL = 1e-5
_LBFGS_FACTR = 1e7 * float(np.finfo(np.float64).eps)
_LBFGS_C1 = 1e-4
_LBFGS_MAX_BACKTRACK = 20
#: L-BFGS lanes: the single-precision pass over many starts, then the double-precision finish.
_LBFGS_LANES = 256
_LBFGS_FINISH_LANES = 32
#: Distinct best L-BFGS optima finished by the Levenberg–Marquardt solver in double precision.
_LBFGS_POLISH = 8
#: Solvers of the multi-start stage accepted by :func:`optimize`.
SOLVERS = ("auto", "lm", "lbfgs")
#: Devices the queue solvers shard large start sets over (``None``: every local device of the
#: default backend; run with ``XLA_FLAGS=--xla_force_host_platform_device_count=K`` for K CPU
#: devices). Lanes of different devices run in parallel, one thread each.
_DEVICES: int | None = None
#: Fewer starts than this per device run on one device.
_SHARD_MIN_STARTS = 512

#: Status codes of a start, and their names in ``PointFit.starts``.
_CONVERGED, _MAX_ITER, _STALLED, _DIVERGED = 0, 1, 2, 3
STATUS_NAMES = ("converged", "max_iter", "stalled", "diverged")

#: Counts traces of the compiled programs (a test checks that a second call does not retrace).
TRACE_COUNT: dict[str, int] = {}


class OptimizationWarning(UserWarning):
    """The best start of a point fit did not meet the convergence test (gradient, iterations)."""


class UnconvergedOptimumError(RuntimeError):
    """A forecast from a non-converged point fit was refused (pass ``allow_unconverged=True``)."""


def _count_trace(name: str) -> None:
    TRACE_COUNT[name] = TRACE_COUNT.get(name, 0) + 1


# ---------------------------------------------------------------------------------------------
# The exact objective of Hoffmann et al. / Epoch, in NumPy (for tests and published constants)
# ---------------------------------------------------------------------------------------------


def _huber_np(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


_ABE_NAMES = (("a", "b", "e", "alpha", "beta"), ("A", "B", "E", "alpha", "beta"))


def _abe(params: Any) -> np.ndarray:
    """(a, b, e, alpha, beta) from an array (by position), or by name from a dict, a pandas
    Series or a DataFrame (one row per start) with (a, b, e) or (A, B, E) keys; values may be
    arrays (a batch of starts, on the last axis of the result)."""
    if isinstance(params, pd.Series | pd.DataFrame):
        labels = set(params.index if isinstance(params, pd.Series) else params.columns)
        if any(set(names) <= labels for names in _ABE_NAMES):
            params = (
                params.to_dict()
                if isinstance(params, pd.Series)
                else {k: params[k].to_numpy() for k in params.columns}
            )
    if isinstance(params, Mapping):
        if set(_ABE_NAMES[0]) <= set(params):
            vals = [np.asarray(params[k], dtype=np.float64) for k in _ABE_NAMES[0]]
        elif set(_ABE_NAMES[1]) <= set(params):
            vals = [np.asarray(params[k], dtype=np.float64) for k in _ABE_NAMES[1]]
            if not all(np.all(v > 0) for v in vals[:3]):
                raise ValueError("params A, B and E must be > 0 (their logs are a, b, e)")
            vals[:3] = [np.log(v) for v in vals[:3]]
        else:
            raise ValueError(
                "params must have keys (a, b, e, alpha, beta) or (E, A, B, alpha, beta); "
                f"got {sorted(map(str, params))}"
            )
        return np.stack(np.broadcast_arrays(*vals), axis=-1)
    arr = np.asarray(params, dtype=np.float64)
    if arr.shape[-1:] != (5,):
        raise ValueError(
            f"params array must end in 5 values (a, b, e, alpha, beta), got {arr.shape}"
        )
    return arr


def huber_objective_hoffmann(
    params: Any,
    log_N: Any,
    log_D: Any,
    log_loss: Any,
    delta: float = HUBER_DELTA,
) -> float | np.ndarray:
    r"""Summed Huber loss of the log-loss residuals of the Chinchilla law (Epoch's objective).

    .. math::

        \sum_i \mathrm{Huber}_\delta\big(\mathrm{LSE}(a - \alpha \log N_i,\;
        b - \beta \log D_i,\; e) - \log L_i\big)

    with ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)`` and SciPy's Huber semantics
    (``scipy.special.huber``: ``r^2/2`` inside ``delta``, ``delta (|r| - delta/2)`` outside).

    Parameters
    ----------
    params
        ``(a, b, e, alpha, beta)`` as an array (a leading batch axis is allowed), or by name:
        a dict or pandas Series with keys ``a, b, e, alpha, beta`` or ``E, A, B, alpha, beta``
        (e.g. ``bayescale.datasets.HOFFMANN_2022``), whose values may be arrays of starts, or
        a DataFrame with those columns, one row per start (e.g. :func:`hoffmann_starts`).
    log_N, log_D, log_loss
        Natural logs of parameters, tokens and final loss, one value per run.
    delta
        Huber threshold (``1e-3`` in both papers).

    Returns
    -------
    float or numpy.ndarray
        The objective (one value per row of a batched ``params``).

    References
    ----------
    Hoffmann et al. 2022, arXiv:2203.15556 (Approach 3); Besiroglu et al. 2024, arXiv:2404.10102.

    Examples
    --------
    >>> import numpy as np
    >>> from bayescale.datasets import BESIROGLU_2024, chinchilla_synthetic
    >>> d = chinchilla_synthetic(noise=0.0)
    >>> lN, lD = np.log(d.N), np.log(d.D)
    >>> huber_objective_hoffmann(BESIROGLU_2024, lN, lD, d.log_loss) < 1e-20
    True
    """
    p = _abe(params)
    lN, lD, y = (np.asarray(v, dtype=np.float64) for v in (log_N, log_D, log_loss))
    a, b, e, al, be = (p[..., k, None] for k in range(5))
    u = np.stack(np.broadcast_arrays(a - al * lN, b - be * lD, e + 0.0 * lN))
    m = u.max(axis=0)
    pred = m + np.log(np.exp(u - m).sum(axis=0))
    out = _huber_np(pred - y, float(delta)).sum(axis=-1)
    return float(out) if out.ndim == 0 else out


def hoffmann_starts() -> pd.DataFrame:
    """The 4,500 starting points of Hoffmann et al. 2022 / Besiroglu et al. 2024.

    ``alpha, beta`` in ``{0, 0.5, ..., 2}``, ``e`` in ``{-1, -0.5, ..., 1}``, ``a, b`` in
    ``{0, 5, ..., 25}``, in the ``(a, b, e, alpha, beta)`` parametrisation (``A = exp(a)``).

    Returns
    -------
    pandas.DataFrame
        4,500 rows, columns ``a, b, e, alpha, beta`` (Epoch's loop order).

    Examples
    --------
    >>> hoffmann_starts().shape
    (4500, 5)
    """
    alphas = betas = np.arange(0.0, 2.5, 0.5)
    es = np.arange(-1.0, 1.5, 0.5)
    abs_ = np.arange(0.0, 30.0, 5.0)
    rows = list(itertools.product(alphas, betas, es, abs_, abs_))
    arr = np.asarray(rows, dtype=np.float64)
    return pd.DataFrame(
        {"a": arr[:, 3], "b": arr[:, 4], "e": arr[:, 2], "alpha": arr[:, 0], "beta": arr[:, 1]}
    )


# ---------------------------------------------------------------------------------------------
# Small dense linear algebra, unrolled so that it vectorises across lanes
# ---------------------------------------------------------------------------------------------


def _chol_solve(A: jnp.ndarray, b: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Solve ``A x = b`` for a small symmetric positive-definite ``A``; also return ``A > 0``.

    Unrolled for the 1..8 parameters of a scaling law (elementwise code vectorises over
    lanes, where LAPACK calls on 5x5 matrices would not). Larger systems use LAPACK.
    """
    p = A.shape[-1]
    if p > 8:
        L = jnp.linalg.cholesky(A)
        ok = jnp.all(jnp.isfinite(L))
        x = jax.scipy.linalg.cho_solve((L, True), b)
        return x, ok
    zero = jnp.zeros((), A.dtype)
    L: list[list[Any]] = [[None] * p for _ in range(p)]
    ok = jnp.asarray(True)
    for j in range(p):
        sjj = A[j, j] - sum((L[j][k] * L[j][k] for k in range(j)), start=zero)
        ok = ok & (sjj > 0)
        ljj = jnp.sqrt(jnp.where(sjj > 0, sjj, 1.0))
        L[j][j] = ljj
        for i in range(j + 1, p):
            acc = sum((L[i][k] * L[j][k] for k in range(j)), start=zero)
            L[i][j] = (A[i, j] - acc) / ljj
    yv: list[Any] = [None] * p
    for i in range(p):
        acc = sum((L[i][k] * yv[k] for k in range(i)), start=zero)
        yv[i] = (b[i] - acc) / L[i][i]
    x: list[Any] = [None] * p
    for i in reversed(range(p)):
        acc = sum((L[k][i] * x[k] for k in range(i + 1, p)), start=zero)
        x[i] = (yv[i] - acc) / L[i][i]
    return jnp.stack(x), ok


def _pick_hessian(
    exact: jnp.ndarray, majoriser: jnp.ndarray, n_quadratic: jnp.ndarray, g: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Exact Huber Hessian where it is trustworthy (enough quadratic residuals and PD).

    Also returns the Newton decrement ``g^T H^-1 g / 2`` of the exact Hessian, or ``inf``
    where the majoriser is used (it overstates the curvature, so its decrement would understate
    the distance to the local minimum).
    """
    p = g.shape[0]
    newton, pd_ok = _chol_solve(exact, g)
    use = (n_quadratic >= p) & pd_ok
    decrement = jnp.where(use, 0.5 * jnp.dot(newton, g), jnp.inf)
    return jnp.where(use, exact, majoriser), decrement


def _exact_decrement(H: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """Newton decrement ``g^T H^-1 g / 2`` of an exact Hessian; ``inf`` unless it is PD."""
    newton, pd_ok = _chol_solve(H, g)
    return jnp.where(pd_ok, 0.5 * jnp.dot(newton, g), jnp.inf)


def _huber_terms(ar: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """Huber loss of ``|r|``: ``t (|r| - t/2)`` with ``t = min(|r|, delta)`` (``r^2/2`` inside
    ``delta``, ``delta (|r| - delta/2)`` outside; ``delta = inf`` gives ``r^2/2``). Select-free:
    XLA's CPU code for ``where`` on float64 is several times slower."""
    t = jnp.minimum(ar, delta)
    return t * (ar - 0.5 * t)


def _rho(r: jnp.ndarray, c: jnp.ndarray, delta: jnp.ndarray):
    """Huber pieces for residuals ``r`` with case weights ``c``; ``delta = inf`` is r^2/2.

    Returns the objective, ``psi = c rho'(r)``, ``c rho''(r)``, the IRLS weights
    ``c min(1, s delta/|r|)`` (``s = _IRLS_SCALE``) and the number of residuals (of positive
    weight) in the quadratic zone.
    """
    ar = jnp.abs(r)
    inside = ar <= delta
    f = jnp.sum(c * _huber_terms(ar, delta))
    psi = c * jnp.clip(r, -delta, delta)
    curv = c * inside
    tiny = jnp.finfo(r.dtype).tiny
    w_irls = c * jnp.minimum(1.0, _IRLS_SCALE * delta / jnp.maximum(ar, tiny))
    n_quadratic = jnp.sum(inside & (c > 0))
    return f, psi, curv, w_irls, n_quadratic


# ---------------------------------------------------------------------------------------------
# Per-start models: (z, case weights, shared data) -> (objective, gradient, model Hessian)
# ---------------------------------------------------------------------------------------------


def _chinchilla_features(log_x: Mapping[str, Any], ref: Mapping[str, Any]):
    """Centred log inputs and the row features ``(1, x_N, x_N^2, x_D, x_D^2, x_N x_D)``."""
    xN = jnp.asarray(log_x["N"] - ref["N"])
    xD = jnp.asarray(log_x["D"] - ref["D"])
    X = jnp.stack([jnp.ones_like(xN), xN, xN * xN, xD, xD * xD, xN * xD], axis=1)
    return xN, xD, X


def _chinchilla_model(z, c, shared):
    """Closed-form Huber/least-squares pieces of the reference-centred Chinchilla law.

    ``z = (log E, log_A_ref, alpha, log_B_ref, beta)``; ``log L = LSE(log_A_ref - alpha x_N,
    log_B_ref - beta x_D, log E)`` with ``x = log input - reference``. The residual Jacobian has
    columns ``(p3, p1, -p1 x_N, p2, -p2 x_D)`` with ``p`` the softmax weights of the three
    terms, so every entry of the gradient and of both Hessians is a weighted sum of one of the
    row features ``(1, x_N, x_N^2, x_D, x_D^2, x_N x_D)``: all of them come out of one small
    matrix product ``Q @ X`` per start (a single GEMM across lanes).
    """
    xN, xD, X, y, delta = shared
    e, la, al, lb, be = z[0], z[1], z[2], z[3], z[4]
    u1 = la - al * xN
    u2 = lb - be * xD
    u3 = jnp.broadcast_to(e, xN.shape)
    m = jnp.maximum(jnp.maximum(u1, u2), u3)
    e1, e2, e3 = jnp.exp(u1 - m), jnp.exp(u2 - m), jnp.exp(u3 - m)
    s = e1 + e2 + e3
    r = m + jnp.log(s) - y
    inv = 1.0 / s
    p1, p2, p3 = e1 * inv, e2 * inv, e3 * inv
    f, psi, curv, w_irls, n_quad = _rho(r, c, delta)
    # exact Hessian: J^T diag(c rho'' - psi) J + sum_k M_k^T diag(psi p_k) M_k
    v = curv - psi
    pp = (p1 * p1, p1 * p2, p2 * p2, p3 * p3, p1 * p3, p2 * p3)
    Q = jnp.stack([*(v * t for t in pp), *(w_irls * t for t in pp), psi * p1, psi * p2, psi * p3])
    T = (Q @ X).reshape(-1)  # (15 x 6) weighted sums against 1, xN, xN^2, xD, xD^2, xN xD
    sign_g, sign_h, sign_x = (jnp.asarray(a, T.dtype) for a in (_G_SIGN, _EXACT_SIGN, _EXTRA_SIGN))
    g = sign_g * T[_G_INDEX]
    exact = sign_h * T[_EXACT_INDEX] + sign_x * T[_EXTRA_INDEX]
    majoriser = sign_h * T[_EXACT_INDEX + 36]
    return f, g, *_pick_hessian(exact, majoriser, n_quad, g)


def _chinchilla_tables():
    """Index/sign maps from the sums ``T = Q @ X`` to the gradient and Hessians (see above).

    Rows of ``Q``: ``v p1p1, v p1p2, v p2p2, v p3p3, v p1p3, v p2p3`` (exact weights), the same
    with IRLS weights, then ``psi p1, psi p2, psi p3``; columns of ``X``: ``1, xN, xN^2, xD,
    xD^2, xN xD``. Parameters: ``(log E, log A_ref, alpha, log B_ref, beta)``.
    """
    # (i, j): (row of Q, feature, sign), upper triangle of the Gram part J^T diag(w) J
    gram = {
        (0, 0): (3, 0, 1), (0, 1): (4, 0, 1), (0, 2): (4, 1, -1), (0, 3): (5, 0, 1),
        (0, 4): (5, 3, -1), (1, 1): (0, 0, 1), (1, 2): (0, 1, -1), (1, 3): (1, 0, 1),
        (1, 4): (1, 3, -1), (2, 2): (0, 2, 1), (2, 3): (1, 1, -1), (2, 4): (1, 5, 1),
        (3, 3): (2, 0, 1), (3, 4): (2, 3, -1), (4, 4): (2, 4, 1),
    }  # fmt: skip
    extra = {
        (0, 0): (14, 0, 1), (1, 1): (12, 0, 1), (1, 2): (12, 1, -1), (2, 2): (12, 2, 1),
        (3, 3): (13, 0, 1), (3, 4): (13, 3, -1), (4, 4): (13, 4, 1),
    }  # fmt: skip
    grad = [(14, 0, 1), (12, 0, 1), (12, 1, -1), (13, 0, 1), (13, 3, -1)]

    def table(entries):
        index, sign = np.zeros((5, 5), np.int32), np.zeros((5, 5))
        for (i, j), (row, col, sg) in entries.items():
            for a, b in ((i, j), (j, i)):
                index[a, b], sign[a, b] = 6 * row + col, sg
        return index, sign

    g_index = np.asarray([6 * r + c for r, c, _ in grad], np.int32)
    g_sign = np.asarray([sg for _, _, sg in grad], np.float64)
    return (*table(gram), *table(extra), g_index, g_sign)


_EXACT_INDEX, _EXACT_SIGN, _EXTRA_INDEX, _EXTRA_SIGN, _G_INDEX, _G_SIGN = _chinchilla_tables()


def _chinchilla_fg(z, c, shared):
    """Objective and gradient of the reference-centred Chinchilla law (the L-BFGS model).

    Same objective as :func:`_chinchilla_model` without the Hessians: the gradient
    ``sum_i psi_i (p3, p1, -p1 x_N, p2, -p2 x_D)`` comes out of one small product of four row
    sums (loss terms, ``psi p1``, ``psi p2``, ``psi p3``) with the features ``(1, x_N, x_D)``.
    ``shared = (x_N, x_D, X3, y, delta)`` with ``X3 = (1, x_N, x_D)`` per row.
    """
    xN, xD, X3, y, delta = shared
    e, la, al, lb, be = z[0], z[1], z[2], z[3], z[4]
    u1 = la - al * xN
    u2 = lb - be * xD
    m = jnp.maximum(jnp.maximum(u1, u2), e)
    e1, e2, e3 = jnp.exp(u1 - m), jnp.exp(u2 - m), jnp.exp(e - m)
    s = e1 + e2 + e3
    r = m + jnp.log(s) - y
    ar = jnp.abs(r)
    q = c * jnp.clip(r, -delta, delta) / s
    T = jnp.stack([c * _huber_terms(ar, delta), q * e1, q * e2, q * e3]) @ X3
    g = jnp.stack([T[3, 0], T[1, 0], -T[1, 1], T[2, 0], -T[2, 2]])
    return T[0, 0], g


def _constrain(transforms, z):
    return {name: t(z[i]) for i, (name, t) in enumerate(transforms)}


def _make_residual_model(law: Law, transforms) -> Callable:
    """Huber/least-squares pieces of any law by automatic differentiation."""

    def resid(z, log_x, ref, y):
        params = _constrain(transforms, z)
        return law.log_predict(params, log_x, ref) - y

    def model(z, c, shared):
        log_x, ref, y, delta = shared

        def with_value(zz):
            r = resid(zz, log_x, ref, y)
            return r, r

        J, r = jax.jacfwd(with_value, has_aux=True)(z)
        f, psi, curv, w_irls, n_quad = _rho(r, c, delta)
        g = psi @ J
        majoriser = (J * w_irls[:, None]).T @ J
        psi_fixed = lax.stop_gradient(psi)
        second = jax.hessian(lambda zz: psi_fixed @ resid(zz, log_x, ref, y))(z)
        exact = (J * curv[:, None]).T @ J + second
        return f, g, *_pick_hessian(exact, majoriser, n_quad, g)

    return model


def _make_residual_fg(law: Law, transforms) -> Callable:
    """Huber/least-squares objective and gradient of any law (automatic differentiation)."""

    def fg(z, c, shared):
        log_x, ref, y, delta = shared

        def objective(zz):
            r = law.log_predict(_constrain(transforms, zz), log_x, ref) - y
            return jnp.sum(c * _huber_terms(jnp.abs(r), delta))

        return jax.value_and_grad(objective)(z)

    return fg


def _make_map_model(spec: ModelSpec, transforms) -> Callable:
    """Negative log posterior of the NumPyro model (constrained density, no Jacobian term)."""

    def neg_log_post(z, c, log_x, ref, y):
        values = _constrain(transforms, z)
        tr = handlers.trace(handlers.substitute(spec, data=values)).get_trace(log_x, ref, y)
        total = jnp.zeros(())
        for site in tr.values():
            if site["type"] != "sample":
                continue
            lp = site["fn"].log_prob(site["value"])
            total = total + (jnp.sum(c * lp) if site["is_observed"] else jnp.sum(lp))
        return -total

    def model(z, c, shared):
        log_x, ref, y, _ = shared

        def grad_with_value(zz):
            f, g = jax.value_and_grad(neg_log_post)(zz, c, log_x, ref, y)
            return g, (f, g)

        H, (f, g) = jax.jacfwd(grad_with_value, has_aux=True)(z)
        return f, g, H, _exact_decrement(H, g)

    return model


# ---------------------------------------------------------------------------------------------
# The batched Levenberg–Marquardt solver with a work queue
# ---------------------------------------------------------------------------------------------


def _lm_queue(
    model: Callable, Z0, n_items, wid, weights, shared, max_iter, tol, ftol, n_lanes: int
):
    """Run damped Newton from every row of ``Z0`` with ``n_lanes`` lanes pulling from a queue.

    Each lane holds one start. When the start has converged, stalled (damping above
    ``_LAMBDA_MAX``: no step decreases the objective) or used ``max_iter`` iterations, the lane
    writes the result out and loads the next start of the queue, so lanes never wait for the
    slowest start of a batch. One model evaluation per iteration and lane: objective, gradient
    and Hessian at the trial point (kept if the step is accepted). Marquardt damping scaled by
    the running maximum of the Hessian diagonal (Moré 1978: a direction whose curvature
    collapses, e.g. a law term that vanishes, cannot take an unbounded step), updated as in
    Nielsen (1999), and each step capped at ``_STEP_MAX`` per coordinate. A start whose
    coordinates leave ``|z| <= _Z_MAX`` has diverged (a term of the law ran off to zero or
    infinity).

    Converged means: max-abs gradient ``<= tol * max(1, |f|)``, or, where the model Hessian is
    the exact one and positive definite, the Newton decrement ``g^T H^-1 g / 2 <= ftol *
    max(|f|, tiny)`` (the objective is within ``ftol`` relative of its local minimum).

    Only the first ``n_items`` rows of ``Z0`` are solved (the rest pads the queue to a bucket
    size, so that one compiled program serves many numbers of starts).
    """
    S, p = Z0.shape
    n = weights.shape[1]
    W = n_lanes
    f_model = jax.vmap(model, in_axes=(0, 0, None))
    solve = jax.vmap(_chol_solve)
    dt = Z0.dtype
    tiny = jnp.finfo(dt).tiny
    eye = jnp.eye(p, dtype=dt)

    out0 = (
        jnp.zeros((S, p), dt),
        jnp.full((S,), jnp.inf, dt),
        jnp.full((S,), jnp.inf, dt),
        jnp.zeros((S,), jnp.int32),
        jnp.full((S,), _MAX_ITER, jnp.int32),
    )
    lanes0 = {
        "z": jnp.zeros((W, p), dt),
        "f": jnp.full((W,), jnp.inf, dt),
        "g": jnp.zeros((W, p), dt),
        "H": jnp.broadcast_to(eye, (W, p, p)),
        "D": jnp.ones((W, p), dt),
        "dec": jnp.full((W,), jnp.inf, dt),
        "lam": jnp.full((W,), _LAMBDA0, dt),
        "nu": jnp.full((W,), 2.0, dt),
        "it": jnp.zeros((W,), jnp.int32),
        "idx": jnp.full((W,), S, jnp.int32),
        "c": jnp.ones((W, n), dt),
    }
    max_loops = (n_items // W + 2) * (max_iter + 2)

    def cond(state):
        lanes, _, ptr, loops = state
        return ((ptr < n_items) | jnp.any(lanes["idx"] < S)) & (loops < max_loops)

    def body(state):
        L, out, ptr, loops = state
        L = dict(L)
        # 1. idle lanes load the next starts of the queue
        free = L["idx"] >= S
        new = ptr + jnp.cumsum(free, dtype=jnp.int32) - 1
        fresh = free & (new < n_items)
        safe = jnp.minimum(new, S - 1)
        L["z"] = jnp.where(fresh[:, None], Z0[safe], L["z"])
        L["c"] = jnp.where(fresh[:, None], weights[wid[safe]], L["c"])
        L["idx"] = jnp.where(fresh, new, L["idx"])
        ptr = ptr + jnp.sum(fresh, dtype=jnp.int32)
        active = L["idx"] < S
        # 2. one damped Newton step per lane (a fresh lane evaluates its start instead)
        dg = L["D"]
        floor = 1e-12 * jnp.max(jnp.abs(dg), axis=1, keepdims=True) + tiny
        A = L["H"] + (L["lam"][:, None] * jnp.maximum(dg, floor))[:, :, None] * eye[None]
        step, chol_ok = solve(A, -L["g"])
        big = jnp.max(jnp.abs(step), axis=1, keepdims=True)
        step = step * jnp.minimum(1.0, _STEP_MAX / jnp.maximum(big, tiny))
        step = jnp.where(fresh[:, None], 0.0, step)
        zt = L["z"] + step
        ft, gt, Ht, dec_t = f_model(zt, L["c"], shared)
        pred = -jnp.sum(L["g"] * step, 1) - 0.5 * jnp.einsum("wi,wij,wj->w", step, L["H"], step)
        finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(step), axis=1)
        good = finite & (ft <= L["f"]) & (pred > 0) & chol_ok
        accept = fresh | good
        rho = (L["f"] - ft) / jnp.where(pred > 0, pred, 1.0)
        lam_ok = L["lam"] * jnp.maximum(_LAMBDA_DOWN, 1.0 - (2.0 * rho - 1.0) ** 3)
        L["lam"] = jnp.where(
            fresh, _LAMBDA0, jnp.where(good, jnp.maximum(lam_ok, _LAMBDA_MIN), L["lam"] * L["nu"])
        )
        L["nu"] = jnp.where(accept, 2.0, 2.0 * L["nu"])
        L["z"] = jnp.where(accept[:, None], zt, L["z"])
        L["f"] = jnp.where(accept, ft, L["f"])
        L["g"] = jnp.where(accept[:, None], gt, L["g"])
        L["H"] = jnp.where(accept[:, None, None], Ht, L["H"])
        diag = jnp.diagonal(L["H"], axis1=1, axis2=2)
        L["D"] = jnp.where(fresh[:, None], diag, jnp.maximum(L["D"], diag))
        L["dec"] = jnp.where(accept, dec_t, L["dec"])
        L["it"] = jnp.where(fresh, 0, L["it"] + 1)
        # 3. convergence: gradient, or Newton decrement where the Hessian is exact
        gnorm = jnp.max(jnp.abs(L["g"]), axis=1)
        small_dec = L["dec"] <= ftol * jnp.maximum(jnp.abs(L["f"]), tiny)
        finite_f = jnp.isfinite(L["f"])
        converged = finite_f & ((gnorm <= tol * jnp.maximum(1.0, jnp.abs(L["f"]))) | small_dec)
        stalled = (L["lam"] > _LAMBDA_MAX) | ~finite_f
        diverged = jnp.any(jnp.abs(L["z"]) > _Z_MAX, axis=1)
        converged = converged & ~diverged
        done = active & (converged | stalled | diverged | (L["it"] >= max_iter))
        status = jnp.select(
            [converged, diverged, stalled], [_CONVERGED, _DIVERGED, _STALLED], _MAX_ITER
        ).astype(jnp.int32)
        at = jnp.where(done, L["idx"], S)
        zs, fs, gs, its, ss = out
        out = (
            zs.at[at].set(L["z"], mode="drop"),
            fs.at[at].set(jnp.where(finite_f, L["f"], jnp.inf), mode="drop"),
            gs.at[at].set(gnorm, mode="drop"),
            its.at[at].set(L["it"], mode="drop"),
            ss.at[at].set(status, mode="drop"),
        )
        L["idx"] = jnp.where(done, S, L["idx"])
        return L, out, ptr, loops + 1

    _, out, _, _ = lax.while_loop(cond, body, (lanes0, out0, jnp.int32(0), jnp.int32(0)))
    return out


def _lbfgs_queue(
    fg: Callable, Z0, n_items, wid, weights, shared, max_iter, pgtol, factr, n_lanes: int
):
    """Run L-BFGS from every row of ``Z0`` with ``n_lanes`` lanes pulling from a queue.

    The limited-memory BFGS method (Nocedal 1980; Liu & Nocedal 1989) with SciPy's L-BFGS-B
    settings (memory ``_LBFGS_MEMORY`` = 10; stop at max-abs gradient ``<= pgtol`` or at a
    relative decrease ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= factr``), one start per lane.
    Every loop iteration evaluates the objective and gradient once per lane (one vectorised
    call): at a fresh start, or at the lane's current line-search trial point. The line search
    is Armijo backtracking (sufficient decrease ``c1 = 1e-4``) from the unit step (the first
    step, and the first after a memory reset, has length 1 as in L-BFGS-B), shrinking by
    safeguarded quadratic interpolation to ``[0.1, 0.5]`` of the failed step (Nocedal & Wright
    2006, Alg. 3.1 and eq. 3.57). Curvature pairs with ``s^T y <= eps |s| |y|`` are skipped,
    so the inverse-Hessian model stays positive definite; a direction that is not a descent
    direction, or ``_LBFGS_MAX_BACKTRACK`` failed trials, resets the memory to a steepest-descent
    step; a steepest-descent step that fails too stalls the start (no decrease is resolvable).

    Each lane converges, stalls, diverges (``|z| > _Z_MAX``) or uses ``max_iter`` iterations
    (accepted steps) on its own; it then writes its result and loads the next start, so lanes
    never wait for the slowest start. Returns ``z, f, max|grad|, iterations, status,
    evaluations`` per start; only the first ``n_items`` rows of ``Z0`` are solved.
    """
    S, p = Z0.shape
    n = weights.shape[1]
    W, mem = n_lanes, _LBFGS_MEMORY
    dt = Z0.dtype
    f_model = jax.vmap(fg, in_axes=(0, 0, None))
    tiny = jnp.finfo(dt).tiny
    eps = jnp.finfo(dt).eps
    out0 = (
        jnp.zeros((S, p), dt),
        jnp.full((S,), jnp.inf, dt),
        jnp.full((S,), jnp.inf, dt),
        jnp.zeros((S,), jnp.int32),
        jnp.full((S,), _MAX_ITER, jnp.int32),
        jnp.zeros((S,), jnp.int32),
    )
    lanes0 = {
        "z": jnp.zeros((W, p), dt),
        "f": jnp.full((W,), jnp.inf, dt),
        "g": jnp.zeros((W, p), dt),
        "d": jnp.zeros((W, p), dt),  # search direction
        "t": jnp.zeros((W,), dt),  # trial step along d
        "gtd": jnp.zeros((W,), dt),  # g^T d at the line search's base point
        "S": jnp.zeros((mem, W, p), dt),  # curvature pairs, newest first
        "Y": jnp.zeros((mem, W, p), dt),
        "rho": jnp.zeros((mem, W), dt),
        "valid": jnp.zeros((mem, W), bool),
        "nbt": jnp.zeros((W,), jnp.int32),  # failed trials of the current line search
        "it": jnp.zeros((W,), jnp.int32),
        "nfev": jnp.zeros((W,), jnp.int32),
        "idx": jnp.full((W,), S, jnp.int32),
        "c": jnp.ones((W, n), dt),
    }

    def direction(g, Ss, Ys, rho, valid):
        """Two-loop recursion: ``-H g`` with ``H0 = (s^T y / y^T y) I`` of the newest pair.

        Written as two scans over the memory (newest first, then oldest first): unrolled, XLA
        fuses the whole recursion into the kernels that use it and recomputes it there.
        """

        def newest_first(q, pair):
            s_i, y_i, rho_i, ok = pair
            a = jnp.where(ok, rho_i * jnp.sum(s_i * q, 1), 0.0)
            return q - a[:, None] * y_i, a

        q, alphas = lax.scan(newest_first, g, (Ss, Ys, rho, valid))
        yy = jnp.sum(Ys[0] * Ys[0], 1)
        sy = 1.0 / jnp.where(valid[0], rho[0], 1.0)
        gamma = jnp.where(valid[0], sy / jnp.maximum(yy, tiny), 1.0)

        def oldest_first(r, pair):
            s_i, y_i, rho_i, ok, a = pair
            b = jnp.where(ok, rho_i * jnp.sum(y_i * r, 1), 0.0)
            return r + (a - b)[:, None] * s_i, None

        r, _ = lax.scan(
            oldest_first, gamma[:, None] * q, (Ss, Ys, rho, valid, alphas), reverse=True
        )
        return -r

    def push(A, row, where):
        shifted = jnp.concatenate([row[None], A[:-1]], axis=0)
        return jnp.where(where.reshape((1, -1) + (1,) * (A.ndim - 2)), shifted, A)

    # a guard only: every lane ends within max_iter accepted steps of bounded line searches
    max_loops = (n_items // W + 2) * (max_iter + 2) * (2 * _LBFGS_MAX_BACKTRACK + 4)

    def cond(state):
        lanes, _, ptr, loops = state
        return ((ptr < n_items) | jnp.any(lanes["idx"] < S)) & (loops < max_loops)

    def body(state):
        L, out, ptr, loops = state
        L = dict(L)
        # 1. idle lanes load the next starts of the queue
        free = L["idx"] >= S
        new = ptr + jnp.cumsum(free, dtype=jnp.int32) - 1
        fresh = free & (new < n_items)
        safe = jnp.minimum(new, S - 1)
        L["z"] = jnp.where(fresh[:, None], Z0[safe], L["z"])
        L["c"] = jnp.where(fresh[:, None], weights[wid[safe]], L["c"])
        L["idx"] = jnp.where(fresh, new, L["idx"])
        ptr = ptr + jnp.sum(fresh, dtype=jnp.int32)
        active = L["idx"] < S
        # 2. one evaluation per lane: the start itself, or the line search's trial point
        zt = L["z"] + jnp.where(fresh, 0.0, L["t"])[:, None] * L["d"]
        ft, gt = f_model(zt, L["c"], shared)
        L["nfev"] = jnp.where(fresh, 1, L["nfev"] + 1)
        finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt), axis=1)
        armijo = finite & (ft <= L["f"] + _LBFGS_C1 * L["t"] * L["gtd"])
        accept = active & ~fresh & armijo
        reject = active & ~fresh & ~armijo
        # 3. accepted step: store the curvature pair (skipped unless s^T y > 0)
        s = zt - L["z"]
        yv = gt - L["g"]
        sy = jnp.sum(s * yv, 1)
        pair = accept & (sy > eps * jnp.sqrt(jnp.sum(s * s, 1) * jnp.sum(yv * yv, 1)))
        L["S"] = push(L["S"], s, pair)
        L["Y"] = push(L["Y"], yv, pair)
        L["rho"] = push(L["rho"], 1.0 / jnp.where(pair, sy, 1.0), pair)
        L["valid"] = push(L["valid"], jnp.ones_like(pair), pair) & ~fresh[None, :]
        take = fresh | accept
        f_old = L["f"]
        L["z"] = jnp.where(take[:, None], zt, L["z"])
        L["f"] = jnp.where(take, jnp.where(finite, ft, jnp.inf), L["f"])
        L["g"] = jnp.where(take[:, None], gt, L["g"])
        L["it"] = jnp.where(fresh, 0, L["it"] + accept)
        # 4. rejected trial: backtrack; too many failures reset the memory, or stall
        denom = 2.0 * (ft - f_old - L["t"] * L["gtd"])
        t_quad = -L["gtd"] * L["t"] ** 2 / jnp.where(denom > 0, denom, 1.0)
        t_quad = jnp.where(finite & (denom > 0), t_quad, 0.1 * L["t"])
        t_back = jnp.clip(t_quad, 0.1 * L["t"], 0.5 * L["t"])
        L["nbt"] = jnp.where(reject, L["nbt"] + 1, 0)
        failed = reject & (L["nbt"] > _LBFGS_MAX_BACKTRACK)
        had_memory = jnp.any(L["valid"], axis=0)
        reset = failed & had_memory
        stalled_now = failed & ~had_memory
        L["valid"] = L["valid"] & ~reset[None, :]
        # 5. new search direction where a step was taken or the memory was reset
        renew = take | reset
        d = direction(L["g"], L["S"], L["Y"], L["rho"], L["valid"])
        gtd = jnp.sum(d * L["g"], 1)
        bad = ~(gtd < 0) | ~jnp.all(jnp.isfinite(d), axis=1)
        d = jnp.where(bad[:, None], -L["g"], d)
        gtd = jnp.where(bad, -jnp.sum(L["g"] * L["g"], 1), gtd)
        L["valid"] = L["valid"] & ~(renew & bad)[None, :]
        steepest = ~jnp.any(L["valid"], axis=0)
        dnorm = jnp.sqrt(jnp.sum(d * d, 1))
        t0 = jnp.where(steepest, jnp.minimum(1.0, 1.0 / jnp.maximum(dnorm, tiny)), 1.0)
        L["d"] = jnp.where(renew[:, None], d, L["d"])
        L["gtd"] = jnp.where(renew, gtd, L["gtd"])
        L["t"] = jnp.where(renew, t0, jnp.where(reject, t_back, L["t"]))
        L["nbt"] = jnp.where(renew, 0, L["nbt"])
        # 6. convergence (SciPy's tests), divergence, stalling, iteration budget
        gnorm = jnp.max(jnp.abs(L["g"]), axis=1)
        finite_f = jnp.isfinite(L["f"])
        scale = jnp.maximum(jnp.maximum(jnp.abs(f_old), jnp.abs(L["f"])), 1.0)
        small_decrease = accept & (f_old - L["f"] <= factr * scale)
        converged = finite_f & ((gnorm <= pgtol) | small_decrease)
        diverged = jnp.any(jnp.abs(L["z"]) > _Z_MAX, axis=1)
        converged = converged & ~diverged
        stalled = stalled_now | ~finite_f
        done = active & (converged | stalled | diverged | (L["it"] >= max_iter))
        status = jnp.select(
            [converged, diverged, stalled], [_CONVERGED, _DIVERGED, _STALLED], _MAX_ITER
        ).astype(jnp.int32)
        at = jnp.where(done, L["idx"], S)
        zs, fs, gs, its, ss, nf = out
        out = (
            zs.at[at].set(L["z"], mode="drop"),
            fs.at[at].set(jnp.where(finite_f, L["f"], jnp.inf), mode="drop"),
            gs.at[at].set(gnorm, mode="drop"),
            its.at[at].set(L["it"], mode="drop"),
            ss.at[at].set(status, mode="drop"),
            nf.at[at].set(L["nfev"], mode="drop"),
        )
        L["idx"] = jnp.where(done, S, L["idx"])
        return L, out, ptr, loops + 1

    _, out, _, _ = lax.while_loop(cond, body, (lanes0, out0, jnp.int32(0), jnp.int32(0)))
    return out


_SOLVERS: dict[Any, Callable] = {}


def _queue_devices(n_starts: int) -> list:
    """Devices to shard ``n_starts`` over: all local ones (``_DEVICES`` caps them) when each
    gets at least ``_SHARD_MIN_STARTS`` starts, else one."""
    devices = jax.local_devices()
    k = len(devices) if _DEVICES is None else max(1, min(int(_DEVICES), len(devices)))
    while k > 1 and n_starts < k * _SHARD_MIN_STARTS:
        k -= 1
    return devices[:k]


def _solver(key: Any, model: Callable, n_lanes: int, kind: str = "lm", devices=None) -> Callable:
    """The jitted queue solver for one model, cached so repeated calls reuse the program.

    ``kind`` is ``"lm"`` (:func:`_lm_queue`, ``model`` gives Hessians) or ``"lbfgs"``
    (:func:`_lbfgs_queue`, ``model`` gives objective and gradient). With several ``devices``
    the program is a ``shard_map`` over them: each device runs its own queue (its own
    ``while_loop``, no communication) on its share of the starts.
    """
    devices = list(devices or jax.local_devices()[:1])
    full_key = (key, n_lanes, kind, tuple(devices))
    if full_key not in _SOLVERS:
        queue = _lm_queue if kind == "lm" else _lbfgs_queue
        label = "solver" if kind == "lm" else "lbfgs"

        def run(Z0, n_items, wid, weights, shared, max_iter, tol, ftol):
            _count_trace(f"{label}:{key[0]}")
            return queue(model, Z0, n_items[0], wid, weights, shared, max_iter, tol, ftol, n_lanes)

        if len(devices) > 1:
            from jax.sharding import Mesh
            from jax.sharding import PartitionSpec as P

            run = jax.shard_map(
                run,
                mesh=Mesh(np.asarray(devices), ("starts",)),
                in_specs=(P("starts"), P("starts"), P("starts"), P(), P(), P(), P(), P()),
                out_specs=P("starts"),
                check_vma=False,
            )
        _SOLVERS[full_key] = jax.jit(run)
    return _SOLVERS[full_key]


def _run_solver(
    key,
    model,
    Z0,
    weights,
    shared,
    *,
    wid=None,
    max_iter,
    tol,
    ftol,
    n_lanes=None,
    dtype=None,
    kind="lm",
):
    """Solve from every row of ``Z0``; returns float64 ``z, f, grad_norm`` and int ``it,
    status`` (and, for ``kind="lbfgs"``, evaluations; ``tol, ftol`` are then L-BFGS's
    ``pgtol, factr``).

    ``dtype=np.float32`` runs the whole program in single precision (data cast too). Large
    start sets are dealt round-robin to the devices of :func:`_queue_devices`.
    """
    dtype = np.dtype(dtype or np.float64)
    Z0 = np.asarray(Z0, dtype=np.float64)
    S = Z0.shape[0]
    if wid is None:
        wid = np.zeros(S, dtype=np.int32)
    # Pad each device's queue so that few programs serve all sizes: up to 8 starts (polishing
    # a few candidates) run on 8 lanes; more run on ``lanes`` lanes with the queue padded to a
    # power of two of at least that many (a lane without a start idles).
    lanes = int(n_lanes or (_DEFAULT_LANES if kind == "lm" else _LBFGS_LANES))
    devices = _queue_devices(S)
    k = len(devices)
    per = -(-S // k)
    bucket = 8 if per <= 8 else max(lanes, 1 << (per - 1).bit_length())
    W = min(lanes, bucket)
    # start i -> device i % k, slot i // k of that device's queue
    pos = (np.arange(S) % k) * bucket + np.arange(S) // k
    Zp = np.repeat(Z0[:1], k * bucket, axis=0)
    Zp[pos] = Z0
    widp = np.zeros(k * bucket, np.int32)
    widp[pos] = np.asarray(wid, dtype=np.int32)
    n_items = np.asarray([len(range(d, S, k)) for d in range(k)], np.int32)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[0] > k * bucket:
        raise ValueError("more weight rows than starts")
    pad_rows = np.ones((k * bucket - weights.shape[0], weights.shape[1]))
    weights = np.concatenate([weights, pad_rows])

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    fn = _solver(key, model, W, kind, devices)
    out = fn(
        jnp.asarray(Zp, dtype),
        jnp.asarray(n_items),
        jnp.asarray(widp),
        jnp.asarray(weights, dtype),
        jax.tree_util.tree_map(cast, shared),
        jnp.asarray(max_iter, dtype=jnp.int32),
        jnp.asarray(tol, dtype),
        jnp.asarray(ftol, dtype),
    )
    arrays = [np.asarray(a)[pos] for a in jax.block_until_ready(out)]
    z, f, gn, *ints = arrays
    return (*(a.astype(np.float64) for a in (z, f, gn)), *(a.astype(int) for a in ints))


def _screen_and_solve(key, model, Z0, weights, shared, *, max_iter, tol, ftol):
    """Many starts: a single-precision pass takes every start near its local minimum (2.3x
    cheaper per iteration on CPU), then double precision finishes each one from there.

    The single-precision pass stops at gradient ``1e-4 max(1, |f|)`` or Newton decrement
    ``1e-6 |f|`` (about where float32 stops resolving decreases of the objective), or after
    ``_SCREEN_MAX_ITER`` iterations; the double-precision pass, on fewer lanes (it is short,
    except for a few stragglers that would otherwise keep 256 lanes busy), applies the requested
    tolerances and ``max_iter`` and gives the statuses. Iterations are the sum of both passes.
    """
    z1, _, _, it1, _ = _run_solver(
        key,
        model,
        Z0,
        weights,
        shared,
        max_iter=min(max_iter, _SCREEN_MAX_ITER),
        tol=1e-4,
        ftol=1e-6,
        dtype=np.float32,
    )
    z1 = np.where(np.isfinite(z1), z1, Z0)
    z, f, gn, it2, status = _run_solver(
        key,
        model,
        z1,
        weights,
        shared,
        max_iter=max_iter,
        tol=tol,
        ftol=ftol,
        n_lanes=_POLISH_LANES,
    )
    return z, f, gn, it1 + it2, status


def _lbfgs_solve(
    key, fg, shared_fg, lm_key, lm_model, shared_lm, Z0, weights, *, screen, max_iter, tol, ftol
):
    """Every start by L-BFGS, then the best few optima finished by Levenberg–Marquardt.

    With ``screen`` (many Chinchilla starts) a single-precision L-BFGS pass runs first (the
    objective and gradient cost about half as much as in double precision on CPU) and each
    start then continues in double precision from where it stopped (with a fresh memory), so
    its status and value are those of a float64 L-BFGS under SciPy's stopping rule; iterations
    and evaluations add up over both passes. The ``_LBFGS_POLISH`` best distinct optima are
    then finished in float64 by the Levenberg–Marquardt solver to the requested ``tol``: the
    reported optimum carries the same gradient / Newton-decrement certificate as with
    ``solver="lm"``, where L-BFGS's own test (a relative decrease below ``2.2e-9``) leaves it
    about ``1e-6`` relative above the minimum of an objective of order ``1e-3``.

    Returns ``z, f, grad_norm, iterations, status, evaluations, polished`` per start.
    """
    it1 = nf1 = 0
    z1 = Z0
    if screen:
        z1, _, _, it1, _, nf1 = _run_solver(
            key,
            fg,
            Z0,
            weights,
            shared_fg,
            max_iter=max_iter,
            tol=_LBFGS_PGTOL,
            ftol=_LBFGS_FACTR,
            dtype=np.float32,
            kind="lbfgs",
        )
        bad = ~np.all(np.isfinite(z1), axis=1)
        z1 = np.where(bad[:, None], Z0, z1)
    z, f, gn, it2, status, nf2 = _run_solver(
        key,
        fg,
        z1,
        weights,
        shared_fg,
        max_iter=max_iter,
        tol=_LBFGS_PGTOL,
        ftol=_LBFGS_FACTR,
        n_lanes=_LBFGS_FINISH_LANES if screen else None,
        kind="lbfgs",
    )
    it, nfev = it1 + it2, nf1 + nf2
    pick = _distinct_best(z, f, _LBFGS_POLISH)
    zp, fp, gp, itp, sp = _run_solver(
        lm_key, lm_model, z[pick], weights, shared_lm, max_iter=max_iter, tol=tol, ftol=ftol
    )
    # (the finish evaluates the objective with another summation order: allow rounding)
    keep = np.isfinite(fp) & (fp <= f[pick] + 1e-12 * np.abs(f[pick]))
    pick = pick[keep]
    z[pick], f[pick], gn[pick], status[pick] = zp[keep], fp[keep], gp[keep], sp[keep]
    it[pick] += itp[keep]
    nfev[pick] += itp[keep] + 1  # one model evaluation per LM iteration, plus the start
    polished = np.zeros(len(f), dtype=bool)
    polished[pick] = True
    return z, f, gn, it, status, nfev, polished


# ---------------------------------------------------------------------------------------------
# Variable projection for the Chinchilla law: profile over the exponents, polish the best few
# ---------------------------------------------------------------------------------------------


def _nnls3(G, h):
    """Non-negative least squares ``min theta^T G theta - 2 h^T theta, theta >= 0`` in 3-D.

    Enumerates the seven faces of the orthant (closed-form solves); the best feasible face
    minimiser is the solution (the problem is a convex QP). Batched over leading axes.
    """
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(G, axis1=-2, axis2=-1), 1e-300))
    Gs = G / (d[..., :, None] * d[..., None, :])
    hs = h / d
    g = {(i, j): Gs[..., i, j] for i in range(3) for j in range(3)}
    best_gain = jnp.full(h.shape[:-1], -jnp.inf)
    best = jnp.zeros_like(h)
    for subset in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)):
        if len(subset) == 1:
            (i,) = subset
            sol = {i: hs[..., i] / g[i, i]}
            ok = jnp.asarray(True)
        elif len(subset) == 2:
            i, j = subset
            det = g[i, i] * g[j, j] - g[i, j] ** 2
            ok = det > 1e-12
            det = jnp.where(ok, det, 1.0)
            sol = {
                i: (g[j, j] * hs[..., i] - g[i, j] * hs[..., j]) / det,
                j: (g[i, i] * hs[..., j] - g[i, j] * hs[..., i]) / det,
            }
        else:
            c00 = g[1, 1] * g[2, 2] - g[1, 2] ** 2
            c01 = g[0, 2] * g[1, 2] - g[0, 1] * g[2, 2]
            c02 = g[0, 1] * g[1, 2] - g[0, 2] * g[1, 1]
            c11 = g[0, 0] * g[2, 2] - g[0, 2] ** 2
            c12 = g[0, 1] * g[0, 2] - g[0, 0] * g[1, 2]
            c22 = g[0, 0] * g[1, 1] - g[0, 1] ** 2
            det = g[0, 0] * c00 + g[0, 1] * c01 + g[0, 2] * c02
            ok = det > 1e-12
            det = jnp.where(ok, det, 1.0)
            h0, h1, h2 = hs[..., 0], hs[..., 1], hs[..., 2]
            sol = {
                0: (c00 * h0 + c01 * h1 + c02 * h2) / det,
                1: (c01 * h0 + c11 * h1 + c12 * h2) / det,
                2: (c02 * h0 + c12 * h1 + c22 * h2) / det,
            }
        theta = jnp.stack([sol.get(k, jnp.zeros_like(hs[..., 0])) for k in range(3)], axis=-1)
        feasible = ok & jnp.all(jnp.stack([sol[k] > 0 for k in subset]), axis=0)
        gain = jnp.sum(theta * hs, axis=-1)
        take = feasible & (gain > best_gain)
        best_gain = jnp.where(take, gain, best_gain)
        best = jnp.where(take[..., None], theta, best)
    return best / d


def _local_minima_top_k(values, k: int):
    """Indices (flat) of the ``k`` best local minima of a 2-D grid, then the best other points."""
    pad = jnp.pad(values, 1, constant_values=jnp.inf)
    rows, cols = values.shape
    is_min = jnp.ones_like(values, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            nb = pad[1 + di : 1 + di + rows, 1 + dj : 1 + dj + cols]
            is_min = is_min & (values <= nb)
    finite = jnp.isfinite(values)
    big = jnp.where(finite, values, jnp.inf)
    span = jnp.max(jnp.where(finite, values, -jnp.inf)) - jnp.min(big) + 1.0
    score = jnp.where(is_min & finite, big, big + span)  # local minima first, then the rest
    _, idx = lax.top_k(-score.reshape(-1), k)
    return idx


def _varpro_candidates(xN, xD, y, c, delta, alphas, betas, n_irls, k: int):
    """Profile the Chinchilla objective over an exponent grid; return ``k`` starting points.

    For each ``(alpha, beta)`` the linear parameters ``(E, A_ref, B_ref) >= 0`` solve a
    relative least-squares problem ``sum c w (X theta / L - 1)^2`` (``log`` residuals to first
    order), reweighted ``n_irls`` times with Huber IRLS weights ``w = min(1, delta / |r|)``.
    """
    _count_trace("varpro")
    inv_L = jnp.exp(-y)[None, None, :]
    X1 = jnp.exp(-alphas[:, None] * xN[None, :])[:, None, :] * inv_L  # (Ga, 1, n)
    X2 = jnp.exp(-betas[:, None] * xD[None, :])[None, :, :] * inv_L  # (1, Gb, n)
    X0 = inv_L  # (1, 1, n)
    shape = (alphas.shape[0], betas.shape[0])

    def solve(w):
        s = lambda a: jnp.broadcast_to(jnp.sum(w * a, axis=-1), shape)  # noqa: E731
        G = jnp.stack(
            [
                jnp.stack([s(X0 * X0), s(X0 * X1), s(X0 * X2)], -1),
                jnp.stack([s(X1 * X0), s(X1 * X1), s(X1 * X2)], -1),
                jnp.stack([s(X2 * X0), s(X2 * X1), s(X2 * X2)], -1),
            ],
            -2,
        )
        h = jnp.stack([s(X0), s(X1), s(X2)], -1)
        return _nnls3(G, h)

    def residual(theta):
        rel = theta[..., 0:1] * X0 + theta[..., 1:2] * X1 + theta[..., 2:3] * X2  # (Ga, Gb, n)
        return jnp.log(jnp.maximum(rel, 1e-300))

    c3 = c[None, None, :]

    def reweight(_, theta):
        r = residual(theta)
        return solve(c3 * jnp.minimum(1.0, delta / jnp.maximum(jnp.abs(r), 1e-300)))

    theta = lax.fori_loop(0, n_irls, reweight, solve(jnp.broadcast_to(c3, (*shape, c.shape[0]))))
    r = residual(theta)
    ar = jnp.abs(r)
    linear = delta * (ar - 0.5 * jnp.where(jnp.isfinite(delta), delta, 0.0))
    values = jnp.sum(c3 * jnp.where(ar <= delta, 0.5 * r * r, linear), axis=-1)
    idx = _local_minima_top_k(values, k)
    ia, ib = idx // shape[1], idx % shape[1]
    th = theta.reshape(-1, 3)[idx]
    floor = 1e-12 * jnp.exp(jnp.sum(c * y) / jnp.sum(c))
    log_th = jnp.log(jnp.maximum(th, floor))
    Z = jnp.stack([log_th[:, 0], log_th[:, 1], alphas[ia], log_th[:, 2], betas[ib]], axis=1)
    return Z, values.reshape(-1)[idx]


_VARPRO = jax.jit(_varpro_candidates, static_argnames=("k",))


# ---------------------------------------------------------------------------------------------
# Start grids
# ---------------------------------------------------------------------------------------------


def _transforms(spec: ModelSpec, ref: Mapping[str, Any], names) -> list[tuple[str, Any]]:
    return [(name, biject_to(spec.prior(name, ref).support)) for name in names]


def _prior_quantiles(prior: Any, levels: np.ndarray, seed: int) -> np.ndarray:
    """Quantiles of a NumPyro prior: closed forms (SciPy) for the usual families, else the
    distribution's ``icdf``, else 4,096 draws (slower: NumPyro's samplers compile)."""
    import numpyro.distributions as dist
    import scipy.stats

    def arr(x):
        return np.asarray(x, dtype=np.float64)

    if isinstance(prior, dist.Normal):
        return arr(scipy.stats.norm.ppf(levels, arr(prior.loc), arr(prior.scale)))
    if isinstance(prior, dist.LogNormal):
        return np.exp(arr(scipy.stats.norm.ppf(levels, arr(prior.loc), arr(prior.scale))))
    if isinstance(prior, dist.HalfNormal):
        return arr(scipy.stats.halfnorm.ppf(levels, scale=arr(prior.scale)))
    if isinstance(prior, dist.Beta):
        a, b = arr(prior.concentration1), arr(prior.concentration0)
        return arr(scipy.stats.beta.ppf(levels, a, b))
    if isinstance(prior, dist.Gamma):
        return arr(
            scipy.stats.gamma.ppf(levels, arr(prior.concentration), scale=1 / arr(prior.rate))
        )
    try:
        return arr(prior.icdf(jnp.asarray(levels)))
    except (NotImplementedError, ImportError, AttributeError, TypeError):
        draws = arr(prior.sample(jax.random.PRNGKey(seed), (4096,)))
        return np.quantile(draws, levels)


def _prior_grid(spec: ModelSpec, ref, transforms, *, target: int = 256) -> np.ndarray:
    """Grid of prior quantiles (10%..90%) mapped to unconstrained space, ~``target`` points."""
    p = len(transforms)
    k = int(max(2, min(7, math.floor(target ** (1.0 / p) + 1e-9))))
    levels = np.linspace(0.1, 0.9, k)
    axes = []
    for i, (name, t) in enumerate(transforms):
        q = _prior_quantiles(spec.prior(name, ref), levels, seed=i)
        with np.errstate(all="ignore"):
            u = np.asarray(t.inv(jnp.asarray(q)), dtype=np.float64)
        if not np.all(np.isfinite(u)):
            raise ValueError(f"the prior of {name!r} gives non-finite starting values {q}")
        axes.append(u)
    return np.asarray(list(itertools.product(*axes)), dtype=np.float64)


def _named_columns(starts: Any) -> dict[str, np.ndarray] | None:
    """Named starts (a DataFrame, a dict, or a pandas Series: one start by name) as
    columns; None for an array, read by position."""
    if isinstance(starts, pd.DataFrame):
        starts = {k: starts[k].to_numpy() for k in starts.columns}
    elif isinstance(starts, pd.Series) and all(isinstance(k, str) for k in starts.index):
        starts = starts.to_dict()  # labelled by parameter name (else by position)
    if isinstance(starts, Mapping):
        return {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in starts.items()}
    return None


def _starts_array(starts: Any, names) -> np.ndarray:
    """User starts (DataFrame, dict of arrays, Series or 2-D array) -> rows in the order of
    ``names``."""
    cols = _named_columns(starts)
    if cols is not None:
        missing = [k for k in names if k not in cols]
        if missing:
            raise ValueError(
                f"starts lack column(s) {missing}; expected {', '.join(names)} (given: "
                f"{', '.join(map(str, cols))})"
            )
        arr = np.stack(np.broadcast_arrays(*(cols[k] for k in names)), axis=1)
    else:
        arr = np.asarray(starts, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(
                f"starts must have shape (num_starts, {len(names)}) with columns "
                f"{', '.join(names)}, got shape {arr.shape}"
            )
    if arr.shape[0] == 0:
        raise ValueError("starts must contain at least one starting point")
    if not np.all(np.isfinite(arr)):
        raise ValueError("starts must be finite")
    return arr


def _chinchilla_fast_starts(starts: Any, law: Law, ref: Mapping[str, float]) -> np.ndarray:
    """Starts of the Chinchilla fast path: ``z = (log E, log A_ref, alpha, log B_ref, beta)``.

    Accepts Hoffmann's ``(a, b, e, alpha, beta)``, the published ``(E, A, B, alpha, beta)``,
    or the law's sampled parameters (by name, or an array in ``law.param_names`` order).
    """
    cols = _named_columns(starts)
    if cols is not None and {"a", "b", "e", "alpha", "beta"} <= set(cols):
        a, b, e, al, be = _starts_array(cols, ("a", "b", "e", "alpha", "beta")).T
    elif cols is not None and {"E", "A", "B", "alpha", "beta"} <= set(cols):
        E, A, B, al, be = _starts_array(cols, ("E", "A", "B", "alpha", "beta")).T
        if np.any(E <= 0) or np.any(A <= 0) or np.any(B <= 0):
            raise ValueError("starting values of E, A and B must be > 0")
        a, b, e = np.log(A), np.log(B), np.log(E)
    else:
        arr = _starts_array(starts, law.param_names)
        nat = law.natural(
            {k: jnp.asarray(arr[:, i]) for i, k in enumerate(law.param_names)},
            {k: jnp.asarray(v) for k, v in ref.items()},
        )
        with np.errstate(all="ignore"):
            a, b, e = (np.log(np.asarray(nat[k], dtype=np.float64)) for k in ("A", "B", "E"))
        al, be = (np.asarray(nat[k], dtype=np.float64) for k in ("alpha", "beta"))
        if not np.all(np.isfinite(np.stack([a, b, e]))):
            raise ValueError("starting values give non-positive E, A or B")
    return np.stack([e, a - al * ref["N"], al, b - be * ref["D"], be], axis=1)


def _to_unconstrained(values: np.ndarray, transforms) -> np.ndarray:
    """Constrained parameter rows -> unconstrained coordinates of the solver."""
    out = np.empty_like(values)
    for i, (name, t) in enumerate(transforms):
        col = values[:, i]
        with np.errstate(all="ignore"):
            u = np.asarray(t.inv(jnp.asarray(col)), dtype=np.float64)
        if not np.all(np.isfinite(u)):
            bad = col[~np.isfinite(u)][0]
            raise ValueError(f"starting value {bad!r} of {name!r} lies outside its prior's support")
        out[:, i] = u
    return out


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PointFit:
    """Result of :func:`optimize`: the best local optimum of a multi-start point fit.

    Attributes
    ----------
    law
        The fitted :class:`~bayescale.laws.Law`.
    data
        The :class:`~bayescale.data.ScalingData` fitted.
    objective
        ``"huber"``, ``"least_squares"`` or ``"map"``.
    params
        Published (natural) parameters at the optimum, e.g. ``E, A, B, alpha, beta``; MAP fits
        add the noise ``sigma`` (and ``nu`` for a Student-t likelihood with learnt ``df``).
    sampled_params
        The same optimum in the reference-centred parametrisation of the law (``ref``).
    ref
        Reference point: mean log inputs and mean log loss of ``data``.
    value
        Objective at the optimum (Huber: ``sum Huber_delta(log residual)``; least squares:
        ``sum r^2 / 2``; MAP: negative log posterior density).
    converged, status, grad_norm, iterations
        Convergence of the best start: ``status`` is ``"converged"``, ``"max_iter"``,
        ``"stalled"`` or ``"diverged"``; ``grad_norm`` is the max-abs gradient in the optimised
        coordinates (reference-centred, log-amplitudes; log/logit of constrained MAP sites).
    starts
        One row per start: ``start_<param>`` and final ``<param>`` (natural parameters),
        ``value``, ``grad_norm``, ``iterations``, ``status``, ``converged``; sorted by value.
        With ``solver="lbfgs"`` also ``evaluations`` (objective-and-gradient evaluations) and
        ``polished`` (the row's L-BFGS optimum was finished by Levenberg–Marquardt; its
        ``status`` is then the finish's, and the other rows' that of L-BFGS's own test).
    bootstrap
        ``None``, or natural parameter name -> array of the estimates on the converged case
        resamples (Efron & Tibshirani 1993).
    bootstrap_info
        Number of resamples and of converged resamples.
    bootstrap_sampled
        The bootstrap estimates in the sampled (reference-centred) parametrisation.
    method
        How the starts were made and solved, e.g. ``"varpro+lm"``, ``"hoffmann-grid+lbfgs"``.
    timing
        Wall-clock seconds of each stage (the first call of a shape includes compilation).
    delta, likelihood
        Huber threshold (``None`` unless ``objective="huber"``) and MAP likelihood (``None``
        unless ``objective="map"``).
    """

    law: Law
    data: ScalingData
    objective: str
    params: dict[str, float]
    sampled_params: dict[str, float]
    ref: dict[str, float]
    value: float
    converged: bool
    status: str
    grad_norm: float
    iterations: int
    starts: pd.DataFrame
    bootstrap: dict[str, np.ndarray] | None
    bootstrap_info: dict[str, int] = field(default_factory=dict)
    bootstrap_sampled: dict[str, np.ndarray] | None = None
    method: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    delta: float | None = None
    likelihood: str | None = None

    # -- forecasts ---------------------------------------------------------------------------
    def _log_predict(self, params: Mapping[str, Any], vals: Mapping[str, np.ndarray]) -> np.ndarray:
        log_x = {k: jnp.log(jnp.asarray(vals[k])) for k in self.law.inputs}
        ref = {k: jnp.asarray(v) for k, v in self.ref.items()}
        p = {k: jnp.asarray(params[k]) for k in self.law.param_names}
        if next(iter(p.values())).ndim == 0:
            return np.asarray(self.law.log_predict(p, log_x, ref))
        return np.asarray(jax.vmap(lambda q: self.law.log_predict(q, log_x, ref))(p))

    def predict(
        self,
        N: Any = None,
        D: Any = None,
        C: Any = None,
        *,
        prob: float = 0.9,
        allow_unconverged: bool = False,
    ) -> pd.DataFrame:
        """Point forecast of the loss, with a bootstrap percentile interval when available.

        Parameters
        ----------
        N, D, C
            Scalars or arrays (broadcast together); with ``C = 6ND`` two of them suffice.
        prob
            Mass of the bootstrap percentile interval.
        allow_unconverged
            Forecast even when the optimum did not converge.

        Returns
        -------
        pandas.DataFrame
            The inputs, ``loss`` (the law at the optimum), with a bootstrap: ``loss_se``,
            ``loss_lower``, ``loss_upper``; and ``extrapolation`` (how many times beyond the
            observed range the target lies; 1 inside).

        Raises
        ------
        UnconvergedOptimumError
            When the optimum did not converge and ``allow_unconverged`` is False.

        Examples
        --------
        >>> import bayescale as bs
        >>> pf = bs.optimize(bs.datasets.chinchilla_synthetic(seed=0))  # doctest: +SKIP
        >>> pf.predict(N=70e9, D=1.4e12)                                # doctest: +SKIP
        """
        if not 0 < prob < 1:
            raise ValueError(f"prob must be in (0, 1), got {prob}")
        if not self.converged and not allow_unconverged:
            raise UnconvergedOptimumError(
                f"the {self.objective} optimum did not converge (status {self.status!r}, "
                f"max-abs gradient {self.grad_norm:.3g} after {self.iterations} iterations); "
                "refit with more iterations or other starts, or pass allow_unconverged=True"
            )
        vals = prediction_inputs(self.law.name, self.law.inputs, N=N, D=D, C=C)
        extra = np.ones(len(next(iter(vals.values()))))
        observed = {"N": self.data.N, "D": self.data.D, "C": self.data.C}
        for k in self.law.inputs:
            obs = observed[k]
            if obs is not None:
                extra = np.maximum(extra, np.maximum(vals[k] / obs.max(), obs.min() / vals[k]))
        worst = int(np.argmax(extra))
        if extra[worst] > _EXTRAPOLATION_WARN:
            from ..data import DataWarning

            where = ", ".join(f"{k}={vals[k][worst]:.3g}" for k in self.law.inputs)
            warnings.warn(
                f"extrapolating {extra[worst]:.0f}x beyond the fitted data ({where})",
                DataWarning,
                stacklevel=2,
            )
        out = pd.DataFrame({k: vals[k] for k in ("N", "D", "C") if k in vals})
        out["loss"] = np.exp(self._log_predict(self.sampled_params, vals))
        if (
            self.bootstrap_sampled is not None
            and len(next(iter(self.bootstrap_sampled.values()))) > 1
        ):
            draws = np.exp(self._log_predict(self.bootstrap_sampled, vals))
            lo, hi = 50 * (1 - prob), 50 * (1 + prob)
            out["loss_se"] = draws.std(axis=0, ddof=1)
            out["loss_lower"], out["loss_upper"] = np.percentile(draws, [lo, hi], axis=0)
        out["extrapolation"] = extra
        out.attrs["prob"] = prob
        out.attrs["converged"] = self.converged
        return out

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """Estimates with bootstrap standard errors and percentile intervals.

        Parameters
        ----------
        prob
            Mass of the percentile interval.

        Returns
        -------
        pandas.DataFrame
            Index: natural parameter names; columns ``estimate``, ``se``, ``lower``, ``upper``
            (NaN without a bootstrap).

        Examples
        --------
        >>> pf.summary()  # doctest: +SKIP
        """
        if not 0 < prob < 1:
            raise ValueError(f"prob must be in (0, 1), got {prob}")
        rows = {}
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        for name, est in self.params.items():
            se = lower = upper = np.nan
            if (
                self.bootstrap is not None
                and name in self.bootstrap
                and len(self.bootstrap[name]) > 1
            ):
                b = self.bootstrap[name]
                se = float(np.std(b, ddof=1))
                lower, upper = (float(v) for v in np.percentile(b, [lo, hi]))
            rows[name] = {"estimate": est, "se": se, "lower": lower, "upper": upper}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.attrs.update({"prob": prob, "objective": self.objective, "converged": self.converged})
        return out

    def __repr__(self) -> str:
        obj = self.objective + (f" (delta={self.delta:g})" if self.delta is not None else "")
        if self.likelihood is not None:
            obj += f" ({self.likelihood} likelihood)"
        n_conv = int(self.starts["converged"].sum())
        lines = [
            f"PointFit({self.law.name}, objective={obj}, method={self.method})",
            f"  value {self.value:.8g}  status {self.status}  max|grad| {self.grad_norm:.2e}  "
            f"iterations {self.iterations}",
            f"  starts {len(self.starts)} ({n_conv} converged)",
        ]
        table = self.summary()
        for name, row in table.iterrows():
            se = "" if np.isnan(row["se"]) else f"  (se {row['se']:.4g})"
            lines.append(f"  {name:>10s} = {row['estimate']:.6g}{se}")
        if self.bootstrap is not None:
            info = self.bootstrap_info
            lines.append(
                f"  bootstrap: {info['n_converged']}/{info['n_bootstrap']} converged resamples"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _row_bucket(n: int) -> int:
    """Rows padded to 4 sizes per octave (16, 20, 24, 28, 32, 40, ...): <= 25% padding."""
    if n <= 16:
        return 16
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


def _reference(data: ScalingData, inputs: tuple[str, ...]) -> dict[str, float]:
    logs = data.log_inputs()
    ref = {k: float(np.mean(logs[k])) for k in inputs}
    ref["loss"] = float(np.mean(data.log_loss))
    return ref


_MODELS: dict[Any, Callable] = {}


def _residual_model_for(spec: ModelSpec, transforms) -> tuple[Any, Callable]:
    key = ("residual", spec.key)
    if key not in _MODELS:
        _MODELS[key] = _make_residual_model(spec.law, transforms)
    return key, _MODELS[key]


def _residual_fg_for(spec: ModelSpec, transforms) -> tuple[Any, Callable]:
    key = ("residual_fg", spec.key)
    if key not in _MODELS:
        _MODELS[key] = _make_residual_fg(spec.law, transforms)
    return key, _MODELS[key]


def _map_model_for(spec: ModelSpec, transforms) -> tuple[Any, Callable]:
    key = ("map", spec.key)
    if key not in _MODELS:
        _MODELS[key] = _make_map_model(spec, transforms)
    return key, _MODELS[key]


def _distinct_best(z: np.ndarray, f: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to ``k`` lowest-objective rows with pairwise distinct parameters."""
    order = np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")
    chosen: list[int] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(z[i] - z[j]) / (1.0 + np.abs(z[j]))) > 1e-4 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return np.asarray(chosen if chosen else order[:1], dtype=int)


def _check_settings(objective, delta, n_bootstrap, max_iter, tol, likelihood, priors) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective == "huber" and not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be finite and > 0, got {delta!r}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    if objective != "map" and priors:
        raise ValueError("priors apply to objective='map' only")
    if objective != "map" and likelihood != "lognormal":
        raise ValueError(
            f"likelihood={likelihood!r} applies to objective='map' only; the huber and "
            "least_squares objectives are on log-loss residuals"
        )


def _seed(rng_key: Any) -> int:
    """The NumPy seed of ``rng_key``: its key's words read as one unsigned integer, so an
    integer seed ``s >= 0``, ``jax.random.PRNGKey(s)`` and ``jax.random.key(s)`` give the same
    bootstrap (as they give the same draws in ``bs.fit``), and a negative seed is valid."""
    from .._fit import as_key

    key, _ = as_key(rng_key)
    return sum(int(w) << (32 * i) for i, w in enumerate(reversed(key.tolist())))


def optimize(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    objective: str = "huber",
    delta: float = HUBER_DELTA,
    starts: Any = "default",
    n_bootstrap: int = 0,
    rng_key: Any = 0,
    max_iter: int = 200,
    tol: float = 1e-9,
    priors: Mapping[str, Any] | None = None,
    likelihood: str = "lognormal",
    df: float | None = 4.0,
    solver: str = "auto",
    trials: int | None = None,
) -> PointFit:
    r"""Multi-start point fit of a scaling law: robust (Huber), least squares or MAP.

    The Hoffmann et al. (2022, Approach 3) / Besiroglu et al. (2024) estimator is
    ``optimize(data, "chinchilla", objective="huber", delta=1e-3, starts="hoffmann")``: the
    summed Huber loss of log-loss residuals minimised by L-BFGS from each of their 4,500
    starts. The default ``starts="default"`` reaches the same optimum far faster (variable
    projection for the Chinchilla law; a grid of prior quantiles for other laws). All starts
    run as one compiled program (a batched L-BFGS or Levenberg–Marquardt solver, see
    ``solver``); a second call with same-shaped data reuses it.

    Parameters
    ----------
    data
        A :class:`~bayescale.data.ScalingData`, DataFrame, CSV path or dict of arrays.
    law
        Law name or :class:`~bayescale.laws.Law`.
    objective
        ``"huber"``: ``sum_i Huber_delta(log Lhat_i - log L_i)`` (robust to outlying runs);
        ``"least_squares"``: ``sum_i (log Lhat_i - log L_i)^2 / 2``; ``"map"``: the mode of the
        posterior of :func:`bayescale.build_model` (``likelihood``, ``priors``, ``df``; the noise
        ``sigma`` is estimated too). The MAP maximises the posterior density of the
        constrained parameters (no change-of-variables term).
    delta
        Huber threshold on log residuals (``1e-3`` in both papers). Huber only.
    starts
        ``"default"``; ``"hoffmann"`` (the 4,500-point grid, Chinchilla only; see
        :func:`hoffmann_starts`); or explicit starts: a DataFrame / dict of arrays keyed by the
        law's parameter names (for Chinchilla also ``a, b, e, alpha, beta`` or
        ``E, A, B, alpha, beta``), or an array of shape ``(num_starts, num_params)`` in the
        order of ``law.param_names``. For ``"map"`` the starts seed a least-squares stage whose
        best optima start the MAP solver.
    n_bootstrap
        Number of case-resampling bootstrap refits (all in one compiled program, warm-started
        from the best optima); ``0`` for none. Cost: about ``n_bootstrap`` times three
        warm-started solves.
    rng_key
        Integer seed (or JAX key) of the bootstrap resampling.
    max_iter
        Iterations per start (per precision pass where many starts run in single precision
        first). A start that does not converge within them is reported as ``"max_iter"``.
    tol
        Convergence of the Levenberg–Marquardt solver (and of the finish of the best L-BFGS
        optima): max-abs gradient ``<= tol * max(1, |value|)``, or (with the exact, positive
        definite Hessian) Newton decrement ``g^T H^{-1} g / 2 <= 1e-4 tol |value|``.
    priors, likelihood, df, trials
        The Bayesian model of the MAP objective (as in :func:`bayescale.fit`; ``trials``: items
        per evaluation of the ``"binomial"`` likelihood).
    solver
        Local solver of the multi-start stage, run from every start: ``"lbfgs"`` (L-BFGS with
        SciPy's L-BFGS-B settings: memory 10, a start has converged at max-abs gradient
        ``<= 1e-5`` or a relative decrease ``<= 2.2e-9``; Armijo backtracking; the
        ``_LBFGS_POLISH`` = 8 best distinct optima then finished by Levenberg–Marquardt to
        ``tol``), ``"lm"`` (Levenberg–Marquardt, more robust: from far more starts it reaches
        the best optimum) or ``"auto"`` (``"lbfgs"`` for ``starts="hoffmann"``, the papers'
        algorithm; ``"lm"`` otherwise). The MAP stage and bootstrap refits always use
        Levenberg–Marquardt.

    Returns
    -------
    PointFit
        The best optimum, per-start convergence, optional bootstrap.

    Warns
    -----
    OptimizationWarning
        When the best start did not converge (``PointFit.converged`` is False and ``predict``
        refuses), or when fewer than 90% of bootstrap refits converged.

    References
    ----------
    Hoffmann et al. 2022, arXiv:2203.15556 (Approach 3); Besiroglu et al. 2024,
    arXiv:2404.10102; Golub & Pereyra 1973 (variable projection); Nielsen 1999 (damping);
    Liu & Nocedal 1989, Byrd et al. 1995 (L-BFGS, L-BFGS-B); Efron & Tibshirani 1993
    (bootstrap).

    Examples
    --------
    >>> import bayescale as bs
    >>> from bayescale.infer.optimize import optimize
    >>> pf = optimize(bs.datasets.chinchilla_synthetic(seed=0, noise=0.0))
    >>> round(float(pf.params["alpha"]), 4), pf.converged
    (0.3478, True)
    """
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    _check_settings(objective, delta, n_bootstrap, max_iter, tol, likelihood, priors)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    data = as_scaling_data(data)
    spec = build_model(law, likelihood=likelihood, priors=priors, df=df, trials=trials)
    law = spec.law
    sites = spec.site_names if objective == "map" else law.param_names
    data.require(law.inputs, num_params=len(sites), law=law.name)
    warn_proportions(data.loss, spec, locate=data.locate)
    ref = _reference(data, law.inputs)
    logs = data.log_inputs()
    log_x = {k: np.asarray(logs[k], dtype=np.float64) for k in law.inputs}
    y = np.asarray(data.log_loss, dtype=np.float64)
    n = y.shape[0]
    # pad the rows to a size bucket with zero case weights: one program serves many data sizes.
    # The padded rows repeat a real observation: a weight of 0 times a log density of -inf
    # (a log accuracy of 0, accuracy 1, under the beta likelihood) is NaN, not 0.
    pad = _row_bucket(n) - n
    y_p = np.concatenate([y, np.full(pad, y[0])])
    log_x_p = {k: np.concatenate([v, np.full(pad, ref[k])]) for k, v in log_x.items()}
    base = np.concatenate([np.ones(n), np.zeros(pad)])[None, :]
    ftol = 1e-4 * float(tol)
    from ..laws import chinchilla as _chinchilla_law

    fast = law is _chinchilla_law
    if isinstance(starts, str) and starts not in ("default", "hoffmann"):
        raise ValueError(f"starts must be 'default', 'hoffmann' or explicit values, got {starts!r}")
    if isinstance(starts, str) and starts == "hoffmann" and not fast:
        raise ValueError("starts='hoffmann' is the grid of the chinchilla law only")
    law_transforms = _transforms(spec, ref, law.param_names)
    resid_delta = float(delta) if objective == "huber" else math.inf
    hoffmann = isinstance(starts, str) and starts == "hoffmann"
    use_lbfgs = solver == "lbfgs" or (solver == "auto" and hoffmann)

    # ---- stage 1: robust / least-squares multi-start ------------------------------------------
    t0 = time.perf_counter()
    if fast:
        xN, xD, X = _chinchilla_features(log_x_p, ref)
        shared = (xN, xD, X, jnp.asarray(y_p), jnp.asarray(resid_delta))
        key, model = ("chinchilla",), _chinchilla_model
        if isinstance(starts, str) and starts == "default":
            Z0, _ = _VARPRO(
                xN, xD, jnp.asarray(y_p), jnp.asarray(base[0]), jnp.asarray(resid_delta),
                jnp.asarray(_VARPRO_GRID), jnp.asarray(_VARPRO_GRID),
                jnp.int32(3 if objective == "huber" else 0), k=_VARPRO_CANDIDATES,
            )  # fmt: skip
            Z0 = np.asarray(Z0)
            method = "varpro+lm"
        else:
            user = hoffmann_starts() if isinstance(starts, str) else starts
            Z0 = _chinchilla_fast_starts(user, law, ref)
            method = ("hoffmann-grid" if isinstance(starts, str) else "user-starts") + "+lm"
        to_params = _chinchilla_z_to_params
        fg_key, fg = ("chinchilla",), _chinchilla_fg
        shared_fg = (
            xN,
            xD,
            X[:, np.asarray([0, 1, 3])],
            jnp.asarray(y_p),
            jnp.asarray(resid_delta),
        )
    else:
        shared = (
            {k: jnp.asarray(v) for k, v in log_x_p.items()},
            {k: jnp.asarray(v) for k, v in ref.items()},
            jnp.asarray(y_p),
            jnp.asarray(resid_delta),
        )
        key, model = _residual_model_for(build_model(law, priors=priors), law_transforms)
        if isinstance(starts, str):
            Z0 = _prior_grid(spec, ref, law_transforms)
            method = "prior-grid+lm"
        else:
            Z0 = _to_unconstrained(_starts_array(starts, law.param_names), law_transforms)
            method = "user-starts+lm"
        to_params = _generic_z_to_params(law_transforms)
        fg_key, fg = _residual_fg_for(build_model(law, priors=priors), law_transforms)
        shared_fg = shared
    # the closed-form Chinchilla model screens many starts in single precision first
    screen = fast and len(Z0) > _SCREEN_MIN_STARTS
    extra: dict[str, np.ndarray] = {}
    if use_lbfgs:
        z, f, gn, it, status, nfev, polished = _lbfgs_solve(
            fg_key, fg, shared_fg, key, model, shared, Z0, base,
            screen=screen, max_iter=max_iter, tol=tol, ftol=ftol,
        )  # fmt: skip
        extra = {"evaluations": nfev, "polished": polished}
        method = method.replace("+lm", "+lbfgs")
    else:
        solve = _screen_and_solve if screen else _run_solver
        z, f, gn, it, status = solve(
            key, model, Z0, base, shared, max_iter=max_iter, tol=tol, ftol=ftol
        )
    timing["multistart_s"] = time.perf_counter() - t0
    start_params = to_params(Z0)

    # ---- stage 2 (MAP): polish the best least-squares optima under the posterior -------------
    if objective == "map":
        t0 = time.perf_counter()
        map_transforms = _transforms(spec, ref, spec.site_names)
        pick = _distinct_best(z, f, 4)
        law_vals = to_params(z[pick])
        Zm = _map_starts(spec, law, law_vals, log_x, ref, y, map_transforms)
        start_params = _generic_z_to_params(map_transforms)(Zm)
        key, model = _map_model_for(spec, map_transforms)
        shared = (
            {k: jnp.asarray(v) for k, v in log_x_p.items()},
            {k: jnp.asarray(v) for k, v in ref.items()},
            jnp.asarray(y_p),
            jnp.asarray(0.0),
        )
        z, f, gn, it, status = _run_solver(
            key, model, Zm, base, shared, max_iter=max_iter, tol=tol, ftol=ftol
        )
        to_params = _generic_z_to_params(map_transforms)
        method = method + "+map"
        timing["map_s"] = time.perf_counter() - t0

    # ---- the best start ---------------------------------------------------------------------
    best = int(np.argmin(np.where(np.isfinite(f), f, np.inf)))
    final_params = to_params(z)
    sampled = {k: float(v[best]) for k, v in final_params.items()}
    natural = _natural(law, sampled, ref)
    if objective == "map":
        extra = {}
    table = _starts_table(law, start_params, final_params, ref, f, gn, it, status, extra)

    # ---- bootstrap ----------------------------------------------------------------------------
    boot = bs_sampled = None
    boot_info: dict[str, int] = {}
    if n_bootstrap:
        t0 = time.perf_counter()
        rng = np.random.default_rng(_seed(rng_key))
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_bootstrap)).astype(np.float64)
        counts = np.concatenate([counts, np.zeros((int(n_bootstrap), pad))], axis=1)
        pick = _distinct_best(z, f, 3)
        K = len(pick)
        Zb = np.tile(z[pick], (int(n_bootstrap), 1))
        wid = np.repeat(np.arange(int(n_bootstrap)), K)
        zb, fb, _, _, sb = _run_solver(
            key, model, Zb, counts, shared, wid=wid, max_iter=max_iter, tol=tol, ftol=ftol
        )
        fb = np.where(np.isfinite(fb), fb, np.inf).reshape(-1, K)
        choice = np.argmin(fb, axis=1)
        rows = np.arange(int(n_bootstrap)) * K + choice
        ok = sb[rows] == _CONVERGED
        bs_sampled = {k: v[rows][ok] for k, v in to_params(zb).items()}
        boot = {k: np.asarray(v) for k, v in _natural(law, bs_sampled, ref).items()}
        boot_info = {"n_bootstrap": int(n_bootstrap), "n_converged": int(ok.sum())}
        timing["bootstrap_s"] = time.perf_counter() - t0
        if ok.mean() < 0.9:
            warnings.warn(
                f"only {int(ok.sum())} of {int(n_bootstrap)} bootstrap refits converged; the "
                "bootstrap uses the converged ones",
                OptimizationWarning,
                stacklevel=2,
            )
    timing["total_s"] = time.perf_counter() - t_start

    result = PointFit(
        law=law,
        data=data,
        objective=objective,
        params=natural,
        sampled_params=sampled,
        ref=ref,
        value=float(f[best]),
        converged=bool(status[best] == _CONVERGED),
        status=STATUS_NAMES[int(status[best])],
        grad_norm=float(gn[best]),
        iterations=int(it[best]),
        starts=table,
        bootstrap=boot,
        bootstrap_info=boot_info,
        bootstrap_sampled=bs_sampled,
        method=method,
        timing=timing,
        delta=float(delta) if objective == "huber" else None,
        likelihood=likelihood if objective == "map" else None,
    )
    if not result.converged:
        warnings.warn(
            f"the best {objective} optimum of law {law.name!r} did not converge: status "
            f"{result.status!r}, max-abs gradient {result.grad_norm:.3g} after "
            f"{result.iterations} iterations (value {result.value:.6g}). Raise max_iter or give "
            "other starts; predict() refuses this fit unless allow_unconverged=True.",
            OptimizationWarning,
            stacklevel=2,
        )
    return result


def _chinchilla_z_to_params(Z: np.ndarray) -> dict[str, np.ndarray]:
    """Fast-path ``z`` -> the sampled parameters of the shipped Chinchilla law.

    The law samples the loss at the reference point ``L_ref = E + A_ref + B_ref``, the
    reducible fraction ``frac = (A_ref + B_ref) / L_ref`` and ``split = A_ref / (A_ref +
    B_ref)`` (``bayescale/laws/chinchilla.py``); ``tests/test_optimize.py`` checks the round
    trip through ``law.natural``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    log_e, log_a, log_b = Z[:, 0], Z[:, 1], Z[:, 3]
    log_l = np.logaddexp(log_e, np.logaddexp(log_a, log_b))
    log_reducible = np.logaddexp(log_a, log_b)
    return {
        "log_L_ref": log_l,
        "frac": np.exp(log_reducible - log_l),
        "split": np.exp(log_a - log_reducible),
        "alpha": Z[:, 2],
        "beta": Z[:, 4],
    }


def _generic_z_to_params(transforms) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    def convert(Z: np.ndarray) -> dict[str, np.ndarray]:
        Z = jnp.asarray(Z, dtype=jnp.float64)
        return {
            name: np.asarray(t(Z[:, i]), dtype=np.float64) for i, (name, t) in enumerate(transforms)
        }

    return convert


def _natural(law: Law, sampled: Mapping[str, Any], ref: Mapping[str, float]) -> dict[str, Any]:
    """Published parameters (plus the noise sites of a MAP fit) from sampled ones."""
    law_part = {k: jnp.asarray(sampled[k]) for k in law.param_names}
    nat = law.natural(law_part, {k: jnp.asarray(v) for k, v in ref.items()})
    out: dict[str, Any] = {}
    for k in law.natural_names:
        v = np.asarray(nat[k], dtype=np.float64)
        out[k] = float(v) if v.ndim == 0 else v
    for k, v in sampled.items():
        if k not in law.param_names:
            out[k] = float(v) if np.ndim(v) == 0 else np.asarray(v)
    return out


def _starts_table(
    law, start_params, final_params, ref, f, gn, it, status, extra=None
) -> pd.DataFrame:
    start_nat = _natural(law, start_params, ref)
    final_nat = _natural(law, final_params, ref)
    cols: dict[str, Any] = {f"start_{k}": np.asarray(v) for k, v in start_nat.items()}
    cols.update({k: np.asarray(v) for k, v in final_nat.items()})
    cols["value"] = f
    cols["grad_norm"] = gn
    cols["iterations"] = it
    cols["status"] = pd.Categorical.from_codes(status, categories=list(STATUS_NAMES))
    cols["converged"] = status == _CONVERGED
    cols.update(extra or {})
    table = pd.DataFrame(cols)
    return table.sort_values("value", kind="stable").reset_index(drop=True)


def _map_starts(spec, law, law_vals, log_x, ref, y, map_transforms) -> np.ndarray:
    """MAP starting points: least-squares optima plus the noise scale of their residuals."""
    K = len(next(iter(law_vals.values())))
    lx = {k: jnp.asarray(v) for k, v in log_x.items()}
    rf = {k: jnp.asarray(v) for k, v in ref.items()}
    values = np.empty((K, len(map_transforms)))
    for j in range(K):
        p = {k: jnp.asarray(law_vals[k][j]) for k in law.param_names}
        mu = np.asarray(law.log_predict(p, lx, rf))
        if spec.likelihood == "normal":
            scale = np.sqrt(np.mean((np.exp(mu) - np.exp(y)) ** 2))
        elif spec.likelihood == "laplace":
            scale = np.mean(np.abs(mu - y))
        else:
            scale = np.sqrt(np.mean((mu - y) ** 2))
        for i, (name, _) in enumerate(map_transforms):
            if name in law_vals:
                values[j, i] = law_vals[name][j]
            elif name == "sigma":
                values[j, i] = max(float(scale), 1e-6)
            else:  # nu: the prior median
                draws = spec.prior(name, ref).sample(jax.random.PRNGKey(0), (1001,))
                values[j, i] = float(np.median(np.asarray(draws)))
    # exponents of the fast path are unconstrained there; the MAP sites may need them > 0
    for i, (name, t) in enumerate(map_transforms):
        with np.errstate(all="ignore"):
            u = np.asarray(t.inv(jnp.asarray(values[:, i])), dtype=np.float64)
        bad = ~np.isfinite(u)
        if np.any(bad):
            support = spec.prior(name, ref).support
            fixed = np.asarray(biject_to(support)(jnp.zeros(int(bad.sum()))))
            values[bad, i] = fixed
    return _to_unconstrained(values, map_transforms)
