"""Single-dataset NUTS: one jit-compiled program for warm-up and sampling of all chains.

NumPyro's ``MCMC`` object compiles per instance; bayescale instead builds the whole run
(dispersed initialisation, warm-up with step-size and dense mass-matrix adaptation, sampling) as
one ``jax.jit`` function of the data arrays, cached per (model, sampler settings). A second fit of
the same law on same-shaped data therefore reuses the compiled program: no recompilation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.util import potential_energy

from ..model import ModelSpec


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings (hashable: part of the compile-cache key).

    Parameters
    ----------
    num_warmup, num_samples
        Warm-up (adaptation) and kept iterations per chain. Cost is linear in their sum.
    num_chains
        Independent chains, vectorised in one program (needed for R-hat; 4 by default).
    target_accept_prob
        Step-size adaptation target; higher is slower but removes divergences in the funnel-like
        geometry of ``E`` against the exponents.
    max_tree_depth
        NUTS tree depth cap (at most ``2**max_tree_depth`` leapfrog steps per draw).
    dense_mass
        Adapt a dense mass matrix (the law parameters are strongly correlated).
    chain_method
        ``"auto"`` (default: ``"parallel"`` over local devices when there are several, else
        ``"sequential"``), ``"parallel"`` (chains sharded over devices with ``jax.shard_map``),
        ``"vectorized"`` (vmap chains in one program) or ``"sequential"`` (``lax.map``).
    regularize_mass
        Shrink each adapted mass matrix towards ``1e-3 * I`` as Stan and NumPyro do
        (``(n / (n + 5)) * cov + 1e-3 * 5 / (n + 5)``; default). The shrinkage is absolute,
        so it swamps the variance of a well-identified parameter (posterior sd well under
        0.03, e.g. the log loss at the reference point, sd about sigma / sqrt(n)) and the step
        size must shrink by the ratio of the scales: on curves measured to 1e-4 the chains stop
        mixing. It also damps the step size in funnels, which is why it stays on for the
        first pass (without it the first-pass gate of ``power_n``'s SBC fell from 88% to
        76%, by divergences). The automatic retry of a fit that missed the policy *without*
        divergences turns it off (``bayescale.batch.retry_config``, ``bs.fit``'s retry).
    """

    num_warmup: int = 500
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.9
    max_tree_depth: int = 10
    dense_mass: bool = True
    chain_method: str = "auto"
    regularize_mass: bool = True


def _transforms(spec: ModelSpec, ref: Mapping[str, Any]) -> dict[str, Any]:
    return {name: biject_to(spec.prior(name, ref).support) for name in spec.site_names}


#: Prior draws per site behind the dispersed starts' centre (their median); they are also the
#: fallback starts of :func:`finite_init`.
PRIOR_POOL = 64


def _prior_draws(spec: ModelSpec, ref, rng_key, num_chains: int):
    """Dispersed starts (:func:`dispersed_init`) and the ``PRIOR_POOL`` unconstrained prior
    draws per site behind their centre, from one sampling per site."""
    starts, pool = {}, {}
    keys = jax.random.split(rng_key, len(spec.site_names))
    for key, name in zip(keys, spec.site_names, strict=True):
        prior = spec.prior(name, ref)
        t = biject_to(prior.support)
        draws = t.inv(prior.sample(key, (PRIOR_POOL + num_chains,)))
        centre = jnp.median(draws[:PRIOR_POOL], axis=0)
        starts[name] = centre + 0.5 * (draws[PRIOR_POOL:] - centre)
        pool[name] = draws[:PRIOR_POOL]
    return starts, pool


def dispersed_init(spec: ModelSpec, ref, rng_key, num_chains: int) -> dict[str, jnp.ndarray]:
    """Dispersed initial points in unconstrained space, one per chain.

    Each chain starts halfway between the unconstrained prior median (over ``PRIOR_POOL`` = 64
    prior draws) and its own prior draw: dispersed on the prior's scale, so R-hat can detect
    multimodality, but away from the prior's extreme tails.
    """
    return _prior_draws(spec, ref, rng_key, num_chains)[0]


def _pick(use, new, old):
    """Per chain (axis 0): ``new`` where ``use``, else ``old``."""
    return jnp.where(use.reshape(use.shape + (1,) * (old.ndim - 1)), new, old)


