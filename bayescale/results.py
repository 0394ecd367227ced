"""Fit results: immutable posterior draws with diagnostics, summaries, forecasts and storage."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _arviz_compat as azc
from .data import DataWarning, ScalingData, from_arrays, prediction_inputs
from .infer.nuts import SamplerConfig, log_likelihood
from .laws import Law
from .laws import get as get_law
from .model import ModelSpec, build_model, predictive_draws

__version__ = "0.1.0"

#: Thresholds of the convergence policy (DESIGN.md §5): warn beyond these.
RHAT_MAX, ESS_MIN, BFMI_MIN = 1.01, 400.0, 0.3
#: Beyond these a fit "fails badly": predict() refuses unless allow_unconverged=True.
RHAT_BAD, ESS_BAD, DIVERGENCE_FRACTION_BAD = 1.05, 100.0, 0.01
#: Warn when a forecast lies further than this factor beyond the observed range of an input.
EXTRAPOLATION_WARN = 10.0
#: The chains "disagree" on a parameter when their means span more than this many pooled
#: within-chain standard deviations. Four AR(1) chains of 1,000 draws with lag-1 correlation
#: 0.995 (bulk ESS about 10 in all) span a median 1.4 sds and exceed 2 in 19% of runs.
CHAIN_SPREAD_SDS = 2.0
#: A fit that misses R-hat or ESS says so when at least this share of its draws built the
#: full tree to ``max_tree_depth`` (Stan's "hit the maximum treedepth"): the sampler then
#: crawls along a ridge, and deeper trees, not more draws, are the remedy.
DEPTH_HITS_NOTE = 0.1


class ConvergenceWarning(UserWarning):
    """The sampler did not meet the convergence policy; forecasts may be wrong."""


class UnconvergedError(RuntimeError):
    """predict() refused: the fit failed the convergence gate badly (pass allow_unconverged)."""


class ExtrapolationWarning(DataWarning):
    """A forecast far outside the range of the fitted data."""


class IntervalWarning(UserWarning):
    """A central interval so wide that fewer than one draw lies beyond each of its bounds."""


@dataclass(frozen=True)
class Convergence:
    """Convergence diagnostics of a fit (all chains together).

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail
        Worst rank-normalized split R-hat and bulk/tail ESS over the sampled parameters.
    divergences, num_draws
        Divergent transitions after warm-up, and the number of kept draws.
    min_bfmi
        Smallest E-BFMI over chains.
    retried
        Whether the fit was re-run with a higher target acceptance probability.
    worst_rhat, worst_ess
        The sampled parameter with the largest R-hat and the one with the smallest bulk or
        tail ESS ("" when unknown).
    disagreement
        "" or, when R-hat misses the policy, how the chains disagree on ``worst_rhat``
        (:func:`chain_disagreement`): their means lie in different places, not merely
        mixing slowly.
    depth_hits, max_tree_depth
        Share of the kept draws whose NUTS trajectory was built to the full tree-depth cap
        (``2**max_tree_depth - 1`` leapfrog steps, :func:`depth_hits`), and that cap (0 when
        unknown).
    stuck_chains
        Chains that never moved (:func:`stuck_chains`): they never left a start where the log
        density is not finite (no prior draw tried gave a finite one,
        :func:`bayescale.infer.nuts.finite_init`), typically a law whose loss is <= 0, NaN or
        inf where its priors reach; or, with a finite log density there, every step was
        rejected (counted apart in ``stuck_finite``).
    stuck_finite
        Of ``stuck_chains``, those that never moved from a start with a finite log density:
        warm-up shrank the step size towards 0. A gradient that is not finite there does
        this, and so does a log density too rough at the working precision (``float32`` on
        very precise data, where the posterior's width approaches the rounding of the log
        loss).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    num_draws: int
    min_bfmi: float
    retried: bool = False
    worst_rhat: str = ""
    worst_ess: str = ""
    disagreement: str = ""
    depth_hits: float = 0.0
    max_tree_depth: int = 0
    stuck_chains: int = 0
    stuck_finite: int = 0

    @property
    def problems(self) -> list[str]:
        """Human-readable reasons the fit misses the policy (empty when converged). When
        R-hat or ESS misses it and trees hit the depth cap (:attr:`deep_trees`), the last
        entry says so and names a deeper cap."""
        out = []
        if self.stuck_chains > self.stuck_finite:
            out.append(
                f"{self.stuck_chains - self.stuck_finite} chain(s) never moved: the log density "
                "is not finite at their start nor at any prior draw tried (does the law give a "
                "loss <= 0, NaN or inf where its priors reach?)"
            )
        if self.stuck_finite:
            out.append(
                f"{self.stuck_finite} chain(s) never moved from a start with a finite log "
                "density: every step was rejected and warm-up shrank the step size towards 0 "
                "(a gradient that is not finite there, or a log density too rough at the "
                "working precision, as float32 on very precise data)"
            )
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions")
        if not self.max_rhat <= RHAT_MAX:
            why = self.disagreement or self.worst_rhat
            out.append(f"R-hat {self.max_rhat:.3f} > {RHAT_MAX}" + (f" ({why})" if why else ""))
        if not min(self.min_ess_bulk, self.min_ess_tail) >= ESS_MIN:
            out.append(
                f"ESS bulk {self.min_ess_bulk:.0f} / tail {self.min_ess_tail:.0f} < {ESS_MIN:.0f}"
                + (f" ({self.worst_ess})" if self.worst_ess else "")
            )
        if not self.min_bfmi >= BFMI_MIN:
            out.append(f"E-BFMI {self.min_bfmi:.2f} < {BFMI_MIN}")
        if self.deep_trees:
            d = self.max_tree_depth
            out.append(
                f"{self.depth_hits:.0%} of draws hit the tree-depth cap (max_tree_depth={d}, "
                f"{2**d - 1} leapfrog steps): try max_tree_depth={d + 2}"
            )
        return out

    def remedy(self, cli: bool = False) -> str:
        """What to try for the problems of :attr:`problems`, in the API's words or, with
        ``cli``, the command line's: an identification check when the chains disagree, a
        deeper tree cap when trees hit it, a higher target acceptance when draws diverge, more
        warm-up and draws otherwise (an empty string when converged)."""
        if self.converged:
            return ""
        out = []
        if self.stuck_chains > self.stuck_finite:
            out.append("check that the law's loss is positive and finite wherever its priors reach")
        if self.stuck_finite:
            out.append(
                "check that the law's gradient is finite wherever its priors reach"
                + ("" if cli else " (and fit in float64 if this fit ran in float32)")
            )  # the CLI fits in float64 only
        if self.disagreement:
            out.append(f"the data may not identify {self.worst_rhat}: check the law and its priors")
        if self.deep_trees:
            deeper = self.max_tree_depth + 2
            out.append(
                f"re-run with --max-tree-depth {deeper}"
                if cli
                else f"re-fit with max_tree_depth={deeper}"
            )
        if self.divergences:
            out.append(
                "re-run with --target-accept closer to 1 (smaller steps)"
                if cli
                else "re-fit with target_accept_prob closer to 1 (smaller steps)"
            )
        if not out:
            out.append(
                "re-run with more --num-warmup/--num-samples"
                if cli
                else "re-fit with more num_warmup/num_samples"
            )
        return "; ".join(out)

    @property
    def mixing_missed(self) -> bool:
        """R-hat or the bulk/tail ESS misses the policy (NaN misses it)."""
        return not self.max_rhat <= RHAT_MAX or not (
            min(self.min_ess_bulk, self.min_ess_tail) >= ESS_MIN
        )

    @property
    def deep_trees(self) -> bool:
        """R-hat or ESS misses the policy and at least :data:`DEPTH_HITS_NOTE` of the draws
        hit the tree-depth cap: the trajectories were cut short, so deeper trees (each level
        doubles the cost of a draw), not more draws, are the first remedy."""
        return bool(
            self.mixing_missed and self.max_tree_depth and self.depth_hits >= DEPTH_HITS_NOTE
        )

    @property
    def converged(self) -> bool:
        """True when every diagnostic meets the policy."""
        return not self.problems

    @property
    def status(self) -> str:
        """``ok``, ``divergences``, ``rhat_high``, ``ess_low`` or ``bfmi_low`` (first problem)."""
        if self.divergences or self.stuck_chains:
            return "divergences"
        if not self.max_rhat <= RHAT_MAX:
            return "rhat_high"
        if not min(self.min_ess_bulk, self.min_ess_tail) >= ESS_MIN:
            return "ess_low"
        if not self.min_bfmi >= BFMI_MIN:
            return "bfmi_low"
        return "ok"

    @property
    def fails_badly(self) -> bool:
        """R-hat > 1.05, ESS < 100 or more than 1% divergent draws."""
        return (
            not self.max_rhat <= RHAT_BAD
            or not min(self.min_ess_bulk, self.min_ess_tail) >= ESS_BAD
            or self.divergences > DIVERGENCE_FRACTION_BAD * self.num_draws
        )


