"""Sigmoid of log-compute: downstream accuracy and emergent abilities.

``acc = floor + (ceiling - floor) * sigmoid(k * (log C - log C0))``: accuracy rises from a
chance-level ``floor`` to a ``ceiling`` around the compute ``C0``, over about ``4 / k`` nats of
compute. Sigmoid links of this kind map scale to benchmark accuracy in Ruan, Maddison &
Hashimoto (2024, arXiv:2405.10938) and Owen (2024, arXiv:2401.04757), and describe the
"emergent" abilities of Wei et al. (2022, arXiv:2206.07682); the floor is the chance level of the
benchmark (0.25 for four-way multiple choice), which the user can fix with :func:`sigmoid`.

The law predicts an *accuracy* in (floor, ceiling), stored in the ``loss`` column of the data
(it must be > 0). ``log_predict`` returns the log accuracy as every law does; fit it with
``likelihood="normal"`` (Gaussian noise on the accuracy itself: ``sigma`` then has the prior
HalfNormal(0.1 x typical accuracy)), ``"beta"`` (a Beta distribution around the law) or
``"binomial"`` (``trials`` benchmark items per evaluation, plus a spread between runs).

*How it is sampled.* By default (``form="anchors"``) the four numbers NUTS sees are the
accuracy one decade below and one decade above the data's centre ``x_ref`` and the distances
of the floor below and of the ceiling above them, all in logits:

* ``logit_lo``: logit of the accuracy at ``x_ref / 10``;
* ``log_rise``: log of the logit rise from ``x_ref / 10`` to ``10 x_ref`` (> 0: the law rises);
* ``log_floor_gap``: log of the logit distance of the floor below the accuracy at ``x_ref / 10``;
* ``log_ceiling_gap``: log of the logit distance of the ceiling above the accuracy at
  ``10 x_ref``.

``k`` and ``C0`` follow from them. Data that see one tail of the rise pin the accuracy at the
two anchors and the level of that tail (the floor for the lower tail, the ceiling for the upper
one) and leave the other level free; in these coordinates that is one free axis, where in
``(floor, ceiling, k, x0)`` -- or in the intercept form ``k * (log x - log x_ref) + logit_ref``
-- the free level drags ``k`` and the intercept along a curved ridge. Flat data (no rise seen)
pin the two anchors to one level with ``log_rise`` small: in the slope form that is two modes
(the rise before or after the data) joined only by a thin neck at ``k -> 0``. On 200 SBC
simulations of ``sigmoid_c`` (``benchmarks/sbc.py``) the intercept form met the convergence
gate on 87.5% of the fits after the re-fit of 57% of them; this form meets it on all 200 with
almost no re-fits.

``form="slope"`` keeps the intercept form (sampled ``floor``, ``height = (ceiling - floor) /
(1 - floor)``, ``k`` and ``logit_ref``): use it to share the slope ``k`` between curves in
:func:`bayescale.pooling.fit_pooled`, which pools sampled parameters.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from .base import Law, Parameter

RUAN_2024 = (
    "Ruan, Maddison & Hashimoto 2024, Observational Scaling Laws and the Predictability of "
    "Language Model Performance, arXiv:2405.10938; Owen 2024, How predictable is "
    "language model benchmark performance?, arXiv:2401.04757; Wei et al. 2022, Emergent "
    "Abilities of Large Language Models, arXiv:2206.07682"
)

_INPUT_WORD = {"N": "parameters", "D": "tokens", "C": "compute (FLOP)"}


def _floor_prior(ref):
    """Beta(1.2, 3): chance levels of common benchmarks (0..0.5), mean 0.29."""
    import numpyro.distributions as dist

    return dist.Beta(1.2, 3.0)


def _scaled_floor_prior(ceiling, ref):
    """``ceiling * Beta(1.2, 3)``: the slope form's floor under a fixed ceiling below 1."""
    import numpyro.distributions as dist

    return dist.TransformedDistribution(
        dist.Beta(1.2, 3.0), dist.transforms.AffineTransform(0.0, ceiling)
    )


def _height_prior(ref):
    """Beta(2, 1.2) on (ceiling - floor) / (1 - floor): ceilings near 1 are most likely."""
    import numpyro.distributions as dist

    return dist.Beta(2.0, 1.2)


def _slope_prior(ref):
    """LogNormal(0, 1) on k, per nat of compute: the rise takes 0.8..21 nats (90%)."""
    import numpyro.distributions as dist

    return dist.LogNormal(0.0, 1.0)


def _logit_prior(ref):
    """Normal(0, 3) on the logit of the risen share at the data's centre: from 0.7% to 99.3%
    of the rise (90%); with k = 1 the midpoint lies within ~e^5 of the centre."""
    import numpyro.distributions as dist

    return dist.Normal(0.0, 3.0)


