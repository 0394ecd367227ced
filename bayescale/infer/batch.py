"""Batch NUTS: one compiled program fits many curves at once (vmap over curves and chains).

The program is the single-fit sampler of :mod:`bayescale.infer.nuts` (dispersed initialisation,
warm-up with per-chain step-size and dense mass-matrix adaptation, NUTS draws), vmapped over the
chains of a curve and over the curves of a chunk, and sharded over devices with
``jax.shard_map``. It is compiled ahead of time once per (model, settings, padded length, chunk
size, devices) and cached, so a second call with the same shapes compiles nothing.

Why capped tree depth
---------------------
A vmapped ``while_loop`` runs until its slowest lane is done: every lane of a vmapped NUTS waits
for the deepest tree in the batch (DESIGN.md §6, lane utilisation 0.23 at 100 curves). One curve
whose warm-up wanders into a depth-10 tree makes all others pay 1,023 leapfrog steps. Capping the
depth bounds that waste. Measured on the 2-core CPU machine, ``power_n``, 100 curves x 2 chains x
(500 + 1000) draws: depth 10 took 755 ms per curve, depth 5 95 ms, depth 4 55 ms, with median
bulk ESS 1002 / 950 / 924 (a cap costs little ESS on reference-centred laws, whose posteriors
need about 10 leapfrog steps per draw). Fixed-length HMC (every lane 8 steps, step size adapted
per chain) was cheaper per draw but its adaptation failed on 43% of transitions. Capped NUTS
remains a valid MCMC kernel; its correctness in batch mode is checked by "batch equals single"
and by interval coverage over 200-1,000 synthetic curves (tests/test_batch.py).

The chains of a curve run one after another (``lax.map``) inside the vmap over curves when
``config.chain_method == "sequential"`` (what :func:`bayescale.fit_many` uses): the curves
already fill the vector lanes, sampling is as fast as vmapping the chains too, and the program
compiles 2.7x faster (20 s against 54 s for ``power_n`` on the loaded 2-core machine).

Ragged curves are padded to a bucketed common length (:func:`bucket_length`) with copies of their
first point and masked out of the likelihood, so padding never changes a posterior.

The convergence diagnostics (:func:`rhat_rank`, :func:`ess_bulk`, :func:`ess_tail`,
:func:`mcse_mean`, :func:`bfmi`) are vectorised NumPy ports of Vehtari et al. (2021) as
implemented by ArviZ, over any leading axes: a batch of 10,000 curves is diagnosed in seconds
instead of minutes through per-curve ArviZ calls.

References
----------
Hoffman & Gelman 2014, The No-U-Turn Sampler, JMLR 15. Vehtari, Gelman, Simpson, Carpenter &
Bürkner 2021, Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC, Bayesian Analysis 16(2).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec
from scipy import stats
from scipy.fft import next_fast_len

from ..model import ModelSpec
from .nuts import SamplerConfig, _potential, _signature, _transforms, nuts_chain, start_points

__all__ = [
    "bfmi",
    "bucket_length",
    "compiled_batch_sampler",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "mcse_mean",
    "pad_curves",
    "rhat_rank",
    "run_batch",
]


# ----------------------------------------------------------------------------- padding
def bucket_length(n: int, *, minimum: int = 8) -> int:
    """Padded length of a curve of ``n`` points: the smallest ``m * 2**k >= n`` with
    ``m`` in 4..7 (at most 25% padding, four buckets per doubling), and at least ``minimum``.

    Bucketing keeps the number of compiled programs small while one long curve does not make
    all others pay for its length.

    >>> [bucket_length(n) for n in (5, 20, 21, 33, 60, 780)]
    [8, 20, 24, 40, 64, 896]
    """
    n = max(int(n), int(minimum))
    quantum = 2 ** max(int(np.floor(np.log2(n))) - 2, 0)
    return int(-(-n // quantum) * quantum)


def pad_curves(
    log_x: Sequence[Mapping[str, np.ndarray]],
    log_loss: Sequence[np.ndarray],
    length: int,
    dtype: Any = np.float64,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Stack ragged curves into (curve, length) arrays plus a boolean mask of real points.

    Padded slots repeat the curve's first point (finite values, so a masked-out term has zero
    value *and* zero gradient; NaN padding would leak NaN through the gradient of the mask).
    """
    num = len(log_loss)
    names = list(log_x[0]) if num else []
    xs = {k: np.empty((num, length), dtype=dtype) for k in names}
    ys = np.empty((num, length), dtype=dtype)
    mask = np.zeros((num, length), dtype=bool)
    for i, (x, y) in enumerate(zip(log_x, log_loss, strict=True)):
        n = len(y)
        if n > length:
            raise ValueError(f"curve {i} has {n} points, more than the padded length {length}")
        mask[i, :n] = True
        ys[i, :n], ys[i, n:] = y, y[0]
        for k in names:
            xs[k][i, :n], xs[k][i, n:] = x[k], x[k][0]
    return xs, ys, mask


