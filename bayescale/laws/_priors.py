"""Default weakly-informative priors, centred on the data's reference point.

Priors read only the reference point (log of the geometric-mean inputs and the mean log loss), so
they are fixed before any individual observation is looked at beyond its scale — the same
"autoscaled" convention as rstanarm/brms default priors. Exponents of neural scaling laws lie in
roughly 0.02..1 (Kaplan et al. 2020: 0.05..0.1; Hoffmann et al. 2022: ~0.3).
"""

from __future__ import annotations

import math

import numpyro.distributions as dist

LOG_HALF = math.log(0.5)


def exponent(ref, *, median: float = 0.3, scale: float = 0.75):
    """LogNormal prior on a scaling exponent (90% interval 0.09..1.03 by default)."""
    return dist.LogNormal(math.log(median), scale)


def kaplan_exponent(ref):
    """LogNormal prior for Kaplan-style pure power laws (90% interval 0.02..0.52)."""
    return dist.LogNormal(math.log(0.1), 1.0)


def irreducible(ref):
    """LogNormal prior on the irreducible loss E, centred at half the typical observed loss."""
    return dist.LogNormal(ref["loss"] + LOG_HALF, 1.0)


def term_at_reference(ref):
    """Normal prior on the log of a reducible term at the reference point (about half the loss)."""
    return dist.Normal(ref["loss"] + LOG_HALF, 1.5)


def log_loss_at_reference(ref):
    """Normal prior on the log of the loss at the reference point."""
    return dist.Normal(ref["loss"], 1.0)