def finite_init(pe, inits, candidates):
    """Each chain's start where the potential energy is finite.

    ``inits`` holds one point per chain (leading axis), ``candidates`` more per chain (leading
    axes: try, chain). A chain keeps its dispersed point when the potential ``pe`` is finite
    there (so fits of well-behaved models are unchanged, draw for draw);
    otherwise it starts at its first finite candidate. A chain with none keeps its point: it
    then never moves, and the diagnostics say so (:attr:`Convergence.stuck_chains
    <bayescale.results.Convergence.stuck_chains>`). Without this a user law that gives a loss
    <= 0 (no log) at a start left that chain stuck there, every draw divergent, and R-hat
    blamed the chains' disagreement. NumPyro's own initialisation retries in the same way
    (``find_valid_initial_params``).

    The tries run in a ``lax.while_loop`` that stops once every chain has a finite start (at
    once for a well-behaved model), with one vectorised evaluation of the potential in its
    body. Only the value is checked: testing the gradient too added about as much again to
    every sampler program's compile (chinchilla: 5.1 s without the search, 5.1-6.1 s with
    values, 6.1-6.6 s with gradients, on the 2-core CPU). A start whose value is finite but
    whose gradient is not (a ``jnp.where`` NaN trap) is not moved; the diagnostics name its
    chain as stuck.
    """
    finite = jax.vmap(lambda u: jnp.isfinite(pe(u)))
    tries = jax.tree_util.tree_map(lambda x, c: jnp.concatenate([x[None], c]), inits, candidates)
    num = jax.tree_util.tree_leaves(tries)[0].shape[0]

    def cond(carry):
        t, _, ok = carry
        return (t < num) & ~jnp.all(ok)

    def body(carry):
        t, x, ok = carry
        cand = jax.tree_util.tree_map(lambda c: c[t], tries)
        use = ~ok & finite(cand)
        return t + 1, jax.tree_util.tree_map(lambda a, c: _pick(use, c, a), x, cand), ok | use

    chains = jax.tree_util.tree_leaves(inits)[0].shape[0]
    _, out, _ = lax.while_loop(cond, body, (0, inits, jnp.zeros(chains, dtype=bool)))
    return out


def finite_blocks(pe, inits, candidates, shared: str):
    """:func:`finite_init` block by block, for a joint density that is a sum of independent
    blocks given the ``shared`` one (the pooled model's curves given the population), where
    a joint prior draw valid for every curve at once is rare.

    For a chain whose start is not finite, each block whose gradient is not finite is
    replaced by the first candidate block (with the chain's own ``shared`` block) whose
    gradient is; chains with a finite start are unchanged. A block is judged by its gradient,
    the only per-block part of one evaluation: a law's NaN or infinite log loss enters the
    likelihood's residual and makes that gradient non-finite. A chain still not finite after
    the repair is reported as stuck by the diagnostics.
    """

    def finite_grads(grad):
        return {k: jnp.all(jnp.isfinite(g)) for k, g in grad.items()}

    # one value and gradient per chain at the starts: the chain's and each block's verdict
    value, grad = jax.vmap(jax.value_and_grad(pe))(inits)
    ok_now = jax.vmap(finite_grads)(grad)  # block -> (chain,)
    ok = jnp.isfinite(value) & jnp.all(jnp.stack(list(ok_now.values())), axis=0)
    ok_now.pop(shared, None)
    mixed = dict(candidates)
    if shared in inits:
        mixed[shared] = jnp.broadcast_to(inits[shared], candidates[shared].shape)
    ok_c = jax.vmap(jax.vmap(lambda u: finite_grads(jax.grad(pe)(u))))(mixed)  # (try, chain)
    out = dict(inits)
    chains = jnp.arange(ok.shape[0])
    for k in ok_now:
        first = jnp.argmax(ok_c[k], axis=0)  # first finite candidate block (0 when none)
        use = ~(ok | ok_now[k]) & jnp.any(ok_c[k], axis=0)
        out[k] = _pick(use, candidates[k][first, chains], inits[k])
    return out