#: Anchors of ``form="anchors"``: one decade either side of the reference, in nats of x.
ANCHOR = math.log(10.0)

_FORMS = ("anchors", "slope")


def _logit_lo_prior(ref):
    """Normal(0, 1.5) on the logit of the accuracy (share of the rise with both levels fixed)
    a decade below the data's centre: 0.08..0.92 (90%)."""
    import numpyro.distributions as dist

    return dist.Normal(0.0, 1.5)


def _log_gap_prior(ref):
    """Normal(0, 1) on the log of a logit distance: the distance is 0.19..5.2 logits (90%).

    For the rise between the anchors (two decades apart) this gives k 0.09..1.4 per nat of x
    with free levels (median 0.41: the rise from 10% to 90% of the way, 2 ln 9 / k nats,
    spans 4.6 decades), a prior that keeps flat data -- a rise of nearly zero logits --
    within reach of the sampler."""
    import numpyro.distributions as dist

    return dist.Normal(0.0, 1.0)


def _check_level(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"sigmoid {name} must be in (0, 1), got {value!r}")
    return value


def _log_between(z_hi, z_lo, gap):
    """``log(sigmoid(z_hi) - sigmoid(z_lo))`` for ``z_hi = z_lo + gap``, ``gap > 0`` given apart
    (a sum of exponentials, so the difference never cancels); ``z_hi=None`` means level 1."""
    if z_hi is None:
        return jax.nn.log_sigmoid(-z_lo)
    return jax.nn.log_sigmoid(z_hi) + jax.nn.log_sigmoid(-z_lo) + jnp.log(-jnp.expm1(-gap))


def _logit(v: float) -> float:
    return math.log(v) - math.log1p(-v)


def _anchor_sites(floor: float | None, ceiling: float | None) -> tuple[str, ...]:
    """Sampled parameters of the anchor form for the fixed levels (``None``: sampled)."""
    if floor is not None and ceiling is not None:
        return ("logit_lo", "log_rise")
    start = ("logit_lo",) if floor is None and ceiling in (None, 1.0) else ()
    end = ("log_ceiling_gap",) if ceiling != 1.0 else ()
    return (*start, "log_floor_gap", "log_rise", *end)


def _anchor_pieces(p, floor: float | None, ceiling: float | None):
    """``(log floor, log(ceiling - floor), k, logit_ref)`` of the anchor parametrisation.

    Logits of the levels: ``z_f < z_lo < z_hi < z_c``, with ``z_hi = z_lo + exp(log_rise)``,
    ``z_f = z_lo - exp(log_floor_gap)``, ``z_c = z_hi + exp(log_ceiling_gap)`` (the fixed
    level, if any, is the starting point instead of ``logit_lo``). Shares of the rise at the
    anchors ``s = (acc - floor) / (ceiling - floor)`` give ``k = (logit s_hi - logit s_lo) / (2
    ANCHOR)`` and ``logit_ref = (logit s_hi + logit s_lo) / 2``.
    """
    rise = jnp.exp(p["log_rise"])
    if floor is not None and ceiling is not None:  # both levels fixed: anchors are shares
        lo = p["logit_lo"]
        hi = lo + rise
        log_f = jnp.full(jnp.shape(lo), math.log(floor))
        log_g = jnp.full(jnp.shape(lo), math.log(ceiling - floor))
        return log_f, log_g, (hi - lo) / (2.0 * ANCHOR), 0.5 * (hi + lo)
    below = jnp.exp(p["log_floor_gap"])
    above = None if ceiling == 1.0 else jnp.exp(p["log_ceiling_gap"])
    if floor is not None:
        z_f = jnp.full(jnp.shape(rise), _logit(floor))
        z_lo = z_f + below
    elif ceiling is not None and ceiling < 1.0:
        z_lo = _logit(ceiling) - above - rise
        z_f = z_lo - below
    else:
        z_lo = p["logit_lo"]
        z_f = z_lo - below
    z_hi = z_lo + rise
    if above is None:  # ceiling fixed at 1
        z_c = hi_gap = lo_gap = all_gap = None
    else:
        z_c = z_hi + above
        hi_gap, lo_gap, all_gap = above, rise + above, below + rise + above
    log_f = jax.nn.log_sigmoid(z_f)
    log_g = _log_between(z_c, z_f, all_gap)
    logit_s_lo = _log_between(z_lo, z_f, below) - _log_between(z_c, z_lo, lo_gap)
    logit_s_hi = _log_between(z_hi, z_f, below + rise) - _log_between(z_c, z_hi, hi_gap)
    k = (logit_s_hi - logit_s_lo) / (2.0 * ANCHOR)
    return log_f, log_g, k, 0.5 * (logit_s_hi + logit_s_lo)


