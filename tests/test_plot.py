"""Tests for bayescale.plot: the Axes' contents (lines, bands, scales, labels), not pixels.

Where a plotted line has a known value it is checked against it: the median curves against
``Fit.predict`` and against the true law of the synthetic data, the frontier against the
closed-form optimum, the 20-tokens-per-parameter rule against sqrt(C/120).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import FAST
from matplotlib.collections import PathCollection, PolyCollection

import bayescale as bs
from bayescale.datasets import BESIROGLU_2024, compute_optimal_N
from bayescale.planning import FAMOUS_MODELS, optimal_allocation
from bayescale.plot import (
    plot_fit,
    plot_frontier,
    plot_isoflop,
    plot_posterior,
    plot_residuals,
)

BUDGETS = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21)  # chinchilla_synthetic's default design


@pytest.fixture(scope="module")
def synth_fit():
    data = bs.datasets.chinchilla_synthetic(seed=0)  # SYNTHETIC, true params BESIROGLU_2024
    return bs.fit(data, law="chinchilla", rng_key=0, **FAST)


@pytest.fixture(scope="module")
def power_fit():
    """SYNTHETIC L(C) = 1.8 + 2000 C^-0.15, 0.5% noise (the same data as test_planning.py)."""
    C = np.geomspace(1e18, 1e22, 8)
    noise = np.exp(0.005 * np.random.default_rng(0).standard_normal(C.size))
    data = bs.from_arrays(C=C, loss=(1.8 + 2000.0 * C**-0.15) * noise)
    return bs.fit(data, law="power_c", rng_key=0, **FAST)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _curves(ax):
    """Labelled median lines (legend entries) of the Axes."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _scatters(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def _vlines(ax):
    """x positions of vertical lines (axvline: two equal x data in axes coordinates)."""
    out = []
    for ln in ax.get_lines():
        x = np.asarray(ln.get_xdata(), dtype=float)
        if x.size == 2 and x[0] == x[1] and list(ln.get_ydata()) == [0, 1]:
            out.append(x[0])
    return out


def _true_loss(N, D):
    p = BESIROGLU_2024
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


# ----------------------------------------------------------------------------- plot_fit
def test_plot_fit_isoflop_groups(synth_fit):
    ax = plot_fit(synth_fit)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "parameters N" and ax.get_ylabel() == "loss"
    assert "chinchilla" in ax.get_title()
    curves = _curves(ax)
    # One curve per budget of the design, plus one extrapolated budget 10x beyond.
    assert len(curves) == len(BUDGETS) + 1
    assert "extrapolated" in curves[-1].get_label() and curves[-1].get_linestyle() == "--"
    assert len(_bands(ax)) == 2 * len(curves)  # 50% and 90% bands
    assert sum(len(s.get_offsets()) for s in _scatters(ax)) == len(synth_fit.data)
    # The boundary of the data is marked on both sides of N.
    assert set(_vlines(ax)) == {synth_fit.data.N.min(), synth_fit.data.N.max()}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "90% credible" in legend and "50% credible" in legend
    # Median line of the 1e19 budget: equals Fit.predict and lies within 1% of the truth
    # (the fit's sigma is 1%; at the centre of the data the posterior is much tighter).
    line = curves[2]
    n = np.asarray(line.get_xdata())[::30]
    y = np.asarray(line.get_ydata())[::30]
    pred = synth_fit.predict(N=n, C=1e19)
    np.testing.assert_allclose(y, pred["loss_median"], rtol=1e-10)
    np.testing.assert_allclose(y, _true_loss(n, 1e19 / (6 * n)), rtol=0.01)


def test_plot_fit_other_axes_and_given_ax(synth_fit):
    _, ax0 = plt.subplots()
    ax = plot_fit(synth_fit, x="D", by="C", groups=[1e19, 1e20], extrapolate=1, ax=ax0)
    assert ax is ax0
    assert ax.get_xlabel() == "training tokens D"
    assert len(_curves(ax)) == 2 and len(_bands(ax)) == 4
    ax = plot_fit(synth_fit, prob=0.8, legend=False, show_data=False)
    assert len(_bands(ax)) == len(_curves(ax)) and ax.get_legend() is None
    assert not _scatters(ax)
    with pytest.raises(ValueError, match="two different inputs"):
        plot_fit(synth_fit, x="N", by="N")
    with pytest.raises(ValueError, match="interval masses must lie in"):
        plot_fit(synth_fit, prob=(0.5, 1.2))


def test_plot_fit_single_input_law(power_fit):
    ax = plot_fit(power_fit)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "training compute C (FLOP)"
    (curve,) = _curves(ax)
    x = np.asarray(curve.get_xdata())
    c_max = power_fit.data.C.max()
    assert x.max() == pytest.approx(10 * c_max)  # extends 10x into the extrapolation region
    assert _vlines(ax) == [c_max]
    assert len(_bands(ax)) == 2
    assert sum(len(s.get_offsets()) for s in _scatters(ax)) == len(power_fit.data)
    y = np.asarray(curve.get_ydata())
    np.testing.assert_allclose(y, 1.8 + 2000.0 * x**-0.15, rtol=0.02)