def start_points(spec: ModelSpec, ref, rng_key, num_chains: int, pe, dtype):
    """Dispersed starts in ``dtype``, each moved to a finite one (:func:`finite_init`) when its
    log density is not finite, and the candidates tried: the ``PRIOR_POOL`` prior draws behind
    the starts' centre, ``PRIOR_POOL // num_chains`` per chain (leading axes: try, chain).
    Shared by the single-fit, batch and pooled programs. The candidates need no sampling of
    their own, so the dispersed points, and every fit whose starts are all finite, are as
    before."""
    inits, pool = _prior_draws(spec, ref, rng_key, num_chains)
    per = max(PRIOR_POOL // num_chains, 1)
    tries = {
        k: jnp.resize(v, (per * num_chains, *v.shape[1:]))
        .reshape((per, num_chains, *v.shape[1:]))
        .astype(dtype)
        for k, v in pool.items()
    }
    inits = {k: v.astype(dtype) for k, v in inits.items()}
    return finite_init(pe, inits, tries), tries


def _potential(spec: ModelSpec, data):
    """The model's potential energy (negative log density) at an unconstrained point."""
    return lambda u: potential_energy(spec, data, {}, u)


def draw_record(state) -> dict[str, Any]:
    """What every sampler keeps of one NUTS draw: the unconstrained position ``z`` and the
    statistics the diagnostics read (shared by the single, batch and pooled programs)."""
    return {
        "z": state.z,
        "diverging": state.diverging,
        "num_steps": state.num_steps,
        "energy": state.energy,
        "accept_prob": state.accept_prob,
        "potential_energy": state.potential_energy,
    }


def nuts_chain(spec: ModelSpec, config: SamplerConfig, key, init, data, target_accept_prob):
    """Run one NUTS chain (warm-up then draws) as a traceable JAX function.

    Shared by the single-fit program (this module) and the batch program
    (:mod:`bayescale.infer.batch`), so both run the same sampler. ``data`` is the model's
    ``(log_x, ref, log_loss, mask)``; ``target_accept_prob`` may be traced (the batch engine
    retries failed curves with a higher target without recompiling).
    """

    init_kernel, sample_kernel = hmc(potential_fn=_potential(spec, data), algo="NUTS")
    state = init_kernel(
        init,
        config.num_warmup,
        target_accept_prob=target_accept_prob,
        dense_mass=config.dense_mass,
        max_tree_depth=config.max_tree_depth,
        rng_key=key,
        regularize_mass_matrix=config.regularize_mass,
    )

    state, draws = run_kernel(sample_kernel, state, config.num_warmup, config.num_samples)
    return draws


def run_kernel(sample_kernel, state, num_warmup: int, num_samples: int, tick=None):
    """Warm-up and draws of one chain in a single loop (shared by every sampler program).

    NumPyro's ``sample_kernel`` adapts while ``state.i < num_warmup`` and then stops, so one
    loop over ``num_warmup + num_samples`` iterations runs the same chain as a warm-up scan
    followed by a draw scan. It traces and compiles the NUTS kernel (tree building, energy,
    adaptation) once instead of twice. The draws are written into preallocated buffers and the
    warm-up's divergences and leapfrog steps summed in the carry, so nothing of the warm-up is
    stored. ``tick(i)`` (optional) runs after iteration ``i`` (progress reports).

    Returns the final state and the draws: :func:`draw_record` fields with a leading
    ``num_samples`` axis, plus ``step_size``, ``warmup_num_steps`` and
    ``warmup_divergences``.
    """
    record = jax.eval_shape(draw_record, state)
    buffers = jax.tree_util.tree_map(lambda a: jnp.zeros((num_samples, *a.shape), a.dtype), record)
    zero = jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int_))

    def body(i, carry):
        state, buffers, warm_div, warm_steps = carry
        state = sample_kernel(state)
        if tick is not None:
            tick(i)
        warming = i < num_warmup
        warm_div = warm_div + (warming & state.diverging)
        warm_steps = warm_steps + jnp.where(warming, state.num_steps, 0)
        # warm-up iterations write slot 0, which the first draw then overwrites: an in-place
        # update either way, never a copy of the buffers
        j = jnp.maximum(i - num_warmup, 0)
        buffers = jax.tree_util.tree_map(
            lambda b, v: lax.dynamic_update_index_in_dim(b, v, j, 0), buffers, draw_record(state)
        )
        return state, buffers, warm_div, warm_steps

    state, draws, warm_div, warm_steps = lax.fori_loop(
        0, num_warmup + num_samples, body, (state, buffers, zero, zero)
    )
    draws["step_size"] = state.adapt_state.step_size
    draws["warmup_num_steps"] = warm_steps
    draws["warmup_divergences"] = warm_div
    return state, draws


def _make_runner(spec: ModelSpec, config: SamplerConfig):
    def one_chain(key, init, data):
        return nuts_chain(spec, config, key, init, data, config.target_accept_prob)

    def chains_in_sequence(keys, inits, data):
        return lax.map(lambda a: one_chain(a[0], a[1], data), (keys, inits))

    def run(rng_key, log_x, ref, log_loss, mask):
        init_key, chain_key = jax.random.split(rng_key)
        data = (log_x, ref, log_loss, mask)
        inits, _ = start_points(  # in the data's dtype: the float32 opt-in
            spec, ref, init_key, config.num_chains, _potential(spec, data), log_loss.dtype
        )
        keys = jax.random.split(chain_key, config.num_chains)
        method = resolve_chain_method(config)
        if method == "vectorized":
            draws = jax.vmap(one_chain, (0, 0, None))(keys, inits, data)
        elif method == "parallel":
            mesh = jax.make_mesh((_parallel_devices(config.num_chains),), ("chain",))
            spec_c, spec_r = PartitionSpec("chain"), PartitionSpec()
            keys, inits = jax.sharding.reshard((keys, inits), NamedSharding(mesh, spec_c))
            draws = jax.shard_map(
                chains_in_sequence,
                mesh=mesh,
                in_specs=(spec_c, spec_c, spec_r),
                out_specs=spec_c,
                check_vma=False,
            )(keys, inits, data)
        else:
            draws = chains_in_sequence(keys, inits, data)
        t = _transforms(spec, ref)
        draws["samples"] = {k: t[k](v) for k, v in draws.pop("z").items()}
        return draws

    return jax.jit(run)


