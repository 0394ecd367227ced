"""The convergence gate's thresholds (issue 5, part 4): where a fit merely misses the policy
and where it fails badly, at each boundary, for every criterion."""

from __future__ import annotations

import math

import pytest

from bayescale.results import Convergence


def _conv(rhat=1.0, bulk=1000.0, tail=1000.0, divergences=0, draws=4000, bfmi=0.9):
    return Convergence(rhat, bulk, tail, divergences, draws, bfmi)


@pytest.mark.parametrize(
    ("conv", "status", "badly"),
    [
        (_conv(), "ok", False),
        (_conv(rhat=1.01), "ok", False),  # the policy is R-hat <= 1.01
        (_conv(rhat=1.0101), "rhat_high", False),
        (_conv(rhat=1.05), "rhat_high", False),  # badly: R-hat > 1.05
        (_conv(rhat=1.0501), "rhat_high", True),
        (_conv(rhat=math.nan), "rhat_high", True),  # a NaN diagnostic fails
        (_conv(bulk=400.0, tail=400.0), "ok", False),  # ESS >= 400
        (_conv(bulk=399.0), "ess_low", False),
        (_conv(tail=100.0), "ess_low", False),  # badly: ESS < 100
        (_conv(tail=99.9), "ess_low", True),
        (_conv(bulk=99.9), "ess_low", True),
        (_conv(bulk=math.nan), "ess_low", True),
        (_conv(divergences=1), "divergences", False),  # no divergence allowed
        (_conv(divergences=40), "divergences", False),  # badly: > 1% of 4,000 draws
        (_conv(divergences=41), "divergences", True),
        (_conv(divergences=3, draws=200), "divergences", True),  # 1.5% of 200
        (_conv(bfmi=0.3), "ok", False),
        (_conv(bfmi=0.29), "bfmi_low", False),  # E-BFMI alone never fails badly
        (_conv(rhat=1.2, divergences=5), "divergences", True),  # precedence: divergences
    ],
)
def test_gate_boundaries(conv, status, badly):
    assert conv.status == status
    assert conv.converged == (status == "ok")
    assert conv.fails_badly == badly
    assert bool(conv.problems) == (status != "ok")
