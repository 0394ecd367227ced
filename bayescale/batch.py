"""``bayescale.fit_many``: NUTS for thousands of curves in one compiled program, and
:class:`BatchFit`, its result with a ``curve`` dimension.

The driver validates each curve on its own (a bad curve becomes ``status == "invalid_input"``;
the others still fit), pads curves into length buckets, cuts each bucket into chunks of at most
``batch_size`` curves, runs every chunk through the cached batch program of
:mod:`bayescale.infer.batch` (locally, or on the workers of a Dask / ``concurrent.futures``
executor), diagnoses all curves at once with vectorised rank-normalized R-hat and ESS, and
optionally re-fits failed curves at a higher target acceptance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import itertools
import json
import pickle
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
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
from ._fit import _validate_config, as_key, reference_point
from .data import (
    _DEFAULTS,
    DataError,
    DataWarning,
    ScalingData,
    TableRows,
    _ids,
    _line_numbers,
    as_scaling_data,
    curve_from_table,
    from_arrays,
    prediction_inputs,
    text_alias_columns,
    warn_text_aliases,
)
from .infer import batch as engine
from .infer.nuts import SamplerConfig, pointwise_loglik
from .laws import Law
from .laws import get as get_law
from .model import ModelSpec, build_model, check_dtype, check_proportions, predictive_draws
from .results import (
    BFMI_MIN,
    ESS_MIN,
    EXTRAPOLATION_WARN,
    RHAT_MAX,
    Convergence,
    ConvergenceWarning,
    ExtrapolationWarning,
    Fit,
    __version__,
    _check_prob,
    _default_intervals,
    above_data,
    at_depth_cap,
    convergence_of,
    depth_hits,
    name_list,
    ratio_beyond,
    ratio_note,
    stuck_chains,
    target_text,
)

__all__ = ["BatchFit", "fit_many", "load_batch", "synthetic_curves"]

#: Prior draws per curve behind the identifiability check of a batch (a single fit uses 20,000).
BATCH_PRIOR_DRAWS = 4000

#: Target acceptance probability of the automatic re-fit of failed curves (``bs.fit``: 0.99).
#: 0.999 rather than 0.99: the remaining failures of the re-fit are single divergent
#: transitions in the tails (an exponent near 0, a sigmoid midpoint far outside the data);
#: on Chinchilla's 200-simulation SBC 0.999 left 1 such fit where 0.995 left 4 (448 s for
#: the 200 fits; the tree-depth cap bounds the cost of the smaller steps).
RETRY_TARGET_ACCEPT = 0.999
#: Tree-depth cap of the automatic re-fit (at least; the first pass uses 5 by default).
RETRY_TREE_DEPTH = 8
#: The re-fit runs this many times the draws and keeps every ``RETRY_THIN``-th.
RETRY_THIN = 4
#: Per-curve statuses, in the order of precedence of :attr:`Convergence.status`.
STATUSES = ("ok", "divergences", "rhat_high", "ess_low", "bfmi_low", "invalid_input")
#: to_arviz() adds the pointwise log-likelihood when it has at most this many values.
LOG_LIKELIHOOD_MAX_VALUES = 50_000_000
#: One XLA compile of the batch program (about 8-20 s on the 2-core CPU machine) costs about as
#: much as sampling this many (padded point x chain x iteration) likelihood terms; the chunk
#: planner trades padding against extra compiled programs with it.
COMPILE_COST = 2e7


# ============================================================================= input handling
def _split_curves(
    data: Any, curve: str | list[str] | None, columns: Mapping[str, Any], *, sep: str = ","
) -> list[tuple[str, ScalingData | None, str]]:
    """(curve id, data or None, error message) per curve, each curve validated on its own.

    A CSV path is read with :func:`~bayescale.data.read_csv` (delimiter ``sep``): a file it
    cannot take as a whole (empty, not CSV, not UTF-8, a missing, ambiguous or duplicated
    column, ...) raises its :class:`~bayescale.data.DataError`; a bad value (NaN, <= 0, not a
    number) makes only its curve invalid.
    """

    def one(cid: str, obj: Any, **kwargs: Any) -> tuple[str, ScalingData | None, str]:
        try:
            if "rows" in kwargs:  # one curve's rows of a larger table
                return cid, curve_from_table(obj, **kwargs), ""
            return cid, as_scaling_data(obj, **kwargs), ""
        except DataError as exc:
            return cid, None, f"curve {cid!r}: {exc}"

    line_of, source = None, "<DataFrame>"
    if isinstance(data, str | Path):
        # Keywords that are not column options (thousands=, decimal=, encoding=, ...) are
        # pandas.read_csv's, as in bayescale.read_csv: both reads below use them.
        reading = {k: v for k, v in columns.items() if k not in (*_DEFAULTS, "parse_suffixes")}
        columns = {k: v for k, v in columns.items() if k not in reading}
        path, options = data, {**columns, **reading, **({} if curve is None else {"curve": curve})}
        try:
            data = as_scaling_data(path, sep=sep, **options)  # bayescale.read_csv's checks
        except DataError as exc:
            if curve is None or exc.row is None:
                raise  # the file as a whole (or its only curve) is bad
            # A bad value in some row: validate every curve on its own, below. The file parsed
            # with these options already, so pandas reads it again without error.
            data = pd.read_csv(path, sep=sep, index_col=False, **reading)
            line_of, source = _line_numbers(Path(path), sep, reading, len(data)), str(path)
        else:
            if curve is not None:
                return [(cid, d, "") for cid, d in data.curves().items()]
    if isinstance(data, ScalingData):
        if curve is not None:
            raise TypeError("curve= applies to a DataFrame or CSV; this ScalingData has its ids")
        return [(cid, d, "") for cid, d in data.curves().items()]
    if isinstance(data, pd.DataFrame):
        if curve is None:
            return [one("all", data, **columns)]
        names = [curve] if isinstance(curve, str) else list(curve)
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise DataError(
                f"curve column(s) {missing} not in the table; columns: {list(data.columns)}",
                column=missing[0],
            )
        data = data.reset_index(drop=True)  # errors name rows of the whole table, from 0
        # Generic-alias columns without numbers: left out of every curve, decided on the
        # whole table (a CSV's first read above has warned already).
        spec = {**_DEFAULTS, **{k: v for k, v in columns.items() if k in _DEFAULTS}}
        skipped = text_alias_columns(data, {**spec, "curve": curve})
        if source == "<DataFrame>":
            warn_text_aliases(data, skipped)
        data = data.drop(columns=[c for c in data.columns if str(c) in skipped])
        # A missing id (NaN, None, an empty CSV field) cannot be given to any curve: the
        # table is bad as a whole, as in read_csv(curve=...); the error names row and line.
        key = pd.Series(_ids("curve", [(c, data[c]) for c in names], len(data), line_of))
        out = []
        for cid, rows in data.groupby(key, sort=False):
            where = TableRows(rows.index.to_numpy(), line_of)
            sub = rows.reset_index(drop=True)
            out.append(one(str(cid), sub, rows=where, source=source, curve=curve, **columns))
        return out
    if isinstance(data, Mapping):
        return [one(str(cid), obj, **columns) for cid, obj in data.items()]
    if isinstance(data, Sequence):
        return [one(f"curve_{i}", obj, **columns) for i, obj in enumerate(data)]
    raise TypeError(
        f"cannot read curves from {type(data).__name__}; pass a ScalingData with a curve "
        "column, a DataFrame or CSV path with curve=, or a mapping of curve id -> data"
    )


def _rng_keys(rng_key: Any, num: int) -> tuple[np.ndarray, int | None]:
    """One raw key per curve, folded from ``rng_key`` (:func:`~bayescale._fit.as_key`)."""
    key, seed = as_key(rng_key)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num, dtype=jnp.uint32))
    return np.asarray(keys), seed


def _chunk_size(count: int, batch_size: int, num_devices: int) -> int:
    """Curves per compiled chunk: ``batch_size`` for full chunks, else the next power of two
    (so a handful of shapes serve every remainder), always a multiple of the device count."""
    size = batch_size if count >= batch_size else 1 << max(count - 1, 0).bit_length()
    size = min(max(size, num_devices), max(batch_size, num_devices))
    return -(-size // num_devices) * num_devices


# ============================================================================= remote chunks
_SPECS: dict[str, ModelSpec] = {}


def _spec_payload(spec: ModelSpec) -> tuple[str, Any]:
    """What a worker needs to rebuild the model, and a token naming it (its compile-cache key)."""
    law: Any = spec.law.name
    try:
        registered = get_law(spec.law.name) is spec.law
    except ValueError:
        registered = False
    if not registered:
        law = spec.law
    payload = (law, spec.likelihood, dict(spec.priors), spec.df, spec.trials)
    try:
        import cloudpickle

        blob = cloudpickle.dumps(payload)
    except ImportError:  # pragma: no cover - cloudpickle ships with dask
        blob = pickle.dumps(payload)
    return hashlib.sha1(blob).hexdigest(), payload


def _fit_chunk_remote(token: str, payload: tuple, config: SamplerConfig, arrays: dict, dtype: str):
    """Worker side: rebuild (once per process) the model and run one chunk with the cached
    program of this worker; returns NumPy draws and timings."""
    if token not in _SPECS:
        law, likelihood, priors, df, trials = payload
        _SPECS[token] = build_model(
            law, likelihood=likelihood, priors=priors or None, df=df, trials=trials
        )
    devices = jax.local_devices()
    count = len(devices)
    while len(arrays["log_loss"]) % count:
        count -= 1
    spec = _SPECS[token]
    return engine.run_batch(spec, config, dtype=np.dtype(dtype), devices=devices[:count], **arrays)


# ============================================================================= the driver
def fit_many(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    curve: str | list[str] | None = None,
    columns: Mapping[str, Any] | None = None,
    sep: str = ",",
    likelihood: str = "lognormal",
    priors: Mapping[str, Any] | None = None,
    df: float | None = None,
    trials: int | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    target_accept_prob: float = 0.9,
    max_tree_depth: int | None = None,
    dense_mass: bool = True,
    batch_size: int = 1024,
    rng_key: Any = 0,
    retry: bool = True,
    dtype: str = "float64",
    devices: Sequence[Any] | None = None,
    client: Any = None,
    progress: bool = True,
    pooling: str = "none",
    share: Sequence[str] | None = None,
) -> BatchFit:
    """Fit one law to many curves with NUTS, in one compiled program per shape.

    Every curve gets its own posterior (own reference point, priors, warm-up adaptation of step
    size and dense mass matrix per chain); the curves of a chunk and their chains are vmapped
    into one XLA program, compiled once per (law, padded length, chunk size) and reused.

    Parameters
    ----------
    data
        A :class:`~bayescale.data.ScalingData` with a curve column (``bs.read_csv(...,
        curve="task")``); a DataFrame or CSV path with ``curve=`` naming the id column(s); or a
        mapping ``curve id -> data`` (anything :func:`bs.fit <bayescale.fit>` accepts). With a
        DataFrame, CSV or mapping each curve is validated separately, so one bad curve is
        reported as ``invalid_input`` and the others still fit.
    law
        Law name or :class:`~bayescale.laws.Law`, the same for every curve.
    curve
        Curve id column(s) of a DataFrame or CSV.
    columns
        Column-name keywords for a DataFrame/CSV/mapping (``{"D": "Seen Examples",
        "loss": "Loss"}``) and ``parse_suffixes``, as in :func:`~bayescale.data.from_dataframe`;
        for a CSV path also keywords of ``pandas.read_csv`` (``{"thousands": ","}``,
        ``{"decimal": ","}``, ``{"encoding": "latin-1"}``), as in
        :func:`~bayescale.data.read_csv`.
    sep
        Delimiter of a CSV path (e.g. ``";"``). The file is read with
        :func:`~bayescale.data.read_csv` and its checks: a file it cannot take as a whole
        (empty, unparsable, a missing or ambiguous column) raises
        :class:`~bayescale.data.DataError`; a bad value makes only its curve ``invalid_input``.
    likelihood, priors, df, trials
        As in :func:`bayescale.fit` (``trials``: items per evaluation of the ``"binomial"``
        likelihood, the same for every curve).
    num_warmup, num_samples, num_chains
        NUTS iterations and chains per curve. Cost is linear in
        ``curves * num_chains * (num_warmup + num_samples)``; the result holds
        ``curves * num_chains * num_samples`` draws of each parameter in host memory.
    target_accept_prob, dense_mass
        NUTS settings, as in :func:`bayescale.fit`.
    max_tree_depth
        NUTS tree-depth cap (at most ``2**max_tree_depth - 1`` leapfrog steps per draw).
        ``None``: 5, lower than ``fit``'s 10 because vmapped lanes wait for the deepest tree of
        the chunk: 5 is 8x faster than 10 at 100 curves for the same ESS on reference-centred
        laws (10 with ``pooling="partial"``: one joint model, no lanes to wait for).
    batch_size
        Curves per chunk: device memory is bounded by one chunk (about
        ``batch_size * num_chains * num_samples * 80`` bytes of draws), so 100,000 curves run
        chunk after chunk. Larger chunks vectorise better; the last chunk of each length
        bucket is padded to a power of two.
    rng_key
        Integer seed or PRNG key. Curve ``i`` (input order) uses ``fold_in(key, i)``, so its
        draws do not depend on chunking, devices or executors.
    retry
        Re-fit every curve that misses the convergence policy (divergences, R-hat > 1.01,
        bulk or tail ESS < 400, E-BFMI < 0.3) once, in chunks of failing curves
        (:func:`retry_config`): twice the warm-up, four times the draws, a tree-depth cap of
        at least 8 and ``target_accept_prob=0.999``, keeping every fourth draw so that the
        stored shape stays ``(chain, num_samples)`` (a kept draw counts as divergent when any
        of its four transitions was). Curves that missed the policy without a divergence are
        re-fitted apart, with the mass matrix adapted without Stan's absolute shrinkage. Its
        diagnostics are those of the kept draws (E-BFMI: of all transitions); ``retried`` is
        set.
    dtype
        ``"float64"`` (default) or ``"float32"`` (faster on accelerators; posterior means
        agree with float64 within a fraction of a posterior SD on well-scaled curves).
    devices
        Devices to shard each chunk's curves over with ``jax.shard_map`` (default: all local
        devices; several GPUs, or CPU devices made with
        ``XLA_FLAGS=--xla_force_host_platform_device_count=K``).
    client
        A ``dask.distributed.Client`` or any ``concurrent.futures``-style executor (``submit``
        returning futures with ``result()``). Chunks are submitted to it; each worker process
        compiles the program once per shape and keeps it. Point it at a real cluster with
        ``Client("tcp://scheduler:8786")`` (workers need bayescale installed and see the same
        law registry; custom laws travel with the task through cloudpickle). On multi-host
        TPU/GPU pods, run ``jax.distributed.initialize()`` in each host process and call
        ``fit_many`` there on that host's share of the curves (``jax.process_index()``), then
        concatenate the saved batches; one host's chunks shard over its local devices.
    progress
        Show a tqdm progress bar per chunk.
    pooling, share
        ``"none"`` (default): every curve is fitted on its own. ``"partial"``: hierarchical
        pooling, one joint model in which the parameters named in ``share`` (e.g.
        ``["alpha", "beta"]``) of all curves come from a common population learnt from all
        curves; see :func:`bayescale.pooling.fit_pooled` (returns a
        :class:`~bayescale.pooling.PooledBatchFit` with ``.population``).

    Returns
    -------
    BatchFit
        ``summary()`` (one row per curve), ``predict()``, ``batch[curve_id]`` (a
        :class:`~bayescale.results.Fit`), ``to_arviz()``, ``save()``.

    Warns
    -----
    ConvergenceWarning
        Once, naming how many curves miss the convergence policy.

    References
    ----------
    Hoffman & Gelman 2014 (NUTS); Vehtari et al. 2021 (rank-normalized R-hat, ESS).

    Examples
    --------
    >>> import bayescale as bs
    >>> curves, truth = bs.batch.synthetic_curves(20, seed=0)
    >>> batch = bs.fit_many(curves, law="power_n", num_chains=2)   # doctest: +SKIP
    >>> batch.summary()[["status", "alpha_median", "alpha_lower", "alpha_upper"]]  # doctest: +SKIP
    >>> batch.predict(N=1e11)                                      # doctest: +SKIP
    >>> batch["curve_0007"].summary()                              # doctest: +SKIP
    """
    if pooling != "none" or share is not None:
        from .pooling import fit_many_pooled

        if trials is not None:
            raise ValueError(
                "pooling does not take the binomial likelihood (trials=) yet; fit the curves "
                "independently (pooling='none') or use likelihood='beta'"
            )

        return fit_many_pooled(
            data, law, pooling=pooling, share=share, curve=curve, columns=columns, sep=sep,
            likelihood=likelihood, priors=priors, df=df, num_warmup=num_warmup,
            num_samples=num_samples, num_chains=num_chains, target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth, dense_mass=dense_mass, batch_size=batch_size,
            rng_key=rng_key, retry=retry, dtype=dtype, devices=devices, client=client,
            progress=progress,
        )  # fmt: skip
    start_wall = time.perf_counter()
    spec = build_model(law, likelihood=likelihood, priors=priors, df=df, trials=trials)
    law = spec.law
    check_dtype(dtype, spec)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    config = SamplerConfig(
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        num_chains=int(num_chains),
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=5 if max_tree_depth is None else int(max_tree_depth),
        dense_mass=bool(dense_mass),
        # Chains of a curve run one after the other inside the vmap over curves: same speed
        # as vmapping them too (the curves already fill the vector lanes) and it compiles
        # 2.7x faster (54 s vs 20 s for power_n on the loaded 2-core machine).
        chain_method="sequential",
    )
    _validate_config(config)
    entries = _split_curves(data, curve, dict(columns or {}), sep=sep)
    ids = [cid for cid, _, _ in entries]
    if len(set(ids)) != len(ids):
        raise DataError(
            "duplicate curve ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1}))
        )
    num = len(entries)
    datas: list[ScalingData | None] = [d for _, d, _ in entries]
    messages = [m for _, _, m in entries]
    notes = []
    for i, d in enumerate(datas):
        if d is None:
            continue
        try:
            d.require(law.inputs, num_params=len(spec.site_names), law=law.name)
            note = check_proportions(d.loss, spec, locate=d.locate)
        except DataError as exc:
            messages[i] = str(exc) if str(exc).startswith("curve ") else f"curve {ids[i]!r}: {exc}"
        else:
            if note:
                notes.append(f"curve {ids[i]!r}: {note}")
    if notes:
        first = f"{len(notes)} curves, the first: " if len(notes) > 1 else ""
        warnings.warn(first + notes[0], DataWarning, stacklevel=2)
    valid = np.array([d is not None and not messages[i] for i, d in enumerate(datas)], dtype=bool)
    refs = {k: np.full(num, np.nan) for k in (*law.inputs, "loss")}
    for i in np.flatnonzero(valid):
        for k, v in reference_point(datas[i], law.inputs).items():
            refs[k][i] = v
    keys, seed = _rng_keys(rng_key, num)
    if isinstance(devices, jax.Device):  # one device: jax.devices()[0]
        devices = (devices,)
    devices = tuple(jax.local_devices() if devices is None else devices)
    state = _Sampled(num, config, spec)
    runner = _Runner(spec, config, datas, refs, keys, devices, dtype, client, batch_size, progress)
    runner.run(np.flatnonzero(valid), state, config)
    diag = _diagnose(state.samples, state.stats, spec)
    status = _status(diag, valid)
    retried = np.zeros(num, dtype=bool)
    unshrunk = np.zeros(num, dtype=bool)
    if retry:
        again = np.flatnonzero(valid & (status != "ok"))
        if again.size:
            # Divergent curves and curves that only mixed too slowly are re-fitted apart: the
            # latter without the mass matrix's absolute shrinkage (retry_config).
            diverged = diag["divergences"][again] > 0
            for rows, mixing in ((again[diverged], False), (again[~diverged], True)):
                if not rows.size:
                    continue
                config2 = retry_config(config, mixing_only=mixing)
                longer = _Sampled(num, config2, spec, rows=rows)
                runner.run(rows, longer, config2, label="re-fit")
                kept, kept_stats = thin_draws(longer.samples, longer.stats, RETRY_THIN)
                state.store(rows, {"samples": kept, **kept_stats})
                unshrunk[rows] = not config2.regularize_mass
            diag = _diagnose(state.samples, state.stats, spec)
            status = _status(diag, valid)
            retried[again] = True
    status = np.where(valid, status, "invalid_input")
    batch = BatchFit(
        spec=spec,
        curve_ids=tuple(ids),
        data=tuple(datas),
        ref=refs,
        samples=state.samples,
        sample_stats=state.stats,
        config=config,
        diagnostics=diag,
        status=status,
        messages=tuple(messages),
        retried=retried,
        timing={**runner.timing, "wall_s": time.perf_counter() - start_wall},
        seed=seed,
        retry_unshrunk=unshrunk,
    )
    bad = int(np.sum(status != "ok"))
    if bad:
        counts = pd.Series(status[status != "ok"]).value_counts()
        warnings.warn(
            f"{bad} of {num} curves did not converge or could not be fitted ("
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + "); see BatchFit.summary()['status'] and ['message']",
            ConvergenceWarning,
            stacklevel=2,
        )
    return batch


def retry_config(config: SamplerConfig, *, mixing_only: bool = False) -> SamplerConfig:
    """Settings of the one automatic re-fit of the curves that miss the policy: twice the
    warm-up, ``RETRY_THIN`` times the draws (kept thinned to the stored shape,
    :func:`thin_draws`), ``target_accept_prob=0.999`` and a tree-depth cap of at least
    ``RETRY_TREE_DEPTH``. With ``mixing_only`` (the curve missed R-hat, ESS or E-BFMI without
    a divergence) the mass matrix is also adapted without Stan's absolute shrinkage
    (``regularize_mass=False``): that shrinkage swamps the variance of well-identified
    parameters, and precise curves (noise sd <= 3e-4 on the log loss) then never mix
    (:class:`~bayescale.infer.nuts.SamplerConfig`).

    One setting for every failing curve (``bs.fit`` picks per failure; here one program serves
    them all). The deeper trees are what the weakly identified posteriors need: their ridges
    take more than the first pass's 31 leapfrog steps to cross (module docstring of
    :mod:`bayescale.infer.batch`), and the re-fit chunk holds only failing curves, so no
    well-behaved lane waits for them. Measured on the SBC designs (benchmarks/sbc.py), see
    docs/convergence.md.
    """
    return SamplerConfig(
        **{
            **config.__dict__,
            "num_warmup": 2 * config.num_warmup,
            "num_samples": RETRY_THIN * config.num_samples,
            "target_accept_prob": max(config.target_accept_prob, RETRY_TARGET_ACCEPT),
            "max_tree_depth": max(config.max_tree_depth, RETRY_TREE_DEPTH),
            "regularize_mass": config.regularize_mass and not mixing_only,
        }
    )


def thin_draws(
    samples: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray], factor: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Keep every ``factor``-th draw of ``(curve, chain, factor * n)`` arrays: the last of each
    group of ``factor`` transitions. A group is divergent when any of its transitions was;
    leapfrog steps add up; the acceptance probability and ``depth_hit`` (whether a
    transition reached the tree-depth cap) are the group's means; per-chain
    statistics pass through. The per-chain E-BFMI (``bfmi``) is that of the consecutive
    transitions (computed from the energies before thinning when ``stats`` lacks it).

    >>> s, st = thin_draws({"a": np.arange(4.0)[None, None]},
    ...                    {"diverging": np.array([[[True, False, False, False]]])}, 2)
    >>> s["a"].tolist(), st["diverging"].tolist()
    ([[[1.0, 3.0]]], [[[True, False]]])
    """
    factor = int(factor)
    kept = {k: v[..., factor - 1 :: factor] for k, v in samples.items()}
    out = {}
    if "energy" in stats and "bfmi" not in stats:
        # E-BFMI compares consecutive transitions: from the energies before thinning (the
        # thinned ones would overstate it).
        with np.errstate(invalid="ignore", divide="ignore"):
            out["bfmi"] = engine.bfmi(np.asarray(stats["energy"]))
    for k, v in stats.items():
        if v.ndim < 3:
            out[k] = v
            continue
        groups = v.reshape(*v.shape[:-1], v.shape[-1] // factor, factor)
        if k == "diverging":
            out[k] = groups.any(axis=-1)
        elif k == "num_steps":
            out[k] = groups.sum(axis=-1).astype(v.dtype)
        elif k in ("accept_prob", "depth_hit"):
            out[k] = groups.mean(axis=-1).astype(v.dtype)
        else:  # energy, potential_energy: of the kept draw
            out[k] = groups[..., -1]
    return kept, out


class _Sampled:
    """Host-side draws of every curve, filled chunk by chunk (NaN for curves never fitted).

    With ``rows``, holds only those curves (in that order): ``store`` takes the curves'
    positions in the batch, as for the full container.
    """

    def __init__(
        self, num: int, config: SamplerConfig, spec: ModelSpec, rows: np.ndarray | None = None
    ) -> None:
        self.rows = None if rows is None else np.asarray(rows)
        if self.rows is not None:
            num = len(self.rows)
        shape = (num, config.num_chains, config.num_samples)
        self.max_tree_depth = config.max_tree_depth
        self.samples = {k: np.full(shape, np.nan) for k in spec.site_names}
        self.stats = {
            "diverging": np.zeros(shape, dtype=bool),
            "num_steps": np.zeros(shape, dtype=np.int32),
            "depth_hit": np.zeros(shape, dtype=np.float32),
            "energy": np.full(shape, np.nan),
            "accept_prob": np.full(shape, np.nan),
            "potential_energy": np.full(shape, np.nan),
            "step_size": np.full(shape[:2], np.nan),
            "warmup_divergences": np.zeros(shape[:2], dtype=np.int32),
            "bfmi": np.full(shape[:2], np.nan),
        }

    def store(self, index: np.ndarray, draws: Mapping[str, Any]) -> None:
        """Store the draws of the curves at ``index``; E-BFMI (``bfmi``, per chain) is taken
        from the draws' energies unless ``draws`` brings it (a thinned re-fit brings the
        E-BFMI of its consecutive transitions, :func:`thin_draws`), and ``depth_hit`` (1 for a
        draw whose tree reached ``max_tree_depth``) from ``num_steps`` unless ``draws``
        brings it (a thinned re-fit: the share of each kept draw's transitions)."""
        n = len(index)
        if self.rows is not None:
            index = np.searchsorted(self.rows, index)
        for k, v in draws["samples"].items():
            self.samples[k][index] = v[:n]
        for k in self.stats:
            if k == "bfmi" and k not in draws:
                with np.errstate(invalid="ignore", divide="ignore"):
                    self.stats[k][index] = engine.bfmi(np.asarray(draws["energy"][:n]))
                continue
            if k == "depth_hit" and k not in draws:
                self.stats[k][index] = at_depth_cap(draws["num_steps"][:n], self.max_tree_depth)
                continue
            self.stats[k][index] = draws[k][:n]


class _Runner:
    """Plans chunks (length buckets x batch size) and runs them locally or on an executor."""

    def __init__(
        self, spec, config, datas, refs, keys, devices, dtype, client, batch_size, progress
    ):
        self.spec, self.datas, self.refs, self.keys = spec, datas, refs, keys
        self.devices, self.client, self.progress = devices, client, progress
        self.dtype = np.float64 if dtype == "float64" else np.float32
        self.batch_size = int(batch_size)
        self.timing = {"compile_s": 0.0, "sampling_s": 0.0, "num_chunks": 0}
        self.shapes: set[tuple[int, int]] = set()
        self.inputs = spec.law.inputs
        if client is not None:
            self.token, self.payload = _spec_payload(spec)

    def chunks(self, index: np.ndarray, config: SamplerConfig) -> list[tuple[np.ndarray, int, int]]:
        """(curve indices, padded length, chunk size) for every chunk, longest bucket first.

        Every distinct (length, chunk size) is one compiled program, and a compile costs about
        as much as sampling :data:`COMPILE_COST` point-iterations. So a length bucket whose
        curves would pay less than that to move up to the next bucket is merged into it, and a
        bucket's last chunk is padded to the full ``batch_size`` when the dummy curves cost
        less than a compile (otherwise to the next power of two).
        """
        lengths = np.array([len(self.datas[i]) for i in index], dtype=int)
        buckets = np.array([engine.bucket_length(n) for n in lengths], dtype=int)
        work = config.num_chains * (config.num_warmup + config.num_samples)
        ordered = sorted(set(buckets.tolist()))
        for small, large in itertools.pairwise(ordered):
            moved = buckets == small
            if moved.sum() * (large - small) * work < COMPILE_COST:
                buckets[moved] = large
        ndev = 1 if self.client is not None else len(self.devices)
        out = []
        for length in sorted(set(buckets.tolist()), reverse=True):
            members = index[buckets == length]
            for s in range(0, len(members), self.batch_size):
                part = members[s : s + self.batch_size]
                size = _chunk_size(len(part), self.batch_size, ndev)
                full = _chunk_size(self.batch_size, self.batch_size, ndev)
                if (
                    len(members) > self.batch_size
                    and (full - len(part)) * length * work < COMPILE_COST
                ):
                    size = full
                out.append(self._reuse(part, length, size, work))
        self.shapes.update((L, n) for _, L, n in out)
        return out

    def _reuse(self, part, length: int, size: int, work: int) -> tuple[np.ndarray, int, int]:
        """A re-fit chunk takes a program already used in this call when its extra padding
        costs less than a compile."""
        if (length, size) in self.shapes:
            return part, length, size
        options = [
            (L * n, L, n)
            for L, n in self.shapes
            if L >= length and n >= len(part) and (L * n - length * len(part)) * work < COMPILE_COST
        ]
        if not options:
            return part, length, size
        _, length, size = min(options)
        return part, length, size

    def arrays(self, part: np.ndarray, length: int, size: int) -> dict[str, Any]:
        fill = np.concatenate([part, np.full(size - len(part), part[0])])
        log_x = [
            {k: v for k, v in self.datas[i].log_inputs().items() if k in self.inputs} for i in fill
        ]
        log_loss = [self.datas[i].log_loss for i in fill]
        xs, ys, mask = engine.pad_curves(log_x, log_loss, length, self.dtype)
        ref = {k: v[fill].astype(self.dtype) for k, v in self.refs.items()}
        return {"keys": self.keys[fill], "log_x": xs, "ref": ref, "log_loss": ys, "mask": mask}

    def run(self, index: np.ndarray, state: _Sampled, config: SamplerConfig, label="fit") -> None:
        if index.size == 0:
            return
        from tqdm.auto import tqdm

        plan = self.chunks(index, config)
        bar = tqdm(
            total=int(index.size),
            desc=f"{label} {self.spec.law.name}",
            unit="curve",
            disable=not self.progress,
            leave=False,
        )
        try:
            if self.client is None:
                for part, length, size in plan:
                    draws, timing = engine.run_batch(
                        self.spec,
                        config,
                        devices=self.devices,
                        dtype=self.dtype,
                        **self.arrays(part, length, size),
                    )
                    self._account(timing)
                    state.store(part, draws)
                    bar.update(len(part))
            else:
                futures = [
                    (
                        part,
                        self.client.submit(
                            _fit_chunk_remote,
                            self.token,
                            self.payload,
                            config,
                            self.arrays(part, length, size),
                            np.dtype(self.dtype).name,
                        ),
                    )
                    for part, length, size in plan
                ]
                for part, future in futures:
                    draws, timing = future.result()
                    self._account(timing)
                    state.store(part, draws)
                    bar.update(len(part))
        finally:
            bar.close()

    def _account(self, timing: Mapping[str, float]) -> None:
        self.timing["compile_s"] += timing["compile_s"]
        self.timing["sampling_s"] += timing["sampling_s"]
        self.timing["num_chunks"] += 1


def _diagnose(samples, stats, spec, block: int = 1024) -> dict[str, np.ndarray]:
    """Per curve and site (curve, site): r_hat, ess_bulk, ess_tail, mcse_mean; per curve:
    divergences and min_bfmi (of the per-chain ``stats["bfmi"]`` where present, else from the
    kept energies). Vectorised over blocks of curves (bounded temporary memory)."""
    sites = spec.site_names
    num = len(stats["energy"])
    out = {k: np.full((num, len(sites)), np.nan) for k in ("r_hat", "ess_bulk", "ess_tail")}
    out["mcse_mean"] = np.full((num, len(sites)), np.nan)
    out["min_bfmi"] = np.full(num, np.nan)
    for s in range(0, num, block):
        part = slice(s, s + block)
        stacked = np.stack([samples[k][part] for k in sites], axis=1)  # (curve, site, chain, draw)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["r_hat"][part] = engine.rhat_rank(stacked)
            out["ess_bulk"][part] = engine.ess_bulk(stacked)
            out["ess_tail"][part] = engine.ess_tail(stacked)
            out["mcse_mean"][part] = engine.mcse_mean(stacked)
            chain_bfmi = (
                stats["bfmi"][part] if "bfmi" in stats else engine.bfmi(stats["energy"][part])
            )
            out["min_bfmi"][part] = np.min(chain_bfmi, axis=-1)
    out["divergences"] = stats["diverging"].sum(axis=(1, 2)).astype(int)
    return out


def _status(diag: Mapping[str, np.ndarray], valid: np.ndarray) -> np.ndarray:
    """Vectorised :attr:`Convergence.status` (same policy and order of precedence)."""
    fitted = valid[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        max_rhat = np.max(np.where(fitted, diag["r_hat"], 0.0), axis=1)
        min_ess = np.min(np.where(fitted, np.minimum(diag["ess_bulk"], diag["ess_tail"]), 1e9), 1)
    status = np.full(len(valid), "ok", dtype=object)
    bfmi_bad = ~(diag["min_bfmi"] >= BFMI_MIN)
    ess_bad = ~(min_ess >= ESS_MIN)
    rhat_bad = ~(max_rhat <= RHAT_MAX)
    for bad, name in ((bfmi_bad, "bfmi_low"), (ess_bad, "ess_low"), (rhat_bad, "rhat_high")):
        status[bad] = name
    status[diag["divergences"] > 0] = "divergences"
    status[~valid] = "invalid_input"
    return status.astype(str)


# ============================================================================= results
_PREDICT: dict[int, Any] = {}
_LOGLIK: dict[tuple, Any] = {}


def _batch_mean_fn(law: Law):
    """Jitted (params {name: (curve, S)}, log_x {name: (M,)}, ref {name: (curve,)}) ->
    log mean loss (curve, S, M)."""
    if id(law) not in _PREDICT:

        def one_curve(params, log_x, ref):
            return jax.vmap(lambda p: law.log_predict(p, log_x, ref))(params)

        _PREDICT[id(law)] = jax.jit(jax.vmap(one_curve, (0, None, 0)))
    return _PREDICT[id(law)]


def _batch_loglik_fn(spec: ModelSpec):
    """Jitted pointwise log-likelihood of padded curves: (curve, chain, draw, length)."""
    if spec.key not in _LOGLIK:
        _LOGLIK[spec.key] = jax.jit(jax.vmap(pointwise_loglik(spec)))
    return _LOGLIK[spec.key]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class BatchFit:
    """Posteriors of many curves fitted by :func:`fit_many`: every array has a leading
    ``curve`` axis, in input order.

    Attributes
    ----------
    spec
        The model (law, likelihood, priors), shared by all curves.
    curve_ids
        Curve ids in input order.
    data
        Each curve's :class:`~bayescale.data.ScalingData` (``None`` when its input could not be
        read).
    ref
        Reference point per curve: input name / ``"loss"`` -> (curve,).
    samples
        Sampled sites -> draws (curve, chain, draw); NaN rows for ``invalid_input`` curves.
    sample_stats
        ``diverging``, ``energy``, ``num_steps``, ``accept_prob``, ``potential_energy``
        (curve, chain, draw); ``step_size``, ``warmup_divergences`` and ``bfmi`` (the
        chain's E-BFMI, of the unthinned re-fit for a retried curve) (curve, chain).
    diagnostics
        ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean`` (curve, site) in
        ``spec.site_names`` order; ``divergences`` and ``min_bfmi`` (curve,).
    status
        Per-curve ``ok``, ``divergences``, ``rhat_high``, ``ess_low``, ``bfmi_low`` or
        ``invalid_input``; ``messages`` explains invalid inputs; ``retried`` flags curves
        re-fitted once with the settings of :func:`retry_config`.
    retry_unshrunk
        Per curve: its re-fit adapted the mass matrix without Stan's absolute shrinkage (a
        curve that failed without divergent draws; :func:`retry_config`'s ``mixing_only``).
        All False when not given (files written before it was recorded).
    """

    spec: ModelSpec
    curve_ids: tuple[str, ...]
    data: tuple[ScalingData | None, ...]
    ref: Mapping[str, np.ndarray]
    samples: Mapping[str, np.ndarray]
    sample_stats: Mapping[str, np.ndarray]
    config: SamplerConfig
    diagnostics: Mapping[str, np.ndarray]
    status: np.ndarray
    messages: tuple[str, ...]
    retried: np.ndarray
    timing: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    retry_unshrunk: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("ref", "samples", "sample_stats", "diagnostics"):
            value = getattr(self, name)
            object.__setattr__(
                self, name, MappingProxyType({k: _readonly(v) for k, v in value.items()})
            )
        object.__setattr__(self, "status", _readonly(np.asarray(self.status, dtype=str)))
        object.__setattr__(self, "retried", _readonly(np.asarray(self.retried, dtype=bool)))
        unshrunk = self.retry_unshrunk
        unshrunk = np.zeros(len(self.retried), bool) if unshrunk is None else unshrunk
        object.__setattr__(self, "retry_unshrunk", _readonly(np.asarray(unshrunk, dtype=bool)))
        object.__setattr__(self, "curve_ids", tuple(map(str, self.curve_ids)))
        object.__setattr__(self, "_index", {cid: i for i, cid in enumerate(self.curve_ids)})

    # ------------------------------------------------------------------ basic views
    @property
    def law(self) -> Law:
        """The fitted law."""
        return self.spec.law

    def __len__(self) -> int:
        return len(self.curve_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.curve_ids)

    def __contains__(self, key: object) -> bool:
        """Whether a curve has the id ``key`` (ids are strings: ``"7" in batch`` for an integer
        curve column; an int is a position, so ``batch[k] if k in batch`` stays safe)."""
        return key in self._index  # type: ignore[attr-defined]

    @property
    def num_chains(self) -> int:
        return self.config.num_chains

    @property
    def num_draws(self) -> int:
        return self.config.num_samples

    @property
    def _draws_per_curve(self) -> int:
        """Draws of each parameter per curve, all chains together."""
        return int(np.prod(next(iter(self.samples.values())).shape[1:]))

    @property
    def fitted(self) -> np.ndarray:
        """Boolean (curve,): the curve was sampled (its input was valid)."""
        return self.status != "invalid_input"

    @property
    def converged(self) -> np.ndarray:
        """Boolean (curve,): the curve meets the convergence policy."""
        return self.status == "ok"

    @cached_property
    def fails_badly(self) -> np.ndarray:
        """Boolean (curve,): the fit fails the convergence gate badly (R-hat > 1.05, ESS < 100
        or more than 1% divergent draws; :attr:`Convergence.fails_badly
        <bayescale.results.Convergence.fails_badly>`), so :meth:`predict` refuses it unless
        ``allow_unconverged=True``. False for curves not fitted."""
        out = np.zeros(len(self), dtype=bool)
        for i in np.flatnonzero(self.fitted & ~self.converged):
            out[i] = self._convergence(i).fails_badly
        return _readonly(out)

    @cached_property
    def params(self) -> Mapping[str, np.ndarray]:
        """Published (natural) law parameters and noise sites, each (curve, chain, draw)."""
        sampled = {k: jnp.asarray(self.samples[k]) for k in self.law.param_names}
        ref = {k: jnp.asarray(v)[:, None, None] for k, v in self.ref.items()}
        nat = self.law.natural(sampled, ref)
        out = {k: np.asarray(nat[k]) for k in self.law.natural_names}
        for k in self.spec.site_names[self.law.num_params :]:
            out[k] = np.asarray(self.samples[k])
        return MappingProxyType({k: _readonly(v) for k, v in out.items()})

    def index(self, key: str | int) -> int:
        """Position of a curve id (ints are positions).

        Curve ids are strings (an integer curve column's 7 is the id ``'7'``). An int that is
        also a curve id at another position is refused as ambiguous, instead of silently
        picking the curve at that position.
        """
        if isinstance(key, int | np.integer):
            named = self._index.get(str(key))  # type: ignore[attr-defined]
            if not -len(self) <= key < len(self):
                hint = (
                    f"; the curve with id {str(key)!r} is batch[{str(key)!r}]"
                    if named is not None
                    else ""
                )
                raise IndexError(f"curve index {key} out of range for {len(self)} curves{hint}")
            if named is not None and named != int(key) % len(self):
                raise KeyError(
                    f"{key} is ambiguous: the curve with id {str(key)!r} is at position "
                    f"{named}, and position {key} holds curve {self.curve_ids[key]!r}; pass "
                    f"the id as a string, batch[{str(key)!r}], or batch[batch.curve_ids[{key}]]"
                )
            return int(key) % len(self)
        try:
            return self._index[str(key)]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"no curve {key!r} in this batch ({len(self)} curves)") from None

    def convergence(self, key: str | int) -> Convergence:
        """The :class:`~bayescale.results.Convergence` of one curve."""
        return self._convergence(self.index(key))

    def _convergence(self, i: int) -> Convergence:
        """:meth:`convergence` of the curve at position ``i`` (internal loops use positions,
        which :meth:`index` may refuse as ambiguous with integer curve ids)."""
        d = self.diagnostics
        draws, rhat, bulk, tail = self._site_diagnostics(i)
        energy = self.sample_stats["energy"][i]
        potential = self.sample_stats.get("potential_energy", self.sample_stats["energy"])[i]
        return convergence_of(
            draws,
            rhat,
            bulk,
            tail,
            max_rhat=float(np.max(list(rhat.values()))),
            min_ess_bulk=float(np.min(list(bulk.values()))),
            min_ess_tail=float(np.min(list(tail.values()))),
            divergences=int(d["divergences"][i]),
            num_draws=self.num_chains * self.num_draws,
            min_bfmi=float(d["min_bfmi"][i]),
            retried=bool(self.retried[i]),
            depth_hits=self._depth_hits(i),
            max_tree_depth=self._curve_config(i).max_tree_depth,
            # an unfitted curve's stats are NaN placeholders: it has no stuck chains
            stuck_chains=stuck_chains(draws, energy) if self.fitted[i] else 0,
            stuck_finite=stuck_chains(draws, potential, finite_only=True) if self.fitted[i] else 0,
        )

    def _site_diagnostics(self, i: int) -> tuple[dict, dict, dict, dict]:
        """Draws, R-hat, bulk and tail ESS of the sites behind curve ``i``'s convergence."""
        d = self.diagnostics
        sites = self.spec.site_names
        return (
            {k: self.samples[k][i] for k in sites},
            dict(zip(sites, d["r_hat"][i], strict=True)),
            dict(zip(sites, d["ess_bulk"][i], strict=True)),
            dict(zip(sites, d["ess_tail"][i], strict=True)),
        )

    def _depth_hits(self, i: int) -> float:
        """Share of curve ``i``'s transitions that reached the tree-depth cap (those behind
        its kept draws: every transition of a thinned re-fit). Files saved before this was
        recorded: from ``num_steps`` for a curve not re-fitted, 0 (unknown) for one that was
        (its ``num_steps`` add up the thinned transitions)."""
        st = self.sample_stats
        if "depth_hit" in st:
            return float(np.mean(st["depth_hit"][i], dtype=np.float64))
        if self.retried[i]:
            return 0.0
        return depth_hits(st["num_steps"][i], self._curve_config(i).max_tree_depth)

    def message(self, key: str | int) -> str:
        """Why a curve was not fitted, or why its fit misses the convergence policy (which
        criterion, on which parameter, and whether its chains disagree); empty when it met it."""
        return self._message(self.index(key))

    def _message(self, i: int) -> str:
        if self.status[i] != "ok" and self.fitted[i]:
            return "; ".join(self._convergence(i).problems)
        return self.messages[i]

    def __getitem__(self, key: str | int) -> Fit:
        """The :class:`~bayescale.results.Fit` of one curve (same type and methods as
        ``bs.fit``'s result).

        Raises
        ------
        KeyError
            Unknown curve id.
        DataError
            The curve was not fitted (``invalid_input``); the message says why.

        Notes
        -----
        A re-fitted curve's ``config`` is the re-fit's (:func:`retry_config`: warm-up, target
        acceptance, tree depth, and ``regularize_mass=False`` for a curve that failed without
        divergent draws) with its kept draws, thinned back to the first pass's count. Its
        ``sample_stats`` carry the curve's per-chain ``bfmi`` and per-draw ``depth_hit`` (of
        the unthinned transitions), which :meth:`Fit.save <bayescale.results.Fit.save>` and
        :func:`bayescale.load` keep.
        """
        i = self.index(key)
        if not self.fitted[i]:
            raise DataError(f"curve {self.curve_ids[i]!r} was not fitted: {self.messages[i]}")
        st = self.sample_stats
        stats = {
            k: st[k][i] for k in ("diverging", "energy", "num_steps", "accept_prob", "step_size")
        }
        stats["potential_energy"] = st["potential_energy"][i]
        stats["num_steps"] = stats["num_steps"].astype(np.int64)
        # Per-chain E-BFMI and depth-cap shares of the transitions behind the kept draws: a
        # re-fitted curve's draws are thinned, so neither can be recomputed from its energies
        # and summed num_steps (Fit.save writes them, bs.load reads them back).
        for k in ("bfmi", "depth_hit"):
            if k in st:
                stats[k] = st[k][i]
        table = pd.DataFrame(
            {k: self.diagnostics[k][i] for k in ("mcse_mean", "ess_bulk", "ess_tail", "r_hat")},
            index=list(self.spec.site_names),
        )
        return Fit(
            spec=self.spec,
            data=self.data[i],
            ref={k: float(v[i]) for k, v in self.ref.items()},
            samples={k: v[i] for k, v in self.samples.items()},
            sample_stats=stats,
            config=self._curve_config(i),
            diagnostics=table,
            convergence=self._convergence(i),
            timing={},
            seed=self.seed,
        )

    def _curve_config(self, i: int) -> SamplerConfig:
        """The settings that produced curve ``i``'s kept draws: the re-fit's
        (:func:`retry_config`, with the first pass's draw count it was thinned to) for a
        re-fitted curve."""
        if not self.retried[i]:
            return self.config
        again = retry_config(self.config, mixing_only=bool(self.retry_unshrunk[i]))
        return SamplerConfig(**{**again.__dict__, "num_samples": self.num_draws})

    @cached_property
    def identifiability(self) -> tuple[tuple[str, ...], ...]:
        """Per curve, the warnings of :func:`bayescale.check.identifiability` (empty when the
        data constrain the irreducible loss, for curves not fitted and for laws without one).

        The prior sd of E is estimated from 4,000 prior draws per curve (Monte Carlo error of
        the sd ratio about 1%), a fifth of a single fit's, to keep large batches fast (about
        3 ms per curve on a CPU core: 0.6 s for 200 curves); near the thresholds a curve's
        verdict can therefore differ from that of ``batch[curve].identifiability``. A loaded
        batch is checked against the default priors (custom priors are not saved), and a
        pooled one against the unpooled prior of each curve.
        """
        from types import SimpleNamespace

        from .check import identifiability

        out: list[tuple[str, ...]] = []
        params = self.params
        for i, ok in enumerate(self.fitted):
            if not ok:
                out.append(())
                continue
            view = SimpleNamespace(
                law=self.law,
                spec=self.spec,
                ref={k: float(v[i]) for k, v in self.ref.items()},
                samples={k: v[i] for k, v in self.samples.items()},
                params={k: v[i] for k, v in params.items()},
            )
            out.append(tuple(identifiability(view, num_prior_draws=BATCH_PRIOR_DRAWS)))
        return tuple(out)

    # ------------------------------------------------------------------ summaries
    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """One row per curve: status, points, each published parameter's median and central
        ``prob`` interval (``{name}_median``, ``{name}_lower``, ``{name}_upper``), worst R-hat,
        bulk/tail ESS, divergences, E-BFMI, whether it was re-fitted, and a message: why an
        input was not fitted, or what a fit that misses the convergence policy missed
        (:attr:`~bayescale.results.Convergence.problems`: the worst parameter, and whether
        its chains disagree), and ``identifiability``: the warnings of
        :attr:`identifiability` when the data do not constrain the irreducible loss ("" when
        they do)."""
        _check_prob(prob, self._draws_per_curve)
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        fitted = self.fitted
        out = pd.DataFrame(index=pd.Index(self.curve_ids, name="curve"))
        out["status"] = self.status
        out["num_points"] = [0 if d is None else len(d) for d in self.data]
        for k, v in self.params.items():
            q = np.full((3, len(self)), np.nan)
            if fitted.any():
                flat = v[fitted].reshape(int(fitted.sum()), -1)
                q[:, fitted] = np.percentile(flat, [50, lo, hi], axis=1)
            out[f"{k}_median"], out[f"{k}_lower"], out[f"{k}_upper"] = q
        d = self.diagnostics
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["max_rhat"] = np.where(fitted, np.max(d["r_hat"], axis=1), np.nan)
            out["min_ess_bulk"] = np.where(fitted, np.min(d["ess_bulk"], axis=1), np.nan)
            out["min_ess_tail"] = np.where(fitted, np.min(d["ess_tail"], axis=1), np.nan)
        out["divergences"] = d["divergences"]
        out["min_bfmi"] = d["min_bfmi"]
        out["retried"] = self.retried
        out["message"] = [self._message(i) for i in range(len(self.curve_ids))]
        out["identifiability"] = ["; ".join(w) for w in self.identifiability]
        out.attrs["prob"] = prob
        return out

    # ------------------------------------------------------------------ forecasts
    def predict(
        self,
        N: Any = None,
        D: Any = None,
        C: Any = None,
        U: Any = None,
        *,
        prob: float = 0.9,
        seed: int = 0,
        chunk: int = 256,
        allow_unconverged: bool = False,
    ) -> pd.DataFrame:
        """Forecast every curve at the same targets, with credible and predictive intervals.

        Parameters
        ----------
        N, D, C, U
            Scalars or arrays (broadcast together), as in :meth:`Fit.predict
            <bayescale.results.Fit.predict>`.
        prob
            Mass of the central intervals.
        seed
            Seed of the posterior-predictive noise draws.
        chunk
            Curves evaluated per compiled call (bounds memory at ``chunk * draws * targets``).
        allow_unconverged
            Also forecast the curves whose fits fail the convergence gate badly
            (:attr:`fails_badly`); by default their rows are NaN.

        Returns
        -------
        pandas.DataFrame
            One row per (curve, target): ``curve``, the inputs, ``loss_median``,
            ``loss_lower``, ``loss_upper``, ``loss_mean`` (the law's mean), ``pred_*`` (a new
            observed run, with noise), ``extrapolation`` (times beyond the curve's observed
            range), ``status`` and ``refused``. Where :meth:`Fit.predict
            <bayescale.results.Fit.predict>` raises for a fit that fails the gate badly, a
            batch refuses curve by curve: such a curve's rows are NaN with ``refused`` True,
            and ``attrs["refused"]`` maps it to the reason; the other curves are forecast.
            Curves that miss the policy mildly are forecast (``status`` says how they miss
            it). Curves with invalid input get NaN. ``attrs["identifiability"]`` maps the
            curves whose data do not constrain the irreducible loss to their warnings (an
            ``IdentifiabilityWarning`` when such a curve is forecast beyond its data).

        Warns
        -----
        ConvergenceWarning
            Once, naming the refused curves (and counting the forecast curves that miss the
            policy), whenever any forecast curve is not ``ok``.
        ExtrapolationWarning
            Once, when a target lies more than 10x beyond some curve's data: it names those
            curves and the farthest curve and target.

        Examples
        --------
        >>> batch.predict(N=1e11)  # doctest: +SKIP
        """
        _check_prob(prob, self._draws_per_curve)
        vals = prediction_inputs(self.law.name, self.law.inputs, N=N, D=D, C=C, U=U)
        m = len(next(iter(vals.values())))
        num = len(self)
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        cols = ("loss_median", "loss_lower", "loss_upper", "loss_mean")
        cols += ("pred_median", "pred_lower", "pred_upper")
        res = {k: np.full((num, m), np.nan) for k in cols}
        extra = np.full((num, m), np.nan)
        rng = np.random.default_rng(seed)
        log_x = {k: jnp.log(jnp.asarray(vals[k])) for k in self.law.inputs}
        refused = np.zeros(num, dtype=bool) if allow_unconverged else self.fails_badly
        reasons = {  # why each refused curve is refused
            self.curve_ids[i]: "; ".join(self._convergence(i).problems)
            for i in np.flatnonzero(refused)
        }
        fitted = np.flatnonzero(self.fitted & ~refused)
        self._warn_unconverged(reasons, fitted)
        for s in range(0, len(fitted), int(chunk)):
            idx = fitted[s : s + int(chunk)]
            params = {
                k: jnp.asarray(self.samples[k][idx].reshape(len(idx), -1))
                for k in self.law.param_names
            }
            ref = {k: jnp.asarray(v[idx]) for k, v in self.ref.items()}
            log_mu = np.asarray(_batch_mean_fn(self.law)(params, log_x, ref))
            noisy = self._predictive(log_mu, idx, rng)
            mu = np.exp(log_mu)
            qm = np.percentile(mu, [50, lo, hi], axis=1)
            qp = np.percentile(noisy, [50, lo, hi], axis=1)
            res["loss_median"][idx], res["loss_lower"][idx], res["loss_upper"][idx] = qm
            res["loss_mean"][idx] = mu.mean(axis=1)
            res["pred_median"][idx], res["pred_lower"][idx], res["pred_upper"][idx] = qp
            for i in idx:
                extra[i] = self._extrapolation(i, vals)
        # Curves that were not fitted (invalid input) have all-NaN rows: count them as 0.
        extra = np.nan_to_num(extra, nan=0.0)
        extra_max = np.max(extra, axis=1, initial=0.0)
        if extra_max.max(initial=0.0) > EXTRAPOLATION_WARN:
            far = [self.curve_ids[i] for i in np.flatnonzero(extra_max > EXTRAPOLATION_WARN)]
            worst, at = np.unravel_index(int(np.argmax(extra)), extra.shape)
            point = target_text(vals, self.law.inputs, at)
            warnings.warn(
                f"extrapolating more than {EXTRAPOLATION_WARN:.0f}x beyond the fitted data of "
                f"{len(far)} curve(s) ({name_list(far)}), up to {extra_max.max():.0f}x (curve "
                f"{self.curve_ids[worst]!r} at {point}); intervals assume the law holds that far",
                ExtrapolationWarning,
                stacklevel=2,
            )
        ratios = {int(i): ratio_beyond(self.data[i], self.law.inputs, vals) for i in fitted}
        beyond = [i for i, (factor, _, _) in ratios.items() if factor.max() > EXTRAPOLATION_WARN]
        if beyond:
            worst = max(beyond, key=lambda i: ratios[i][0].max())
            factor, lo_r, hi_r = ratios[worst]
            at = int(np.argmax(factor))
            point = target_text(vals, self.law.inputs, at)
            note = ratio_note(vals["D"][at] / vals["N"][at], factor[at], lo_r, hi_r)
            warnings.warn(
                f"{len(beyond)} curve(s) ({name_list([self.curve_ids[i] for i in beyond])}) "
                f"forecast beyond the tokens per parameter of their data; the farthest, curve "
                f"{self.curve_ids[worst]!r} at {point}: {note}",
                ExtrapolationWarning,
                stacklevel=2,
            )
        weak = [  # forecast above the data (where E matters) of a curve whose E is free
            self.curve_ids[i]
            for i in fitted
            if self.identifiability[i] and above_data(self.data[i], self.law.inputs, vals).any()
        ]
        if weak:
            from .check import IdentifiabilityWarning

            warnings.warn(
                f"forecast beyond the data of {len(weak)} curve(s) ({name_list(weak)}) whose "
                "data do not constrain the irreducible loss: those forecasts follow its prior; see "
                "summary()['identifiability']",
                IdentifiabilityWarning,
                stacklevel=2,
            )
        out = pd.DataFrame({"curve": np.repeat(np.asarray(self.curve_ids, dtype=object), m)})
        for k in ("N", "D", "C", "U"):
            if k in vals:
                out[k] = np.tile(vals[k], num)
        for k in cols:
            out[k] = res[k].reshape(-1)
        out["extrapolation"] = extra.reshape(-1)
        out["status"] = np.repeat(self.status, m)
        out["refused"] = np.repeat(refused, m)
        out.attrs["prob"] = prob
        out.attrs["refused"] = reasons
        out.attrs["identifiability"] = {
            cid: list(w) for cid, w in zip(self.curve_ids, self.identifiability, strict=True) if w
        }
        return out

    def _warn_unconverged(self, reasons: Mapping[str, str], forecast: np.ndarray) -> None:
        """One ConvergenceWarning for :meth:`predict`: the refused curves (``reasons``: curve
        -> why) by name, and how many forecast curves miss the policy."""
        mild = int(np.sum(~self.converged[forecast]))
        parts = []
        if reasons:
            names = list(reasons)
            parts.append(
                f"refused to forecast {len(names)} of {len(self)} curves ({name_list(names)}): "
                f"their fits fail the convergence gate badly (first: {reasons[names[0]]}); "
                "their rows are NaN with refused=True; pass allow_unconverged=True to forecast "
                "them anyway"
            )
        if mild:
            parts.append(
                f"{mild} forecast curve(s) miss the convergence policy (see the status column): "
                "do not trust their intervals"
            )
        if parts:
            warnings.warn("; ".join(parts), ConvergenceWarning, stacklevel=3)

    def _extrapolation(self, i: int, vals: Mapping[str, np.ndarray]) -> np.ndarray:
        data = self.data[i]
        factor = np.ones(len(next(iter(vals.values()))))
        for k in self.law.inputs:
            obs = getattr(data, k)
            factor = np.maximum(factor, np.maximum(vals[k] / obs.max(), obs.min() / vals[k]))
        return factor

    def _predictive(self, log_mu: np.ndarray, idx: np.ndarray, rng) -> np.ndarray:
        sigma = self.samples["sigma"][idx].reshape(len(idx), -1)[:, :, None]
        nu = None
        if self.spec.likelihood == "student_t" and self.spec.df is None:
            nu = self.samples["nu"][idx].reshape(len(idx), -1)[:, :, None]
        return predictive_draws(self.spec, log_mu, sigma, rng, nu=nu)

    # ------------------------------------------------------------------ containers
    def log_likelihood(self, chunk: int = 64) -> np.ndarray:
        """Pointwise log-likelihood (chain, draw, point) of every observed point, points of
        fitted curves concatenated in curve order, computed in JAX."""
        fitted = np.flatnonzero(self.fitted)
        parts = []
        inputs = self.law.inputs
        for s in range(0, len(fitted), int(chunk)):
            idx = fitted[s : s + int(chunk)]
            lengths = [len(self.data[i]) for i in idx]
            length = engine.bucket_length(max(lengths))
            log_x = [{k: self.data[i].log_inputs()[k] for k in inputs} for i in idx]
            xs, ys, mask = engine.pad_curves(log_x, [self.data[i].log_loss for i in idx], length)
            ll = _batch_loglik_fn(self.spec)(
                {k: jnp.asarray(self.samples[k][idx]) for k in self.spec.site_names},
                {k: jnp.asarray(v) for k, v in xs.items()},
                {k: jnp.asarray(v[idx]) for k, v in self.ref.items()},
                jnp.asarray(ys),
                jnp.asarray(mask),
            )
            ll = np.asarray(ll)
            parts.extend(ll[j, :, :, :n] for j, n in enumerate(lengths))
        if not parts:
            return np.zeros((self.num_chains, self.num_draws, 0))
        return np.concatenate(parts, axis=-1)

    def _points_log_likelihood(self) -> np.ndarray:
        """:meth:`log_likelihood` on the points of :meth:`_points` (every curve that has
        data), NaN at the points of curves that were not fitted (``invalid_input`` after
        their data were read: too few points, a missing input), so that ``log_likelihood``
        and ``observed_data`` of :meth:`to_arviz` line up point by point."""
        fitted_ll = self.log_likelihood()
        lengths = [(i, len(d)) for i, d in enumerate(self.data) if d is not None]
        out = np.full((self.num_chains, self.num_draws, sum(n for _, n in lengths)), np.nan)
        at = taken = 0
        for i, n in lengths:
            if self.fitted[i]:
                out[..., at : at + n] = fitted_ll[..., taken : taken + n]
                taken += n
            at += n
        return out

    def _points(self) -> dict[str, np.ndarray]:
        """Observed points of every curve that has data, concatenated, with their curve id.

        Every input column that some curve has (``N``, ``D``, ``C``, ``U``) is written, NaN at
        the points of curves without it (e.g. an ``invalid_input`` curve lacking ``D``):
        :func:`load_batch` gives each curve back exactly its non-NaN columns."""
        have = [d for d in self.data if d is not None]
        inputs = [k for k in ("N", "D", "C", "U") if any(getattr(d, k) is not None for d in have)]

        def column(d: ScalingData, k: str) -> np.ndarray:
            value = getattr(d, k)
            return np.full(len(d), np.nan) if value is None else np.asarray(value, dtype=float)

        out = (
            {k: np.concatenate([column(d, k) for d in have]) for k in (*inputs, "loss")}
            if have
            else {"loss": np.zeros(0)}
        )
        out["point_curve"] = np.concatenate(
            [
                np.full(len(d), cid, dtype=object)
                for cid, d in zip(self.curve_ids, self.data, strict=True)
                if d is not None
            ]
            or [np.zeros(0, dtype=object)]
        ).astype(str)
        if any(d.run is not None for d in have):
            # "" at the points of curves without run ids; has_run (per curve) tells them apart
            out["run"] = np.concatenate(
                [np.full(len(d), "") if d.run is None else np.asarray(d.run) for d in have]
            ).astype(str)
        return out

    def _attrs(self) -> dict[str, Any]:
        return {
            "bayescale_version": __version__,
            "bayescale_kind": "batch",
            "law": self.law.name,
            "likelihood": self.spec.likelihood,
            "df": "learnt" if self.spec.df is None else float(self.spec.df),
            "trials": -1 if self.spec.trials is None else int(self.spec.trials),
            "custom_priors": json.dumps([k for k, _ in self.spec.priors]),
            "config": json.dumps(self.config.__dict__),
            "timing": json.dumps(dict(self.timing)),
            "seed": -1 if self.seed is None else int(self.seed),
        }

    def to_arviz(self, *, log_likelihood: bool | None = None):
        """One ArviZ container (InferenceData on ArviZ 0.x, DataTree on 1.x) with a ``curve``
        dimension.

        Groups: ``posterior`` (sampled and published parameters, dims chain, draw, curve),
        ``sample_stats`` (``diverging``, ``energy``, ``n_steps``, ``acceptance_rate``,
        ``step_size``, ``lp``, ``e_bfmi``: the chain's E-BFMI, of its unthinned
        transitions for a re-fitted curve, and ``depth_hit``: whether the draw's tree
        reached the depth cap, for a re-fitted curve the share of the thinned transitions
        behind it, and ``warmup_divergences``: the chain's divergent warm-up transitions),
        ``observed_data`` (``loss`` over dimension ``point``: the points of all curves
        concatenated), ``constant_data`` (per point: every input some curve has, NaN for
        the points of curves without it, ``point_curve``, and ``run`` ids, "" for curves
        without; per curve: ``status``, ``message``, ``retried``, ``has_run``, ``derived``
        (inputs obtained through C = 6ND, comma-separated), ``ref_*``)
        and, when ``log_likelihood`` is True (default: when it has at most 50 million values),
        ``log_likelihood`` (chain, draw, point), computed in JAX, on the same points as
        ``observed_data``: NaN at the points of a curve that has data but was not fitted
        (``invalid_input``); select the fitted curves' points before ``az.loo``.
        """
        curve_dims = {"curve": list(self.curve_ids)}
        posterior = {k: np.moveaxis(v, 0, -1) for k, v in self.samples.items()}
        for k, v in self.params.items():
            posterior.setdefault(k, np.moveaxis(v, 0, -1))
        st = self.sample_stats
        stats = {
            "diverging": st["diverging"],
            "energy": st["energy"],
            "n_steps": st["num_steps"],
            "acceptance_rate": st["accept_prob"],
            "step_size": np.broadcast_to(st["step_size"][:, :, None], st["energy"].shape),
            "lp": -st["potential_energy"],
        }
        if "bfmi" in st:
            stats["e_bfmi"] = np.broadcast_to(st["bfmi"][:, :, None], st["energy"].shape)
        if "depth_hit" in st:
            stats["depth_hit"] = st["depth_hit"]
        if "warmup_divergences" in st:
            stats["warmup_divergences"] = np.broadcast_to(
                st["warmup_divergences"][:, :, None], st["energy"].shape
            )
        stats = {k: np.moveaxis(np.asarray(v), 0, -1) for k, v in stats.items()}
        points = self._points()
        constant = {k: v for k, v in points.items() if k != "loss"}
        per_curve = {
            "status": self.status.astype(str),
            "message": np.asarray(self.messages, dtype=str),
            "retried": self.retried.astype(np.int8),
            "retry_unshrunk": self.retry_unshrunk.astype(np.int8),
            "num_points": np.array([0 if d is None else len(d) for d in self.data]),
            "has_run": np.array([d is not None and d.run is not None for d in self.data], np.int8),
            "derived": np.array(["" if d is None else ",".join(d.derived) for d in self.data]),
            **{f"ref_{k}": np.asarray(v) for k, v in self.ref.items()},
        }
        constant.update(per_curve)
        dims = {k: ["curve"] for k in (*posterior, *stats, *per_curve)}
        dims.update({k: ["point"] for k in (*points, "loss")})
        groups = {
            "posterior": posterior,
            "sample_stats": stats,
            "observed_data": {"loss": points["loss"]},
            "constant_data": constant,
        }
        total = self.num_chains * self.num_draws * len(points["loss"])
        if log_likelihood is None:
            log_likelihood = total <= LOG_LIKELIHOOD_MAX_VALUES
        if log_likelihood and len(points["loss"]):
            groups["log_likelihood"] = {"loss": self._points_log_likelihood()}
        return azc.from_dict(groups, coords=curve_dims, dims=dims, attrs=self._attrs())

    def save(self, path: str | Path) -> Path:
        """Write the batch to a netCDF file (without the recomputable log-likelihood); read it
        back with :func:`load_batch` / :meth:`BatchFit.load`."""
        path = Path(path)
        azc.to_netcdf(self.to_arviz(log_likelihood=False), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BatchFit:
        """Read a batch written by :meth:`save`."""
        return load_batch(path)

    # ------------------------------------------------------------------ display
    def _header(self) -> str:
        counts = pd.Series(self.status).value_counts()
        states = ", ".join(f"{n} {s}" for s, n in counts.items())
        return (
            f"BatchFit of {self.law.name} ({self.law.formula}) to {len(self)} curves, "
            f"{self.spec.likelihood} likelihood; {self.num_chains} chains x {self.num_draws} "
            f"draws per curve; {states}"
        )

    def _short_table(self) -> pd.DataFrame:
        with _default_intervals():
            s = self.summary()
        keep = ["status", "num_points"]
        keep += [f"{k}_median" for k in self.law.natural_names]
        keep += ["max_rhat", "min_ess_bulk", "divergences"]
        return s[keep]

    def __repr__(self) -> str:
        table = self._short_table()
        text = table.head(20).to_string(float_format=lambda x: f"{x:.4g}")
        more = f"\n... {len(self) - 20} more curves" if len(self) > 20 else ""
        return self._header() + "\n" + text + more

    def _repr_html_(self) -> str:
        table = self._short_table().head(50)
        return f"<p><b>bayescale</b> {html.escape(self._header())}</p>" + table.to_html(
            float_format=lambda x: f"{x:.4g}"
        )


def load_batch(path: str | Path) -> BatchFit:
    """Read a :class:`BatchFit` written by :meth:`BatchFit.save`.

    The law is looked up by name in the registry (register a custom law before loading);
    custom priors are not stored. Diagnostics are recomputed from the stored draws (E-BFMI
    from the stored per-chain ``e_bfmi``). Each curve gets back the input columns it had
    (``N``, ``D``, ``C``, ``U``: those not NaN at its points). ``warmup_divergences`` are
    zeros for files written before they were stored.
    """
    container = azc.from_netcdf(path)
    post = azc.group(container, "posterior")
    attrs = dict(post.attrs)
    if attrs.get("bayescale_kind") != "batch":
        raise ValueError(f"{path} holds a single fit, not a batch; read it with bayescale.load")
    df = attrs["df"]
    trials = int(attrs.get("trials", -1))
    spec = build_model(
        get_law(str(attrs["law"])),
        likelihood=str(attrs["likelihood"]),
        df=None if isinstance(df, str) else float(df),
        trials=None if trials < 0 else trials,
    )
    ids = [str(c) for c in np.asarray(post["curve"])]
    samples = {k: np.moveaxis(np.asarray(post[k]), -1, 0) for k in spec.site_names}
    st = azc.group(container, "sample_stats")
    stats = {
        "diverging": np.moveaxis(np.asarray(st["diverging"]), -1, 0),
        "energy": np.moveaxis(np.asarray(st["energy"]), -1, 0),
        "num_steps": np.moveaxis(np.asarray(st["n_steps"]), -1, 0).astype(np.int32),
        "accept_prob": np.moveaxis(np.asarray(st["acceptance_rate"]), -1, 0),
        "potential_energy": -np.moveaxis(np.asarray(st["lp"]), -1, 0),
    }
    stats["step_size"] = np.moveaxis(np.asarray(st["step_size"]), -1, 0)[:, :, 0]
    if "warmup_divergences" in st:
        warm = np.moveaxis(np.asarray(st["warmup_divergences"]), -1, 0)[:, :, 0]
        stats["warmup_divergences"] = warm.astype(np.int32)
    else:  # files written before it was recorded
        stats["warmup_divergences"] = np.zeros(stats["step_size"].shape, dtype=np.int32)
    if "e_bfmi" in st:
        stats["bfmi"] = np.moveaxis(np.asarray(st["e_bfmi"]), -1, 0)[:, :, 0]
    if "depth_hit" in st:  # absent from files written before it was recorded
        stats["depth_hit"] = np.moveaxis(np.asarray(st["depth_hit"]), -1, 0).astype(np.float32)
    const = azc.group(container, "constant_data")
    obs = azc.group(container, "observed_data")
    point_curve = np.asarray(const["point_curve"]).astype(str)
    loss = np.asarray(obs["loss"])
    # NaN where a curve lacks the input (see BatchFit._points)
    cols = {k: np.asarray(const[k], dtype=float) for k in ("N", "D", "C", "U") if k in const}
    run = np.asarray(const["run"]).astype(str) if "run" in const else None
    num_points = np.asarray(const["num_points"])
    # files written before has_run stored run ids only when every curve had them
    has_run = np.asarray(const["has_run"]).astype(bool) if "has_run" in const else None
    # inputs obtained through C = 6ND, per curve (absent from files written before it)
    derived = np.asarray(const["derived"]).astype(str) if "derived" in const else None
    datas: list[ScalingData | None] = []
    for i, (cid, n) in enumerate(zip(ids, num_points, strict=True)):
        if n == 0:
            datas.append(None)
            continue
        sel = point_curve == cid
        kw = {k: v[sel] for k, v in cols.items() if not np.isnan(v[sel]).all()}
        if run is not None and (has_run is None or has_run[i]):
            kw["run"] = run[sel]
        data = from_arrays(loss=loss[sel], curve=cid, **kw)
        if derived is not None and derived[i]:
            data = dataclasses.replace(data, derived=tuple(derived[i].split(",")))
        datas.append(data)
    status = np.asarray(const["status"]).astype(str)
    ref = {k[4:]: np.asarray(const[k], dtype=float) for k in const if str(k).startswith("ref_")}
    diag = _diagnose(samples, stats, spec)
    seed = int(attrs.get("seed", -1))
    batch = BatchFit(
        spec=spec,
        curve_ids=tuple(ids),
        data=tuple(datas),
        ref=ref,
        samples=samples,
        sample_stats=stats,
        config=SamplerConfig(**json.loads(attrs["config"])),
        diagnostics=diag,
        status=status,
        messages=tuple(np.asarray(const["message"]).astype(str).tolist()),
        retried=np.asarray(const["retried"]).astype(bool),
        timing=json.loads(attrs.get("timing", "{}")),
        seed=None if seed < 0 else seed,
        retry_unshrunk=(
            np.asarray(const["retry_unshrunk"]).astype(bool) if "retry_unshrunk" in const else None
        ),
    )
    if "pooling" in attrs:  # written by a pooled fit: restore its population
        from .pooling import _from_container

        return _from_container(batch, container)
    return batch


# ============================================================================= synthetic data
def synthetic_curves(
    num_curves: int,
    *,
    law: str = "power_n",
    seed: int = 0,
    num_points: tuple[int, int] = (20, 60),
    sigma: tuple[float, float] = (0.01, 0.05),
) -> tuple[ScalingData, pd.DataFrame]:
    """Synthetic learning curves with known parameters, for tests and benchmarks.

    Each curve has 20-60 points (``num_points``) log-uniform over 2.5-4 decades of ``N``
    starting between 1e5 and 1e7, and lognormal noise with ``sigma`` drawn from 0.01-0.05.
    ``power_n`` (``L = E + A N^-alpha``, Hestness et al. 2017): ``E`` in 1.5-3, ``alpha`` in
    0.15-0.6, the reducible term at the smallest ``N`` 0.5-3 times ``E``. ``kaplan_n``
    (``L = (N_c / N)^alpha_N``, Kaplan et al. 2020): ``alpha_N`` in 0.05-0.3 and the loss at
    the smallest ``N`` in 2-6.

    Returns
    -------
    data, truth
        A :class:`~bayescale.data.ScalingData` with curve ids ``curve_0000``, ... and a
        DataFrame of the true parameters (published names) indexed by curve id.

    Examples
    --------
    >>> data, truth = synthetic_curves(3, seed=0)
    >>> list(truth.columns), len(data.curve_ids)
    (['E', 'A', 'alpha', 'sigma'], 3)
    """
    if law not in ("power_n", "kaplan_n"):
        raise ValueError(f"synthetic_curves supports 'power_n' and 'kaplan_n', got {law!r}")
    rng = np.random.default_rng(seed)
    width = len(str(max(num_curves - 1, 1)))
    width = max(width, 4)
    ns, losses, curves, rows = [], [], [], {}
    for k in range(num_curves):
        cid = f"curve_{k:0{width}d}"
        n = int(rng.integers(num_points[0], num_points[1] + 1))
        low = rng.uniform(5.0, 7.0)
        N = np.sort(10 ** rng.uniform(low, low + rng.uniform(2.5, 4.0), n))
        s = rng.uniform(*sigma)
        if law == "power_n":
            E, alpha = rng.uniform(1.5, 3.0), rng.uniform(0.15, 0.6)
            A = rng.uniform(0.5, 3.0) * E * N.min() ** alpha
            mean = E + A * N**-alpha
            rows[cid] = {"E": E, "A": A, "alpha": alpha, "sigma": s}
        else:
            alpha = rng.uniform(0.05, 0.3)
            N_c = N.min() * rng.uniform(2.0, 6.0) ** (1.0 / alpha)
            mean = (N_c / N) ** alpha
            rows[cid] = {"N_c": N_c, "alpha_N": alpha, "sigma": s}
        ns.append(N)
        losses.append(mean * np.exp(s * rng.standard_normal(n)))
        curves.append(np.full(n, cid, dtype=object))
    data = from_arrays(
        N=np.concatenate(ns), loss=np.concatenate(losses), curve=np.concatenate(curves)
    )
    return data, pd.DataFrame.from_dict(rows, orient="index")