def chain_disagreement(draws: np.ndarray, name: str) -> str:
    """Say how the chains of one parameter disagree, or "" when they do not.

    The chains disagree when their means span more than ``CHAIN_SPREAD_SDS`` pooled
    within-chain standard deviations: they sit in different modes, or in different parts of a
    ridge along which the data leave the parameter free and which they do not cross (a break
    location beyond the data, an unidentified irreducible loss), or each has explored so little
    (an ESS of a few draws per chain) that its mean has not settled. Chains that mix slowly
    around one mode but cover it several times keep their means closer.

    Parameters
    ----------
    draws
        ``(chain, draw)`` draws of the parameter.
    name
        Its name, for the message.

    Returns
    -------
    str
        E.g. ``"chains disagree on loc_1: means -1.95, 2.31, -1.95, -1.94, within-chain sd
        0.31"``.

    Examples
    --------
    >>> x = np.stack([np.zeros(100), np.zeros(100) + 5.0]) + np.tile([-1.0, 1.0], (2, 50))
    >>> chain_disagreement(x, "loc_1")
    'chains disagree on loc_1: means 0, 5, within-chain sd 1'
    """
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
        return ""
    means = x.mean(axis=1)
    sd = float(np.sqrt(np.mean(x.var(axis=1, ddof=1))))
    if not np.ptp(means) > CHAIN_SPREAD_SDS * sd:
        return ""
    return (
        f"chains disagree on {name}: means {', '.join(f'{m:.3g}' for m in means)}, "
        f"within-chain sd {sd:.2g}"
    )


