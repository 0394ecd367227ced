"""Tests of bayescale.check: extrapolation backtests (issue 5, part 2) and identifiability
warnings (part 5).

Scores are checked against hand-computed values and NumPyro's densities; the cut, split and
"too few runs" logic against run counts read off the data; calibration on SYNTHETIC curves
with known truth (coverage within binomial error, log score below the true density's);
Gadre et al.'s published point forecasts are reproduced; identifiability warnings fire on
designs that cannot identify E and stay silent on the Chinchilla IsoFLOP design.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from types import SimpleNamespace

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from conftest import FAST
from scipy.optimize import curve_fit
from scipy.special import gammaln, logsumexp

import bayescale as bs
from bayescale import check
from bayescale.check import (
    SYNTHETIC_N,
    IdentifiabilityWarning,
    backtest,
    backtest_points,
    identifiability,
    identifiability_stats,
    summarize,
    synthetic_backtest_curves,
)

#: Noise of the synthetic curves (sd of the log loss) and the expected log score of the true
#: density, E[log N(z; 0, s)] = -log(s sqrt(2 pi)) - 1/2: no forecast beats it on average
#: (Gibbs' inequality).
NOISE = 0.01
TRUE_LPD = -math.log(NOISE * math.sqrt(2 * math.pi)) - 0.5


def binomial_band(p: float, n: int, z: float = 3.0) -> tuple[float, float]:
    """p +- z sd of a binomial proportion over n independent units."""
    sd = math.sqrt(p * (1 - p) / n)
    return p - z * sd, p + z * sd


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pure_power_fit():
    """power_n on a pure power law (E = 0) over two decades: E is not identified."""
    N = SYNTHETIC_N[:11]
    rng = np.random.default_rng(0)
    loss = 30 * N**-0.1 * np.exp(NOISE * rng.standard_normal(N.size))
    return bs.fit(bs.from_arrays(N=N, loss=loss), "power_n", rng_key=0, **FAST)


@pytest.fixture(scope="module")
def stub(pure_power_fit):
    """A fit_fn that records the training sets and returns one fixed fit (no sampling)."""
    calls = []

    def fit_fn(train, law, **kwargs):
        calls.append((len(train), bs.laws.get(law).name, kwargs))
        return pure_power_fit

    fit_fn.calls = calls
    return fit_fn


# ----------------------------------------------------------------------------- scores
@pytest.mark.parametrize(
    "likelihood", ["lognormal", "student_t", "laplace", "normal", "beta", "binomial"]
)
def test_log_density_is_numpyros(likelihood):
    """lpd = log mean over draws of the density of the held-out log loss (NumPyro's); for the
    accuracy likelihoods the model's Beta density (times y) or beta-binomial count probability
    (exact: the gammaln differences, not NumPyro's BetaBinomial, which errs in the 8th digit)."""
    mu = np.array([[0.9, 1.1], [1.0, 1.05], [0.95, 1.2]])  # 3 draws x 2 held-out runs
    sigma = np.array([0.05, 0.08, 0.04])
    nu = np.array([3.0, 7.0, 30.0])
    log_y = np.array([0.97, 1.12])
    if likelihood in ("beta", "binomial"):  # accuracies: means 0.74-1.0; y 0.97, 0.8
        mu, log_y = np.log(np.exp(mu) * 0.3), np.log([0.97, 0.8])
    fake = SimpleNamespace(
        samples={"sigma": sigma[None, :], "nu": nu[None, :]},
        spec=SimpleNamespace(likelihood=likelihood, df=None, trials=40),
    )
    s, n = sigma[:, None], nu[:, None]
    phi = np.asarray(bs.model.beta_precision(s))
    if likelihood == "lognormal":
        logp = dist.Normal(mu, s).log_prob(log_y)
    elif likelihood == "student_t":
        logp = dist.StudentT(n, mu, s).log_prob(log_y)
    elif likelihood == "laplace":
        logp = dist.Laplace(mu, s).log_prob(log_y)
    elif likelihood == "beta":  # density of log y = Beta density of y times y
        m = np.exp(mu)
        y = np.broadcast_to(np.exp(log_y), m.shape)
        logp = np.asarray(dist.Beta(m * phi, (1 - m) * phi).log_prob(y)) + log_y
    elif likelihood == "binomial":  # 40 items: 0.97 -> 39 right, 0.8 -> 32 right
        m = np.exp(mu)
        count = np.broadcast_to([39.0, 32.0], m.shape)
        a, b = m * phi, (1 - m) * phi  # at these shapes gammaln differences are exact to 1e-13
        # (NumPyro's BetaBinomial errs by up to 3e-8 nats here, and by far more at large phi)
        logp = (
            gammaln(41) - gammaln(count + 1) - gammaln(41 - count)
            + gammaln(a + count) - gammaln(a) + gammaln(b + 40 - count) - gammaln(b)
            - gammaln(a + b + 40) + gammaln(a + b)
        )  # fmt: skip
    else:  # density of log y = density of y times y
        logp = np.asarray(dist.Normal(np.exp(mu), s).log_prob(np.exp(log_y))) + log_y[None, :]
    expected = logsumexp(np.asarray(logp), axis=0) - math.log(3)
    got = check._log_density(fake, mu, log_y)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_summarize_by_hand():
    """Median/mean ARE, RMSLE, coverage, lpd and status of a hand-made table."""
    loss = np.array([2.0, 2.0, 4.0, 4.0])
    median = np.array([2.02, 1.9, 4.0, 4.4])
    points = pd.DataFrame(
        {
            "dataset": "d",
            "curve": ["a", "a", "b", "b"],
            "cut": "0.1",
            "law": "power_n",
            "likelihood": "lognormal",
            "loss": loss,
            "median": median,
            "extrapolation": [2.0, 3.0, 1.5, 9.0],
            "lower90": [1.9, 1.95, 3.9, 4.1],
            "upper90": [2.1, 2.1, 4.1, 4.6],
            "lpd": [1.0, 2.0, 3.0, 4.0],
            "are": np.abs(median - loss) / loss,
            "n_train": [10, 10, 7, 7],
            "status": ["ok", "ok", "divergences", "divergences"],
            "weak_E": [0, 0, 2, 2],
            "fit_s": [1.0, 1.0, 3.0, 3.0],
        }
    )
    table = summarize(points, by=["cut"]).iloc[0]
    pd.testing.assert_frame_equal(summarize(points, by="cut"), summarize(points, by=["cut"]))
    assert table["n_fits"] == 2 and table["n_train"] == 17 and table["n_test"] == 4
    assert table["n_unscored"] == 0
    # a curve with too few training runs is no fit: it shows in status, not in n_fits/fit_s
    unfit = points.iloc[[0]].assign(
        curve="c", median=np.nan, n_train=2, status="too_few_runs", fit_s=0.0
    )
    both = summarize(pd.concat([points, unfit]), by=["cut"]).iloc[0]
    assert both["n_fits"] == 2 and both["n_train"] == 19 and both["fit_s"] == pytest.approx(2.0)
    assert both["status"] == "ok: 1, divergences: 1, too_few_runs: 1"
    assert table["median_are"] == pytest.approx(np.median([0.01, 0.05, 0.0, 0.1]))
    assert table["mean_are"] == pytest.approx(0.04)
    assert table["rmsle"] == pytest.approx(np.sqrt(np.mean(np.log(median / loss) ** 2)))
    assert table["cov90"] == pytest.approx(0.75)  # runs 0, 1 and 2 inside
    assert table["lpd"] == pytest.approx(2.5)
    assert table["max_extrapolation"] == 9.0
    assert table["weak_E"] == 1 and table["fit_s"] == pytest.approx(2.0)
    assert table["status"] == "ok: 1, divergences: 1"
    per_curve = summarize(points)
    assert list(per_curve["status"]) == ["ok", "divergences"]


def _points(loss, median, n_train, status, row0=0):
    """A hand-made backtest_points table of one fit without a dataset label or curve ids."""
    loss, median = np.asarray(loss, float), np.asarray(median, float)
    return pd.DataFrame(
        {
            "dataset": "",
            "curve": "all",
            "cut": "0.1",
            "law": "power_n",
            "likelihood": "lognormal",
            "row": row0 + np.arange(loss.size),
            "loss": loss,
            "median": median,
            "extrapolation": 2.0,
            "lower90": 0.9 * median,
            "upper90": 1.1 * median,
            "lpd": 1.0,
            "are": np.abs(median - loss) / loss,
            "n_train": n_train,
            "status": status,
            "weak_E": 0,
            "fit_s": 1.0,
        }
    )


def test_summarize_refuses_fits_it_cannot_tell_apart():
    """Without fit_id (a hand-made table), two unlabelled fits share the key (dataset, curve,
    cut, law, likelihood): summarize must not merge them into one fit (it used to report
    n_fits 1, n_train 10, status "ok" for an ok fit of 10 runs and a divergent one of 7)."""
    a = _points([2.0, 2.0], [2.0, 2.1], 10, "ok")
    b = _points([3.0, 3.0], [3.0, 3.3], 7, "divergences")
    with pytest.raises(ValueError, match=r"dataset='', curve='all', cut='0.1'.*dataset="):
        summarize(pd.concat([a, b]), by=["cut"])
    # same n_train and status but a held-out row twice: two fits as well
    with pytest.raises(ValueError, match="more than one fit"):
        summarize(pd.concat([a, a.assign(median=a["median"] * 1.01)]), by=["cut"])
    # with their fit ids (as backtest_points writes them) the fits are counted apart
    both = pd.concat([a.assign(fit_id="x-0"), b.assign(fit_id="y-0")])
    row = summarize(both, by=["cut"]).iloc[0]
    assert (row["n_fits"], row["n_train"], row["n_test"]) == (2, 17, 4)
    assert row["status"] == "ok: 1, divergences: 1"


def test_summarize_counts_unscored_runs():
    """A fitted cut's held-out run without a finite forecast median is left out of the scores
    but counted in n_test: n_unscored says how many, and a warning says so."""
    points = pd.concat(
        [
            _points([2.0, 2.0], [2.0, np.nan], 10, "ok").assign(dataset="a"),
            _points([3.0], [3.3], 7, "ok").assign(dataset="b"),
            _points([4.0], [np.nan], 2, "too_few_runs").assign(dataset="c"),
        ]
    )
    with pytest.warns(UserWarning, match=r"1 held-out run\(s\) .* n_unscored"):
        row = summarize(points, by=["cut"]).iloc[0]
    assert (row["n_fits"], row["n_test"], row["n_unscored"]) == (2, 4, 1)
    assert row["median_are"] == pytest.approx(0.05)  # the two scored runs: 0 and 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fitted run scored: no warning
        scored = summarize(points.iloc[[0, 2, 3]])
    assert list(scored.columns[5:10]) == [
        "n_fits",
        "n_train",
        "n_test",
        "n_unscored",
        "max_extrapolation",
    ]
    assert scored["n_unscored"].tolist() == [0, 0, 0]
    with pytest.warns(UserWarning, match="n_unscored"):
        per_dataset = summarize(points).set_index("dataset")
    assert per_dataset["n_unscored"].tolist() == [1, 0, 0]


def test_pooled_unlabelled_datasets_keep_their_fits_apart(pure_power_fit):
    """The documented recipe: summarize(pd.concat([backtest_points(a), backtest_points(b)]),
    by=["cut"]) with neither dataset labelled nor curve ids: two fits, their training runs
    summed, both statuses."""
    data, _ = synthetic_backtest_curves("power_n", 2, seed=3)
    curve = np.asarray(data.curve)
    first = data.subset(np.flatnonzero(curve == "s0000"))
    second = data.subset(np.flatnonzero(curve == "s0001")[:13])  # 8 runs below 1/10 of max
    a = bs.from_arrays(N=first.N, loss=first.loss)
    b = bs.from_arrays(N=second.N, loss=second.loss)
    conv = dataclasses.replace(pure_power_fit.convergence, divergences=3)
    divergent = dataclasses.replace(pure_power_fit, convergence=conv)
    kw = {"cuts": (0.1,), "axis": "N", "check_identifiability": False}
    pa = backtest_points(a, "power_n", fit_fn=lambda *args, **kws: pure_power_fit, **kw)
    pb = backtest_points(b, "power_n", fit_fn=lambda *args, **kws: divergent, **kw)
    assert pure_power_fit.convergence.status == "ok" and conv.status == "divergences"
    assert pa["fit_id"].nunique() == 1 and pa["fit_id"].iloc[0] != pb["fit_id"].iloc[0]
    points = pd.concat([pa, pb])
    row = summarize(points, by=["cut"]).iloc[0]
    assert (row["n_fits"], row["n_train"], row["n_test"]) == (2, 11 + 8, 5 + 5)
    assert row["status"] == "ok: 1, divergences: 1" and row["n_unscored"] == 0
    # per (dataset, curve, cut): nothing tells the datasets apart but the fit ids, so one
    # row, with both fits in it
    (only,) = summarize(points).itertuples()
    assert (only.n_fits, only.n_train, only.status) == (2, 19, "ok: 1, divergences: 1")


def test_cut_labels_are_exact():
    """The usual cuts read as before ("0.1", "0.01", ...); cuts :g would round together get
    labels of their own, so summarize does not merge them."""
    usual = (0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 1e-5, *np.geomspace(0.1, 0.001, 3))
    assert [check._cut_label(c) for c in usual] == [
        "0.5",
        "0.25",
        "0.1",
        "0.05",
        "0.01",
        "0.001",
        "1e-05",
        "0.1",
        "0.01",
        "0.001",
    ]
    close = (0.1, 0.1000001, 1 / 3)
    labels = [check._cut_label(c) for c in close]
    assert labels == ["0.1", "0.1000001", "0.3333333333333333"]
    assert [float(x) for x in labels] == list(close)


def test_close_cuts_are_summarised_apart(stub):
    data, _ = synthetic_backtest_curves("power_n", 1, seed=3)
    table = backtest(data, "power_n", cuts=(0.1, 0.1000001), axis="N", fit_fn=stub)
    assert list(table["cut"]) == ["0.1", "0.1000001"] and list(table["n_fits"]) == [1, 1]


@pytest.mark.parametrize("prob", [np.float32(0.9), np.array(0.9), [np.float32(0.5), 0.9]])
def test_numpy_interval_masses(stub, prob):
    """prob= takes any real number type (NumPy float32, 0-d arrays), alone or in a list."""
    data, _ = synthetic_backtest_curves("power_n", 1, seed=3)
    points = backtest_points(data, "power_n", cuts=(0.1,), axis="N", prob=prob, fit_fn=stub)
    assert {"lower90", "upper90"} <= set(points.columns)
    assert ("lower50" in points) == isinstance(prob, list)


# ----------------------------------------------------------------------------- splitting
def test_cuts_count_runs_and_report_too_few(stub):
    """Cut at 1/10, 1/100, 1/1000 of the largest N (16 runs over 3 decades)."""
    data, _ = synthetic_backtest_curves("power_n", 1, seed=3)
    stub.calls.clear()
    table = backtest(data, "power_n", cuts=(0.1, 0.01, 0.001), axis="N", fit_fn=stub)
    assert list(table["cut"]) == ["0.1", "0.01", "0.001"]
    assert list(table["n_train"]) == [11, 6, 1]
    assert list(table["n_test"]) == [5, 10, 15]
    assert list(table["status"]) == ["ok", "ok", "too_few_runs"]
    assert [n for n, _, _ in stub.calls] == [11, 6]  # the too-few cut was never fitted
    assert table.loc[2, ["median_are", "cov90", "lpd"]].isna().all()
    assert table.loc[:1, ["median_are", "cov50", "cov90", "lpd"]].notna().all().all()
    assert table.loc[0, "max_extrapolation"] == pytest.approx(10.0)


def test_cut_keeps_the_budget_at_the_cut(stub):
    """IsoFLOP budgets 1e18..1e21: the cut at 1/10 keeps the 1e20 budget (45 runs)."""
    data = bs.datasets.chinchilla_synthetic(seed=0)
    stub.calls.clear()
    table = backtest(data, "chinchilla", fit_fn=stub, fit_kwargs={"likelihood": "laplace"})
    assert list(table["n_train"]) == [45, 27] and list(table["n_test"]) == [18, 36]
    assert [(n, law) for n, law, _ in stub.calls] == [(45, "chinchilla"), (27, "chinchilla")]
    assert stub.calls[0][2] == {"likelihood": "laplace"}
    assert set(table["likelihood"]) == {"laplace"}


def test_split_mask_per_curve(stub):
    """split=: per curve; a curve without held-out runs and one with 3 training runs."""
    data, _ = synthetic_backtest_curves("power_n", 3, seed=1)
    curve = np.asarray(data.curve)
    position = np.concatenate([np.arange(16)] * 3)
    mask = np.where(curve == "s0000", position < 11, True)
    mask = np.where(curve == "s0002", position < 3, mask)
    points = backtest_points(data, "power_n", split=mask, fit_fn=stub, dataset="x")
    table = summarize(points).set_index("curve")
    assert table.loc["s0000", ["n_train", "n_test"]].tolist() == [11, 5]
    assert table.loc["s0000", "status"] == "ok"
    assert table.loc["s0001", "status"] == "no_test_runs"
    assert table.loc["s0001", "n_test"] == 0
    assert table.loc["s0002", "status"] == "too_few_runs"
    assert (table["cut"] == "split").all()
    held_out = points[points["curve"] == "s0000"]["row"].to_numpy()
    np.testing.assert_array_equal(held_out, np.arange(11, 16))


def test_bad_arguments(stub):
    data, _ = synthetic_backtest_curves("power_n", 1, seed=0)
    with pytest.raises(bs.DataError, match="axis 'C'"):
        backtest(data, "power_n", fit_fn=stub)  # no compute column
    with pytest.raises(bs.DataError, match="needs input"):
        backtest(data, "chinchilla", axis="N", fit_fn=stub)
    with pytest.raises(bs.DataError, match="boolean array"):
        backtest(data, "power_n", split=np.ones(3, dtype=bool), fit_fn=stub)
    with pytest.raises(ValueError, match="cuts"):
        backtest(data, "power_n", axis="N", cuts=(1.5,), fit_fn=stub)
    with pytest.raises(ValueError, match="interval"):
        backtest(data, "power_n", axis="N", prob=(0.9, 1.0), fit_fn=stub)


# ----------------------------------------------------------------------------- synthetic
def _check_calibration(points: pd.DataFrame, num_curves: int) -> pd.Series:
    """Pooled coverage within the binomial band of num_curves independent curves (a curve's
    held-out runs share one posterior, so curves, not runs, are the independent units: the
    conservative band), and the log score below the true density's (no lower bound: it falls
    with the distance of the extrapolation, 2.9 nats at 10x and 2.3 at 100x on kaplan_n)."""
    row = summarize(points, by=["cut"]).iloc[0]
    lo90, hi90 = binomial_band(0.9, num_curves)
    lo50, hi50 = binomial_band(0.5, num_curves)
    assert lo90 <= row["cov90"] <= hi90, row
    assert lo50 <= row["cov50"] <= hi50, row
    # Gibbs: on average no forecast scores above the true density (3.19 nats); the log score
    # of one run under the truth has sd sqrt(1/2), so 3 sd of a single curve's mean is slack
    assert np.isfinite(row["lpd"]) and row["lpd"] < TRUE_LPD + 3 * math.sqrt(0.5), row
    return row


def test_synthetic_kaplan_backtest_is_calibrated():
    """20 SYNTHETIC Kaplan curves, fit N <= 1e9, forecast up to 1e10 (10x)."""
    data, _ = synthetic_backtest_curves("kaplan_n", 20, seed=11, noise=NOISE)
    points = backtest_points(data, "kaplan_n", cuts=(0.1,), axis="N", fit_kwargs=FAST)
    row = _check_calibration(points, 20)
    assert row["n_test"] == 100 and row["status"] == "ok: 20"
    # a perfect forecast has median |exp(noise z) - 1| = 0.674 noise = 0.67%
    assert row["median_are"] <= 0.01, row


@pytest.mark.slow
@pytest.mark.parametrize("law", ["chinchilla", "power_n", "kaplan_n"])
def test_synthetic_backtests_20_curves_per_law(law):
    """20 SYNTHETIC curves per law, cuts at 1/10 and 1/100 (the 200-curve version with the
    issue's targets is benchmarks/backtests.py)."""
    data, _ = synthetic_backtest_curves(law, 20, seed=5, noise=NOISE)
    axis = check.SYNTHETIC_LAWS[law]
    points = backtest_points(data, law, axis=axis, fit_kwargs=FAST)
    for cut in ("0.1", "0.01"):
        _check_calibration(points[points["cut"] == cut], 20)
    at_tenth = summarize(points[points["cut"] == "0.1"], by=["cut"]).iloc[0]
    assert at_tenth["median_are"] <= (0.015 if law == "power_n" else 0.01)


# ----------------------------------------------------------------------------- real data
def test_revisiting_nsl_split_by_training_flag(shared):
    """The NMT curves of Alabdulmohsin et al. 2022 with 10 training rows (3 of 5; one data
    shape, one compile): fit the Training == 1 rows, forecast the held-out row at twice the
    largest training size; power_d on Seen Examples."""
    df = pd.read_csv(shared / "revisiting-nsl" / "benchmark.lang.csv").drop_duplicates()
    df = df[df["Domain"] == "NMT"]
    keys = ["Domain", "Task", "Model"]
    df = df[df.groupby(keys)["Training"].transform("sum") == 10].reset_index(drop=True)
    data = bs.from_dataframe(df, N=None, D="Seen Examples", C=None, loss="Loss", curve=keys)
    mask = df["Training"].to_numpy() == 1
    table = backtest(data, "power_d", split=mask, fit_kwargs=FAST, dataset="revisiting-nsl")
    assert sorted(table["curve"]) == [
        "NMT/log_perplexity/6 Enc, 28 Dec",
        "NMT/log_perplexity/6 Enc, 6 Dec",
        "NMT/log_perplexity/Dec-only",
    ]
    assert (table["n_train"] == 10).all() and (table["n_test"] == 1).all()
    assert (table["status"] != "too_few_runs").all()
    assert table["max_extrapolation"].to_numpy() == pytest.approx(2.0, rel=1e-9)
    assert np.isfinite(table[["median_are", "lpd"]].to_numpy()).all()


def test_real_datasets_cut_counts(shared, stub):
    """Run counts of the cuts on Epoch, Gadre and Open-Athena (no sampling: a stub fit)."""
    epoch = bs.datasets.load("epoch-chinchilla", data_dir=shared)
    table = backtest(epoch, "chinchilla", fit_fn=stub)
    assert list(table["n_train"]) == [226, 146] and list(table["n_test"]) == [19, 99]
    iso = pd.read_csv(shared / "open-athena-isoflops" / "isoflops.csv")
    iso = iso[~iso["outlier"].astype(bool)]
    data = bs.from_dataframe(iso, N="params", D="tokens", C="budget", curve="experiment")
    table = summarize(backtest_points(data, "chinchilla", fit_fn=stub)).set_index(["curve", "cut"])
    # Marin budgets 9e18..3e20: 1/100 of the largest leaves no run; Epoch's copy keeps two
    # IsoFLOP budgets (6e18, 1e19), fewer than 3 scales
    assert table.loc[("marin_202603__dclm__llama_2", "0.01"), "status"] == "too_few_runs"
    assert table.loc[("marin_202603__dclm__llama_2", "0.01"), "n_train"] == 0
    assert table.loc[("epochai_chinchilla__massivetext__chinchilla", "0.01"), "status"] == (
        "too_few_runs"
    )
    assert table.loc[("epochai_chinchilla__massivetext__chinchilla", "0.1"), "n_train"] == 47
    assert (table.xs("0.1", level="cut")["status"] == "ok").all()


@pytest.mark.slow
def test_epoch_backtest(shared):
    """Epoch's 245 digitised Chinchilla runs, both likelihoods, cuts at 1/10 and 1/100."""
    data = bs.datasets.load("epoch-chinchilla", data_dir=shared)
    for likelihood in ("lognormal", "student_t"):
        table = backtest(data, "chinchilla", fit_kwargs={**FAST, "likelihood": likelihood})
        assert (table["status"] == "ok").all()
        # measured 1.3-2.5%: the digitisation's scatter is about 2% (sigma of the fit)
        assert (table["median_are"] < 0.05).all(), table


GADRE_SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")


def test_gadre_reference_point_forecasts(shared):
    """Gadre et al. 2024 (arXiv:2403.08540): L(N, M) = a N^b + c 6^(b/2) (M N)^b + E fitted by
    least squares on their 5 small rpj runs (4 sizes at M = 20, the smallest at M = 320)
    from their 4x4x2x4 start grid (scaling/laws.py: curve_fit_powlaw_ours, best residual
    std) predicts the C4 loss of open_lm_1b at M = 640 and open_lm_7b at M = 20 with relative
    errors 0.7103% and 0.7320% (scaling_explorer.ipynb; SOURCE.txt)."""
    small, targets = _gadre_small_runs(shared)
    assert len(small) == 5

    def law(x, a, c, b, E):
        N, M = x
        return a * N**b + c * 6 ** (b / 2) * (M * N) ** b + E

    x = (small["N"].to_numpy(float), small["tokens_per_param_M"].to_numpy(float))
    y = small["loss_c4_val"].to_numpy(float)
    best = None
    grid = itertools.product(
        [1e2, 3e2, 1e3, 3e3], [1e2, 3e2, 1e3, 3e3], [-0.1, -0.3], [0, 1, 2, 10]
    )
    for p0 in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # curve_fit's OptimizeWarning on some starts
            try:
                popt, _ = curve_fit(law, x, y, p0=p0, maxfev=10000)
            except RuntimeError:
                continue
        resid = y - law(x, *popt)
        score = np.sqrt(np.sum(resid**2) / (resid.size - 2))
        if best is None or score < best[0]:
            best = (score, popt)
    a, c, b, E = best[1]
    assert (a, c, b, E) == pytest.approx((166.21, 366.69, -0.27285, 1.8366), rel=2e-4)
    published = {"open_lm_1b": 0.7103, "open_lm_7b": 0.7320}
    assert list(targets["model"]) == list(published)
    for _, run in targets.iterrows():
        m = float(run["tokens_per_param_M"])
        pred = law((float(run["N"]), m), *best[1])
        error = 100 * abs(pred - run["loss_c4_val"]) / run["loss_c4_val"]
        assert error == pytest.approx(published[run["model"]], abs=5e-5)  # 4 decimals


#: Gadre et al.'s two large rpj runs forecast from the 5 small ones: (model, M = D / N).
GADRE_TARGETS = (("open_lm_1b", 640), ("open_lm_7b", 20))


def _gadre_small_runs(shared):
    df = pd.read_csv(shared / "gadre-overtraining" / "models.csv")
    rpj = df[df["dataset"] == "rpj"]
    M = rpj["tokens_per_param_M"]
    small = rpj[
        (rpj["model"].isin(GADRE_SMALL) & (M == 20))
        | ((rpj["model"] == GADRE_SMALL[0]) & (M == 320))
    ]
    targets = pd.concat(
        [rpj[(rpj["model"] == model) & (M == m)] for model, m in GADRE_TARGETS]
    ).reset_index(drop=True)
    return small, targets


def test_gadre_bayesian_interval(shared):
    """bayescale's posterior for Gadre et al.'s reference extrapolation: the over-training law
    L = a N^b + c 6^(b/2) D^b + E (bayescale.laws.overtraining) fitted with NUTS and the default
    priors on the same 5 small rpj runs, forecasting open_lm_1b at M = 640 (1.4B, 0.92T tokens,
    x3.5 the largest N and x112 the largest D) and open_lm_7b at M = 20 (6.9B, x17 in N).

    Five runs for four law parameters plus the noise scale: ``bs.fit`` refuses the design
    (ScalingData.require counts sigma), but with proper priors the posterior exists, so the
    same model, priors, reference point and compiled sampler are run here through
    ``bayescale._fit._sample`` without the point-count guard. One residual degree of freedom
    leaves sigma weakly identified (a funnel as sigma -> 0), hence ``target_accept_prob=0.99``.

    Measured (4 chains x (2000 + 4000), seeds 0-3; 4-12 s on the 2-core machine): R-hat
    <= 1.008, bulk ESS 900-1,070, 0-1 divergent draws of 16,000; E-BFMI 0.27-0.30, at the
    policy's 0.3 threshold for every seed (and no better at 4000 warm-up and a 0.995 target):
    with one residual degree of freedom the noise scale has a funnel that momentum resampling
    explores slowly. So the test asserts mixing (R-hat, ESS, divergences) and E-BFMI > 0.2,
    not the full gate. Posterior medians 2.509 and 2.430 at seed 0 (relative errors 0.29% and
    0.21%; Gadre's least squares 0.71% and 0.73%); 90% credible intervals of the mean loss
    2.197-2.842 and 2.122-2.776: both cover the observed 2.502 and 2.425.
    """
    import jax

    from bayescale._fit import _sample, reference_point
    from bayescale.infer.nuts import SamplerConfig
    from bayescale.model import build_model

    small, targets = _gadre_small_runs(shared)
    data = bs.from_arrays(
        N=small["N"].to_numpy(float), D=small["D"].to_numpy(float), loss=small["loss_c4_val"]
    )
    spec = build_model("overtraining")
    ref = reference_point(data, spec.law.inputs)
    log_x = {k: v for k, v in data.log_inputs().items() if k in spec.law.inputs}
    config = SamplerConfig(num_warmup=2000, num_samples=4000, num_chains=4, target_accept_prob=0.99)
    fit = _sample(
        spec, config, data, ref, log_x, jax.random.PRNGKey(0), np.float64, retried=False, seed=0
    )
    conv = fit.convergence
    assert conv.max_rhat <= 1.01 and conv.min_ess_bulk >= 400, conv.problems
    assert conv.divergences <= 0.001 * conv.num_draws and conv.min_bfmi > 0.2, conv.problems
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation and convergence warnings
        table = fit.predict(
            N=targets["N"].to_numpy(float),
            D=targets["D"].to_numpy(float),
            prob=0.9,
            allow_unconverged=True,
        )
    truth = targets["loss_c4_val"].to_numpy(float)
    assert ((table["pred_lower"] <= truth) & (truth <= table["pred_upper"])).all(), table
    assert ((table["loss_lower"] <= truth) & (truth <= table["loss_upper"])).all(), table
    # The posterior sd of the forecast is about 0.2 (8% of the loss) and the ESS at least
    # 400 (900 measured), so the Monte Carlo sd of the median is at most 1.25 x 0.2 / 20 =
    # 0.0125 (0.5%): the median errors (0.29%, 0.21%) are checked with 4 MC sd of slack.
    rel = np.abs(table["loss_median"].to_numpy() - truth) / truth
    assert (rel < 0.023).all(), rel
    half_width = (table["pred_upper"] - table["pred_lower"]).to_numpy() / 2 / truth
    assert ((0.08 < half_width) & (half_width < 0.2)).all(), half_width


# ----------------------------------------------------------------------------- identifiability
def test_pure_power_law_warns_of_the_tradeoff(pure_power_fit):
    """E = 0 truth over two decades of N: E and alpha trade off (|corr| 0.97-0.98, sd ratio
    0.36-0.41 over seeds)."""
    stats = identifiability_stats(pure_power_fit)
    assert abs(stats["corr_alpha"]) > check.E_CORR_WARN
    assert check.E_CORR_MIN_RATIO < stats["sd_ratio"] < check.E_SD_RATIO_WARN
    messages = identifiability(pure_power_fit)
    assert any("trades off against alpha" in m for m in messages), messages


def test_tiny_exponent_warns_that_e_is_unconstrained():
    """E = 1.5 + 20 N^-0.05 over two decades: the posterior of E keeps most of its prior
    spread (sd ratio 0.6-0.75 over seeds), and the warning says so."""
    N = SYNTHETIC_N[:11]
    rng = np.random.default_rng(0)
    loss = (1.5 + 20 * N**-0.05) * np.exp(NOISE * rng.standard_normal(N.size))
    fit = bs.fit(bs.from_arrays(N=N, loss=loss), "power_n", rng_key=0, **FAST)
    stats = identifiability_stats(fit)
    assert stats["sd_ratio"] > check.E_SD_RATIO_WARN, stats
    assert any("barely constrain" in m for m in identifiability(fit))


def test_batch_summary_and_predict_say_which_curves_leave_e_free():
    """fit_many: the curve whose E the data leave free (the tiny exponent above) is named in
    summary()["identifiability"] and, forecast beyond its data, in an IdentifiabilityWarning;
    a curve over three decades with a steep exponent (sd ratio ~0.1) is not."""
    N = SYNTHETIC_N
    rng = np.random.default_rng(0)
    weak = (1.5 + 20 * N[:11] ** -0.05) * np.exp(NOISE * rng.standard_normal(11))
    good = (1.5 + 400 * N**-0.35) * np.exp(NOISE * rng.standard_normal(N.size))
    curves = {"weak": {"N": N[:11], "loss": weak}, "good": {"N": N, "loss": good}}
    batch = bs.fit_many(curves, "power_n", rng_key=0, progress=False, **FAST)
    assert list(batch.status) == ["ok", "ok"]
    table = batch.summary()
    assert "barely constrain the irreducible loss E" in table.loc["weak", "identifiability"]
    assert table.loc["good", "identifiability"] == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        inside = batch.predict(N=1e8)  # inside both curves' data: no warning
        batch.predict(N=2e6)  # below the data, where E matters least: no warning either
    assert list(inside.attrs["identifiability"]) == ["weak"]
    with pytest.warns(IdentifiabilityWarning, match=r"1 curve\(s\) \('weak'\)"):
        batch.predict(N=1e10)


def test_prior_sd_at_the_loss_level_is_analytic(pure_power_fit):
    """power_n: E = L (1 - frac), L from the posterior, frac ~ Beta(1.5, 1.5) independent, so
    Var E = E[L^2] E[(1-f)^2] - E[L]^2 E[1-f]^2 with E[1-f] = 1/2, E[(1-f)^2] = 5/16."""
    L = np.exp(np.asarray(pure_power_fit.samples["log_L_ref"]).reshape(-1))
    expected = math.sqrt(np.mean(L**2) * 5 / 16 - np.mean(L) ** 2 / 4)
    stats = identifiability_stats(pure_power_fit, num_prior_draws=40_000)
    # Monte Carlo error of an sd from 40,000 draws: about 0.4%; 2% is > 4 sd
    assert stats["prior_sd"] == pytest.approx(expected, rel=0.02)
    assert stats["post_sd"] == pytest.approx(np.std(pure_power_fit.params["E"], ddof=1))


def test_chinchilla_isoflop_design_identifies_e():
    """The synthetic Chinchilla IsoFLOP design (63 runs) pins E: sd ratio 0.04-0.05."""
    fit = bs.fit(bs.datasets.chinchilla_synthetic(seed=0), "chinchilla", rng_key=0, **FAST)
    stats = identifiability_stats(fit)
    assert stats["sd_ratio"] < 0.1 and max(abs(stats["corr_alpha"]), abs(stats["corr_beta"])) < 0.9
    assert identifiability(fit) == []


@pytest.mark.parametrize(
    ("ratio", "corr", "expected"),
    [
        (0.05, 0.80, []),  # Chinchilla IsoFLOP design
        (0.12, 0.96, []),  # recovery-test power law: strong correlation, E pinned
        (0.40, 0.97, ["trades off"]),  # pure power law over two decades
        (0.65, 0.88, ["barely constrain"]),  # exponent 0.05 over two decades
        (0.65, -0.97, ["barely constrain", "trades off"]),
    ],
)
def test_identifiability_rules(monkeypatch, ratio, corr, expected):
    stats = {"post_sd": ratio, "prior_sd": 1.0, "sd_ratio": ratio, "corr_alpha": corr}
    monkeypatch.setattr(check, "identifiability_stats", lambda fit, **kwargs: stats)
    messages = identifiability(SimpleNamespace(law=bs.laws.get("power_n")))
    assert len(messages) == len(expected)
    for message, key in zip(messages, expected, strict=True):
        assert key in message


def _fake_bnsl_fit(frac_sd: float | None, num: int = 4000):
    """A stand-in for a fitted bnsl_1 whose 'posterior' pins the loss level (as any data do)
    and draws every other parameter from its prior, or also pins ``frac`` (hence ``a``)."""
    law = bs.laws.get("bnsl_1")
    spec = bs.build_model(law)
    ref = {"D": math.log(1e9), "loss": math.log(2.5)}
    rng = np.random.default_rng(0)
    draws = {
        name: check._sample_prior(spec.prior(name, ref), rng, num, i)[None, :]
        for i, name in enumerate(spec.site_names)
    }
    draws["log_L_ref"] = ref["loss"] + 0.01 * rng.standard_normal((1, num))
    if frac_sd is not None:
        draws["frac"] = 0.5 + frac_sd * rng.standard_normal((1, num))
    natural = law.natural({k: draws[k] for k in law.param_names}, ref)
    params = {k: np.asarray(v) for k, v in natural.items()}
    return SimpleNamespace(law=law, spec=spec, ref=ref, samples=draws, params=params)


def test_broken_power_law_irreducible_loss_is_checked():
    """The BNSL's irreducible loss is Caballero's ``a``: a posterior of ``a`` that is its prior
    (at the data's loss level) is flagged by name; a pinned one is not. The exponents checked
    are the segment slopes alpha_0, alpha_1 (drawn independently of ``a`` here: |corr| small)."""
    free = _fake_bnsl_fit(None)
    stats = identifiability_stats(free)
    # posterior = prior: the sd ratio is 1 up to Monte Carlo error (~1/sqrt(2 * 4000) = 1.1%,
    # plus that of the 20,000 prior draws)
    assert stats["sd_ratio"] == pytest.approx(1.0, abs=0.05)
    assert set(stats) >= {"corr_alpha_0", "corr_alpha_1"} and "corr_b" not in stats
    assert max(abs(stats["corr_alpha_0"]), abs(stats["corr_alpha_1"])) < 0.1
    (message,) = identifiability(free)
    assert message.startswith("the data barely constrain the irreducible loss a:")
    pinned = _fake_bnsl_fit(0.005)
    assert identifiability_stats(pinned)["sd_ratio"] < 0.05 and identifiability(pinned) == []


def test_laws_without_e_have_no_identifiability_statistics():
    fake = SimpleNamespace(law=bs.laws.get("kaplan_n"))
    assert identifiability_stats(fake) == {} and identifiability(fake) == []


def test_fit_summary_and_predict_say_so(pure_power_fit):
    """Fit.summary(), repr and predict beyond the data carry the warnings (results.py)."""
    messages = list(pure_power_fit.identifiability)
    assert messages == identifiability(pure_power_fit)
    assert pure_power_fit.summary().attrs["warnings"] == messages
    assert "Warning: the irreducible loss E trades off" in repr(pure_power_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        inside = pure_power_fit.predict(N=1e8)  # inside the data: no warning
    assert inside.attrs["identifiability"] == messages
    with pytest.warns(IdentifiabilityWarning, match="forecast beyond the data"):
        pure_power_fit.predict(N=1e10)
