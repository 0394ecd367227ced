"""Tests for bayescale.planning: compute-optimal allocation with posterior intervals.

Golden numbers and their sources:

* Hoffmann et al. 2022 (arXiv:2203.15556), rounded constants of Eq. 10 (E=1.69, A=406.4,
  B=410.7, alpha=0.34, beta=0.28): the closed form gives 92.83 tokens per parameter at
  5.88e23 FLOP and a = beta/(alpha+beta) = 0.4516.
* Besiroglu et al. 2024 (arXiv:2404.10102), their analysis notebook: Hoffmann's policy is
  N* = G (C/6)^a with G from the unrounded TeX-source constants and a = 0.4545, the midpoint of
  Hoffmann's reported 80% interval (0.454, 0.455); on their budget grid 10^(18..28 step 0.05)
  the point nearest 5.88e23 is 10^23.75 = 5.62e23, where the ratio is 72.87 -- the "72.9" --
  and at 5.88e23 itself 73.16.
* Epoch's own constants (A=482.01, B=2085.43, alpha=0.3478, beta=0.3658) give 18.38 tokens
  per parameter at 5.88e23. The "25.7" printed by Epoch's notebook is the ratio at 1e18 FLOP
  (25.70): its last cell overwrites the array of budgets with the array of ratios before
  looking up the budget nearest 5.88e23, so it returns the first (1e18) entry.

Closed forms are deterministic: tolerances there are float round-off. Posterior statements
use a fit with ~2,400 draws; their tolerances are stated at each test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import bayescale as bs
from bayescale.datasets import BESIROGLU_2024, HOFFMANN_2022, compute_optimal_N
from bayescale.planning import (
    CHINCHILLA_COMPUTE,
    FAMOUS_MODELS,
    HOFFMANN_2022_A_INTERVAL,
    HOFFMANN_2022_UNROUNDED,
    PlanningWarning,
    allocation_exponents,
    compute_for_loss,
    optimal_allocation,
    prob_beats,
)
from bayescale.results import ExtrapolationWarning

KAPLAN_ND = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}


def _chinchilla_loss(N, D, p):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def _kaplan_nd_n_opt(C, p):
    """Analytic optimum of Kaplan's L(N, D) under C = 6ND: N^(r+1) = r N_c^r C / (6 D_c)."""
    r = p["alpha_N"] / p["alpha_D"]
    return (r * p["N_c"] ** r * C / (6.0 * p["D_c"])) ** (1.0 / (r + 1.0))


def _thin(fit, n: int) -> dict[str, np.ndarray]:
    """``n`` evenly spaced posterior draws of the published parameters as constants."""
    flat = {k: np.asarray(fit.params[k]).reshape(-1) for k in ("E", "A", "B", "alpha", "beta")}
    idx = np.linspace(0, flat["E"].size - 1, n).astype(int)
    return {k: v[idx] for k, v in flat.items()}


@pytest.fixture(scope="module")
def synth_fit():
    data = bs.datasets.chinchilla_synthetic(seed=0)  # SYNTHETIC: true params BESIROGLU_2024
    return bs.fit(data, law="chinchilla", rng_key=0, **FAST)


# ----------------------------------------------------------------------------- reference values
def test_hoffmann_rounded_constants_closed_form():
    row = optimal_allocation(HOFFMANN_2022, compute=CHINCHILLA_COMPUTE).iloc[0]
    assert row["tokens_per_param_median"] == pytest.approx(92.832, abs=1e-3)
    # One draw: the interval collapses onto the value.
    assert row["tokens_per_param_lower"] == row["tokens_per_param_upper"]
    # N* agrees with the independent implementation in bayescale.datasets.
    assert row["N_opt_median"] == pytest.approx(compute_optimal_N(5.88e23, HOFFMANN_2022), 1e-12)
    assert row["N_opt_median"] * row["D_opt_median"] * 6 == pytest.approx(5.88e23, 1e-12)
    assert row["loss_opt_median"] == pytest.approx(
        _chinchilla_loss(row["N_opt_median"], row["D_opt_median"], HOFFMANN_2022), 1e-12
    )


