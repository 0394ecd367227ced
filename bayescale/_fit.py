"""``bayescale.fit``: the thin driver from a table of runs to a :class:`~bayescale.results.Fit`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .data import ScalingData, as_scaling_data
from .infer.nuts import SamplerConfig, run_nuts
from .laws import Law
from .model import build_model, check_dtype, warn_proportions
from .results import ConvergenceWarning, Fit, diagnose_stats

#: Target acceptance probability of the automatic retry of a fit with divergences or high R-hat.
RETRY_TARGET_ACCEPT = 0.99


def reference_point(data: ScalingData, inputs: tuple[str, ...]) -> dict[str, float]:
    """Log geometric-mean of each input and mean log loss: the centre of the parametrisation."""
    logs = data.log_inputs()
    ref = {k: float(np.mean(logs[k])) for k in inputs}
    ref["loss"] = float(np.mean(data.log_loss))
    return ref


#: Integer seeds JAX's PRNGKey takes (a C long): [-2**63, 2**63).
SEED_RANGE = (-(2**63), 2**63)


def check_seed(seed: Any, name: str = "rng_key") -> int:
    """``int(seed)`` when it is an integer JAX can seed from, else a ValueError naming it."""
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise ValueError(f"{name} must be an integer seed or a JAX key, got {seed!r}")
    if not SEED_RANGE[0] <= int(seed) < SEED_RANGE[1]:
        raise ValueError(f"{name} seed {seed} is outside [-2**63, 2**63)")
    return int(seed)


def as_key(rng_key: Any) -> tuple[np.ndarray, int | None]:
    """``rng_key`` as a raw ``uint32`` key array, and the seed when it was an integer.

    Accepts an integer seed (``None`` is 0), a typed key (``jax.random.key``) or a raw key
    (``jax.random.PRNGKey``): one rule for ``fit``, ``fit_many`` and ``fit_pooled``.

    >>> key, seed = as_key(jax.random.key(7))
    >>> key.dtype.name, seed, bool((key == as_key(7)[0]).all())
    ('uint32', None, True)
    """
    if rng_key is None:
        rng_key = 0
    if isinstance(rng_key, int | np.integer | bool | np.bool_):
        seed = check_seed(rng_key)
        return np.asarray(jax.random.PRNGKey(seed)), seed
    if isinstance(rng_key, jax.Array) and jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        if rng_key.shape != ():
            raise ValueError(f"rng_key must be one JAX key, got an array of shape {rng_key.shape}")
        return np.asarray(jax.random.key_data(rng_key)), None
    raw = np.asarray(rng_key) if isinstance(rng_key, jax.Array | np.ndarray) else None
    if raw is None or raw.dtype != np.uint32 or raw.ndim != 1:
        raise ValueError(
            f"rng_key must be an integer seed or a JAX key (jax.random.key or "
            f"jax.random.PRNGKey), got {rng_key!r}"
        )
    return raw, None


def fit(
    data: Any,
    law: str | Law = "chinchilla",
    *,
    method: str = "nuts",
    likelihood: str = "lognormal",
    priors: Mapping[str, Any] | None = None,
    df: float | None = None,
    trials: int | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 4,
    target_accept_prob: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool = True,
    chain_method: str = "auto",
    rng_key: Any = 0,
    retry: bool = True,
    dtype: str = "float64",
) -> Fit | Any:
    """Fit a scaling law to training runs with NUTS and return the posterior.

    Parameters
    ----------
    data
        A :class:`~bayescale.data.ScalingData`, a pandas DataFrame, a CSV path or a dict of
        arrays with columns ``N`` (parameters), ``D`` (tokens) and/or ``C`` (FLOP), and ``loss``.
    law
        Law name (``bayescale.laws.available()``) or a :class:`~bayescale.laws.Law`.
    method
        ``"nuts"`` (the posterior; default) or ``"map"``: the multi-start maximum a posteriori
        point under the same model and priors, returned as a
        :class:`~bayescale.infer.optimize.PointFit` (see :func:`bayescale.optimize` for Huber
        and least-squares point fits and bootstrap intervals).
    likelihood
        ``"lognormal"`` (Normal on log loss, default), ``"student_t"`` (robust; heavy tails for
        outlying runs, degrees of freedom ``df`` or learnt when ``df=None``), ``"laplace"``
        (the Bayesian analogue of the Huber/L1 fits of Hoffmann et al.), ``"normal"`` (on loss);
        for accuracies in (0, 1) (e.g. the ``sigmoid_c`` law): ``"beta"`` or ``"binomial"``
        (with ``trials``).
    priors
        Per-parameter prior overrides: name -> NumPyro distribution (``"sigma"`` is the noise).
    df
        Student-t degrees of freedom; ``None`` learns them (prior Gamma(2, 0.1)).
    trials
        Number of benchmark items behind each accuracy, for ``likelihood="binomial"``.
    num_warmup, num_samples, num_chains
        NUTS iterations per chain and the number of chains. Cost is linear in
        ``num_chains * (num_warmup + num_samples)``; chains run in parallel over local devices.
    target_accept_prob, max_tree_depth, dense_mass
        NUTS settings. The default 0.9 gives no divergences on the shipped examples.
    chain_method
        ``"auto"``, ``"parallel"``, ``"sequential"`` or ``"vectorized"``.
    rng_key
        Integer seed or a JAX PRNG key; the same seed gives the same draws on the same devices.
    retry
        Re-run once when the first run misses the convergence policy (DESIGN.md §5): with
        ``target_accept_prob=0.99`` after divergences, with twice the warm-up and draws after
        R-hat > 1.01 or ESS < 400. The retry compiles a new program (a few seconds).
    dtype
        ``"float64"`` (default; power laws over 1e6..1e27) or ``"float32"`` (faster on
        accelerators).

    Returns
    -------
    Fit
        Immutable result with ``summary()``, ``predict()``, ``to_arviz()``, ``save()``.

    Warns
    -----
    ConvergenceWarning
        When the final run misses the policy: R-hat > 1.01, ESS < 400, divergences or
        E-BFMI < 0.3.

    References
    ----------
    Hoffman & Gelman 2014 (NUTS); Vehtari et al. 2021 (rank-normalized R-hat, ESS);
    Hoffmann et al. 2022, arXiv:2203.15556 (Chinchilla law).

    Examples
    --------
    >>> import bayescale as bs
    >>> data = bs.datasets.chinchilla_synthetic(seed=1)
    >>> fit = bs.fit(data, law="chinchilla")                     # doctest: +SKIP
    >>> fit.predict(N=70e9, D=1.4e12, prob=0.9)                  # doctest: +SKIP
    """
    if method == "map":
        from .infer.optimize import optimize

        check_dtype(dtype)
        if dtype == "float32":
            raise ValueError(
                f"dtype={dtype!r} applies to method='nuts'; the MAP fit runs in float64"
            )
        return optimize(
            data,
            law,
            objective="map",
            priors=priors,
            likelihood=likelihood,
            df=df,
            trials=trials,
            rng_key=rng_key,
        )
    if method != "nuts":
        raise ValueError(f"method must be 'nuts' or 'map', got {method!r}")
    data = as_scaling_data(data)
    spec = build_model(law, likelihood=likelihood, priors=priors, df=df, trials=trials)
    law = spec.law
    warn_proportions(data.loss, spec, locate=data.locate)
    data.require(law.inputs, num_params=spec_size(spec), law=law.name)
    check_dtype(dtype, spec)
    np_dtype = np.float64 if dtype == "float64" else np.float32
    ref = reference_point(data, law.inputs)
    log_x = {k: v for k, v in data.log_inputs().items() if k in law.inputs}
    key, seed = as_key(rng_key)
    config = SamplerConfig(
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        num_chains=int(num_chains),
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=int(max_tree_depth),
        dense_mass=bool(dense_mass),
        chain_method=chain_method,
    )
    _validate_config(config)
    result = _sample(spec, config, data, ref, log_x, key, np_dtype, retried=False, seed=seed)
    conv = result.convergence
    if retry and not conv.converged:
        config = retry_config(config, conv)
        result = _sample(spec, config, data, ref, log_x, key, np_dtype, retried=True, seed=seed)
    if not result.converged:
        warnings.warn(
            f"{law.name} fit did not converge: {'; '.join(result.convergence.problems)}"
            + (" (after one automatic retry)" if result.convergence.retried else "")
            + ". Forecasts from it are unreliable.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def retry_config(config: SamplerConfig, conv) -> SamplerConfig:
    """Settings of the one automatic retry: divergences raise ``target_accept_prob`` to 0.99
    (smaller steps); high R-hat or low ESS double warm-up and draws (longer chains), and
    without divergences also adapt the mass matrix without Stan's absolute shrinkage
    (``regularize_mass=False``: slow mixing without divergences is the signature of a metric
    mis-scaled for a well-identified parameter)."""
    changes: dict[str, Any] = {}
    if conv.divergences:
        changes["target_accept_prob"] = max(config.target_accept_prob, RETRY_TARGET_ACCEPT)
    if conv.mixing_missed:
        changes["num_warmup"] = 2 * config.num_warmup
        changes["num_samples"] = 2 * config.num_samples
        if not conv.divergences:
            changes["regularize_mass"] = False
    if not changes:  # E-BFMI alone: smaller steps help the momentum resampling least, but do try
        changes["target_accept_prob"] = max(config.target_accept_prob, RETRY_TARGET_ACCEPT)
    return SamplerConfig(**{**config.__dict__, **changes})


def spec_size(spec) -> int:
    """Number of sampled parameters (law parameters plus noise sites)."""
    return len(spec.site_names)


def _validate_config(config: SamplerConfig) -> None:
    if config.num_chains < 1 or config.num_samples < 2 or config.num_warmup < 0:
        raise ValueError(
            "need num_chains >= 1, num_samples >= 2 and num_warmup >= 0, got "
            f"{config.num_chains}, {config.num_samples}, {config.num_warmup}"
        )
    if not 0 < config.target_accept_prob < 1:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {config.target_accept_prob}")
    if config.chain_method not in ("auto", "parallel", "sequential", "vectorized"):
        raise ValueError(f"unknown chain_method {config.chain_method!r}")


def _sample(spec, config, data, ref, log_x, key, dtype, *, retried: bool, seed) -> Fit:
    draws, timing = run_nuts(
        spec, config, log_x=log_x, ref=ref, log_loss=data.log_loss, rng_key=key, dtype=dtype
    )
    samples = {k: np.asarray(v, dtype=np.float64) for k, v in draws.pop("samples").items()}
    stats = {
        "diverging": draws["diverging"],
        "energy": np.asarray(draws["energy"], dtype=np.float64),
        "num_steps": draws["num_steps"],
        "accept_prob": np.asarray(draws["accept_prob"], dtype=np.float64),
        "step_size": np.asarray(draws["step_size"], dtype=np.float64),
        "potential_energy": np.asarray(draws["potential_energy"], dtype=np.float64),
    }
    diag, conv = diagnose_stats(samples, stats, config, retried)
    return Fit(
        spec=spec,
        data=data,
        ref=ref,
        samples=samples,
        sample_stats=stats,
        config=config,
        diagnostics=diag,
        convergence=conv,
        timing=timing,
        seed=seed,
    )
