"""Broken neural scaling laws (Caballero et al. 2022) with one or two breaks.

The BNSL of Caballero et al. (2022, arXiv:2210.14891, Eq. 1) is

    y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i),

a power law whose log-log slope bends smoothly from ``-c0`` to ``-(c0 + c1)`` (to
``-(c0 + c1 + c2)``) around each break ``d_i``, over a width ``f_i`` in natural-log units of x.

bayescale samples it reference-centred, like the power laws: the loss at the data's centre
``L_ref``, the reducible fraction of it ``frac`` (so ``a = L_ref (1 - frac)``), the exponent of
each *segment* ``alpha_0 = c0``, ``alpha_1 = c0 + c1``, ``alpha_2 = c0 + c1 + c2`` (each > 0: the
loss decreases everywhere, as losses and error rates do), the break locations relative to the
reference (``loc_i = log d_i - log x_ref``, ordered: ``loc_2 = loc_1 + gap``) and the
sharpnesses ``f_i``. ``Law.natural`` returns Caballero's ``a, b, c0, c_i, d_i, f_i``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import _priors
from .base import Law, Parameter

CABALLERO_2022 = (
    "Caballero, Gupta, Rish & Krueger 2022, Broken Neural Scaling Laws, arXiv:2210.14891 "
    "(ICLR 2023), Eq. 1"
)

_INPUT_WORD = {"N": "parameters", "D": "tokens / examples seen", "C": "compute (FLOP)"}


def _fraction_prior(ref):
    import numpyro.distributions as dist

    return dist.Beta(1.5, 1.5)


def _segment_exponent_prior(ref):
    """LogNormal(log 0.3, 0.75): 90% prior interval 0.09..1.03 for the slope of each segment.

    Wider priors let a chain settle in a spurious mode where a break beyond the data's edge
    with a slope of ~3 mimics the irreducible loss (seen in 2-break recovery runs).
    """
    return _priors.exponent(ref)


def _sharpness_prior(ref):
    """LogNormal(log 0.6, 0.6) on the width of a break in nats of x: 90% interval 0.22..1.6.

    Breaks much sharper than the spacing of the data are not identified, and the posterior
    of an almost-kinked law is hard for NUTS (divergences at f -> 0 in our recovery runs);
    this prior keeps f above ~0.2 nats (a factor 1.2 in x) unless the data insist.
    """
    import numpyro.distributions as dist

    return dist.LogNormal(math.log(0.6), 0.6)


#: Assumed log-span of the data (3 decades) that scales the break-location priors. Priors that
#: read the actual span (min/max of the inputs) were tried: on 2-break designs over six decades
#: they were wider and let chains settle in distinct modes (R-hat 1.5); these do not.
_SPAN = 3.0 * math.log(10.0)


def _first_break_prior(x: str, breaks: int):
    """Normal prior on ``loc_1``: the break lies within the data, near their centre.

    One break: Normal(0, _SPAN / 6), 90% within 1.9 nats (a factor 6.6) of the data's centre.
    Two breaks: the first left of centre, Normal(-_SPAN / 6, _SPAN / 6). A break beyond the
    data's edge is not identified (the slope on the far side is then free, and a flattening
    break beyond the right edge stands in for E); with twice this width (the former default,
    90% within 5 nats) 24.5% of the one-break SBC fits missed the convergence gate, against
    12.5% now (docs/convergence.md). Pass ``priors={"loc_1": ...}``
    when your data span much more than three decades and the break may lie near an edge.
    """

    def prior(ref):
        import numpyro.distributions as dist

        if breaks == 1:
            return dist.Normal(0.0, _SPAN / 6.0)
        return dist.Normal(-_SPAN / 6.0, _SPAN / 6.0)

    return prior


def _gap_prior(x: str):
    def prior(ref):
        import numpyro.distributions as dist

        return dist.LogNormal(math.log(_SPAN / 3.0), 0.5)  # 90%: 1.0..5.2 nats (2.7x..180x)

    return prior


def _break_locations(p, breaks: int) -> list:
    locs = [p["loc_1"]]
    if breaks == 2:
        locs.append(p["loc_1"] + p["gap"])
    return locs


def _bend(lx, locs, slopes_change, sharp):
    """sum_i c_i f_i softplus((lx - loc_i) / f_i): the log of the product of break factors."""
    total = 0.0
    for loc, c, f in zip(locs, slopes_change, sharp, strict=True):
        total = total + c * f * jax.nn.softplus((lx - loc) / f)
    return total


def bnsl(x: str = "D", breaks: int = 1, *, name: str | None = None) -> Law:
    r"""A broken neural scaling law in one input with one or two breaks.

    ``y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)`` (Caballero et al. 2022).

    Parameters
    ----------
    x
        The input: ``"N"``, ``"D"`` (the paper's "examples seen", the default) or ``"C"``.
    breaks
        Number of breaks, 1 or 2.
    name
        Registry name; default ``"bnsl_<breaks>"`` for ``x="D"`` and ``"bnsl_<breaks>_<x>"``
        otherwise (``"bnsl_1_c"``).

    Returns
    -------
    Law
        Sampled parameters ``log_L_ref``, ``frac``, ``alpha_0 .. alpha_<breaks>`` (the slope
        of each segment, > 0), ``loc_1`` (log d_1 - log x_ref), ``gap`` (log d_2 - log d_1,
        two breaks only) and ``f_1 ..``; published parameters ``a, b, c0, c1, (c2), d1, (d2),
        f1, (f2)``.

    Notes
    -----
    The break location, the slope after it and the irreducible loss trade off along a curved
    ridge: at the default ``target_accept_prob=0.9`` a few divergent transitions are common,
    and ``bs.fit(..., target_accept_prob=0.99)`` removes most of them (tests/test_laws_more.py).
    A BNSL of one input cannot describe IsoFLOP data, where the loss at a fixed compute
    varies with the split between N and D.

    References
    ----------
    Caballero, Gupta, Rish & Krueger 2022, *Broken Neural Scaling Laws*, arXiv:2210.14891.

    Examples
    --------
    >>> from bayescale.laws.broken import bnsl
    >>> law = bnsl("C", breaks=1)
    >>> law.name, law.natural_names
    ('bnsl_1_c', ('a', 'b', 'c0', 'c1', 'd1', 'f1'))
    """
    if x not in ("N", "D", "C"):
        raise ValueError(f"bnsl input must be 'N', 'D' or 'C', got {x!r}")
    if breaks not in (1, 2):
        raise ValueError(f"bnsl supports 1 or 2 breaks, got {breaks!r}")
    if name is None:
        name = f"bnsl_{breaks}" if x == "D" else f"bnsl_{breaks}_{x.lower()}"
    idx = range(1, breaks + 1)

    def pieces(p):
        locs = _break_locations(p, breaks)
        alphas = [p[f"alpha_{i}"] for i in range(breaks + 1)]
        changes = [alphas[i] - alphas[i - 1] for i in idx]
        sharp = [p[f"f_{i}"] for i in idx]
        return locs, alphas[0], changes, sharp

    def log_predict(p, log_x, ref):
        locs, c0, changes, sharp = pieces(p)
        lx = log_x[x] - ref[x]
        bend = _bend(lx, locs, changes, sharp) - _bend(0.0, locs, changes, sharp)
        reducible = p["log_L_ref"] + jnp.log(p["frac"]) - c0 * lx - bend
        log_e = jnp.broadcast_to(p["log_L_ref"] + jnp.log1p(-p["frac"]), jnp.shape(reducible))
        return logsumexp(jnp.stack([log_e, reducible]), axis=0)

    def natural(p, ref):
        locs, c0, changes, sharp = pieces(p)
        level = jnp.exp(p["log_L_ref"])
        # b x_ref^-c0 prod(...) at x_ref is the reducible loss there, L_ref * frac; with the
        # break locations absolute (log d_i = ref + loc_i) the factor at x_ref is _bend(0, ...)
        log_b = p["log_L_ref"] + jnp.log(p["frac"]) + c0 * ref[x] + _bend(0.0, locs, changes, sharp)
        out = {"a": level * (1.0 - p["frac"]), "b": jnp.exp(log_b), "c0": c0}
        for i, c in zip(idx, changes, strict=True):
            out[f"c{i}"] = c
        for i, loc in zip(idx, locs, strict=True):
            out[f"d{i}"] = jnp.exp(ref[x] + loc)
        for i, f in zip(idx, sharp, strict=True):
            out[f"f{i}"] = f
        return out

    word = _INPUT_WORD[x]
    params = [
        Parameter("log_L_ref", _priors.log_loss_at_reference, "log loss at the reference scale"),
        Parameter("frac", _fraction_prior, "reducible fraction of the loss there"),
    ]
    params += [
        Parameter(
            f"alpha_{i}",
            _segment_exponent_prior,
            f"log-log slope of segment {i} (before the first break)"
            if i == 0
            else f"log-log slope of segment {i} (after break {i})",
        )
        for i in range(breaks + 1)
    ]
    params.append(
        Parameter(
            "loc_1", _first_break_prior(x, breaks), f"log of break 1 minus log {x}_ref (nats)"
        )
    )
    if breaks == 2:
        params.append(Parameter("gap", _gap_prior(x), "log d_2 - log d_1 (nats, > 0)"))
    params += [
        Parameter(f"f_{i}", _sharpness_prior, f"width of break {i} in nats of {word}") for i in idx
    ]
    factors = " * ".join(f"(1 + ({x}/d{i})^(1/f{i}))^(-c{i}*f{i})" for i in idx)
    natural_names = ("a", "b", "c0", *(f"c{i}" for i in idx), *(f"d{i}" for i in idx))
    return Law(
        name=name,
        inputs=(x,),
        parameters=tuple(params),
        log_predict=log_predict,
        natural=natural,
        natural_names=(*natural_names, *(f"f{i}" for i in idx)),
        formula=f"L = a + b * {x}^(-c0) * {factors}",
        citation=CABALLERO_2022,
        # identifiability warnings (bayescale.check.identifiability): the irreducible loss is
        # Caballero's ``a``; it trades off against the slopes of the segments
        extra={"irreducible": "a", "exponents": tuple(f"alpha_{i}" for i in range(breaks + 1))},
    )


bnsl_1 = bnsl("D", 1)
bnsl_2 = bnsl("D", 2)
bnsl_1_n = bnsl("N", 1)
bnsl_2_n = bnsl("N", 2)
bnsl_1_c = bnsl("C", 1)
bnsl_2_c = bnsl("C", 2)