# ----------------------------------------------------------------------------- the program
def _make_batch_runner(spec: ModelSpec, config: SamplerConfig, devices: tuple[Any, ...]):
    def one_chain(key, init, data, target):
        return nuts_chain(spec, config, key, init, data, target)

    def one_curve(rng_key, target, log_x, ref, log_loss, mask):
        # Same key derivation as the single fit (nuts.py): a curve's draws depend only on its
        # own key and data, never on which chunk or device it landed in.
        init_key, chain_key = jax.random.split(rng_key)
        data = (log_x, ref, log_loss, mask)
        inits, _ = start_points(
            spec, ref, init_key, config.num_chains, _potential(spec, data), log_loss.dtype
        )
        keys = jax.random.split(chain_key, config.num_chains)
        if config.chain_method == "sequential":
            draws = lax.map(lambda a: one_chain(a[0], a[1], data, target), (keys, inits))
        else:
            draws = jax.vmap(one_chain, (0, 0, None, None))(keys, inits, data, target)
        t = _transforms(spec, ref)
        draws["samples"] = {k: t[k](v) for k, v in draws.pop("z").items()}
        return draws

    batched = jax.vmap(one_curve)
    if len(devices) > 1:
        # shard_map, not sharding annotations: each device runs its own while-loops, so lanes
        # on one device never wait for the deepest tree on another.
        mesh = jax.sharding.Mesh(np.asarray(devices), ("curve",))
        spec_c = PartitionSpec("curve")
        batched = jax.shard_map(
            batched, mesh=mesh, in_specs=spec_c, out_specs=spec_c, check_vma=False
        )

    def _batch_run(keys, target, log_x, ref, log_loss, mask):
        return batched(keys, target, log_x, ref, log_loss, mask)

    return jax.jit(_batch_run)


_RUNNERS: dict[tuple, Any] = {}
_EXECUTABLES: dict[tuple, Any] = {}


def _device_key(devices: Sequence[Any]) -> tuple:
    return tuple((d.platform, d.id) for d in devices)


def _program_config(config: SamplerConfig) -> SamplerConfig:
    """The settings the compiled program depends on: the target acceptance probability is a
    run-time argument (per curve), so re-fits at another target share one program."""
    return dataclasses.replace(config, target_accept_prob=0.5)


def compiled_batch_sampler(spec: ModelSpec, config: SamplerConfig, devices: Sequence[Any]):
    """The jitted batch sampler for (model, settings, devices), built once and reused."""
    devices = tuple(devices)
    config = _program_config(config)
    key = (spec.key, config, _device_key(devices))
    if key not in _RUNNERS:
        _RUNNERS[key] = _make_batch_runner(spec, config, devices)
    return _RUNNERS[key]