def anchor_values(
    floor: float,
    ceiling: float,
    k: float,
    log_x0: float,
    log_x_ref: float,
    *,
    fixed_floor: bool = False,
    fixed_ceiling: bool = False,
) -> dict[str, float]:
    """The sampled parameters of ``sigmoid(form="anchors")`` for a curve given in its
    published parameters: the inverse of ``Law.natural`` (for starting values and tests).

    Parameters
    ----------
    floor, ceiling, k, log_x0
        The curve ``floor + (ceiling - floor) * sigmoid(k * (log x - log_x0))``.
    log_x_ref
        The reference point (log of the input at the data's centre).
    fixed_floor, fixed_ceiling
        Whether the law was built with that level fixed (it is then not a parameter).

    Returns
    -------
    dict
        ``logit_lo``, ``log_rise``, ``log_floor_gap``, ``log_ceiling_gap`` (those the law
        samples).

    Examples
    --------
    >>> v = anchor_values(0.25, 0.85, 1.0, 0.0, 0.0)
    >>> round(v["log_rise"], 4)
    0.7811
    """

    def acc(lx: float) -> float:
        return floor + (ceiling - floor) / (1.0 + math.exp(-k * (lx - log_x0)))

    lo, hi = log_x_ref - ANCHOR, log_x_ref + ANCHOR
    if fixed_floor and fixed_ceiling:
        s_lo, s_hi = k * (lo - log_x0), k * (hi - log_x0)
        return {"logit_lo": s_lo, "log_rise": math.log(s_hi - s_lo)}
    sites = _anchor_sites(floor if fixed_floor else None, ceiling if fixed_ceiling else None)
    z_lo, z_hi = _logit(acc(lo)), _logit(acc(hi))
    value = {
        "logit_lo": z_lo,
        "log_floor_gap": math.log(z_lo - _logit(floor)),
        "log_rise": math.log(z_hi - z_lo),
    }
    if ceiling < 1.0:
        value["log_ceiling_gap"] = math.log(_logit(ceiling) - z_hi)
    return {name: value[name] for name in sites}