def test_hoffmann_policy_as_epoch_computed_it():
    """72.9 tokens/param: G from the TeX-source constants, a = 0.4545 (Epoch's notebook)."""
    policy = dict(HOFFMANN_2022_UNROUNDED, a=float(np.mean(HOFFMANN_2022_A_INTERVAL)))
    table = optimal_allocation(policy, compute=[10**23.75, CHINCHILLA_COMPUTE])
    ratio = table["tokens_per_param_median"].to_numpy()
    assert round(ratio[0], 1) == 72.9  # Epoch's grid point nearest 5.88e23
    assert ratio[1] == pytest.approx(73.162, abs=1e-3)  # at 5.88e23 itself
    # Without the reported a, the unrounded constants imply a = beta/(alpha+beta) = 0.4565.
    plain = optimal_allocation(HOFFMANN_2022_UNROUNDED, compute=CHINCHILLA_COMPUTE).iloc[0]
    assert plain["tokens_per_param_median"] == pytest.approx(59.037, abs=1e-3)


def test_epoch_constants_and_the_25_7_of_their_notebook():
    table = optimal_allocation(BESIROGLU_2024, compute=[CHINCHILLA_COMPUTE, 1e18])
    ratio = table["tokens_per_param_median"].to_numpy()
    assert ratio[0] == pytest.approx(18.382, abs=1e-3)
    assert ratio[1] == pytest.approx(25.699, abs=1e-3)  # the "about 25.7"


def test_allocation_exponents_of_published_constants():
    hoff = allocation_exponents(HOFFMANN_2022)
    assert hoff.loc["a", "median"] == pytest.approx(0.28 / 0.62, abs=1e-12)
    assert hoff.loc["a", "width"] == 0.0
    epoch = allocation_exponents(BESIROGLU_2024)
    assert epoch.loc["a", "median"] == pytest.approx(0.3658 / (0.3478 + 0.3658), abs=1e-12)
    assert epoch.loc["a", "median"] + epoch.loc["b", "median"] == pytest.approx(1.0)


def test_famous_models_table():
    assert list(FAMOUS_MODELS.index) == ["GPT-3", "Gopher", "Chinchilla", "Llama 2 70B"]
    assert FAMOUS_MODELS.loc["Chinchilla", "C"] == pytest.approx(CHINCHILLA_COMPUTE)
    assert FAMOUS_MODELS.loc["GPT-3", "C"] == pytest.approx(3.15e23)
    assert FAMOUS_MODELS.loc["Chinchilla", "tokens_per_param"] == pytest.approx(20.0)


# ----------------------------------------------------------------------------- numerical optimum
def test_numerical_optimum_matches_closed_form_for_chinchilla_draws(synth_fit):
    budgets = [1e17, 1e21, CHINCHILLA_COMPUTE, 1e27]
    closed, cd = optimal_allocation(synth_fit, budgets, return_draws=True)
    numeric, nd = optimal_allocation(synth_fit, budgets, method="numerical", return_draws=True)
    assert closed.attrs["method"] == "closed_form" and numeric.attrs["method"] == "numerical"
    assert cd["N_opt"].shape == (synth_fit.num_chains * synth_fit.num_draws, 4)
    # Bisection on the derivative: round-off level agreement for every draw and budget.
    np.testing.assert_allclose(nd["N_opt"], cd["N_opt"], rtol=1e-9)
    np.testing.assert_allclose(nd["loss_opt"], cd["loss_opt"], rtol=1e-12)


def test_numerical_optimum_of_kaplan_nd_matches_its_analytic_optimum():
    rng = np.random.default_rng(0)
    draws = {k: v * np.exp(0.05 * rng.standard_normal(50)) for k, v in KAPLAN_ND.items()}
    budgets = np.array([1e15, 1e20, 1e25])
    table, d = optimal_allocation(draws, budgets, return_draws=True)
    assert table.attrs["method"] == "numerical" and table.attrs["law"] == "kaplan_nd"
    truth = _kaplan_nd_n_opt(budgets[None, :], {k: v[:, None] for k, v in draws.items()})
    np.testing.assert_allclose(d["N_opt"], truth, rtol=1e-9)
    # Allocation exponent a = alpha_D / (alpha_N + alpha_D), here by central differences.
    a = allocation_exponents(dict(KAPLAN_ND))
    assert a.loc["a", "median"] == pytest.approx(0.095 / (0.076 + 0.095), abs=1e-9)