def test_plot_fit_groups_scattered_budgets():
    """Scattered budgets (as in Epoch's digitised data) are grouped by density peaks."""
    from bayescale.plot import _group_values

    rng = np.random.default_rng(0)
    centres = np.array([6e18, 1e19, 3e19, 1e20])
    values = np.repeat(centres, 15) * np.exp(0.05 * rng.standard_normal(60))
    values = np.append(values, 5e21)  # a lone run
    groups, idx = _group_values(values, max_groups=3)
    assert groups.size == 3 and idx[-1] == -1  # the lone run stays ungrouped
    groups, idx = _group_values(values, max_groups=10)
    np.testing.assert_allclose(groups, centres, rtol=0.05)
    assert np.all(idx[:60] == np.repeat(np.arange(4), 15))


# ----------------------------------------------------------------------------- plot_isoflop
def test_plot_isoflop_marks_the_optimum(synth_fit):
    ax = plot_isoflop(synth_fit)
    curves = _curves(ax)
    assert len(curves) == len(BUDGETS) + 1  # and one budget 100x beyond the data
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "parameters N"
    table = optimal_allocation(synth_fit, [*BUDGETS, 1e23], prob=0.9)
    markers = [c for c in ax.containers]  # errorbar containers, one per budget
    assert len(markers) == len(table)
    for cont, (_, row) in zip(markers, table.iterrows(), strict=True):
        x, y = (float(v[0]) for v in cont.lines[0].get_data())
        assert x == pytest.approx(row["N_opt_median"], rel=1e-12)
        assert y == pytest.approx(row["loss_opt_median"], rel=1e-12)
        bar = cont.lines[2][0].get_segments()[0]  # the horizontal bar of the N* interval
        assert bar[0][0] == pytest.approx(row["N_opt_lower"]) and bar[1][0] == pytest.approx(
            row["N_opt_upper"]
        )


def test_plot_isoflop_constants_has_no_bands():
    ax = plot_isoflop(BESIROGLU_2024, compute=[1e20, 1e22])
    assert len(_curves(ax)) == 2 and not _bands(ax)
    for cont, c in zip(ax.containers, (1e20, 1e22), strict=True):
        x = float(cont.lines[0].get_xdata()[0])
        assert x == pytest.approx(compute_optimal_N(c, BESIROGLU_2024), rel=1e-12)


# ----------------------------------------------------------------------------- plot_frontier
def test_plot_frontier(synth_fit):
    ax = plot_frontier(synth_fit)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "training compute C (FLOP)"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    n_line, d_line = lines["N*: parameters"], lines["D*: tokens"]
    c = np.asarray(n_line.get_xdata())
    table = optimal_allocation(synth_fit, c[::20])
    # Same draws and formula; vectorised exp/log over arrays of different lengths round
    # differently (1.3e-9 relative seen in a CI run), so 1e-7 is float round-off, far
    # below any plotting error (a wrong quantile or a point estimate is off by > 1e-3).
    np.testing.assert_allclose(n_line.get_ydata()[::20], table["N_opt_median"], rtol=1e-7)
    np.testing.assert_allclose(d_line.get_ydata()[::20], table["D_opt_median"], rtol=1e-7)
    rule = lines["20 tokens per parameter"]
    np.testing.assert_allclose(rule.get_ydata(), np.sqrt(c / 120.0), rtol=1e-12)
    assert len(_bands(ax)) == 4  # 50% and 90% for N* and D*
    # Famous models: N as circles, D as squares, at C = 6ND, with their names.
    points = np.concatenate([s.get_offsets() for s in _scatters(ax)])
    assert len(points) == 2 * len(FAMOUS_MODELS)
    np.testing.assert_allclose(sorted(set(points[:, 0])), sorted(FAMOUS_MODELS["C"]))
    names = {t.get_text() for t in ax.texts}
    assert set(FAMOUS_MODELS.index) <= names and "extrapolation" in names
    assert _vlines(ax) == [synth_fit.data.C.max()]


def test_plot_frontier_tokens_per_param():
    ax = plot_frontier(BESIROGLU_2024, compute=[1e18, 5.88e23], kind="tokens_per_param")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    ratio = lines["D*/N*: tokens per parameter"].get_ydata()
    np.testing.assert_allclose(ratio, [25.699, 18.382], atol=1e-3)
    assert list(lines["20 tokens per parameter"].get_ydata()) == [20, 20]
    assert ax.get_ylabel() == "tokens per parameter" and not _bands(ax)
    with pytest.raises(ValueError, match="kind must be"):
        plot_frontier(BESIROGLU_2024, kind="ratio")