def _worst(values: Mapping[str, float], largest: bool) -> str:
    """Name of the first non-finite value (a NaN diagnostic fails the policy), else of the
    largest (smallest) value; "" when there are none."""
    for k, v in values.items():
        if not np.isfinite(v):
            return k
    finite = {k: float(v) for k, v in values.items()}
    if not finite:
        return ""
    return (max if largest else min)(finite, key=finite.__getitem__)


def at_depth_cap(num_steps: np.ndarray, max_tree_depth: int) -> np.ndarray:
    """Per draw, whether its NUTS trajectory was built to the full depth cap: NumPyro's
    ``num_steps`` of such a draw is ``2**max_tree_depth - 1`` leapfrog steps."""
    return np.asarray(num_steps) >= 2**max_tree_depth - 1


def depth_hits(num_steps: np.ndarray, max_tree_depth: int) -> float:
    """Share of draws whose NUTS trajectory was built to the full depth cap
    (:func:`at_depth_cap`).

    >>> depth_hits(np.array([[255, 127], [255, 63]]), 8)
    0.5
    """
    steps = np.asarray(num_steps)
    if steps.size == 0:
        return 0.0
    return float(np.mean(at_depth_cap(steps, max_tree_depth)))


def stuck_chains(
    draws: Mapping[str, np.ndarray], energy: np.ndarray, *, finite_only: bool = False
) -> int:
    """Chains that never moved: every kept draw of every site equals the chain's first, or
    the energy is finite at no draw (``draws``: site -> (chain, draw, ...); ``energy``:
    (chain, draw)). A start where the log density is not finite, or where it is but its
    gradient is not, leaves the chain there: every trajectory diverges. With
    ``finite_only``, only the chains that never moved with a finite energy (every step
    rejected from a finite log density): pass the potential energy as ``energy`` for them,
    since a step size shrunk to 0 can leave the kinetic energy NaN.

    >>> draws = {"a": np.array([[0.1, 0.4], [2.0, 2.0], [1.0, 1.0]])}
    >>> energy = np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan]])
    >>> stuck_chains(draws, energy), stuck_chains(draws, energy, finite_only=True)
    (2, 1)
    """
    e = np.asarray(energy)
    if e.size == 0:
        return 0
    still = np.ones(e.shape[0], dtype=bool)
    for x in draws.values():
        x = np.asarray(x)
        still &= np.all(x == x[:, :1], axis=tuple(range(1, x.ndim)))
    never_finite = ~np.any(np.isfinite(e), axis=-1)
    return int(np.sum(still & ~never_finite if finite_only else still | never_finite))


def convergence_of(
    draws: Mapping[str, np.ndarray],
    rhat: Mapping[str, float],
    ess_bulk: Mapping[str, float],
    ess_tail: Mapping[str, float],
    *,
    max_rhat: float,
    min_ess_bulk: float,
    min_ess_tail: float,
    divergences: int,
    num_draws: int,
    min_bfmi: float,
    retried: bool,
    depth_hits: float = 0.0,
    max_tree_depth: int = 0,
    stuck_chains: int = 0,
    stuck_finite: int = 0,
) -> Convergence:
    """The :class:`Convergence` of a fit, naming the worst parameters of the per-parameter
    diagnostics ``rhat``, ``ess_bulk``, ``ess_tail`` (shared by single fits and the curves of
    a batch, which aggregate them with their own NaN handling), with the share of draws
    that hit the tree-depth cap ``max_tree_depth`` (0: unknown)."""
    worst_rhat = _worst(rhat, largest=True)
    min_ess = {k: float(np.minimum(ess_bulk[k], ess_tail[k])) for k in ess_bulk}
    disagreement = ""
    if worst_rhat and not max_rhat <= RHAT_MAX:
        disagreement = chain_disagreement(draws[worst_rhat], worst_rhat)
    return Convergence(
        max_rhat=float(max_rhat),
        min_ess_bulk=float(min_ess_bulk),
        min_ess_tail=float(min_ess_tail),
        divergences=int(divergences),
        num_draws=int(num_draws),
        min_bfmi=float(min_bfmi),
        retried=bool(retried),
        worst_rhat=worst_rhat,
        worst_ess=_worst(min_ess, largest=False),
        disagreement=disagreement,
        depth_hits=float(depth_hits),
        max_tree_depth=int(max_tree_depth),
        stuck_chains=int(stuck_chains),
        stuck_finite=int(stuck_finite),
    )


