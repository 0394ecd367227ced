"""The point estimators that benchmarks/backtests.py scores beside bayescale are what it says.

The README compares bayescale's synthetic backtest errors with least squares, Hoffmann's Huber
fit, least squares told the true irreducible loss, and the true law. Those columns are only
worth something if each estimator recovers a law it can recover: on (nearly) noiseless curves
every one of them must forecast the held-out runs to within the solver's tolerance, and the
true law's error must be exactly the simulated noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark

from bayescale.check import _split_indices, synthetic_backtest_curves


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("backtests")


@pytest.mark.parametrize("law", ["power_n", "chinchilla"])
def test_true_e_fit_recovers_noiseless_forecasts(mod, law):
    """Told the true E, least squares on the runs below 1/100 of the largest recovers the
    forecast of the largest run (100x beyond for power_n, 13x for chinchilla) to 1e-6."""
    axis = "N" if law == "power_n" else "C"
    data, truth = synthetic_backtest_curves(law, 3, seed=5, noise=0.0)
    for cid in data.curve_ids:
        idx = np.flatnonzero(data.curve == cid)
        x = np.asarray(getattr(data, axis))[idx]
        tr, te = _split_indices(x, None, 0.01)
        train, test = data.subset(idx[tr]), data.subset(idx[te])
        p = truth.loc[cid]
        predict = mod.fit_true_e(law, float(p["E"]), train.N, train.D, train.loss)
        got = predict(test.N, test.D)
        np.testing.assert_allclose(got, test.loss, rtol=1e-6)


def test_true_e_fit_needs_an_e(mod):
    with pytest.raises(ValueError, match="no irreducible loss"):
        mod.fit_true_e("kaplan_n", 1.0, [1.0, 2.0], None, [1.0, 0.9])


def test_reference_points_score_the_held_out_runs(mod):
    """Same split as check.backtest_points; with noise sd 1e-6 every estimator forecasts the
    held-out power-law runs to < 1e-3 relative error (a 0.67% median with noise sd 0.01), and
    the true law's error is exactly |exp(noise) - 1|."""
    data, truth = synthetic_backtest_curves("power_n", 2, seed=3, noise=1e-6)
    points = mod.reference_points(data, truth, "power_n", axis="N", dataset="t")
    assert set(points["estimator"]) == set(mod.REFERENCE_ESTIMATORS)
    # 16 runs per curve, 1e7..1e10: 5 held out at the 1/10 cut, 10 at 1/100 (each estimator)
    per = points.groupby(["curve", "cut", "estimator"]).size()
    assert per.xs("0.1", level="cut").eq(5).all() and per.xs("0.01", level="cut").eq(10).all()
    assert points["are"].max() < 1e-3
    assert points.loc[points["estimator"] == "true law", "are"].max() < 5e-6
    table = mod.reference_table(
        points[points["estimator"] == "least squares"].drop(columns="estimator"), points
    )
    assert list(table.columns[:3]) == ["dataset", "cut", "bayescale posterior median"]
    assert len(table) == 2
