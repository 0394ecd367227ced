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

The rise is sampled as ``k * (log x - log x_ref) + logit_ref``, the logistic-regression form
with the intercept at the data's centre, not as ``k * (log x - log x0)``: when the data see a
shallow rise or only one tail of it, ``log x0 = log x_ref - logit_ref / k`` runs off along a
curved ridge (``log height - k * log x0`` is what one tail pins down) while ``logit_ref`` and
``log height + logit_ref`` stay nearly linear. On 80 SBC simulations of ``sigmoid_c`` this took
the convergence gate of the first pass from 34% to 50% and after the automatic re-fit from 85%
to 92.5% (``benchmarks/sbc.py`` has the 200-simulation figures).
"""

from __future__ import annotations

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


def _check_level(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"sigmoid {name} must be in (0, 1), got {value!r}")
    return value


def sigmoid(
    x: str = "C",
    *,
    floor: float | None = None,
    ceiling: float | None = None,
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
        (default) samples it (prior Beta(1.2, 3)).
    ceiling
        Fixed highest accuracy in (floor, 1]; ``None`` samples it (the share of the way from
        floor to 1, prior Beta(2, 1.2)).
    name
        Registry name; default ``"sigmoid_<x>"`` with ``"_floor<value>"`` /
        ``"_ceiling<value>"`` appended for fixed levels (``"sigmoid_c_floor0.25"``).

    Returns
    -------
    Law
        Sampled parameters ``floor`` (unless fixed), ``height`` (``(ceiling - floor) /
        (1 - floor)``, unless the ceiling is fixed), ``k`` (> 0, per nat of x) and
        ``logit_ref`` (``k * (log x_ref - log x0)``, the logit of the share of the rise reached
        at the data's centre ``x_ref``); published parameters ``floor, ceiling, k, <x>0``.

    References
    ----------
    Ruan, Maddison & Hashimoto 2024, arXiv:2405.10938; Owen 2024, arXiv:2401.04757;
    Wei et al. 2022, arXiv:2206.07682.

    Examples
    --------
    >>> from bayescale.laws.sigmoid import sigmoid
    >>> law = sigmoid("C", floor=0.25)
    >>> law.name, law.param_names
    ('sigmoid_c_floor0.25', ('height', 'k', 'logit_ref'))
    """
    if x not in ("N", "D", "C"):
        raise ValueError(f"sigmoid input must be 'N', 'D' or 'C', got {x!r}")
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

    def levels(p):
        lo = p["floor"] if floor is None else jnp.asarray(floor)
        if ceiling_value is None:
            return lo, lo + (1.0 - lo) * p["height"]
        return lo, jnp.asarray(ceiling_value)

    def log_predict(p, log_x, ref):
        lo, hi = levels(p)
        rise = jnp.log(hi - lo) + jax.nn.log_sigmoid(p["k"] * (log_x[x] - ref[x]) + p["logit_ref"])
        base = jnp.broadcast_to(jnp.log(lo), jnp.shape(rise))
        return logsumexp(jnp.stack([base, rise]), axis=0)

    def natural(p, ref):
        lo, hi = levels(p)
        shape = jnp.shape(p["k"])
        return {
            "floor": jnp.broadcast_to(lo, shape),
            "ceiling": jnp.broadcast_to(hi, shape),
            "k": p["k"],
            f"{x}0": jnp.exp(ref[x] - p["logit_ref"] / p["k"]),
        }

    params = []
    if floor is None:
        params.append(Parameter("floor", _floor_prior, "accuracy at small scale (chance level)"))
    if ceiling_value is None:
        params.append(
            Parameter("height", _height_prior, "(ceiling - floor) / (1 - floor), in (0, 1)")
        )
    params += [
        Parameter("k", _slope_prior, f"slope per nat of {_INPUT_WORD[x]} (> 0)"),
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
    )


sigmoid_c = sigmoid("C")