def _parallel_devices(num_chains: int) -> int:
    n = min(jax.local_device_count(), num_chains)
    while num_chains % n:
        n -= 1
    return n


def resolve_chain_method(config: SamplerConfig) -> str:
    """``"auto"`` -> ``"parallel"`` when several local devices can share the chains, else
    ``"sequential"`` (on one CPU device sequential chains compile 3x faster than vectorised ones
    and sample as fast, because vectorised lanes wait for the deepest NUTS tree)."""
    if config.chain_method != "auto":
        return config.chain_method
    return "parallel" if _parallel_devices(config.num_chains) > 1 else "sequential"


_RUNNERS: dict[tuple, Any] = {}
_EXECUTABLES: dict[tuple, Any] = {}


def compiled_sampler(spec: ModelSpec, config: SamplerConfig):
    """The jitted sampler for (model, settings), built once and reused across fits."""
    key = (spec.key, config)
    if key not in _RUNNERS:
        _RUNNERS[key] = _make_runner(spec, config)
    return _RUNNERS[key]


def _signature(args) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves))


def run_nuts(
    spec: ModelSpec,
    config: SamplerConfig,
    *,
    log_x: Mapping[str, np.ndarray],
    ref: Mapping[str, float],
    log_loss: np.ndarray,
    rng_key,
    mask: np.ndarray | None = None,
    dtype=np.float64,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run NUTS; return NumPy draws (``samples``: site -> (chain, draw), plus sampler stats)
    and timings ``{"compile_s", "sampling_s"}``.

    The program is compiled ahead of time once per (model, settings, shapes, dtypes) and kept in
    a module cache: a second fit on same-shaped data compiles nothing (``compile_s == 0``).
    """
    if mask is None:
        mask = np.ones(np.shape(log_loss), dtype=bool)
    args = (
        rng_key,
        {k: np.asarray(v, dtype=dtype) for k, v in log_x.items()},
        {k: np.asarray(v, dtype=dtype) for k, v in ref.items()},
        np.asarray(log_loss, dtype=dtype),
        np.asarray(mask, dtype=bool),
    )
    key = (spec.key, config, _signature(args))
    compile_s = 0.0
    if key not in _EXECUTABLES:
        start = time.perf_counter()
        # float32 is traced with x64 off, as the batch engine does: under x64 the float64
        # initial points and constants promote the whole chain back to float64.
        with jax.enable_x64(np.dtype(dtype) != np.float32):
            _EXECUTABLES[key] = compiled_sampler(spec, config).lower(*args).compile()
        compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(_EXECUTABLES[key](*args))
    sampling_s = time.perf_counter() - start
    draws = jax.tree_util.tree_map(np.asarray, out)
    return draws, {"compile_s": compile_s, "sampling_s": sampling_s}


def log_likelihood(spec: ModelSpec, samples, log_x, ref, log_loss, mask=None) -> np.ndarray:
    """Pointwise log-likelihood (chain, draw, point), computed in JAX."""
    return np.asarray(_loglik_fn(spec)(samples, log_x, ref, log_loss, mask))


_LOGLIK: dict[tuple, Any] = {}


def pointwise_loglik(spec: ModelSpec):
    """Unjitted pointwise log-likelihood over draws: (chain, draw, point).

    Shared by single fits (:func:`log_likelihood`) and the batch engine, which vmaps it over
    curves.
    """

    def single(params, log_x, ref, log_loss, mask):
        tr = handlers.trace(handlers.substitute(spec, params)).get_trace(log_x, ref, log_loss, mask)
        site = tr["obs"]
        return site["fn"].log_prob(site["value"])

    return jax.vmap(jax.vmap(single, (0, None, None, None, None)), (0, None, None, None, None))


def _loglik_fn(spec: ModelSpec):
    if spec.key not in _LOGLIK:
        _LOGLIK[spec.key] = jax.jit(pointwise_loglik(spec))
    return _LOGLIK[spec.key]