# ----------------------------------------------------------------------------- posterior, residuals
def test_plot_posterior(synth_fit):
    axes = plot_posterior(synth_fit)
    assert axes.shape == (5, 5)
    assert [a.get_xlabel() for a in axes[-1]] == ["E", "log10 A", "log10 B", "alpha", "beta"]
    assert not axes[0, 1].axison and axes[1, 0].axison
    assert len(axes[2, 2].patches) == 30  # histogram bars
    draws = np.asarray(synth_fit.params["alpha"]).reshape(-1)
    xy = axes[3, 0].collections[0].get_offsets()
    assert len(xy) == min(2000, draws.size)
    assert set(np.round(xy[:, 1], 12)) <= set(np.round(draws, 12))
    _, given = plt.subplots(2, 2)
    out = plot_posterior(synth_fit, ["alpha", "beta"], ax=given)
    assert out[1, 0] is given[1, 0]
    with pytest.raises(ValueError, match="unknown parameters"):
        plot_posterior(synth_fit, ["gamma"])
    # one name is one parameter (it was split into letters), and an array of names works
    assert plot_posterior(synth_fit, "alpha").shape == (1, 1)
    assert plot_posterior(synth_fit, []).shape == (5, 5)  # none named: all, as None
    assert plot_posterior(synth_fit, np.array(["alpha", "beta"])).shape == (2, 2)
    plt.close("all")
    with pytest.raises(ValueError, match=r"\(2, 2\) array of Axes"):
        plot_posterior(synth_fit, ["alpha", "beta"], ax=given[0])


@pytest.mark.parametrize(
    ("likelihood", "trials"), [("beta", None), ("binomial", 200), ("normal", None)]
)
def test_residual_bands_are_the_sd_of_log_residuals(likelihood, trials):
    """plot_residuals' bands and 3-sigma outliers use the sd of log(observed / fitted) at
    each point: for the proportion likelihoods sigma is an accuracy's sd at 50% (it was
    taken as a log sd, flagging 5 of 40 runs of a well-fitted sigmoid as outliers).
    Against 400,000 draws of the likelihood per point: the sd of an sd estimate is
    sd / sqrt(2 * 4e5) = 0.1%, the delta method's error at these sds under 1%."""
    from bayescale.model import predictive_draws
    from bayescale.plot import _log_noise_scale

    spec = bs.build_model("sigmoid_c", likelihood=likelihood, trials=trials)
    log_mu = np.log(np.array([0.3, 0.6, 0.9]))
    sigma = 0.02
    rng = np.random.default_rng(0)
    draws = predictive_draws(spec, np.tile(log_mu, (400_000, 1)), sigma, rng)
    want = np.std(np.log(draws) - log_mu, axis=0)
    np.testing.assert_allclose(_log_noise_scale(spec, log_mu, sigma), want, rtol=0.02)
    np.testing.assert_allclose(_log_noise_scale(bs.build_model("power_n"), log_mu, 0.05), 0.05)


def test_plot_residuals(synth_fit, power_fit):
    ax = plot_residuals(synth_fit)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "training compute C (FLOP)"
    data = synth_fit.data
    (points,) = [s for s in _scatters(ax) if s.get_label() == "runs"]
    xy = points.get_offsets()
    assert len(xy) == len(data)
    fitted = synth_fit.predict(N=data.N, D=data.D)["loss_median"]  # median of the mean loss
    np.testing.assert_allclose(xy[:, 1], np.log(data.loss / fitted), atol=1e-9)
    # Residuals scatter like the noise: |r| < 4 sigma (true sigma 0.01) for all 63 runs.
    assert np.all(np.abs(xy[:, 1]) < 0.04)
    ax = plot_residuals(power_fit, x="C")
    assert len(_scatters(ax)[0].get_offsets()) == len(power_fit.data)


def test_plots_of_an_unconverged_fit_are_stamped_and_warn(synth_fit):
    """Plots never refuse a failed fit (they are how one inspects it), but its forecast plots
    carry a stamp and a ConvergenceWarning, and its diagnostic plots say so in the title;
    a converged fit's plots carry neither."""
    from bayescale.plot import UNCONVERGED_GID

    data = bs.datasets.chinchilla_synthetic(seed=0)
    with pytest.warns(bs.ConvergenceWarning):
        bad = bs.fit(data, law="chinchilla", num_warmup=5, num_samples=20, retry=False, rng_key=0)
    assert bad.convergence.fails_badly

    def stamps(ax):
        return [t.get_text() for t in ax.texts if t.get_gid() == UNCONVERGED_GID]

    for draw in (plot_fit, plot_isoflop, plot_frontier):
        with pytest.warns(bs.ConvergenceWarning, match="fails the convergence gate badly"):
            ax = draw(bad)
        assert stamps(ax) == ["FAILS THE CONVERGENCE GATE BADLY"], draw.__name__
        assert stamps(draw(synth_fit)) == [], draw.__name__
    assert plot_residuals(bad).get_title().endswith("[FAILS THE CONVERGENCE GATE BADLY]")
    title = plot_posterior(bad)[0, 0].figure._suptitle.get_text()
    assert title.endswith("[FAILS THE CONVERGENCE GATE BADLY]")
    assert "CONVERGE" not in plot_residuals(synth_fit).get_title()