def diagnose(
    draws: Mapping[str, np.ndarray],
    energy: np.ndarray,
    diverging: np.ndarray,
    retried: bool,
    *,
    num_steps: np.ndarray | None = None,
    max_tree_depth: int = 0,
    bfmi: np.ndarray | None = None,
    depth_hit: np.ndarray | None = None,
    potential_energy: np.ndarray | None = None,
) -> tuple[pd.DataFrame, Convergence]:
    """Per-parameter diagnostics table and the overall :class:`Convergence` (with
    ``num_steps`` and ``max_tree_depth``, the share of draws at the tree-depth cap).

    ``bfmi`` (per chain) and ``depth_hit`` (per draw: 1 at the cap, for a thinned draw the
    share of its transitions at the cap), when given, replace the values computed from
    ``energy`` and ``num_steps``: a batch curve re-fitted with thinned draws brings those of
    its consecutive transitions (the thinned energies would overstate E-BFMI).
    ``potential_energy`` tells a chain stuck where the log density is finite (its kinetic
    energy, and so ``energy``, can be NaN once warm-up has shrunk the step size to 0)."""
    rhat, bulk, tail = azc.rhat(draws), azc.ess(draws, "bulk"), azc.ess(draws, "tail")
    mcse = azc.mcse_mean(draws)
    table = pd.DataFrame(
        {"mcse_mean": mcse, "ess_bulk": bulk, "ess_tail": tail, "r_hat": rhat}
    ).loc[list(draws)]
    known = num_steps is not None or depth_hit is not None
    if depth_hit is not None:
        hits = float(np.mean(depth_hit, dtype=np.float64)) if np.size(depth_hit) else 0.0
    else:
        hits = 0.0 if num_steps is None else depth_hits(num_steps, max_tree_depth)
    # A NaN diagnostic (non-finite draws, or a parameter stuck at one value in every chain)
    # fails the gate, as in a batch: NumPy's max/min propagate NaN where nanmax skipped it.
    conv = convergence_of(
        draws,
        table["r_hat"].to_dict(),
        table["ess_bulk"].to_dict(),
        table["ess_tail"].to_dict(),
        max_rhat=float(np.max(table["r_hat"].to_numpy())),
        min_ess_bulk=float(np.min(table["ess_bulk"].to_numpy())),
        min_ess_tail=float(np.min(table["ess_tail"].to_numpy())),
        divergences=int(np.sum(diverging)),
        num_draws=int(np.size(diverging)),
        min_bfmi=float(np.min(azc.bfmi(energy) if bfmi is None else bfmi)),
        retried=retried,
        depth_hits=hits,
        max_tree_depth=max_tree_depth if known else 0,
        stuck_chains=stuck_chains(draws, energy),
        stuck_finite=stuck_chains(
            draws, energy if potential_energy is None else potential_energy, finite_only=True
        ),
    )
    return table, conv


def diagnose_stats(
    draws: Mapping[str, np.ndarray],
    stats: Mapping[str, np.ndarray],
    config: SamplerConfig,
    retried: bool,
) -> tuple[pd.DataFrame, Convergence]:
    """:func:`diagnose` from a fit's ``sample_stats`` and the settings the draws ran under
    (a fresh fit, or one read back by :func:`load`, with the ``bfmi`` and ``depth_hit`` of
    a batch curve's unthinned transitions when it carries them)."""
    return diagnose(
        draws,
        stats["energy"],
        stats["diverging"],
        retried,
        num_steps=stats["num_steps"],
        max_tree_depth=config.max_tree_depth,
        bfmi=stats.get("bfmi"),
        depth_hit=stats.get("depth_hit"),
        potential_energy=stats.get("potential_energy"),
    )


def name_list(names: Sequence[Any], limit: int = 5, fmt: Callable[[Any], str] = repr) -> str:
    """``names`` for a message: the first ``limit`` joined by commas, then ``...`` if more.

    >>> name_list(["a", "b", "c"], 2)
    "'a', 'b', ..."
    """
    return ", ".join(map(fmt, names[:limit])) + (", ..." if len(names) > limit else "")