def run_batch(
    spec: ModelSpec,
    config: SamplerConfig,
    *,
    keys: np.ndarray,
    log_x: Mapping[str, np.ndarray],
    ref: Mapping[str, np.ndarray],
    log_loss: np.ndarray,
    mask: np.ndarray,
    devices: Sequence[Any] | None = None,
    dtype: Any = np.float64,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run NUTS on a chunk of padded curves; return NumPy draws with a leading curve axis.

    Parameters
    ----------
    keys
        One PRNG key per curve, shape (curve, 2).
    log_x, log_loss, mask
        Padded log inputs, log loss and mask of real points, each (curve, length).
    ref
        Reference point per curve: input name / ``"loss"`` -> (curve,).
    devices
        Devices to shard the curve axis over (default: all local devices of the default
        backend). The chunk size must be a multiple of their number.

    Returns
    -------
    draws, timing
        ``draws["samples"]``: site -> (curve, chain, draw); ``diverging``, ``energy``,
        ``num_steps``, ``accept_prob``, ``potential_energy``: (curve, chain, draw);
        ``step_size``, ``warmup_num_steps``, ``warmup_divergences``: (curve, chain).
        ``timing``: ``compile_s`` (0 when the program was cached) and ``sampling_s``.
    """
    devices = tuple(jax.local_devices() if devices is None else devices)
    size = np.shape(log_loss)[0]
    if size % len(devices):
        raise ValueError(f"chunk of {size} curves does not split over {len(devices)} devices")
    args = (
        np.asarray(keys),
        np.full(size, config.target_accept_prob, dtype=dtype),
        {k: np.asarray(v, dtype=dtype) for k, v in log_x.items()},
        {k: np.asarray(v, dtype=dtype) for k, v in ref.items()},
        np.asarray(log_loss, dtype=dtype),
        np.asarray(mask, dtype=bool),
    )
    key = (spec.key, _program_config(config), _signature(args), _device_key(devices))
    compile_s = 0.0
    if key not in _EXECUTABLES:
        start = time.perf_counter()
        # float32 programs are traced with x64 off: under x64, NumPyro's NUTS mixes float64
        # constants (mass matrix, step size) into a float32 state and fails to trace.
        with jax.enable_x64(np.dtype(dtype) != np.float32):
            lowered = compiled_batch_sampler(spec, config, devices).lower(*args)
            _EXECUTABLES[key] = lowered.compile()
        compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(_EXECUTABLES[key](*args))
    sampling_s = time.perf_counter() - start
    draws = jax.tree_util.tree_map(np.asarray, out)
    return draws, {"compile_s": compile_s, "sampling_s": sampling_s}


def num_compiled() -> int:
    """How many batch programs have been compiled in this process (for tests and benchmarks)."""
    return len(_EXECUTABLES)


# ----------------------------------------------------------------------------- diagnostics
# Vectorised ports of ArviZ 0.23's rank-normalized R-hat and ESS (Vehtari et al. 2021). Every
# function takes draws of shape (..., chain, draw) and returns one value per leading index.


def _split_chains(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., -half:]], axis=-2)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalise over all chains and draws (Blom's offset 3/8, average ranks for ties)."""
    shape = x.shape
    flat = x.reshape(*shape[:-2], -1)
    rank = stats.rankdata(flat, method="average", axis=-1)
    size = flat.shape[-1]
    return stats.norm.ppf((rank - 0.375) / (size + 0.25)).reshape(shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    chain_mean = x.mean(axis=-1)
    within = x.var(axis=-1, ddof=1).mean(axis=-1)
    between = n * chain_mean.var(axis=-1, ddof=1)
    return np.sqrt((between / within + n - 1) / n)


def _autocov(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    m = next_fast_len(2 * n)
    x = x - x.mean(axis=-1, keepdims=True)
    f = np.fft.rfft(x, n=m, axis=-1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=-1)[..., :n] / n


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of (..., chain, draw) draws: Geyer's initial positive then monotone sequence, in the
    exact form of ArviZ's ``_ess`` (vectorised: the sequential loops become a first-crossing
    index and a cumulative minimum)."""
    x = np.asarray(x, dtype=float)
    num_chains, n = x.shape[-2:]
    size = num_chains * n
    acov = _autocov(x)
    mean_var = acov[..., 0].mean(axis=-1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if num_chains > 1:
        var_plus = var_plus + x.mean(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[..., None] - acov.mean(axis=-2)) / var_plus[..., None]
    rho[..., 0] = 1.0
    # Pairs j = (rho[2j], rho[2j+1]); ArviZ computes pair j >= 1 while 2j - 1 < n - 3 and the
    # previous pair's sum is > 0, so the last pair computed is J = the first j with a
    # non-positive sum, or the last computable pair.
    jmax = max((n - 2) // 2, 0)
    while 2 * jmax - 1 >= n - 3 and jmax > 0:
        jmax -= 1
    pairs = rho[..., 0 : 2 * jmax + 2 : 2] + rho[..., 1 : 2 * jmax + 2 : 2]
    stop = pairs <= 0
    stop[..., -1] = True
    last = np.argmax(stop, axis=-1)
    monotone = np.minimum.accumulate(pairs, axis=-1)
    before = np.arange(jmax + 1) < last[..., None]
    even_last = np.take_along_axis(rho, (2 * last)[..., None], axis=-1)[..., 0]
    pair_last = np.take_along_axis(pairs, last[..., None], axis=-1)[..., 0]
    tail = np.where((pair_last >= 0) | (even_last > 0), even_last, 0.0)
    tau = -1.0 + 2.0 * np.sum(np.where(before, monotone, 0.0), axis=-1) + tail
    tau = np.maximum(tau, 1.0 / np.log10(size))
    ess = size / tau
    ess = np.where(np.isnan(rho).any(axis=-1), np.nan, ess)
    constant = (x.max(axis=(-2, -1)) - x.min(axis=(-2, -1))) < np.finfo(float).resolution
    return np.where(constant, float(size), ess)


def _valid(x: np.ndarray, min_chains: int) -> np.ndarray:
    ok = ~np.isnan(x).any(axis=(-2, -1))
    return ok & (x.shape[-1] >= 4) & (x.shape[-2] >= min_chains)


def _nan_safe(x: np.ndarray) -> np.ndarray:
    """Draws with NaN rows replaced by a harmless ramp (their results are masked to NaN)."""
    bad = np.isnan(x).any(axis=(-2, -1))
    if not bad.any():
        return x
    x = np.array(x, dtype=float)
    x[bad] = np.arange(x.shape[-2] * x.shape[-1], dtype=float).reshape(x.shape[-2:])
    return x


def rhat_rank(x: np.ndarray) -> np.ndarray:
    """Rank-normalized split R-hat: the larger of the bulk and folded (tail) R-hat.

    Parameters
    ----------
    x
        Draws of shape (..., chain, draw); NaN draws or fewer than 2 chains give NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> bool(abs(rhat_rank(rng.normal(size=(3, 4, 500)))[0] - 1) < 0.01)
    True

    References
    ----------
    Vehtari et al. 2021, Bayesian Analysis 16(2), Sec. 4.
    """
    x = np.asarray(x, dtype=float)
    valid = _valid(x, 2)
    split = _split_chains(_nan_safe(x))
    bulk = _rhat(_z_scale(split))
    median = np.median(split.reshape(*split.shape[:-2], -1), axis=-1)[..., None, None]
    tail = _rhat(_z_scale(np.abs(split - median)))
    return np.where(valid, np.maximum(bulk, tail), np.nan)


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk effective sample size: ESS of the rank-normalized split chains (Vehtari et al. 2021).

    >>> rng = np.random.default_rng(0)
    >>> bool(ess_bulk(rng.normal(size=(4, 1000)))[()] > 3000)
    True
    """
    x = np.asarray(x, dtype=float)
    return np.where(_valid(x, 1), _ess(_z_scale(_split_chains(_nan_safe(x)))), np.nan)


def ess_tail(x: np.ndarray, prob: tuple[float, float] = (0.05, 0.95)) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the indicators of the 5% and 95%
    quantiles (type-7 quantiles of all draws), over split chains (Vehtari et al. 2021)."""
    x = np.asarray(x, dtype=float)
    safe = _nan_safe(x)
    flat = safe.reshape(*safe.shape[:-2], -1)
    out = []
    for p in prob:
        q = np.quantile(flat, p, axis=-1)[..., None, None]
        out.append(_ess(_split_chains((safe <= q).astype(float))))
    return np.where(_valid(x, 1), np.minimum(*out), np.nan)


def ess_mean(x: np.ndarray) -> np.ndarray:
    """ESS of the mean (split chains, no rank normalisation)."""
    x = np.asarray(x, dtype=float)
    return np.where(_valid(x, 1), _ess(_split_chains(_nan_safe(x))), np.nan)


def mcse_mean(x: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean: sd / sqrt(ESS of the mean)."""
    x = np.asarray(x, dtype=float)
    flat = x.reshape(*x.shape[:-2], -1)
    with np.errstate(invalid="ignore"):
        return flat.std(axis=-1, ddof=1) / np.sqrt(ess_mean(x))


def bfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from the Hamiltonian energy of shape (..., chain, draw) (Betancourt
    2016): mean squared energy change over the energy variance."""
    energy = np.asarray(energy, dtype=float)
    num = np.mean(np.diff(energy, axis=-1) ** 2, axis=-1)
    return num / energy.var(axis=-1, ddof=1)