# ----------------------------------------------------------------------------- posterior
def test_synthetic_fit_interval_contains_the_true_allocation(synth_fit):
    truth = optimal_allocation(BESIROGLU_2024, CHINCHILLA_COMPUTE).iloc[0]
    row = optimal_allocation(synth_fit, CHINCHILLA_COMPUTE, prob=0.9).iloc[0]
    for key in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
        assert row[f"{key}_lower"] < truth[f"{key}_median"] < row[f"{key}_upper"], key
        assert row[f"{key}_lower"] < row[f"{key}_median"] < row[f"{key}_upper"]
    # 5.88e23 lies beyond the synthetic data (C <= 1e21): the table says how far.
    assert row["extrapolation"] > 2
    inside = optimal_allocation(synth_fit, 1e20).iloc[0]
    assert inside["extrapolation"] == 1.0
    # Far beyond it the plan warns, as predict does beyond 10x (it said nothing, even with
    # N* at 0.1 parameters); the budgets inside 10x do not.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        assert optimal_allocation(synth_fit, [1e20, 1e21])["extrapolation"].max() < 10
    with pytest.warns(ExtrapolationWarning, match=r"optimum at 1e\+27 FLOP .* beyond the fitted"):
        far = optimal_allocation(synth_fit, [1e20, 1e27])
    assert far["extrapolation"].iloc[1] > 10
    # The true exponent lies in the 80% interval of a.
    a = allocation_exponents(synth_fit, prob=0.8)
    true_a = BESIROGLU_2024["beta"] / (BESIROGLU_2024["alpha"] + BESIROGLU_2024["beta"])
    assert a.loc["a", "lower"] < true_a < a.loc["a", "upper"]


def test_posterior_is_evaluated_per_draw_not_at_a_point_estimate(synth_fit):
    table, d = optimal_allocation(synth_fit, CHINCHILLA_COMPUTE, return_draws=True)
    p = {k: np.asarray(v).reshape(-1) for k, v in synth_fit.params.items()}
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    n_each = g * (CHINCHILLA_COMPUTE / 6) ** (p["beta"] / (p["alpha"] + p["beta"]))
    np.testing.assert_allclose(d["N_opt"][:, 0], n_each, rtol=1e-12)
    assert table["N_opt_median"][0] == pytest.approx(np.median(n_each), rel=1e-12)
    lo, hi = np.quantile(n_each, [0.05, 0.95])
    assert (table["N_opt_lower"][0], table["N_opt_upper"][0]) == pytest.approx((lo, hi))


def test_vectorised_over_budgets(synth_fit):
    budgets = np.geomspace(1e18, 1e26, 9)
    table = optimal_allocation(synth_fit, budgets)
    assert len(table) == 9 and np.all(np.diff(table["N_opt_median"]) > 0)
    one = optimal_allocation(synth_fit, budgets[4]).iloc[0]
    pd.testing.assert_series_equal(table.iloc[4], one, check_names=False)


# ----------------------------------------------------------------------------- compute for loss
def test_compute_for_loss_inverts_optimal_allocation_closed_form(synth_fit):
    _, d = compute_for_loss(synth_fit, loss=2.0, return_draws=True)
    c = d["compute"][:, 0]
    assert np.all(np.isfinite(c))
    # Every draw at its own compute reaches exactly the target at its optimum.
    consts = {k: np.asarray(synth_fit.params[k]).reshape(-1) for k in HOFFMANN_2022}
    _, back = optimal_allocation(consts, c[:200], return_draws=True)
    idx = np.arange(200)
    np.testing.assert_allclose(back["loss_opt"][idx, idx], 2.0, rtol=1e-12)
    np.testing.assert_allclose(back["N_opt"][idx, idx], d["N_opt"][:200, 0], rtol=1e-12)


def test_compute_for_loss_numerical_matches_closed_form(synth_fit):
    draws = _thin(synth_fit, 40)
    closed = compute_for_loss(draws, loss=[2.0, 2.3], return_draws=True)[1]["compute"]
    numeric = compute_for_loss(draws, loss=[2.0, 2.3], method="numerical", return_draws=True)
    assert numeric[0].attrs["method"] == "numerical"
    np.testing.assert_allclose(numeric[1]["compute"], closed, rtol=1e-9)


def test_compute_for_loss_numerical_round_trip_kaplan_nd():
    c0 = np.array([1e19, 1e23])
    target = optimal_allocation(KAPLAN_ND, c0)["loss_opt_median"].to_numpy()
    back = compute_for_loss(KAPLAN_ND, loss=target)
    np.testing.assert_allclose(back["compute_median"], c0, rtol=1e-9)
    np.testing.assert_allclose(back["N_opt_median"], _kaplan_nd_n_opt(c0, KAPLAN_ND), rtol=1e-9)


