"""Hierarchical (partial) pooling of scaling-law parameters across related curves.

``bs.fit_many(data, law, curve=..., pooling="partial", share=["alpha"])`` fits all curves in ONE
joint model: the shared parameters of every curve are drawn from a common population whose mean
and spread are learnt from all curves together, while each curve keeps its own other parameters
(amplitudes, irreducible loss, noise). A curve with few points borrows strength from its
relatives: its exponent is shrunk towards the family's, by as much as the data of the family say
the family agrees (Gelman et al. 2013, ch. 5). The model and its hyperpriors are described in
:mod:`bayescale.infer.pooled`.

The result is a :class:`PooledBatchFit`, a :class:`~bayescale.batch.BatchFit` with the curve
dimension, so ``summary()``, ``predict()``, ``batch[curve]``, ``to_arviz()`` and ``save()`` work
unchanged (each curve's draws are its slice of the joint chains), plus the population
(:attr:`PooledBatchFit.population`) and diagnostics of the joint model.

References
----------
Gelman, Carlin, Stern, Dunson, Vehtari & Rubin 2013, Bayesian Data Analysis (3rd ed.), ch. 5.
Betancourt & Girolami 2015, Hamiltonian Monte Carlo for hierarchical models, arXiv:1312.0906.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import batch as _batch
from ._fit import RETRY_TARGET_ACCEPT, _validate_config, as_key, reference_point
from .data import DataError, ScalingData
from .infer import batch as engine
from .infer.nuts import SamplerConfig
from .infer.pooled import MASSES, PooledSpec, population_moments, run_pooled, transform_name
from .laws import Law
from .model import ModelSpec, build_model, check_proportions
from .results import ConvergenceWarning, at_depth_cap

__all__ = [
    "POOLINGS",
    "PooledBatchFit",
    "PoolingError",
    "fit_pooled",
    "shareable",
    "synthetic_family",
]

#: Values of ``fit_many(pooling=...)``.
POOLINGS = ("none", "partial")
#: A pooled curve needs this many points: its shared parameters are learnt from the family.
MIN_POINTS = 2
#: ``centred=None`` picks the centred parametrisation when every curve has at least this many
#: points per sampled parameter (its data then pin its own shared parameters down).
CENTRED_POINTS_PER_PARAMETER = 5


class PoolingError(ValueError):
    """Bad pooling arguments: unknown shared name, too few curves, unsupported option."""


# ============================================================================= validation
def shareable(law: str | Law, *, likelihood: str = "lognormal", df: float | None = 4.0) -> tuple:
    """Names that ``share=`` accepts for ``law``: its sampled parameters and the noise scale.

    Examples
    --------
    >>> shareable("chinchilla")
    ('log_L_ref', 'frac', 'split', 'alpha', 'beta', 'sigma')
    """
    return build_model(law, likelihood=likelihood, df=df).site_names


def _check_share(spec: ModelSpec, share: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    allowed = spec.site_names
    hint = (
        f"law {spec.law.name!r} can share {', '.join(allowed)} (its sampled parameters, "
        "'sigma' the noise scale); published names such as E or A are derived, not sampled"
    )
    if share is None:
        share = ()
    if isinstance(share, str):
        share = (share,)
    share = tuple(share)
    if not share and not allow_empty:
        raise PoolingError(f"pooling='partial' needs share=[...] naming what to pool; {hint}")
    bad = [s for s in share if not isinstance(s, str) or s not in allowed]
    if bad:
        raise PoolingError(f"cannot share {bad!r}: {hint}")
    dup = sorted({s for s in share if share.count(s) > 1})
    if dup:
        raise PoolingError(f"share lists {dup} more than once")
    for s in share:
        prior = spec.prior(s, {k: 0.0 for k in (*spec.law.inputs, "loss")})
        if prior.event_shape != ():
            raise PoolingError(f"cannot pool {s!r}: its prior is not a scalar distribution")
    # Shared names first, in the law's order: the compiled program does not depend on the
    # order the user typed them in.
    return tuple(s for s in allowed if s in share)


def _reference_free(law: Law, name: str) -> bool:
    """True when sampled parameter ``name`` means the same thing at every reference point (it
    is one of the law's published parameters, unchanged by ``natural``): e.g. exponents. A
    shared parameter that is not (the anchors of sigmoid_c, ``frac`` of power_n) needs all curves
    to use one reference for their inputs, or the population would mix different quantities."""
    if name not in law.param_names:
        return True  # noise scale, degrees of freedom
    if name not in law.natural_names:
        return False
    params = {p.name: p.prior_at({k: 0.0 for k in (*law.inputs, "loss")}) for p in law.parameters}
    key = jax.random.PRNGKey(0)
    values = {k: d.sample(jax.random.fold_in(key, i)) for i, (k, d) in enumerate(params.items())}
    for shift in (0.0, 1.7):
        ref = {k: jnp.asarray(shift) for k in law.inputs}
        ref["loss"] = jnp.asarray(0.0)
        out = law.natural(values, ref)
        if not np.allclose(np.asarray(out[name]), np.asarray(values[name])):
            return False
    return True


def _validate_curve(cid: str, d: ScalingData, law: Law, spec: ModelSpec) -> str:
    try:
        check_proportions(
            d.loss, spec, locate=d.locate
        )  # pooling has no binomial: no rounding note
    except DataError as exc:
        return f"curve {cid!r}: {exc}"
    for name in law.inputs:
        if getattr(d, name, None) is None:
            return (
                f"curve {cid!r}: law {law.name!r} needs input {name!r}, which the data lacks "
                f"(present: {', '.join(d.inputs) or 'none'})"
            )
    if len(d) < MIN_POINTS:
        return (
            f"curve {cid!r}: {len(d)} point(s); a pooled curve needs at least {MIN_POINTS} "
            "(its shared parameters are learnt from the other curves)"
        )
    return ""


# ============================================================================= the driver
def fit_pooled(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    share: Sequence[str] | str | None,
    pooling: str = "partial",
    curve: str | list[str] | None = None,
    columns: Mapping[str, Any] | None = None,
    sep: str = ",",
    likelihood: str = "lognormal",
    priors: Mapping[str, Any] | None = None,
    df: float | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    target_accept_prob: float = 0.9,
    max_tree_depth: int | None = 10,
    rng_key: Any = 0,
    retry: bool = True,
    mass: str = "diag",
    centred: bool | None = None,
    common_reference: bool | None = None,
    progress: bool = True,
) -> PooledBatchFit:
    """Fit one law to related curves with partial pooling of ``share`` (one joint NUTS run).

    Usually reached through ``bs.fit_many(..., pooling="partial", share=[...])``; the arguments
    mean the same as there.

    Parameters
    ----------
    data, law, curve, columns, sep, likelihood, priors, df
        As in :func:`bayescale.fit_many`. ``priors`` overrides of a shared parameter change its
        population hyperpriors too (they are derived from its prior).
    share
        Sampled parameters (see :func:`shareable`) whose per-curve values come from a common
        population: ``["alpha"]`` for ``power_n``, ``["alpha", "beta"]`` for ``chinchilla``,
        ``["height", "k"]`` for ``sigmoid("C", form="slope")`` (the default anchor form of
        ``sigmoid_c`` samples no slope); ``"sigma"`` pools the noise scale. ``share=()`` fits
        the curves independently in the same joint program (no population; a baseline that
        isolates the effect of pooling).
    pooling
        ``"partial"`` (the only pooling this function runs). Complete pooling (one set of
        parameters for all curves) is ``bs.fit`` on all points together.
    num_warmup, num_samples, num_chains, target_accept_prob, max_tree_depth
        NUTS settings for the joint model (diagonal mass matrix, adapted in warm-up; chains in
        sequence on one device, sharded over several). Cost is linear in
        ``num_chains * (num_warmup + num_samples)`` times the leapfrog steps per draw, each a
        gradient over all curves' points.
    rng_key
        Integer seed or PRNG key of the joint run.
    retry
        Re-run the joint model once at ``target_accept_prob=0.99`` when it diverges or an R-hat
        exceeds 1.01 (every curve's ``retried`` flag is then set); the re-run reuses the
        compiled program.
    mass
        ``"diag"`` (default): NUTS adapts a diagonal mass matrix. ``"block"``: one dense block
        per curve (its amplitude, exponent and irreducible loss are correlated) and one for the
        population; it compiles about twice as long (one block per curve) and did not beat
        the diagonal matrix overall (IsoFLOP studies, centred: 63 against 79 leapfrog steps per
        draw; 12 short synthetic curves, non-centred: 79 against 13 divergences).
    centred
        Parametrisation of the shared parameters: non-centred ``theta_k = T(mu + tau z_k)``
        (``False``) suits curves that each say little about them, the usual case for pooling;
        centred ``T^-1(theta_k) ~ Normal(mu, tau)`` (``True``) suits long, precise curves. Same
        posterior, different geometry: on the IsoFLOP studies (80-116 points per curve)
        centred took 63-79 leapfrog steps per draw against 280-307. ``None`` (default):
        centred when every curve has at least :data:`CENTRED_POINTS_PER_PARAMETER` points per
        sampled parameter of the law, else non-centred.
    common_reference
        Centre every curve's inputs on one reference point (the mean of the per-curve ones).
        ``None`` (default): only when a shared parameter depends on the reference point (e.g.
        ``log_rise`` of ``sigmoid_c``, ``frac`` of ``power_n``); exponents do not.
    progress
        Show a tqdm bar: compile, then iterations of every chain (reported from inside the
        compiled program every 50 iterations).

    Returns
    -------
    PooledBatchFit
        A :class:`~bayescale.batch.BatchFit` (``summary()``, ``predict()``, ``batch[curve]``,
        ``to_arviz()``, ``save()``) plus ``population`` and ``joint_diagnostics``.

    Raises
    ------
    PoolingError
        Unknown or repeated names in ``share``, an empty ``share``, fewer than 2 curves that can
        be fitted, or an unsupported ``pooling``.

    References
    ----------
    Gelman et al. 2013, Bayesian Data Analysis, ch. 5; Betancourt & Girolami 2015,
    arXiv:1312.0906.

    Examples
    --------
    >>> import bayescale as bs
    >>> from bayescale.pooling import synthetic_family
    >>> curves, truth, population = synthetic_family(12, seed=0)
    >>> batch = bs.fit_many(curves, "power_n", pooling="partial", share=["alpha"])  # doctest: +SKIP
    >>> batch.population                                  # doctest: +SKIP
    >>> batch.predict(N=1e10)                             # doctest: +SKIP
    """
    start_wall = time.perf_counter()
    if pooling not in POOLINGS:
        raise PoolingError(
            f"unknown pooling {pooling!r}; choose 'none' (independent curves) or 'partial' "
            "(hierarchical); for complete pooling fit all points together with bs.fit"
        )
    if pooling == "none":
        raise PoolingError("pooling='none' is bs.fit_many without pooling; call it directly")
    if mass not in MASSES:
        raise PoolingError(f"mass must be 'block' or 'diag', got {mass!r}")
    spec = build_model(law, likelihood=likelihood, priors=priors, df=df)
    law = spec.law
    share = _check_share(spec, share, allow_empty=True)
    collide = [n for n in law.param_names if n.startswith(("mu_", "tau_", "z_"))]
    if share and collide:
        raise PoolingError(f"law {law.name!r} has parameters {collide} that clash with pooling")
    config = SamplerConfig(
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        num_chains=int(num_chains),
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=10 if max_tree_depth is None else int(max_tree_depth),
        dense_mass=False,
        chain_method="sequential",
    )
    _validate_config(config)

    entries = _batch._split_curves(data, curve, dict(columns or {}), sep=sep)
    ids = [cid for cid, _, _ in entries]
    if len(set(ids)) != len(ids):
        raise DataError(
            "duplicate curve ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1}))
        )
    num = len(entries)
    datas: list[ScalingData | None] = [d for _, d, _ in entries]
    messages = [m for _, _, m in entries]
    for i, d in enumerate(datas):
        if d is not None and not messages[i]:
            messages[i] = _validate_curve(ids[i], d, law, spec)
    valid = np.array([d is not None and not messages[i] for i, d in enumerate(datas)], dtype=bool)
    index = np.flatnonzero(valid)
    if index.size < 2:
        why = "; ".join(m for m in messages if m)
        raise PoolingError(
            f"pooling needs at least 2 curves that can be fitted, got {index.size} of {num}"
            + (f" ({why})" if why else "")
            + "; fit a single curve with bs.fit"
        )

    # Reference points: per curve, or one for the inputs of all curves.
    refs = {k: np.full(num, np.nan) for k in (*law.inputs, "loss")}
    for i in index:
        for k, v in reference_point(datas[i], law.inputs).items():
            refs[k][i] = v
    if common_reference is None:
        common_reference = not all(_reference_free(law, s) for s in share)
    if common_reference:
        for k in law.inputs:
            refs[k][index] = np.mean(refs[k][index])
    centre = {k: float(np.mean(v[index])) for k, v in refs.items()}
    loc, scale = population_moments(spec, share, centre)

    length = engine.bucket_length(max(len(datas[i]) for i in index))
    log_x = [{k: datas[i].log_inputs()[k] for k in law.inputs} for i in index]
    xs, ys, mask = engine.pad_curves(log_x, [datas[i].log_loss for i in index], length)
    ref_arg = {k: v[index] for k, v in refs.items()}
    ref_arg["pop_loc"], ref_arg["pop_scale"] = loc, scale
    if centred is None:
        fewest = min(len(datas[i]) for i in index)
        centred = fewest >= CENTRED_POINTS_PER_PARAMETER * len(spec.site_names)
    pooled = PooledSpec(spec, share, centred=bool(centred))
    dim = 2 * len(share) + index.size * len(spec.site_names)
    config = SamplerConfig(**{**config.__dict__, "dense_mass": mass == "block"})
    key, seed = as_key(rng_key)

    from tqdm.auto import tqdm

    per_chain = config.num_warmup + config.num_samples
    bar = tqdm(
        total=config.num_chains * per_chain,
        desc=f"pooled {law.name} ({index.size} curves, {dim} dims)",
        unit="it",
        disable=not progress,
        leave=False,
    )
    timing = {"compile_s": 0.0, "sampling_s": 0.0, "num_chunks": 0}

    def report(chain: int, iteration: int) -> None:
        bar.n = chain * per_chain + iteration
        bar.refresh()

    def run(cfg: SamplerConfig, label: str):
        bar.reset()
        bar.set_postfix_str(f"{label}; compiling if new shapes")
        draws, t = run_pooled(
            pooled,
            cfg,
            log_x=xs,
            ref=ref_arg,
            log_loss=ys,
            mask=mask,
            rng_key=key,
            mass=mass,
            progress=report if progress else None,
        )
        bar.set_postfix_str(f"{label} done")
        timing["compile_s"] += t["compile_s"]
        timing["sampling_s"] += t["sampling_s"]
        timing["num_chunks"] += 1
        return _unpack(draws, pooled, ref_arg, index, num, cfg)

    try:
        samples, stats, population = run(config, "fit")
        diag, status = _diagnose_joint(samples, stats, population, spec, valid)
        retried = np.zeros(num, dtype=bool)
        if retry and np.isin(status[valid], ("divergences", "rhat_high")).any():
            config = SamplerConfig(**{**config.__dict__, "target_accept_prob": RETRY_TARGET_ACCEPT})
            samples, stats, population = run(
                config, f"re-fit at target_accept_prob={RETRY_TARGET_ACCEPT}"
            )
            diag, status = _diagnose_joint(samples, stats, population, spec, valid)
            retried[valid] = True
    finally:
        bar.close()
    status = np.where(valid, status, "invalid_input")
    result = PooledBatchFit(
        spec=spec,
        curve_ids=tuple(ids),
        data=tuple(datas),
        ref=refs,
        samples=samples,
        sample_stats=stats,
        config=config,
        diagnostics=diag,
        status=status,
        messages=tuple(messages),
        retried=retried,
        timing={**timing, "wall_s": time.perf_counter() - start_wall},
        seed=seed,
        share=share,
        population_draws=population,
        common_reference=bool(common_reference),
        centred=bool(centred),
        mass=mass,
    )
    bad = valid & (status != "ok")
    if bad.any() or not valid.all():
        joint = result.joint_diagnostics
        counts = pd.Series(status[status != "ok"]).value_counts()
        warnings.warn(
            f"{int(np.sum(status != 'ok'))} of {num} curves did not converge or could not be "
            "fitted ("
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + f"); the joint model had {joint['divergences']} divergent transitions (shared by "
            f"all curves), worst R-hat {joint['max_rhat']:.3f}, lowest bulk ESS "
            f"{joint['min_ess_bulk']:.0f}; see .population and .summary()['status']",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def fit_many_pooled(
    data: Any,
    law: str | Law,
    *,
    pooling: str,
    share: Sequence[str] | str | None,
    client: Any = None,
    devices: Any = None,
    dtype: str = "float64",
    batch_size: int | None = None,
    dense_mass: bool = True,
    **kwargs: Any,
) -> PooledBatchFit:
    """Entry point of ``fit_many(pooling=..., share=...)``: checks the options of the batch
    engine that one joint model cannot honour, then calls :func:`fit_pooled`.

    ``batch_size`` (one joint model: nothing to chunk) and ``dense_mass`` (the joint model
    adapts a diagonal mass matrix; :func:`fit_pooled` offers per-curve dense blocks with
    ``mass="block"``) are ignored.
    """
    if pooling not in POOLINGS:
        raise PoolingError(
            f"unknown pooling {pooling!r}; choose 'none' (independent curves) or 'partial' "
            "(hierarchical); for complete pooling fit all points together with bs.fit"
        )
    if pooling == "none":
        raise PoolingError(f"share={share!r} needs pooling='partial'")
    spec = build_model(law, likelihood=kwargs.get("likelihood", "lognormal"), df=kwargs.get("df"))
    _check_share(spec, share)  # non-empty, known names; raises listing the allowed ones
    if client is not None:
        raise PoolingError(
            "client= is not supported with pooling: the curves form one joint model, sampled "
            "in one process"
        )
    if devices is not None:
        raise PoolingError(
            "devices= is not supported with pooling; the joint model runs its chains one "
            "after another on the default device"
        )
    if dtype != "float64":
        raise PoolingError(f"pooling runs in float64 only, got dtype={dtype!r}")
    return fit_pooled(data, law, pooling=pooling, share=share, **kwargs)


def _unpack(draws, pooled: PooledSpec, ref, index, num, config):
    """Joint draws -> per-curve draws (curve, chain, draw) of the base model's sites, broadcast
    sampler stats, and the population draws (chain, draw) on the natural scale."""
    spec = pooled.base
    raw = {k: np.asarray(v, dtype=np.float64) for k, v in draws["samples"].items()}
    shape = (num, config.num_chains, config.num_samples)
    samples = {k: np.full(shape, np.nan) for k in spec.site_names}
    population = {}
    for s, member in zip(pooled.share, pooled.member_names, strict=True):
        t = pooled.transform(s, ref)
        mu, tau = raw[f"mu_{s}"], raw[f"tau_{s}"]
        u = pooled.unconstrained_value(
            s, {f"mu_{s}": mu[..., None], f"tau_{s}": tau[..., None]}, raw[member]
        )
        samples[s][index] = np.moveaxis(np.asarray(t(jnp.asarray(u))), -1, 0)
        population[f"mu_{s}"] = np.asarray(t(jnp.asarray(mu)))
        population[f"tau_{s}"] = tau
    for k in pooled.unshared:
        samples[k][index] = np.moveaxis(raw[k], -1, 0)
    stats = {}
    for k in ("diverging", "num_steps", "energy", "accept_prob", "potential_energy"):
        v = np.asarray(draws[k])
        stats[k] = np.broadcast_to(v, shape).copy()
    stats["num_steps"] = stats["num_steps"].astype(np.int32)
    stats["depth_hit"] = at_depth_cap(stats["num_steps"], config.max_tree_depth).astype(np.float32)
    stats["step_size"] = np.broadcast_to(np.asarray(draws["step_size"]), shape[:2]).copy()
    stats["warmup_divergences"] = np.broadcast_to(
        np.asarray(draws["warmup_divergences"]), shape[:2]
    ).astype(np.int32)
    outside = ~np.isin(np.arange(num), index)  # curves not in the joint model (bad input)
    for k in ("energy", "accept_prob", "potential_energy", "step_size"):
        stats[k][outside] = np.nan
    # ... and none of its divergences or steps, as fit_many reports such curves
    stats["diverging"][outside] = False
    for k in ("num_steps", "depth_hit", "warmup_divergences"):
        stats[k][outside] = 0
    return samples, stats, population


def _population_diagnostics(population: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = list(population)
    if not names:
        empty = np.zeros(0)
        return {
            "name": np.array([], dtype=str),
            "r_hat": empty,
            "ess_bulk": empty,
            "ess_tail": empty,
        }
    stacked = np.stack([population[k] for k in names])  # (site, chain, draw)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "name": np.array(names, dtype=str),
            "r_hat": engine.rhat_rank(stacked),
            "ess_bulk": engine.ess_bulk(stacked),
            "ess_tail": engine.ess_tail(stacked),
        }


def _diagnose_joint(samples, stats, population, spec, valid):
    """Per-curve diagnostics (as fit_many) and statuses that also account for the population:
    a curve is ``ok`` only when the joint model converged for its parameters and for the
    population's (its posterior depends on both)."""
    diag = _batch._diagnose(samples, stats, spec)
    pop = _population_diagnostics(population)
    with_pop = dict(diag)
    if len(pop["name"]):
        n = len(valid)
        with_pop["r_hat"] = np.concatenate([diag["r_hat"], np.tile(pop["r_hat"], (n, 1))], 1)
        for k in ("ess_bulk", "ess_tail"):
            with_pop[k] = np.concatenate([diag[k], np.tile(pop[k], (n, 1))], 1)
    status = _batch._status(with_pop, valid)
    return diag, status


# ============================================================================= the result
@dataclass(frozen=True, eq=False, repr=False)
class PooledBatchFit(_batch.BatchFit):
    """A :class:`~bayescale.batch.BatchFit` from one joint, partially pooled model.

    Everything a ``BatchFit`` offers works the same (each curve's draws are its slice of the
    joint chains). Differences: sampler statistics (divergences, energy, step size, ``lp``) are
    those of the joint model, identical for every curve; a curve's status also reflects the
    convergence of the population parameters.

    Attributes
    ----------
    share
        The pooled parameters.
    population_draws
        ``mu_<name>`` (population median of the parameter: its value at ``z = 0``, natural
        scale) and ``tau_<name>`` (population SD in the parameter's unconstrained space: log
        for a positive parameter, logit for one in (0, 1)), each (chain, draw).
    common_reference
        Whether all curves' inputs were centred on one reference point.
    centred, mass
        Parametrisation and mass matrix of the joint sampler (see :func:`fit_pooled`).
    """

    share: tuple[str, ...] = ()
    population_draws: Mapping[str, np.ndarray] = field(default_factory=dict)
    common_reference: bool = False
    centred: bool = False
    mass: str = "diag"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "share", tuple(self.share))
        object.__setattr__(
            self,
            "population_draws",
            MappingProxyType({k: _batch._readonly(v) for k, v in self.population_draws.items()}),
        )

    def _curve_config(self, i: int) -> SamplerConfig:
        """Every curve's draws come from the joint run, whose ``config`` is already that of
        its re-fit when there was one."""
        return self.config

    def _site_diagnostics(self, i: int) -> tuple[dict, dict, dict, dict]:
        """The curve's sites and the population's (``mu_*``, ``tau_*``): a curve's posterior
        depends on both, so its :meth:`convergence`, ``message``, :attr:`fails_badly` (the
        refusals of ``predict``) and ``batch[curve]`` judge both, as its status does."""
        draws, rhat, bulk, tail = super()._site_diagnostics(i)
        pop = self.population_diagnostics
        draws.update(self.population_draws)
        rhat.update(pop["r_hat"].to_dict())
        bulk.update(pop["ess_bulk"].to_dict())
        tail.update(pop["ess_tail"].to_dict())
        return draws, rhat, bulk, tail

    # ------------------------------------------------------------------ population
    def transforms(self) -> dict[str, Any]:
        """Per shared name, the map from its unconstrained population scale to its value."""
        ref = {k: float(np.nanmean(v)) for k, v in self.ref.items()}
        return {s: PooledSpec(self.spec, self.share).transform(s, ref) for s in self.share}

    @cached_property
    def population_diagnostics(self) -> pd.DataFrame:
        """R-hat and bulk/tail ESS of every population parameter (``mu_*``, ``tau_*``)."""
        d = _population_diagnostics(self.population_draws)
        return pd.DataFrame(
            {k: d[k] for k in ("r_hat", "ess_bulk", "ess_tail")}, index=list(d["name"])
        )

    def population_summary(self, prob: float = 0.9, *, seed: int = 0) -> pd.DataFrame:
        """One row per shared parameter: the population median ``mu`` (natural scale), the
        spread ``tau`` (unconstrained scale, see ``transform``), the predictive interval of the
        parameter for a new curve of the family (``new_*``), and joint-model diagnostics.

        Values are on the law's sampled scale: an exponent is the exponent, but ``logit_ref``
        of the slope-form sigmoid is ``k * (log C_ref - log C0)`` with the common reference of
        ``self.ref``.

        Parameters
        ----------
        prob
            Mass of the central intervals.
        seed
            Seed of the new-curve draws ``T(mu + tau * eps)``.
        """
        _batch._check_prob(prob, self._draws_per_curve)
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        rng = np.random.default_rng(seed)
        diag = self.population_diagnostics
        rows = {}
        for s, t in self.transforms().items():
            mu = self.population_draws[f"mu_{s}"].reshape(-1)
            tau = self.population_draws[f"tau_{s}"].reshape(-1)
            u = np.asarray(t.inv(jnp.asarray(mu)))
            new = np.asarray(t(jnp.asarray(u + tau * rng.standard_normal(u.shape))))
            row = {"transform": transform_name(t)}
            for name, v in (("mu", mu), ("tau", tau), ("new", new)):
                row[f"{name}_median"], row[f"{name}_lower"], row[f"{name}_upper"] = np.percentile(
                    v, [50, lo, hi]
                )
            names = [f"mu_{s}", f"tau_{s}"]
            row["max_rhat"] = float(diag.loc[names, "r_hat"].max())
            row["min_ess_bulk"] = float(diag.loc[names, "ess_bulk"].min())
            row["min_ess_tail"] = float(diag.loc[names, "ess_tail"].min())
            rows[s] = row
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "parameter"
        out.attrs["prob"] = prob
        return out

    @property
    def population(self) -> pd.DataFrame:
        """:meth:`population_summary` at 90%."""
        from .results import _default_intervals

        with _default_intervals():
            return self.population_summary()

    @property
    def joint_diagnostics(self) -> dict[str, Any]:
        """Diagnostics of the joint model: divergences (shared by all curves), worst R-hat and
        lowest bulk/tail ESS over the population and every fitted curve's parameters, mean
        leapfrog steps per draw, lowest E-BFMI."""
        fitted = self.fitted
        d, p = self.diagnostics, self.population_diagnostics
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = np.concatenate([d["r_hat"][fitted].ravel(), p["r_hat"].to_numpy()])
            bulk = np.concatenate([d["ess_bulk"][fitted].ravel(), p["ess_bulk"].to_numpy()])
            tail = np.concatenate([d["ess_tail"][fitted].ravel(), p["ess_tail"].to_numpy()])
        first = int(np.flatnonzero(fitted)[0]) if fitted.any() else 0
        st = self.sample_stats
        return {
            "divergences": int(st["diverging"][first].sum()),
            "max_rhat": float(np.nanmax(rhat)) if rhat.size else float("nan"),
            "min_ess_bulk": float(np.nanmin(bulk)) if bulk.size else float("nan"),
            "min_ess_tail": float(np.nanmin(tail)) if tail.size else float("nan"),
            "mean_num_steps": float(st["num_steps"][first].mean()),
            "min_bfmi": float(d["min_bfmi"][first]),
            "num_curves": int(fitted.sum()),
        }

    # ------------------------------------------------------------------ containers
    def _attrs(self) -> dict[str, Any]:
        attrs = super()._attrs()
        attrs["pooling"] = json.dumps(
            {
                "pooling": "partial",
                "share": list(self.share),
                "common_reference": self.common_reference,
                "centred": self.centred,
                "mass": self.mass,
            }
        )
        return attrs

    def to_arviz(self, *, log_likelihood: bool | None = None):
        """As :meth:`BatchFit.to_arviz`, plus the population variables ``mu_<name>`` and
        ``tau_<name>`` (dims chain, draw) in the ``posterior`` group and a ``pooling`` attribute
        (JSON: shared names, common reference, parametrisation, mass matrix)."""
        import xarray as xr

        container = super().to_arviz(log_likelihood=log_likelihood)
        node = container["posterior"]
        for k, v in self.population_draws.items():
            node[k] = xr.DataArray(np.asarray(v), dims=("chain", "draw"))
        return container

    # ------------------------------------------------------------------ display
    def _header(self) -> str:
        return (
            super()._header()
            + f"; partial pooling of {', '.join(self.share) or 'nothing'} (one joint model, "
            + ("centred" if self.centred else "non-centred")
            + ")"
        )


def _from_container(batch: _batch.BatchFit, container: Any) -> PooledBatchFit:
    """Rebuild a :class:`PooledBatchFit` from a batch read by :func:`bayescale.load_batch` and
    its container (hook of ``load_batch`` for files written by a pooled fit)."""
    from . import _arviz_compat as azc

    post = azc.group(container, "posterior")
    info = json.loads(str(post.attrs["pooling"]))
    share = tuple(info["share"])
    population = {}
    for s in share:
        for p in ("mu", "tau"):
            population[f"{p}_{s}"] = np.asarray(post[f"{p}_{s}"])
    base = {f.name: getattr(batch, f.name) for f in fields(_batch.BatchFit)}
    return PooledBatchFit(
        **base,
        share=share,
        population_draws=population,
        common_reference=bool(info["common_reference"]),
        centred=bool(info.get("centred", False)),
        mass=str(info.get("mass", "diag")),
    )


# ============================================================================= synthetic data
def synthetic_family(
    num_curves: int,
    *,
    seed: int = 0,
    num_points: tuple[int, int] = (5, 6),
    decades: float = 1.0,
    alpha_median: float = 0.35,
    alpha_spread: float = 0.15,
    sigma: float = 0.02,
    anchors: int = 0,
    anchor_points: int = 12,
    anchor_decades: float = 2.0,
) -> tuple[ScalingData, pd.DataFrame, dict[str, float]]:
    """A family of short ``power_n`` curves whose exponents come from one population.

    Curve ``k``: ``L = E_k + A_k N^-alpha_k`` with ``log alpha_k ~ Normal(log alpha_median,
    alpha_spread)``; at the curve's geometric-mean ``N`` the loss is uniform in 2-4 and its
    reducible fraction is drawn from Beta(1.5, 1.5) (the ``power_n`` prior of ``frac``, so the
    unshared parameters follow the model's priors and its intervals can be checked for
    calibration); 5-6 points (``num_points``) evenly spaced in log over ``decades`` decades
    starting between 1e6 and 1e8; lognormal noise ``sigma``. Few points over a short range: each
    curve alone barely identifies its exponent (law of Hestness et al. 2017). The first
    ``anchors`` curves are long instead (``anchor_points`` points over ``anchor_decades``
    decades): a family with a few well-measured members and many short new ones.

    Returns
    -------
    data, truth, population
        Curves with ids ``fam_00``, ...; the true ``E, A, alpha, sigma`` per curve (indexed by
        id, with ``N_max`` the largest observed ``N`` and ``anchor``); the population
        ``{"alpha_median", "alpha_spread"}``.

    Examples
    --------
    >>> data, truth, pop = synthetic_family(4, seed=1)
    >>> len(data.curve_ids), sorted(pop)
    (4, ['alpha_median', 'alpha_spread'])
    """
    from .data import from_arrays

    rng = np.random.default_rng(seed)
    ns, losses, curves, rows = [], [], [], {}
    for k in range(num_curves):
        cid = f"fam_{k:02d}"
        n = int(rng.integers(num_points[0], num_points[1] + 1))
        low = rng.uniform(6.0, 8.0)
        span = decades
        if k < anchors:
            n, span = int(anchor_points), float(anchor_decades)
        N = 10 ** np.linspace(low, low + span, n)
        alpha = float(np.exp(np.log(alpha_median) + alpha_spread * rng.standard_normal()))
        level, frac = rng.uniform(2.0, 4.0), rng.beta(1.5, 1.5)
        n_ref = np.exp(np.mean(np.log(N)))
        E, A = level * (1.0 - frac), level * frac * n_ref**alpha
        mean = E + A * N**-alpha
        rows[cid] = {
            "E": E,
            "A": A,
            "alpha": alpha,
            "sigma": sigma,
            "N_max": N.max(),
            "anchor": k < anchors,
        }
        ns.append(N)
        losses.append(mean * np.exp(sigma * rng.standard_normal(n)))
        curves.append(np.full(n, cid, dtype=object))
    data = from_arrays(
        N=np.concatenate(ns), loss=np.concatenate(losses), curve=np.concatenate(curves)
    )
    truth = pd.DataFrame.from_dict(rows, orient="index")
    return data, truth, {"alpha_median": alpha_median, "alpha_spread": alpha_spread}