def above_data(
    data: ScalingData, inputs: tuple[str, ...], vals: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Targets beyond the largest observed value of some input (where E matters most): the
    rule of the identifiability warning of ``Fit.predict`` and ``BatchFit.predict``."""
    above = np.zeros(len(next(iter(vals.values()))), dtype=bool)
    for k in inputs:
        observed = getattr(data, k)
        if observed is not None:
            above |= vals[k] > observed.max()
    return above


def ratio_beyond(
    data: ScalingData, inputs: tuple[str, ...], vals: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, float, float]:
    """How far each target's tokens per parameter ``D / N`` lies beyond the data's range.

    Returns the factor per target (1 inside the range, and everywhere for a law without both
    N and D) and the data's smallest and largest ``D / N``. A target can lie inside the data's
    N and inside its D and still far outside the ratios the law was fitted on (a small model
    trained on the largest D), where the law's trade-off between N and D is extrapolated.

    >>> from bayescale.data import from_arrays
    >>> data = from_arrays(N=[1e8, 1e9, 1e10], D=[2e9, 2e10, 2e11], loss=[3.2, 2.7, 2.3])
    >>> factor, lo, hi = ratio_beyond(data, ("N", "D"), {"N": [1e8, 1e9], "D": [2e11, 2e10]})
    >>> factor.tolist(), lo, hi
    ([100.0, 1.0], 20.0, 20.0)
    """
    num = len(next(iter(vals.values())))
    if not {"N", "D"} <= set(inputs) or data.N is None or data.D is None:
        return np.ones(num), float("nan"), float("nan")
    seen = data.D / data.N
    lo, hi = float(seen.min()), float(seen.max())
    ratio = np.asarray(vals["D"], dtype=np.float64) / np.asarray(vals["N"], dtype=np.float64)
    return np.maximum(1.0, np.maximum(ratio / hi, lo / ratio)), lo, hi


def target_text(vals: Mapping[str, np.ndarray], inputs: tuple[str, ...], j: int) -> str:
    """Target ``j`` of ``vals`` for a message: ``"N=1.01e+07, D=4.8e+11"``."""
    return ", ".join(f"{k}={vals[k][j]:.3g}" for k in inputs)


def ratio_note(ratio: float, factor: float, lo: float, hi: float) -> str:
    """The words of the tokens-per-parameter ExtrapolationWarning of ``predict``."""
    return (
        f"{ratio:.3g} tokens per parameter (D/N) lies {factor:.0f}x beyond the data's "
        f"{lo:.3g} to {hi:.3g}: the law's trade-off between N and D is extrapolated there, "
        "even where N and D each lie within the data"
    )


_PREDICT: dict[int, Any] = {}


def _mean_fn(law: Law):
    """Jitted (flat params (S,), log inputs (M,), ref) -> log mean loss (S, M)."""
    if id(law) not in _PREDICT:

        def f(params, log_x, ref):
            return jax.vmap(lambda p: law.log_predict(p, log_x, ref))(params)

        _PREDICT[id(law)] = jax.jit(f)
    return _PREDICT[id(law)]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Fit:
    """Immutable result of :func:`bayescale.fit`.

    Attributes
    ----------
    spec
        The model (law, likelihood, priors).
    data
        The fitted :class:`~bayescale.data.ScalingData`.
    ref
        Reference point (log geometric-mean inputs, mean log loss) of the parametrisation.
    samples
        Sampled sites -> draws of shape (chain, draw); read-only.
    sample_stats
        ``diverging``, ``energy``, ``num_steps``, ``accept_prob``, ``step_size`` per chain/draw;
        for a curve taken out of a batch also ``bfmi`` (per chain) and ``depth_hit`` (per
        draw), of the unthinned transitions of a re-fitted curve.
    config
        Sampler settings. ``timing`` holds ``compile_s`` and ``sampling_s``.
    """

    spec: ModelSpec
    data: ScalingData
    ref: Mapping[str, float]
    samples: Mapping[str, np.ndarray]
    sample_stats: Mapping[str, np.ndarray]
    config: SamplerConfig
    diagnostics: pd.DataFrame
    convergence: Convergence
    timing: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "samples", MappingProxyType({k: _readonly(v) for k, v in self.samples.items()})
        )
        object.__setattr__(
            self,
            "sample_stats",
            MappingProxyType({k: _readonly(v) for k, v in self.sample_stats.items()}),
        )
        object.__setattr__(self, "ref", MappingProxyType(dict(self.ref)))

    # ------------------------------------------------------------------ basic views
    @property
    def law(self) -> Law:
        """The fitted law."""
        return self.spec.law

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.samples.values())).shape[1])

    @cached_property
    def params(self) -> Mapping[str, np.ndarray]:
        """Published (natural) law parameters plus noise sites, each (chain, draw)."""
        sampled = {k: jnp.asarray(v) for k, v in self.samples.items()}
        nat = self.law.natural({k: sampled[k] for k in self.law.param_names}, dict(self.ref))
        out = {k: np.asarray(nat[k]) for k in self.law.natural_names}
        for k in self.spec.site_names[self.law.num_params :]:
            out[k] = np.asarray(self.samples[k])
        return MappingProxyType({k: _readonly(v) for k, v in out.items()})

    @property
    def converged(self) -> bool:
        """Whether the fit meets the convergence policy (R-hat, ESS, divergences, E-BFMI)."""
        return self.convergence.converged

    @cached_property
    def identifiability(self) -> tuple[str, ...]:
        """Warnings when the data do not constrain the irreducible loss E (empty when they do):
        see :func:`bayescale.check.identifiability`."""
        from .check import identifiability

        return tuple(identifiability(self))

    # ------------------------------------------------------------------ summaries
    def summary(self, prob: float = 0.9, *, sampled: bool = False) -> pd.DataFrame:
        """Posterior summary: mean, sd, median, central ``prob`` interval, MCSE, ESS, R-hat.

        Parameters
        ----------
        prob
            Mass of the central credible interval.
        sampled
            Show the sampled (reference-centred) parameters instead of the published ones.
        """
        _check_prob(prob, self.num_chains * self.num_draws)
        # A published parameter can overflow to inf at a few draws where the data leave its
        # log free (the sigmoid's C0 on flat, pre-emergence data): its mean is then inf and
        # its sd and MCSE NaN, which the table shows; NumPy and ArviZ need not warn about it.
        with np.errstate(invalid="ignore", over="ignore"):
            return self._summary(prob, sampled)

    def _summary(self, prob: float, sampled: bool) -> pd.DataFrame:
        draws = dict(self.samples) if sampled else dict(self.params)
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        rows = {}
        for k, v in draws.items():
            flat = v.reshape(-1)
            q = np.percentile(flat, [lo, 50, hi])
            rows[k] = {
                "mean": flat.mean(),
                "sd": flat.std(ddof=1),
                "median": q[1],
                f"{lo:g}%": q[0],
                f"{hi:g}%": q[2],
            }
        table = pd.DataFrame.from_dict(rows, orient="index")
        diag, _ = diagnose(
            draws, self.sample_stats["energy"], self.sample_stats["diverging"], False
        )
        table = table.join(diag)
        table.attrs["warnings"] = list(self.identifiability)
        return table

    # ------------------------------------------------------------------ forecasts
    def _check_gate(self, allow_unconverged: bool) -> None:
        conv = self.convergence
        if conv.converged:
            return
        reason = "; ".join(conv.problems)
        if conv.fails_badly and not allow_unconverged:
            raise UnconvergedError(
                f"refusing to forecast from an unconverged fit ({reason}); {conv.remedy()}, "
                "or pass allow_unconverged=True"
            )
        warnings.warn(
            f"forecast from a fit that did not converge ({reason}): do not trust it",
            ConvergenceWarning,
            stacklevel=3,
        )

    def _extrapolation(self, vals: Mapping[str, np.ndarray]) -> np.ndarray:
        factor = np.ones(len(next(iter(vals.values()))))
        observed = {"N": self.data.N, "D": self.data.D, "C": self.data.C, "U": self.data.U}
        for k in self.law.inputs:
            obs = observed[k]
            if obs is None:
                continue
            beyond = np.maximum(vals[k] / obs.max(), obs.min() / vals[k])
            factor = np.maximum(factor, beyond)
        return factor

    def predict(
        self,
        N: Any = None,
        D: Any = None,
        C: Any = None,
        U: Any = None,
        *,
        prob: float = 0.9,
        allow_unconverged: bool = False,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Forecast the loss at new inputs with credible and predictive intervals.

        Parameters
        ----------
        N, D, C
            Scalars or arrays (broadcast together). With C = 6ND, two of them are enough for a
            law of N and D.
        U
            Unique tokens, for laws of repeated data (``datablations``).
        prob
            Mass of the central intervals.
        allow_unconverged
            Forecast even from a fit that fails the convergence gate badly.
        seed
            Seed of the posterior-predictive noise draws.

        Returns
        -------
        pandas.DataFrame
            One row per target: the inputs; ``loss_median``, ``loss_lower``, ``loss_upper``
            (the law's mean function, i.e. the expected loss of a long training run);
            ``loss_mean``; ``pred_median``, ``pred_lower``, ``pred_upper`` (posterior
            predictive: a new observed run, including the noise); and ``extrapolation``, how many
            times beyond the observed range the target lies (1 inside the data).

        Examples
        --------
        >>> fit.predict(N=70e9, D=1.4e12, prob=0.9)  # doctest: +SKIP
        """
        _check_prob(prob, self.num_chains * self.num_draws)
        self._check_gate(allow_unconverged)
        vals = prediction_inputs(self.law.name, self.law.inputs, N=N, D=D, C=C, U=U)
        extra = self._extrapolation(vals)
        worst = int(np.argmax(extra))
        if extra[worst] > EXTRAPOLATION_WARN:
            where = target_text(vals, self.law.inputs, worst)
            warnings.warn(
                f"extrapolating {extra[worst]:.0f}x beyond the fitted data ({where}); intervals "
                "assume the law holds that far",
                ExtrapolationWarning,
                stacklevel=2,
            )
        ratio, lo, hi = ratio_beyond(self.data, self.law.inputs, vals)
        far = int(np.argmax(ratio))
        if ratio[far] > EXTRAPOLATION_WARN:
            where = target_text(vals, self.law.inputs, far)
            note = ratio_note(vals["D"][far] / vals["N"][far], ratio[far], lo, hi)
            warnings.warn(f"at {where}: {note}", ExtrapolationWarning, stacklevel=2)
        if above_data(self.data, self.law.inputs, vals).any() and self.identifiability:
            from .check import IdentifiabilityWarning

            for message in self.identifiability:
                warnings.warn(
                    f"forecast beyond the data: {message}", IdentifiabilityWarning, stacklevel=2
                )
        log_mu = self._log_mean(vals)
        noisy = self._predictive(log_mu, seed)
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        mu = np.exp(log_mu)
        qm = np.percentile(mu, [lo, 50, hi], axis=0)
        qp = np.percentile(noisy, [lo, 50, hi], axis=0)
        out = pd.DataFrame({k: vals[k] for k in ("N", "D", "C", "U") if k in vals})
        out["loss_median"], out["loss_lower"], out["loss_upper"] = qm[1], qm[0], qm[2]
        out["loss_mean"] = mu.mean(axis=0)
        out["pred_median"], out["pred_lower"], out["pred_upper"] = qp[1], qp[0], qp[2]
        out["extrapolation"] = extra
        out.attrs["prob"] = prob
        out.attrs["converged"] = self.converged
        out.attrs["identifiability"] = list(self.identifiability)
        return out

    def _flat(self) -> dict[str, jnp.ndarray]:
        return {k: jnp.asarray(v.reshape(-1)) for k, v in self.samples.items()}

    def _log_mean(self, vals: Mapping[str, np.ndarray]) -> np.ndarray:
        flat = self._flat()
        params = {k: flat[k] for k in self.law.param_names}
        log_x = {k: jnp.log(jnp.asarray(vals[k])) for k in self.law.inputs}
        ref = {k: jnp.asarray(v) for k, v in self.ref.items()}
        return np.asarray(_mean_fn(self.law)(params, log_x, ref))

    def _predictive(self, log_mu: np.ndarray, seed: int) -> np.ndarray:
        sigma = self.samples["sigma"].reshape(-1)[:, None]
        nu = None
        if self.spec.likelihood == "student_t" and self.spec.df is None:
            nu = self.samples["nu"].reshape(-1)[:, None]
        return predictive_draws(self.spec, log_mu, sigma, np.random.default_rng(seed), nu=nu)

    # ------------------------------------------------------------------ containers
    def log_likelihood(self) -> np.ndarray:
        """Pointwise log-likelihood of the observed runs, shape (chain, draw, run), in JAX."""
        log_x = {k: v for k, v in self.data.log_inputs().items() if k in self.law.inputs}
        return log_likelihood(
            self.spec,
            {k: jnp.asarray(v) for k, v in self.samples.items()},
            {k: jnp.asarray(v) for k, v in log_x.items()},
            {k: jnp.asarray(v) for k, v in self.ref.items()},
            jnp.asarray(self.data.log_loss),
            None,
        )

    def _attrs(self) -> dict[str, Any]:
        return {
            "bayescale_version": __version__,
            "law": self.law.name,
            "likelihood": self.spec.likelihood,
            "df": "learnt" if self.spec.df is None else float(self.spec.df),
            "trials": -1 if self.spec.trials is None else float(self.spec.trials),
            "custom_priors": json.dumps([k for k, _ in self.spec.priors]),
            "ref": json.dumps(dict(self.ref)),
            "config": json.dumps(self.config.__dict__),
            "timing": json.dumps(dict(self.timing)),
            "retried": int(self.convergence.retried),
            "seed": -1 if self.seed is None else int(self.seed),
            "derived": ",".join(self.data.derived),  # inputs obtained through C = 6ND
        }

    def to_arviz(self):
        """ArviZ container (InferenceData on ArviZ 0.x, DataTree on 1.x).

        Groups: ``posterior`` (sampled and published parameters), ``sample_stats``
        (``diverging``, ``energy``, ``n_steps``, ``acceptance_rate``, ``step_size``, ``lp``;
        for a curve of a batch also ``e_bfmi``, the chain's E-BFMI, and ``depth_hit``, of the
        unthinned transitions of a re-fitted curve), ``log_likelihood`` (pointwise, computed in JAX), ``observed_data`` (``loss``) and
        ``constant_data`` (the inputs and run ids).
        """
        posterior = dict(self.samples)
        for k, v in self.params.items():
            posterior.setdefault(k, v)
        st = self.sample_stats
        step = np.broadcast_to(np.asarray(st["step_size"])[:, None], st["energy"].shape)
        stats = {
            "diverging": st["diverging"],
            "energy": st["energy"],
            "n_steps": st["num_steps"],
            "acceptance_rate": st["accept_prob"],
            "step_size": step,
            "lp": -st["potential_energy"],
        }
        if "bfmi" in st:  # a batch curve's (BatchFit.__getitem__): the chain's E-BFMI
            stats["e_bfmi"] = np.broadcast_to(np.asarray(st["bfmi"])[:, None], st["energy"].shape)
        if "depth_hit" in st:
            stats["depth_hit"] = st["depth_hit"]
        constant = {k: getattr(self.data, k) for k in ("N", "D", "C", "U")}
        constant = {k: v for k, v in constant.items() if v is not None}
        for k in ("curve", "run"):
            ids = getattr(self.data, k)
            if ids is not None:
                constant[k] = np.asarray(ids).astype(str)
        dims = {k: ["run_index"] for k in (*constant, "loss")}
        return azc.from_dict(
            {
                "posterior": posterior,
                "sample_stats": stats,
                "log_likelihood": {"loss": self.log_likelihood()},
                "observed_data": {"loss": self.data.loss},
                "constant_data": constant,
            },
            dims=dims,
            attrs=self._attrs(),
        )

    def save(self, path: str | Path) -> Path:
        """Write the fit to a netCDF file (via xarray/h5netcdf); read it back with :func:`load`."""
        path = Path(path)
        azc.to_netcdf(self.to_arviz(), path)
        return path

    # ------------------------------------------------------------------ display
    def _header(self) -> str:
        conv = self.convergence
        state = "converged" if conv.converged else "NOT CONVERGED: " + "; ".join(conv.problems)
        return (
            f"Fit of {self.law.name} ({self.law.formula}) to {len(self.data)} runs, "
            f"{self.spec.likelihood} likelihood; {self.num_chains} chains x {self.num_draws} "
            f"draws; {state}"
        )

    def __repr__(self) -> str:
        with _default_intervals():
            table = self.summary()[["median", "5%", "95%", "r_hat", "ess_bulk"]]
        text = self._header() + "\n" + table.to_string(float_format=lambda x: f"{x:.4g}")
        return text + "".join(f"\nWarning: {m}" for m in self.identifiability)

    def _repr_html_(self) -> str:
        with _default_intervals():
            table = self.summary()
        table = table[["mean", "sd", "median", "5%", "95%", "r_hat", "ess_bulk", "ess_tail"]]
        notes = "".join(f"<p><b>Warning:</b> {html.escape(m)}</p>" for m in self.identifiability)
        return (
            f"<p><b>bayescale</b> {html.escape(self._header())}</p>"
            + table.to_html(float_format=lambda x: f"{x:.4g}")
            + notes
        )


@contextmanager
def _default_intervals():
    """No :class:`IntervalWarning` for a table at the default 90%, which the user did not ask
    for (``repr``, ``population``): the few-draws fit says so when asked for intervals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntervalWarning)
        yield


def _check_prob(prob: float, draws: int | None = None, *, stacklevel: int = 3) -> None:
    """Refuse an interval mass outside (0, 1); warn (:class:`IntervalWarning`) when ``draws``
    posterior draws leave less than one draw beyond each bound of the central ``prob``
    interval, whose bounds are then the extreme draws rather than quantiles."""
    if not (0 < prob < 1):
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    tail = None if draws is None else draws * (1 - prob) / 2
    if tail is not None and tail < 1 - 1e-9:  # 1 - 0.9 is 0.09999999999999998
        need = math.ceil(2 / (1 - prob) - 1e-9)
        warnings.warn(
            f"a {100 * prob:g}% central interval from {draws:,} draws leaves {tail:.2g} draws "
            "beyond each bound: its bounds are interpolated between the most extreme draws, "
            f"not quantiles; use at least {need:,} draws in all (more samples or chains) or a "
            "smaller interval mass",
            IntervalWarning,
            stacklevel=stacklevel,
        )


def load(path: str | Path):
    """Read a fit written by :meth:`Fit.save` (or a batch written by ``BatchFit.save``).

    The law is looked up by name in the registry (register a custom law before loading).
    Custom priors are not stored; the loaded fit predicts from the stored draws unchanged.
    """
    container = azc.from_netcdf(path)
    post = azc.group(container, "posterior")
    attrs = dict(post.attrs)
    if attrs.get("bayescale_kind") == "batch":
        from .batch import load_batch

        return load_batch(path)
    law = get_law(str(attrs["law"]))
    df = attrs["df"]
    trials = float(attrs.get("trials", -1))
    spec = build_model(
        law,
        likelihood=str(attrs["likelihood"]),
        df=None if isinstance(df, str) else float(df),
        trials=None if trials < 0 else trials,
    )
    samples = {k: np.asarray(post[k]) for k in spec.site_names}
    st = azc.group(container, "sample_stats")
    stats = {
        "diverging": np.asarray(st["diverging"]),
        "energy": np.asarray(st["energy"]),
        "num_steps": np.asarray(st["n_steps"]),
        "accept_prob": np.asarray(st["acceptance_rate"]),
        "step_size": np.asarray(st["step_size"])[:, 0],
        "potential_energy": -np.asarray(st["lp"]),
    }
    # Written for a curve taken out of a batch: E-BFMI and depth-cap shares of the unthinned
    # transitions of a re-fitted curve, which its thinned energies and num_steps would misstate.
    if "e_bfmi" in st:
        stats["bfmi"] = np.asarray(st["e_bfmi"])[:, 0]
    if "depth_hit" in st:
        stats["depth_hit"] = np.asarray(st["depth_hit"])
    const = azc.group(container, "constant_data")
    obs = azc.group(container, "observed_data")
    cols = {k: np.asarray(const[k]) for k in ("N", "D", "C", "U", "curve", "run") if k in const}
    data = from_arrays(loss=np.asarray(obs["loss"]), **cols)
    if attrs.get("derived"):  # absent from files written before it was stored
        data = dataclasses.replace(data, derived=tuple(str(attrs["derived"]).split(",")))
    config = SamplerConfig(**json.loads(attrs["config"]))
    retried = bool(int(attrs.get("retried", 0)))
    diag, conv = diagnose_stats(samples, stats, config, retried)
    seed = int(attrs.get("seed", -1))
    return Fit(
        spec=spec,
        data=data,
        ref=json.loads(attrs["ref"]),
        samples=samples,
        sample_stats=stats,
        config=config,
        diagnostics=diag,
        convergence=conv,
        timing=json.loads(attrs.get("timing", "{}")),
        seed=None if seed < 0 else seed,
    )