def test_compute_for_loss_reports_unreachable_draws():
    draws = {k: np.full(10, v) for k, v in BESIROGLU_2024.items()}
    draws["E"] = np.array([1.70] * 7 + [1.90] * 3)  # 3 draws have E above the target
    with pytest.warns(PlanningWarning, match="30.0% of posterior draws cannot reach"):
        table, d = compute_for_loss(draws, loss=1.85, return_draws=True)
    row = table.iloc[0]
    assert row["unreachable"] == pytest.approx(0.3)
    assert np.all(np.isinf(d["compute"][7:, 0])) and np.all(np.isfinite(d["compute"][:7, 0]))
    # The upper quantile falls among the unreachable draws; the median does not.
    assert math.isinf(row["compute_upper"])
    assert math.isfinite(row["compute_median"]) and math.isfinite(row["compute_lower"])
    # The allocation is summarised over the draws that reach the target.
    assert math.isfinite(row["N_opt_upper"])


def test_compute_for_loss_closed_form_value():
    p = BESIROGLU_2024
    row = compute_for_loss(p, loss=2.0).iloc[0]
    n, d = row["N_opt_median"], row["D_opt_median"]
    assert 6 * n * d == pytest.approx(row["compute_median"], rel=1e-12)
    assert _chinchilla_loss(n, d, p) == pytest.approx(2.0, rel=1e-12)
    assert n == pytest.approx(compute_optimal_N(row["compute_median"], p), rel=1e-12)


