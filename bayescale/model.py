"""Build the NumPyro model of a fit: priors + law + likelihood.

The model takes log inputs and the log loss (computed in float64 NumPy before JAX sees them) and a
reference point ``ref`` (log geometric-mean inputs, mean log loss) on which the default priors are
centred. An optional boolean ``mask`` removes padded points from the likelihood (batch fits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from .laws import Law
from .laws import get as get_law

#: Likelihood names: Normal on log loss (default), Student-t / Laplace on log loss, Normal on
#: loss; for accuracies in (0, 1): Beta (mean-precision) and beta-binomial counts of items.
LIKELIHOODS = ("lognormal", "student_t", "laplace", "normal", "beta", "binomial")
#: Likelihoods of a proportion: the law's prediction must lie in (0, 1).
PROPORTION_LIKELIHOODS = ("beta", "binomial")


def check_dtype(dtype: str, spec: ModelSpec | None = None) -> None:
    """Refuse a sampler precision ``dtype`` that is not one, or that the model ``spec``
    (when given) cannot use.

    ``"float32"`` is refused with the ``"beta"`` and ``"binomial"`` likelihoods: their log
    densities subtract log-gamma values of size phi log phi, which float32 rounds by up to 1.6
    nats (Beta) and 0.4 nats (beta-binomial) at precisions phi of 1e5 to 1e6 (sigma about
    5e-4 to 1.6e-3, where item-sampling data put the posterior), so that warm-up stalls.

    >>> check_dtype("float32", build_model("sigmoid_c", likelihood="binomial", trials=100))
    Traceback (most recent call last):
    ...
    ValueError: dtype='float32' does not support the binomial likelihood: ...
    """
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if dtype == "float32" and spec is not None and spec.likelihood in PROPORTION_LIKELIHOODS:
        raise ValueError(
            f"dtype='float32' does not support the {spec.likelihood} likelihood: its log "
            "density loses up to 1.6 nats to float32 rounding at precise data (phi log phi "
            "cancellation), which stalls warm-up; fit accuracies in float64"
        )


def check_proportions(
    loss: Any, spec: ModelSpec, *, locate: Callable[[int], tuple[int, int | None]] | None = None
) -> str:
    """Check observed accuracies against a proportion likelihood of ``spec``.

    Raises :class:`~bayescale.data.DataError` naming the first row whose accuracy the
    likelihood cannot score: 1 or more under ``"beta"`` (its density at 1 is 0 or infinite),
    more than 1 under ``"binomial"`` (every item right, ``trials`` of ``trials``, is a count
    it scores). Returns a note, ``""`` when there is none, when a ``"binomial"`` accuracy is
    not a whole number of the ``trials`` items: the likelihood counts
    ``round(accuracy * trials)`` correct items (0.263 with ``trials=10`` is fitted as 3/10),
    harmless for a published accuracy rounded to a few digits but not for a wrong
    ``trials``; callers warn with it. Other likelihoods pass unchecked. ``locate`` (e.g.
    :meth:`ScalingData.locate <bayescale.data.ScalingData.locate>`) maps a row of ``loss`` to
    the row of the user's table and its CSV line, which the messages then name.

    Examples
    --------
    >>> spec = build_model("sigmoid_c", likelihood="binomial", trials=10)
    >>> check_proportions([0.3, 0.5, 1.0], spec)
    ''
    >>> check_proportions([0.263, 0.5], spec)[:62]
    'row 0: accuracy 0.263 is not a whole number of the trials=10 i'
    """
    if spec.likelihood not in PROPORTION_LIKELIHOODS:
        return ""
    from .data import DataError, _place

    def place(row: int) -> tuple[str, int, int | None]:
        shown, line = (row, None) if locate is None else locate(row)
        return _place(None, shown, line), shown, line

    acc = np.asarray(loss, dtype=np.float64)
    binomial = spec.likelihood == "binomial"
    bad = ~(acc <= 1.0) if binomial else ~(acc < 1.0)
    if bad.any():
        row = int(np.argmax(bad))
        where, shown, line = place(row)
        raise DataError(
            f"the {spec.likelihood} likelihood models accuracies in "
            f"{'(0, 1]' if binomial else '(0, 1)'}; {where} has {float(acc[row])!r}",
            column="loss",
            row=shown,
            line=line,
            value=float(acc[row]),
        )
    if not binomial:
        return ""
    count = acc * spec.trials
    off = np.abs(count - np.round(count)) > 1e-9 * np.maximum(1.0, count)  # float error: 1e-15
    if not off.any():
        return ""
    row = int(np.argmax(off))
    n = int(spec.trials)
    return (
        f"{place(row)[0]}: accuracy {float(acc[row])!r} is not a whole number of the trials={n} "
        f"items ({int(off.sum())} such row(s)); the binomial likelihood counts "
        f"round(accuracy * trials) = {int(np.round(count[row]))} correct there. Harmless if "
        "the accuracies were rounded for publication; otherwise check trials="
    )


def warn_proportions(
    loss: Any,
    spec: ModelSpec,
    *,
    stacklevel: int = 2,
    locate: Callable[[int], tuple[int, int | None]] | None = None,
) -> None:
    """:func:`check_proportions`, its note warned as a :class:`~bayescale.data.DataWarning`
    attributed ``stacklevel`` frames above the caller (2: the caller's caller)."""
    note = check_proportions(loss, spec, locate=locate)
    if note:
        import warnings

        from .data import DataWarning

        warnings.warn(note, DataWarning, stacklevel=stacklevel + 1)


def beta_precision(sigma):
    """Beta precision ``phi`` whose standard deviation at mean 0.5 is ``sigma``.

    ``Var = mu (1 - mu) / (1 + phi)``, so ``sigma`` keeps the meaning it has for the ``normal``
    likelihood (the noise of one observed accuracy, at 50%).
    """
    return jnp.maximum(0.25 / jnp.square(sigma) - 1.0, 1e-6)


#: Shape above which :func:`log_rising_factorial` takes Stirling's series instead of a
#: difference of ``lgamma`` values (which loses ``|lgamma(x)| * eps`` nats: 1e-3 at x = 1e12).
_STIRLING_FROM = 1e5


def _gammaln(xp: Any):
    """``gammaln`` of SciPy for ``xp = numpy``, of JAX otherwise."""
    if xp is np:
        from scipy.special import gammaln
    else:
        from jax.scipy.special import gammaln
    return gammaln


def log_rising_factorial(x, j, *, xp: Any = jnp):
    """``log Gamma(x + j) - log Gamma(x)`` for ``x > 0``, ``j >= 0``, accurate for any ``x``.

    Below :data:`_STIRLING_FROM` it is the difference of ``gammaln``; above, Stirling's series
    written so that nothing cancels: ``j log(x + j) + (x - 1/2) log1p(j / x) - j - j / (12 x
    (x + j))`` (the next term is below 1e-17). ``xp`` is ``jax.numpy`` (the model; both
    branches stay finite, so ``where`` passes clean gradients) or ``numpy`` (scores).
    """
    gammaln = _gammaln(xp)
    big = x >= _STIRLING_FROM
    small_x = xp.where(big, 1.0, x)
    large_x = xp.where(big, x, _STIRLING_FROM)
    direct = gammaln(small_x + j) - gammaln(small_x)
    series = (
        j * xp.log(large_x + j)
        + (large_x - 0.5) * xp.log1p(j / large_x)
        - j
        - j / (12.0 * large_x * (large_x + j))
    )
    return xp.where(big, series, direct)


def beta_binomial_logpmf(k, n, a, b, *, xp: Any = jnp):
    """Log probability of ``k`` successes in ``n`` trials under the beta-binomial with Beta
    shapes ``a, b``, accurate however large ``a + b`` is.

    NumPyro's ``BetaBinomial`` and SciPy's ``betabinom`` subtract ``betaln`` values of size
    ``(a + b) log(a + b)``: at the precisions that a noise scale ``sigma`` of 5e-7 or less
    gives (``a + b`` >= 1e12) they err by 1e-3 to 100 nats per count, with gradients to match, a
    spurious density that trapped NUTS chains at ``sigma -> 0`` (the binomial limit, where
    counts leave ``sigma`` free). Written with rising factorials instead,
    ``log C(n, k) + log (a)_k + log (b)_{n-k} - log (a + b)_n``, it tends to the binomial
    log probability as ``a + b -> inf``.

    Parameters
    ----------
    k, n
        Successes and trials (floats or arrays of them).
    a, b
        Beta shapes (``m phi`` and ``(1 - m) phi`` in the model), > 0.
    xp
        ``jax.numpy`` (default) or ``numpy``.

    References
    ----------
    Skellam 1948, *A probability distribution derived from the binomial distribution by
    regarding the probability of success as variable between the sets of trials*, JRSS B 10;
    Stirling's series: Abramowitz & Stegun 1964, *Handbook of Mathematical Functions*, 6.1.41.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import binom
    >>> round(float(beta_binomial_logpmf(250.0, 500.0, 5e15, 5e15, xp=np)), 6)
    -3.333595
    >>> round(float(binom.logpmf(250, 500, 0.5)), 6)
    -3.333595
    """
    gammaln = _gammaln(xp)
    choose = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
    return (
        choose
        + log_rising_factorial(a, k, xp=xp)
        + log_rising_factorial(b, n - k, xp=xp)
        - log_rising_factorial(a + b, n, xp=xp)
    )


#: Precision ``a + b`` above which :func:`beta_binomial_cdf` takes the binomial limit.
_BINOMIAL_LIMIT = 1e9


def beta_binomial_cdf(k: Any, n: int, a: Any, b: Any) -> np.ndarray:
    """``P(K <= k)`` for ``K ~ BetaBinomial(n, a, b)`` (NumPy, broadcasting), accurate at any
    precision ``a + b``: within 1e-5 for up to 1e5 items, 1.2e-4 for 1e6.

    SciPy's ``betabinom.cdf`` sums probabilities that subtract ``betaln`` values of size
    ``(a + b) log(a + b)``: its error is 2e-6 at ``a + b = 1e9``, 3e-3 at 1e12, 0.013 at 1e14,
    and at 1e16 it returns 1 for a probability of 0.75. Above ``a + b = 1e9`` this takes the
    binomial limit ``Binomial(n, a / (a + b))``, whose error there is about ``0.12 n / (a +
    b)`` (1.2e-5 for 1e5 items at 1e9, less above), and SciPy below.

    >>> from scipy.stats import binom
    >>> round(float(beta_binomial_cdf(380, 1000, 0.37e16, 0.63e16)), 8)
    0.75465073
    >>> round(float(binom.cdf(380, 1000, 0.37)), 8)
    0.75465073
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    limit = (a + b) > _BINOMIAL_LIMIT
    with np.errstate(invalid="ignore", divide="ignore"):
        near = stats.betabinom.cdf(k, n, np.where(limit, 1.0, a), np.where(limit, 1.0, b))
        far = stats.binom.cdf(k, n, a / (a + b))
    return np.where(limit, far, near)


class _BetaBinomial(dist.BetaBinomial):
    """NumPyro's beta-binomial with the log probability of :func:`beta_binomial_logpmf`."""

    def log_prob(self, value):
        return beta_binomial_logpmf(
            value, self.total_count, self.concentration1, self.concentration0
        )


class ModelError(ValueError):
    """A bad model specification: unknown likelihood, prior for an unknown parameter, ..."""


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything that defines the NumPyro model of a fit (hashable by identity of its parts).

    Parameters
    ----------
    law
        The scaling law.
    likelihood
        ``"lognormal"`` (Normal on log loss, default), ``"student_t"`` (Student-t on log loss with
        ``df`` degrees of freedom; robust to outlying runs), ``"normal"`` (Normal on loss), or,
        for accuracies, ``"beta"`` (Beta with mean the law and standard deviation ``sigma`` at
        50%) and ``"binomial"`` (beta-binomial: ``trials`` items per evaluation plus a spread
        ``sigma`` between runs; plain binomial as ``sigma -> 0``).
    priors
        Overrides of default priors, parameter name -> distribution or ``ref -> distribution``.
        ``"sigma"`` names the noise scale.
    df
        Degrees of freedom of the Student-t likelihood.
    trials
        Number of items of the benchmark (``"binomial"`` only), e.g. 14042 for MMLU.
    """

    law: Law
    likelihood: str = "lognormal"
    priors: tuple[tuple[str, Any], ...] = ()
    df: float = 4.0
    trials: float | None = None

    @property
    def key(self) -> tuple:
        """Cache key: two specs with equal keys build the same compiled program."""
        priors = tuple((k, id(v)) for k, v in self.priors)
        return (id(self.law), self.likelihood, priors, self.df, self.trials)

    @property
    def site_names(self) -> tuple[str, ...]:
        """Sampled site names: the law's parameters, ``sigma``, then ``nu`` when it is learnt."""
        extra = ("nu",) if self.likelihood == "student_t" and self.df is None else ()
        return (*self.law.param_names, "sigma", *extra)

    def prior(self, name: str, ref: Mapping[str, Any]):
        """The prior distribution of site ``name`` at reference ``ref``."""
        overrides = dict(self.priors)
        if name in overrides:
            p = overrides[name]
            return p if isinstance(p, dist.Distribution) else p(ref)
        if name == "nu":
            return dist.Gamma(2.0, 0.1)
        if name == "sigma":
            if self.likelihood in ("normal", *PROPORTION_LIKELIHOODS):
                return dist.HalfNormal(0.1 * jnp.exp(ref["loss"]))
            return dist.HalfNormal(0.1)
        (param,) = [p for p in self.law.parameters if p.name == name]
        return param.prior_at(ref)

    def __call__(self, log_x, ref, log_loss=None, mask=None):
        """The NumPyro model. ``log_x``: dict of log inputs, shape (n,); ``log_loss``: (n,)."""
        params = {
            name: numpyro.sample(name, self.prior(name, ref)) for name in self.law.param_names
        }
        sigma = numpyro.sample("sigma", self.prior("sigma", ref))
        mu = self.law.log_predict(params, log_x, ref)
        n = jnp.shape(mu)[-1]
        with numpyro.plate("obs_plate", n), handlers.mask(mask=True if mask is None else mask):
            if self.likelihood == "lognormal":
                numpyro.sample("obs", dist.Normal(mu, sigma), obs=log_loss)
            elif self.likelihood == "student_t":
                nu = self.df if self.df is not None else numpyro.sample("nu", self.prior("nu", ref))
                numpyro.sample("obs", dist.StudentT(nu, mu, sigma), obs=log_loss)
            elif self.likelihood == "laplace":
                numpyro.sample("obs", dist.Laplace(mu, sigma), obs=log_loss)
            elif self.likelihood in PROPORTION_LIKELIHOODS:
                m = jnp.clip(jnp.exp(mu), 1e-9, 1.0 - 1e-9)
                phi = beta_precision(sigma)
                obs = None if log_loss is None else jnp.exp(log_loss)
                if self.likelihood == "beta":
                    numpyro.sample("obs", dist.Beta(m * phi, (1.0 - m) * phi), obs=obs)
                else:
                    n = self.trials
                    count = None if obs is None else jnp.round(obs * n)
                    numpyro.sample("obs", _BetaBinomial(m * phi, (1.0 - m) * phi, n), obs=count)
            else:
                obs = None if log_loss is None else jnp.exp(log_loss)
                numpyro.sample("obs", dist.Normal(jnp.exp(mu), sigma), obs=obs)


def beta_shapes(log_mu: Any, sigma: Any) -> tuple[Any, Any]:
    """NumPy Beta shapes ``(m phi, (1 - m) phi)`` of the proportion likelihoods: mean
    ``m = exp(log_mu)`` clipped into (0, 1) as in the model, precision :func:`beta_precision`."""
    m = np.clip(np.exp(log_mu), 1e-9, 1.0 - 1e-9)
    phi = np.asarray(beta_precision(np.asarray(sigma, dtype=np.float64)))
    return m * phi, (1.0 - m) * phi


def predictive_draws(spec: ModelSpec, log_mu: Any, sigma: Any, rng: Any, *, nu: Any = None) -> Any:
    """Draws of a new observation (loss, or accuracy for the proportion likelihoods) given the
    law's log mean ``log_mu`` and the noise draws ``sigma`` (NumPy, broadcasting).

    ``nu`` holds the Student-t degrees of freedom when the fit learnt them (``spec.df`` is
    None); ``rng`` is a ``numpy.random.Generator``. Shared by ``Fit.predict`` and
    ``BatchFit.predict`` so that both sample the likelihood the model was fitted with.
    """
    lik = spec.likelihood
    if lik == "lognormal":
        return np.exp(log_mu + sigma * rng.standard_normal(np.shape(log_mu)))
    if lik == "laplace":
        return np.exp(log_mu + sigma * rng.laplace(size=np.shape(log_mu)))
    if lik == "student_t":
        df = spec.df if spec.df is not None else nu
        return np.exp(log_mu + sigma * rng.standard_t(df, size=np.shape(log_mu)))
    if lik in PROPORTION_LIKELIHOODS:
        p = rng.beta(*beta_shapes(log_mu, sigma))
        if lik == "beta":
            return p
        n = int(spec.trials)
        return rng.binomial(n, p) / n
    return np.exp(log_mu) + sigma * rng.standard_normal(np.shape(log_mu))


def build_model(
    law: str | Law,
    *,
    likelihood: str = "lognormal",
    priors: Mapping[str, Any] | None = None,
    df: float = 4.0,
    trials: float | None = None,
) -> ModelSpec:
    """Build the NumPyro model for ``law`` with a likelihood and optional prior overrides.

    Parameters
    ----------
    law
        Law name (see ``bayescale.laws.available()``) or a :class:`~bayescale.laws.Law`.
    likelihood
        One of ``"lognormal"``, ``"student_t"``, ``"laplace"``, ``"normal"``, ``"beta"``,
        ``"binomial"``.
    priors
        Per-parameter prior overrides (NumPyro distributions, or callables of the reference).
    df
        Student-t degrees of freedom.
    trials
        Items per evaluation for ``"binomial"`` (required there, unused otherwise).

    Returns
    -------
    ModelSpec
        Callable NumPyro model ``model(log_x, ref, log_loss=None, mask=None)``.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> from bayescale.model import build_model
    >>> spec = build_model("chinchilla", priors={"alpha": dist.LogNormal(-1.0, 0.3)})
    >>> spec.site_names
    ('log_L_ref', 'frac', 'split', 'alpha', 'beta', 'sigma')
    """
    law = get_law(law)
    if likelihood not in LIKELIHOODS:
        raise ModelError(
            f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
        )
    priors = dict(priors or {})
    known = (*law.param_names, "sigma")
    if likelihood == "student_t" and df is None:
        known = (*known, "nu")  # the learnt degrees of freedom (default Gamma(2, 0.1))
    bad = [k for k in priors if k not in known]
    if bad:
        raise ModelError(
            f"priors given for unknown parameter(s) {bad} of law {law.name!r}; "
            f"its parameters are {', '.join(known)}"
        )
    for k, v in priors.items():
        if not (isinstance(v, dist.Distribution) or callable(v)):
            raise ModelError(f"prior for {k!r} must be a numpyro distribution, got {v!r}")
    if df is not None and not (df > 0):
        raise ModelError(f"Student-t degrees of freedom must be > 0 or None (learnt), got {df}")
    df = None if df is None else float(df)
    if likelihood == "binomial":
        if trials is None or not (float(trials) >= 1 and float(trials) == int(trials)):
            raise ModelError(
                f"the binomial likelihood needs trials= (items per evaluation), got {trials!r}"
            )
        trials = float(trials)
    elif trials is not None:
        raise ModelError(f"trials= applies to the binomial likelihood only, not {likelihood!r}")
    return ModelSpec(
        law=law, likelihood=likelihood, priors=tuple(priors.items()), df=df, trials=trials
    )
