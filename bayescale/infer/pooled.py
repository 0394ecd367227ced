"""The joint NumPyro model of hierarchical (partial) pooling across curves, and its sampler.

Curves ``k = 1..K`` of related models share a population distribution of some law parameters
(``share``). Each shared parameter is written in the unconstrained space of its own prior
(``u = T^{-1}(theta)``: log for a positive parameter, logit for one in (0, 1), identity for a
real one) and drawn from a Normal population in the *non-centred* parametrisation

``theta_k = T(mu + tau * z_k)``,  ``z_k ~ Normal(0, 1)``,

which keeps the funnel between ``tau`` and the ``theta_k`` out of the sampler's way (Papaspiliopoulos,
Roberts & Sköld 2007; Betancourt & Girolami 2015). The hyperpriors are derived from the law's own
prior of the parameter: with ``m0, s0`` its mean and standard deviation in unconstrained space,
``mu ~ Normal(m0, s0 / sqrt 2)`` and ``tau ~ HalfNormal(s0 / sqrt 2)``, so the implied prior of
any one curve's parameter has the mean and (on average over ``tau``) the variance of the law's
default prior. Unshared parameters and the noise keep the law's per-curve priors, centred on each
curve's reference point.

The likelihood is the one of :class:`~bayescale.model.ModelSpec` itself, run with every sampled
site substituted and hidden (``handlers.block``), so all likelihoods (lognormal, Student-t,
Laplace, normal, beta, binomial) and user prior overrides work unchanged. Ragged curves are padded
to a common length and masked out of the likelihood as in the batch engine.

:class:`PooledSpec` duck-types :class:`~bayescale.model.ModelSpec` (``key``, ``site_names``,
``prior(name, ref)``, ``__call__(log_x, ref, log_loss, mask)``), so the joint model runs through
the compiled, cached single-fit sampler of :mod:`bayescale.infer.nuts`: one ahead-of-time program
per (law, likelihood, shared names, settings, number of curves, padded length), reused by every
later fit of the same shapes. The population moments ``m0, s0`` travel in the ``ref`` argument
(``ref["pop_loc"]``, ``ref["pop_scale"]``), so new data never recompile.

References
----------
Gelman et al. 2013, Bayesian Data Analysis (3rd ed.), ch. 5 (hierarchical models).
Papaspiliopoulos, Roberts & Sköld 2007, A general framework for the parametrization of
hierarchical models, Statistical Science 22(1). Betancourt & Girolami 2015, Hamiltonian Monte
Carlo for hierarchical models, arXiv:1312.0906.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.util import potential_energy

from ..model import ModelSpec
from .nuts import (
    SamplerConfig,
    _potential,
    _signature,
    _transforms,
    finite_blocks,
    run_kernel,
    start_points,
)

__all__ = ["PooledSpec", "num_compiled", "population_moments", "run_pooled", "transform_name"]

#: Prior draws used to estimate the unconstrained mean / SD of a prior without a closed form.
MOMENT_DRAWS = 20_000
_SQRT2 = math.sqrt(2.0)


def _curve_ref(ref: Mapping[str, Any], inputs: Sequence[str]) -> dict[str, Any]:
    return {k: ref[k] for k in (*inputs, "loss")}


def _per_curve(d, num: int):
    """Distribution ``d`` with batch shape (num,): rebuilt from broadcast parameters where the
    class allows (``Beta(...).expand`` keeps a scalar inner Dirichlet that broadcasts by rank
    promotion), else ``expand``."""
    shape = jnp.broadcast_shapes(d.batch_shape, (num,))
    if d.batch_shape == shape:
        return d
    try:
        params = {k: jnp.broadcast_to(getattr(d, k), shape) for k in d.arg_constraints}
        return type(d)(**params)
    except (TypeError, ValueError, AttributeError):
        return d.expand(shape)


@dataclass(frozen=True, eq=False)
class PooledSpec:
    """The joint model of ``K`` curves with partially pooled parameters ``share``.

    Parameters
    ----------
    base
        The per-curve model (law, likelihood, priors).
    share
        Names of the sampled sites of ``base`` that are pooled (``base.site_names``).
    centred
        Sample each curve's unconstrained value ``u_k ~ Normal(mu, tau)`` directly (site
        ``u_<name>``) instead of the non-centred ``z_k`` (site ``z_<name>``,
        ``u_k = mu + tau z_k``). Same posterior, different geometry.

    Notes
    -----
    Sites: ``mu_<name>`` and ``tau_<name>`` (scalars; ``mu`` in unconstrained space),
    ``z_<name>`` or ``u_<name>`` (K,) for every shared name, then every other site of ``base``
    with shape (K,). ``ref`` holds per-curve reference points (K,) plus ``pop_loc`` /
    ``pop_scale`` (one entry per shared name, in ``share`` order).
    """

    base: ModelSpec
    share: tuple[str, ...]
    centred: bool = False

    @property
    def key(self) -> tuple:
        """Compile-cache key: the base model, the shared names and the parametrisation."""
        return ("pooled", self.base.key, self.share, self.centred)

    @property
    def law(self):
        return self.base.law

    @property
    def unshared(self) -> tuple[str, ...]:
        """Per-curve sites with their own (unpooled) priors."""
        return tuple(n for n in self.base.site_names if n not in self.share)

    @property
    def population_names(self) -> tuple[str, ...]:
        return tuple(f"{p}_{s}" for s in self.share for p in ("mu", "tau"))

    @property
    def member_names(self) -> tuple[str, ...]:
        """Per-curve sites of the shared parameters: ``z_<name>`` (or ``u_<name>``)."""
        prefix = "u" if self.centred else "z"
        return tuple(f"{prefix}_{s}" for s in self.share)

    @property
    def site_names(self) -> tuple[str, ...]:
        return (*self.population_names, *self.member_names, *self.unshared)

    def transform(self, name: str, ref: Mapping[str, Any]):
        """Bijection from the real line onto the support of shared site ``name``."""
        return biject_to(self.base.prior(name, _curve_ref(ref, self.law.inputs)).support)

    def unconstrained_value(self, name: str, population: Mapping[str, Any], member):
        """``u_k`` of shared ``name`` from the population draws and the curve's site value."""
        if self.centred:
            return member
        return population[f"mu_{name}"] + population[f"tau_{name}"] * member

    def prior(self, name: str, ref: Mapping[str, Any], population=None):
        """Prior of site ``name`` (per-curve sites carry a batch shape (K,)). The centred
        ``u_<name>`` needs the ``population`` values ``{"mu_<name>": ..., "tau_<name>": ...}``;
        without them it gets its marginal moments (used for initialisation)."""
        num = jnp.shape(ref["loss"])[-1]
        for i, s in enumerate(self.share):
            loc, scale = ref["pop_loc"][i], ref["pop_scale"][i]
            if name == f"mu_{s}":
                return dist.Normal(loc, scale / _SQRT2)
            if name == f"tau_{s}":
                return dist.HalfNormal(scale / _SQRT2)
            if name == f"z_{s}":
                return _per_curve(dist.Normal(0.0, 1.0), num)
            if name == f"u_{s}":
                if population is None:
                    return _per_curve(dist.Normal(loc, scale), num)
                return _per_curve(dist.Normal(population[f"mu_{s}"], population[f"tau_{s}"]), num)
        return _per_curve(self.base.prior(name, _curve_ref(ref, self.law.inputs)), num)

    def __call__(self, log_x, ref, log_loss=None, mask=None):
        """The joint NumPyro model; ``log_x``, ``log_loss``, ``mask``: (K, length)."""
        num = jnp.shape(ref["loss"])[-1]
        population = {n: numpyro.sample(n, self.prior(n, ref)) for n in self.population_names}
        values = {}
        with numpyro.plate("curves", num):
            for s, member in zip(self.share, self.member_names, strict=True):
                m = numpyro.sample(member, self.prior(member, ref, population))
                values[s] = self.transform(s, ref)(self.unconstrained_value(s, population, m))
            for name in self.unshared:
                values[name] = numpyro.sample(name, self.prior(name, ref))
        column = {k: v[:, None] for k, v in values.items()}
        curve_ref = {k: v[:, None] for k, v in _curve_ref(ref, self.law.inputs).items()}
        # The per-curve likelihood of the base model, with its sampled sites fixed to the
        # values above and hidden from the joint density (their priors are counted above).
        likelihood = handlers.block(
            handlers.substitute(self.base, data=column), hide=list(self.base.site_names)
        )
        with numpyro.plate("curves_obs", num, dim=-2):
            likelihood(log_x, curve_ref, log_loss, mask)