def sigmoid(
    x: str = "C",
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    form: str = "anchors",
    name: str | None = None,
) -> Law:
    r"""Sigmoid law of the log input, with the floor and/or ceiling optionally fixed.

    ``acc = floor + (ceiling - floor) * sigmoid(k * (log x - log x0))``.

    Parameters
    ----------
    x
        The input, ``"C"`` (default), ``"N"`` or ``"D"``.
    floor
        Fixed chance-level accuracy in (0, 1), e.g. 0.25 for four-way multiple choice; ``None``
        (default) samples it.
    ceiling
        Fixed highest accuracy in (floor, 1]; ``None`` samples it.
    form
        ``"anchors"`` (default): sampled as the accuracy a decade either side of the data's
        centre and the logit distances of the levels from them (module docstring); priors
        ``logit_lo`` ~ Normal(0, 1.5), each ``log_*`` ~ Normal(0, 1). ``"slope"``: sampled as
        ``floor`` (Beta(1.2, 3)), ``height`` (Beta(2, 1.2)), ``k`` (LogNormal(0, 1)) and
        ``logit_ref`` (Normal(0, 3)), the form to share ``k`` in :func:`bayescale.pooling.fit_pooled`.
    name
        Registry name; default ``"sigmoid_<x>"`` with ``"_floor<value>"`` /
        ``"_ceiling<value>"`` appended for fixed levels (``"sigmoid_c_floor0.25"``) and
        ``"_slope"`` for ``form="slope"``.

    Returns
    -------
    Law
        Sampled parameters, anchor form: ``log_rise`` always; with both levels fixed only
        ``logit_lo`` besides, the logit of the *share* of the rise at ``x_ref / 10``;
        otherwise ``log_floor_gap``, ``log_ceiling_gap`` unless the ceiling is fixed at 1, and
        ``logit_lo`` unless the floor or a ceiling below 1 is fixed (the anchors then start
        from that level). Slope form: ``floor`` and ``height`` unless fixed, ``k`` (> 0, per
        nat of x) and ``logit_ref`` (``k * (log x_ref - log x0)``). Published parameters
        ``floor, ceiling, k, <x>0``.

    References
    ----------
    Ruan, Maddison & Hashimoto 2024, arXiv:2405.10938; Owen 2024, arXiv:2401.04757;
    Wei et al. 2022, arXiv:2206.07682.

    Examples
    --------
    >>> from bayescale.laws.sigmoid import sigmoid
    >>> law = sigmoid("C", floor=0.25)
    >>> law.name, law.param_names
    ('sigmoid_c_floor0.25', ('log_floor_gap', 'log_rise', 'log_ceiling_gap'))
    >>> sigmoid("C", form="slope").param_names
    ('floor', 'height', 'k', 'logit_ref')
    """
    if x not in ("N", "D", "C"):
        raise ValueError(f"sigmoid input must be 'N', 'D' or 'C', got {x!r}")
    if form not in _FORMS:
        raise ValueError(f"sigmoid form must be one of {_FORMS}, got {form!r}")
    floor = _check_level("floor", floor)
    if ceiling is not None and float(ceiling) == 1.0:
        ceiling_value: float | None = 1.0
    else:
        ceiling_value = _check_level("ceiling", ceiling)
    if floor is not None and ceiling_value is not None and not ceiling_value > floor:
        raise ValueError(f"sigmoid ceiling {ceiling_value} must exceed the floor {floor}")
    if name is None:
        name = f"sigmoid_{x.lower()}"
        if floor is not None:
            name += f"_floor{floor:g}"
        if ceiling_value is not None:
            name += f"_ceiling{ceiling_value:g}"
        if form == "slope":
            name += "_slope"

    if form == "anchors":

        def pieces(p):
            return _anchor_pieces(p, floor, ceiling_value)

    else:

        def pieces(p):
            lo = p["floor"] if floor is None else jnp.asarray(floor)
            hi = lo + (1.0 - lo) * p["height"] if ceiling_value is None else ceiling_value
            shape = jnp.shape(p["k"])
            log_f = jnp.broadcast_to(jnp.log(lo), shape)
            return log_f, jnp.broadcast_to(jnp.log(hi - lo), shape), p["k"], p["logit_ref"]

    def log_predict(p, log_x, ref):
        log_f, log_g, k, logit_ref = pieces(p)
        rise = log_g + jax.nn.log_sigmoid(k * (log_x[x] - ref[x]) + logit_ref)
        base = jnp.broadcast_to(log_f, jnp.shape(rise))
        return logsumexp(jnp.stack([base, rise]), axis=0)

    def natural(p, ref):
        log_f, log_g, k, logit_ref = pieces(p)
        lo = jnp.exp(log_f)
        return {
            "floor": lo,
            "ceiling": lo + jnp.exp(log_g),
            "k": k,
            f"{x}0": jnp.exp(ref[x] - logit_ref / k),
        }

    word = _INPUT_WORD[x]
    params = []
    if form == "anchors":
        both = floor is not None and ceiling_value is not None
        anchors = {
            "logit_lo": Parameter(
                "logit_lo",
                _logit_lo_prior,
                f"logit of the {'share of the rise' if both else 'accuracy'} at {x}_ref / 10",
            ),
            "log_floor_gap": Parameter(
                "log_floor_gap",
                _log_gap_prior,
                f"log of the logit distance from the floor up to the accuracy at {x}_ref / 10",
            ),
            "log_rise": Parameter(
                "log_rise",
                _log_gap_prior,
                f"log of the logit rise of the {'share' if both else 'accuracy'} from "
                f"{x}_ref / 10 to 10 {x}_ref ({word})",
            ),
            "log_ceiling_gap": Parameter(
                "log_ceiling_gap",
                _log_gap_prior,
                f"log of the logit distance from the accuracy at 10 {x}_ref up to the ceiling",
            ),
        }
        params = [anchors[name] for name in _anchor_sites(floor, ceiling_value)]
    else:
        if floor is None:
            if ceiling_value is None or ceiling_value == 1.0:
                floor_prior = _floor_prior
            else:  # the same Beta, scaled into (0, ceiling): a floor above it has no curve
                floor_prior = functools.partial(_scaled_floor_prior, ceiling_value)
            params.append(Parameter("floor", floor_prior, "accuracy at small scale (chance level)"))
        if ceiling_value is None:
            params.append(
                Parameter("height", _height_prior, "(ceiling - floor) / (1 - floor), in (0, 1)")
            )
        params += [
            Parameter("k", _slope_prior, f"slope per nat of {word} (> 0)"),
            Parameter(
                "logit_ref",
                _logit_prior,
                f"k * (log {x}_ref - log {x}0): logit of the risen share at the data's centre",
            ),
        ]
    lo_txt = "floor" if floor is None else f"{floor:g}"
    hi_txt = "ceiling" if ceiling_value is None else f"{ceiling_value:g}"
    return Law(
        name=name,
        inputs=(x,),
        parameters=tuple(params),
        log_predict=log_predict,
        natural=natural,
        natural_names=("floor", "ceiling", "k", f"{x}0"),
        formula=(f"acc = {lo_txt} + ({hi_txt} - {lo_txt}) * sigmoid(k * (log {x} - log {x}0))"),
        citation=RUAN_2024,
        extra={"higher_is_better": True},  # an accuracy: prob_beats counts plans above a target
    )


sigmoid_c = sigmoid("C")