# ----------------------------------------------------------------------------- probability
def test_prob_beats(synth_fit):
    # Constants: a single draw, so 0 or 1.
    loss = _chinchilla_loss(70e9, 1.4e12, BESIROGLU_2024)
    assert prob_beats(BESIROGLU_2024, N=70e9, D=1.4e12, loss=loss + 1e-9) == 1.0
    assert prob_beats(BESIROGLU_2024, N=70e9, C=CHINCHILLA_COMPUTE, loss=loss - 1e-9) == 0.0
    # The fraction of draws below the posterior median is 1/2 (up to ties, 1/S).
    pred = synth_fit.predict(N=[1e9, 70e9], D=[2e10, 1.4e12], allow_unconverged=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = [
            prob_beats(synth_fit, N=n, D=d, loss=m)
            for n, d, m in zip(pred["N"], pred["D"], pred["loss_median"], strict=True)
        ]
    assert np.allclose(p, 0.5, atol=2.0 / (synth_fit.num_chains * synth_fit.num_draws))
    # Vectorised over plans; monotone in the target.
    many = prob_beats(synth_fit, N=[1e9, 1e9, 1e9], D=2e10, loss=float(pred["loss_median"][0]))
    assert many.shape == (3,) and np.allclose(many, many[0])
    # Predictive: at the predictive median, 1/2 up to the Monte Carlo error of predict()'s
    # noise draws (sd of a quantile ~ 0.5/sqrt(S) ~ 0.01); far targets give 0 and 1.
    q = prob_beats(synth_fit, N=1e9, D=2e10, loss=float(pred["pred_median"][0]), predictive=True)
    assert q == pytest.approx(0.5, abs=0.04)
    assert prob_beats(synth_fit, N=1e9, D=2e10, loss=1.0, predictive=True) < 1e-6
    assert prob_beats(synth_fit, N=1e9, D=2e10, loss=10.0, predictive=True) > 1 - 1e-6


def test_binomial_predictive_cdf_counts_an_exact_accuracy_once():
    """P(acc < t) and P(acc <= t) of the beta-binomial differ by the mass at k = t n exactly,
    also where t n rounds below a whole number (0.57 * 100 = 56.999...)."""
    from types import SimpleNamespace

    from scipy import stats

    from bayescale.model import beta_shapes
    from bayescale.planning import _predictive_cdf

    spec = bs.build_model("sigmoid_c", likelihood="binomial", trials=100)
    fit = SimpleNamespace(spec=spec, samples={"sigma": np.array([0.03, 0.05])})
    log_mu = np.log(np.array([[0.55], [0.6]]))
    a, b = beta_shapes(log_mu, np.array([[0.03], [0.05]]))
    for t in (0.57, 0.29, 0.58, 0.14):
        k = round(t * 100)
        below = _predictive_cdf(fit, log_mu, t)
        upto = _predictive_cdf(fit, log_mu, t, strict=False)
        np.testing.assert_allclose(below, stats.betabinom.cdf(k - 1, 100, a, b), rtol=1e-12)
        np.testing.assert_allclose(upto - below, stats.betabinom.pmf(k, 100, a, b), rtol=1e-9)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors(synth_fit):
    with pytest.raises(ValueError, match=r"compute must be finite and > 0; got -1.0 at position 1"):
        optimal_allocation(BESIROGLU_2024, compute=[1e20, -1.0])
    with pytest.raises(ValueError, match="compute must be finite"):
        optimal_allocation(BESIROGLU_2024, compute=float("nan"))
    with pytest.raises(ValueError, match="name no law of N and D"):
        optimal_allocation({"E": 1.0, "A": 2.0}, compute=1e20)
    with pytest.raises(ValueError, match=r"constant 'alpha' must be > 0"):
        optimal_allocation({**BESIROGLU_2024, "alpha": -0.3}, compute=1e20)
    with pytest.raises(ValueError, match="no closed form for law 'kaplan_nd'"):
        optimal_allocation(KAPLAN_ND, compute=1e20, method="closed_form")
    with pytest.raises(ValueError, match="method must be"):
        optimal_allocation(BESIROGLU_2024, compute=1e20, method="grid")
    with pytest.raises(ValueError, match="prob must be in"):
        optimal_allocation(synth_fit, compute=1e20, prob=1.5)
    with pytest.raises(TypeError, match="expected a bayescale Fit"):
        optimal_allocation([1, 2, 3], compute=1e20)
    with pytest.raises(ValueError, match="predictive=True needs a Fit"):
        prob_beats(BESIROGLU_2024, N=1e9, D=1e10, loss=2.0, predictive=True)
    with pytest.raises(ValueError, match="missing D"):
        prob_beats(BESIROGLU_2024, N=1e9, loss=2.0)
    with pytest.raises(ValueError, match="loss must be one target, got 2 values"):
        prob_beats(BESIROGLU_2024, N=1e9, D=1e10, loss=[1.5, 2.5])


def power_c_data():
    """SYNTHETIC L(C) = 1.8 + 2000 C^-0.15 with 0.5% log-normal noise (also in test_plot.py)."""
    C = np.geomspace(1e18, 1e22, 8)
    noise = np.exp(0.005 * np.random.default_rng(0).standard_normal(C.size))
    return bs.from_arrays(C=C, loss=(1.8 + 2000.0 * C**-0.15) * noise)


def test_single_input_law_is_refused_but_prob_beats_works():
    fit = bs.fit(power_c_data(), law="power_c", rng_key=0, **FAST)
    with pytest.raises(ValueError, match="needs a law of N and D"):
        optimal_allocation(fit, compute=1e23)
    # prob_beats works for any law: C = 6ND is all power_c needs. Its median at the plan is
    # beaten with probability 1/2 (up to ties).
    pred = fit.predict(C=6 * 1e10 * 1e12)
    p = prob_beats(fit, N=1e10, D=1e12, loss=float(pred["loss_median"][0]))
    assert p == pytest.approx(0.5, abs=2.0 / (fit.num_chains * fit.num_draws))


# ----------------------------------------------------------------------------- Epoch data
def test_epoch_data_allocation_agrees_with_epoch_not_hoffmann(shared):
    """Real data (Besiroglu et al. 2024): Student-t likelihood, matching Epoch's robust fit.

    Same data and settings as tests/test_fit.py's Epoch fit (one compiled program). Epoch's
    point estimates must lie in our intervals; Hoffmann's reported a must not, and the width of
    the 80% interval of a must be of the order of Epoch's bootstrap (~0.05), not Hoffmann's
    0.001.
    """
    data = bs.datasets.load("epoch-chinchilla", data_dir=shared, drop_highest_loss=5)
    fit = bs.fit(data, law="chinchilla", likelihood="student_t", rng_key=0)
    assert fit.converged
    row = optimal_allocation(fit, CHINCHILLA_COMPUTE, prob=0.9).iloc[0]
    epoch_ratio = optimal_allocation(BESIROGLU_2024, CHINCHILLA_COMPUTE)["tokens_per_param_median"]
    assert row["tokens_per_param_lower"] < epoch_ratio[0] < row["tokens_per_param_upper"]
    assert 12 < row["tokens_per_param_median"] < 25  # measured 16.8 (90%: 11.8 to 23.6)
    hoffmann_ratio = 92.83  # the rounded constants
    assert row["tokens_per_param_upper"] < hoffmann_ratio
    a = allocation_exponents(fit, prob=0.8).loc["a"]
    epoch_a = BESIROGLU_2024["beta"] / (BESIROGLU_2024["alpha"] + BESIROGLU_2024["beta"])
    assert a["lower"] < epoch_a < a["upper"]
    assert HOFFMANN_2022_A_INTERVAL[1] < a["lower"]
    hoffmann_width = HOFFMANN_2022_A_INTERVAL[1] - HOFFMANN_2022_A_INTERVAL[0]
    assert a["width"] > 10 * hoffmann_width  # measured 0.026
    assert 0.01 < a["width"] < 0.1