def transform_name(transform) -> str:
    """Plain name of the unconstrained map of a shared parameter: log, logit, identity, ..."""
    from numpyro.distributions import transforms as tr

    if isinstance(transform, tr.IdentityTransform):
        return "identity"
    if isinstance(transform, tr.ExpTransform):
        return "log"
    if isinstance(transform, tr.SigmoidTransform):
        return "logit"
    if isinstance(transform, tr.ComposeTransform):
        parts = transform.parts
        if (
            len(parts) == 2
            and isinstance(parts[0], tr.SigmoidTransform)
            and isinstance(parts[1], tr.AffineTransform)
        ):
            return "scaled logit"
        if len(parts) == 2 and isinstance(parts[0], tr.ExpTransform):
            return "shifted log"
    return type(transform).__name__


def population_moments(
    base: ModelSpec, share: Sequence[str], ref: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of each shared parameter's prior in its unconstrained space, at ``ref``.

    Exact for Normal and LogNormal priors; otherwise estimated from
    :data:`MOMENT_DRAWS` prior draws with a fixed key (deterministic).

    Examples
    --------
    >>> from bayescale.model import build_model
    >>> loc, scale = population_moments(build_model("power_n"), ["alpha"], {"N": 0.0, "loss": 1.0})
    >>> round(float(np.exp(loc[0])), 3), round(float(scale[0]), 3)   # LogNormal(log 0.3, 0.75)
    (0.3, 0.75)
    """
    locs, scales = [], []
    for i, name in enumerate(share):
        prior = base.prior(name, ref)
        if isinstance(prior, dist.Normal | dist.LogNormal) and prior.batch_shape == ():
            loc, scale = float(prior.loc), float(prior.scale)
        else:
            t = biject_to(prior.support)
            draws = prior.sample(jax.random.PRNGKey(i), (MOMENT_DRAWS,))
            u = np.asarray(t.inv(draws), dtype=np.float64).reshape(MOMENT_DRAWS, -1)[:, 0]
            u = u[np.isfinite(u)]
            loc, scale = float(np.mean(u)), float(np.std(u))
        locs.append(loc)
        scales.append(max(scale, 1e-6))
    return np.asarray(locs, dtype=np.float64), np.asarray(scales, dtype=np.float64)


# ============================================================================= the sampler
#: Iterations between two progress reports from inside the compiled program.
REPORT_EVERY = 50
#: Mass matrices of the joint sampler.
MASSES = ("block", "diag")
_PROGRESS: list[Callable[[int, int], None]] = []


def _report(chain, iteration) -> None:
    """Host side of the in-program progress callback: forwards to the active reporter."""
    if _PROGRESS:
        _PROGRESS[-1](int(chain), int(iteration))


class _Layout:
    """Unconstrained coordinates of the joint model as ``(v, W)``: ``v`` (2S,) the population
    sites, ``W`` (K, P) one row per curve (its ``z_<name>`` / ``u_<name>`` then its unshared
    sites). The sampler sees ``{"population": v, "curve_0000": W[0], ...}``, so NumPyro can
    adapt one dense mass-matrix block per curve."""

    def __init__(self, spec: PooledSpec) -> None:
        self.population = spec.population_names
        self.curve = (*spec.member_names, *spec.unshared)

    def sites(self, v, w) -> dict[str, Any]:
        out = {name: v[..., i] for i, name in enumerate(self.population)}
        out.update({name: w[..., j] for j, name in enumerate(self.curve)})
        return out

    def stack(self, sites: Mapping[str, Any]) -> tuple[Any, Any]:
        """Site dict (leading axes, then the curve axis for per-curve sites) -> ``(v, W)``."""
        w = jnp.stack([sites[n] for n in self.curve], axis=-1)
        if self.population:
            v = jnp.stack([sites[n] for n in self.population], axis=-1)
        else:
            v = jnp.zeros((*w.shape[:-2], 0), w.dtype)
        return v, w

    @staticmethod
    def blocks(num: int) -> list[str]:
        return [f"curve_{k:04d}" for k in range(num)]

    def to_params(self, v, w) -> dict[str, Any]:
        out = {name: w[..., k, :] for k, name in enumerate(self.blocks(w.shape[-2]))}
        if self.population:
            out["population"] = v
        return out

    def from_params(self, params: Mapping[str, Any], num: int) -> tuple[Any, Any]:
        w = jnp.stack([params[name] for name in self.blocks(num)], axis=-2)
        if self.population:
            return params["population"], w
        return jnp.zeros((*w.shape[:-2], 0), w.dtype), w

    def dense_blocks(self, num: int) -> list[tuple[str, ...]]:
        """NumPyro ``dense_mass`` structure: one block per curve and one for the population."""
        out = [(name,) for name in self.blocks(num)]
        return [*out, ("population",)] if self.population else out


def _make_runner(spec: PooledSpec, config: SamplerConfig, mass: str, num: int):
    layout = _Layout(spec)
    dense = layout.dense_blocks(num) if mass == "block" else False

    def tick(chain, i):
        lax.cond(
            (i + 1) % REPORT_EVERY == 0,
            lambda: jax.debug.callback(_report, chain, i + 1),
            lambda: None,
        )

    def joint_potential(data):
        def pe(params):
            v, w = layout.from_params(params, num)
            return potential_energy(spec, data, {}, layout.sites(v, w))

        return pe

    def one_chain(chain, key, init, data, target):
        init_kernel, sample_kernel = hmc(potential_fn=joint_potential(data), algo="NUTS")
        state = init_kernel(
            init,
            config.num_warmup,
            target_accept_prob=target,
            dense_mass=dense,
            max_tree_depth=config.max_tree_depth,
            rng_key=key,
            regularize_mass_matrix=config.regularize_mass,
        )

        _, draws = run_kernel(
            sample_kernel,
            state,
            config.num_warmup,
            config.num_samples,
            tick=lambda i: tick(chain, i),
        )
        return draws

    def run(rng_key, target, log_x, ref, log_loss, mask):
        init_key, chain_key = jax.random.split(rng_key)
        data = (log_x, ref, log_loss, mask)
        keys = jax.random.split(chain_key, config.num_chains)
        chains = jnp.arange(config.num_chains)
        pe = _potential(spec, data)
        start, tries = start_points(spec, ref, init_key, config.num_chains, pe, log_loss.dtype)
        # a joint prior draw is rarely valid for every curve at once: repair curve by curve
        inits = finite_blocks(
            joint_potential(data),
            layout.to_params(*layout.stack(start)),
            layout.to_params(*layout.stack(tries)),
            "population",
        )
        # Chains one after another: the joint model's gradient already fills the vector units,
        # and a vmapped NUTS would make every chain wait for the deepest tree.
        draws = lax.map(lambda a: one_chain(a[0], a[1], a[2], data, target), (chains, keys, inits))
        v, w = layout.from_params(draws.pop("z"), num)
        t = _transforms(spec, ref)
        draws["samples"] = {k: t[k](x) for k, x in layout.sites(v, w).items()}
        return draws

    return jax.jit(run)


_EXECUTABLES: dict[tuple, Any] = {}


def _program_config(config: SamplerConfig) -> SamplerConfig:
    """Settings the program depends on: the target acceptance is a run-time argument, so the
    re-fit at 0.99 reuses the compiled program."""
    return dataclasses.replace(
        config, target_accept_prob=0.5, chain_method="sequential", dense_mass=False
    )


def num_compiled() -> int:
    """How many joint programs this process has compiled (for tests and benchmarks)."""
    return len(_EXECUTABLES)


def run_pooled(
    spec: PooledSpec,
    config: SamplerConfig,
    *,
    log_x: Mapping[str, np.ndarray],
    ref: Mapping[str, np.ndarray],
    log_loss: np.ndarray,
    mask: np.ndarray,
    rng_key,
    mass: str = "block",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run NUTS on the joint model; return NumPy draws and ``{"compile_s", "sampling_s"}``.

    The program (dispersed initialisation; per chain, in sequence, warm-up with step-size and
    mass-matrix adaptation, then the draws) is compiled ahead of time once per (model,
    settings, number of curves, padded length) and cached: a second fit of the same shapes, or
    the re-fit at a higher target acceptance, compiles nothing.

    Parameters
    ----------
    log_x, log_loss, mask
        Padded log inputs, log loss and mask of real points, each (curve, length).
    ref
        Per-curve reference points (curve,) and the population moments ``pop_loc``,
        ``pop_scale`` (shared name,).
    mass
        ``"block"`` (default): one dense mass-matrix block per curve (its parameters are
        strongly correlated: amplitude, exponent, irreducible loss) and one for the population,
        none across curves (their coupling goes through the population only). ``"diag"``: a
        diagonal mass matrix (cheaper per step, many more steps per draw on tight curves).
    progress
        Called as ``progress(chain, iteration)`` every :data:`REPORT_EVERY` iterations of each
        chain (from a host callback of the compiled program).

    Returns
    -------
    draws, timing
        ``draws["samples"]``: site -> (chain, draw, ...); ``diverging``, ``num_steps``,
        ``energy``, ``accept_prob``, ``potential_energy``: (chain, draw); ``step_size``,
        ``warmup_num_steps``, ``warmup_divergences``: (chain,).
    """
    if mass not in MASSES:
        raise ValueError(f"mass must be one of {MASSES}, got {mass!r}")
    args = (
        np.asarray(rng_key),
        np.asarray(config.target_accept_prob, dtype=np.float64),
        {k: np.asarray(v, dtype=np.float64) for k, v in log_x.items()},
        {k: np.asarray(v, dtype=np.float64) for k, v in ref.items()},
        np.asarray(log_loss, dtype=np.float64),
        np.asarray(mask, dtype=bool),
    )
    program = _program_config(config)
    key = (spec.key, program, mass, _signature(args))
    compile_s = 0.0
    if key not in _EXECUTABLES:
        start = time.perf_counter()
        runner = _make_runner(spec, program, mass, int(np.shape(log_loss)[0]))
        # NumPyro samples batched priors by broadcasting (sample shape x curve); allow it
        # even under a strict ``jax_numpy_rank_promotion`` setting.
        with jax.numpy_rank_promotion("allow"):
            _EXECUTABLES[key] = runner.lower(*args).compile()
        compile_s = time.perf_counter() - start
    _PROGRESS.append(progress or (lambda chain, iteration: None))
    try:
        start = time.perf_counter()
        out = jax.block_until_ready(_EXECUTABLES[key](*args))
        sampling_s = time.perf_counter() - start
    finally:
        _PROGRESS.pop()
    draws = jax.tree_util.tree_map(np.asarray, out)
    return draws, {"compile_s": compile_s, "sampling_s": sampling_s}
