"""Law comparison: PSIS-LOO ranks the law that generated the data first; held-out scores.

Designs and sampler settings match tests/test_recovery.py and tests/test_fit.py, so in one
pytest session most fits reuse compiled programs. Known truths asserted: on data simulated from
law X, X has the higher elpd by more than 2 standard errors of the difference when the other
law does not nest X; a law nested in another is not beaten by more than 2 SE on its own data;
the table equals ArviZ's ``az.compare`` on the same pointwise values; densities are of the loss.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import FAST
from scipy.special import logsumexp
from scipy.stats import norm

import bayescale as bs
from bayescale.compare import LOOWarning, compare, holdout_split, loo, stacking_weights

# kaplan_nd has one run at k ~ 0.73 on the recovery design; the warning itself is tested below
pytestmark = pytest.mark.filterwarnings("ignore::bayescale.compare.LOOWarning")


def _grid(lo, hi, n):
    return np.logspace(np.log10(lo), np.log10(hi), n)


N20 = _grid(1e7, 1e10, 20)
N30 = np.repeat(_grid(3e7, 1e10, 6), 5)
D30 = np.tile(_grid(1e9, 1e12, 5), 6)
KAPLAN_ND = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
CHIN = dict(bs.datasets.BESIROGLU_2024)


def _noisy(mean, seed, noise=0.02):
    return mean * np.exp(noise * np.random.default_rng(seed).standard_normal(mean.shape))


def _kaplan_nd(N, D):
    p = KAPLAN_ND
    return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]


def _chinchilla(N, D):
    p = CHIN
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def _fits(data, laws, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        return [bs.fit(data, law=law, rng_key=0, **FAST, **kw) for law in laws]


@pytest.fixture(scope="module")
def power_data_fits():
    data = bs.from_arrays(N=N20, loss=_noisy(1.7 + 400.0 * N20**-0.34, 0))
    return _fits(data, ["power_n", "kaplan_n"])


@pytest.fixture(scope="module")
def chinchilla_pair():
    """chinchilla and kaplan_nd fitted to Chinchilla-law data on the recovery design."""
    data = bs.from_arrays(N=N30, D=D30, loss=_noisy(_chinchilla(N30, D30), 0))
    return _fits(data, ["chinchilla", "kaplan_nd"])


def _assert_wins(table, winner):
    assert table.index[0] == winner, table
    loser = table.iloc[1]
    assert loser["elpd_diff"] > 2 * loser["dse"], table
    assert table.loc[winner, "weight"] > 0.9, table


def test_power_law_wins_on_its_own_data(power_data_fits):
    table = compare(power_data_fits)
    _assert_wins(table, "power_n")
    assert list(table["rank"]) == [0, 1]
    assert table.loc["power_n", "elpd_diff"] == 0 and table.loc["power_n", "dse"] == 0


def test_nested_law_is_not_beaten_on_its_own_data():
    # power_n nests kaplan_n (frac -> 1), so on Kaplan data it cannot be clearly better
    data = bs.from_arrays(N=N20, loss=_noisy((8.8e13 / N20) ** 0.076, 0))
    table = compare(_fits(data, ["power_n", "kaplan_n"]))
    diff = table.loc["kaplan_n", "elpd_diff"]
    assert diff <= 2 * table.loc["kaplan_n", "dse"], table


def test_each_two_input_law_wins_on_its_own_data(chinchilla_pair):
    _assert_wins(compare(chinchilla_pair), "chinchilla")
    data = bs.from_arrays(N=N30, D=D30, loss=_noisy(_kaplan_nd(N30, D30), 0))
    _assert_wins(compare(_fits(data, ["chinchilla", "kaplan_nd"])), "kaplan_nd")


def test_table_equals_arviz_compare(chinchilla_pair, power_data_fits):
    import arviz as az

    for fits in (chinchilla_pair, power_data_fits):
        table = compare(fits)
        containers = {}
        for f in fits:
            ll = f.log_likelihood() - np.log(f.data.loss)  # the Jacobian compare() applies
            posterior = {**f.params, **f.samples}
            containers[f.law.name] = az.from_dict(posterior=posterior, log_likelihood={"loss": ll})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = az.compare(containers, ic="loo", method="stacking")
        for col, ref_col in (
            ("elpd_loo", "elpd_loo"), ("se", "se"), ("p_loo", "p_loo"),
            ("elpd_diff", "elpd_diff"), ("dse", "dse"),
        ):  # fmt: skip
            np.testing.assert_allclose(
                table[col].to_numpy(float), ref.loc[table.index, ref_col].to_numpy(float),
                rtol=1e-9, atol=1e-9,
            )  # fmt: skip
        np.testing.assert_allclose(
            table["weight"].to_numpy(float), ref.loc[table.index, "weight"].to_numpy(float),
            atol=1e-3,
        )  # fmt: skip


def test_densities_are_of_the_loss_across_likelihoods():
    """A log-scale and a loss-scale likelihood give comparable elpd only with the Jacobian."""
    data = bs.datasets.chinchilla_synthetic(seed=0)  # test_fit.py's design: shared programs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        fits = [
            bs.fit(data, law="chinchilla", likelihood=lik, rng_key=1, **FAST)
            for lik in ("lognormal", "normal")
        ]
    table = compare(fits)
    assert list(table.index) == ["chinchilla (lognormal)", "chinchilla (normal)"] or list(
        table.index
    ) == ["chinchilla (normal)", "chinchilla (lognormal)"]
    jacobian = float(np.sum(np.log(data.loss)))
    assert jacobian > 50  # without it the two would differ by ~Jacobian
    row = table.iloc[1]
    assert row["elpd_diff"] < 2 * row["dse"] + 1.0, table
    # the lognormal fit's elpd is ArviZ's LOO on its own container shifted by -sum(log L)
    own = bs._arviz_compat.loo(fits[0].to_arviz())
    assert loo(fits[0])["elpd"] == pytest.approx(float(own["elpd_loo"]) - jacobian, rel=1e-9)


def test_holdout_scores_match_an_independent_computation(chinchilla_pair):
    # held-out runs 3x-30x beyond the fitted N and D, from the same law
    N = np.array([3e10, 1e11, 3e11, 3e10, 1e11])
    D = np.array([3e12, 3e12, 1e13, 1e13, 3e13])
    test = bs.from_arrays(N=N, D=D, loss=_noisy(_chinchilla(N, D), 7))
    table = compare(chinchilla_pair, holdout=test, prob=0.9)
    assert table.attrs["holdout_runs"] == 5
    chin, kap = table.loc["chinchilla"], table.loc["kaplan_nd"]
    assert chin["holdout_lpd"] > kap["holdout_lpd"] + 1.0, table
    assert chin["holdout_median_are"] < 0.03 < kap["holdout_median_are"], table
    assert chin["holdout_coverage"] >= 0.6, table
    # independent: the lognormal density of the held-out losses under each draw's published
    # parameters, averaged over draws (NumPy, from fit.params)
    p = {k: v.reshape(-1)[:, None] for k, v in chinchilla_pair[0].params.items()}
    mu = np.log(p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"])
    dens = norm.logpdf(np.log(test.loss), mu, p["sigma"]) - np.log(test.loss)
    lpd = logsumexp(dens, axis=0) - np.log(mu.shape[0])
    assert chin["holdout_lpd"] == pytest.approx(lpd.mean(), rel=1e-9)
    # held-out runs whose C strays from 6ND (read with a DataWarning) score the same: the laws
    # of N and D are forecast from N and D alone (predict refuses N, D, C that disagree)
    with pytest.warns(bs.DataWarning, match=r"C/\(6ND\) = 3"):
        off = bs.from_arrays(N=N, D=D, C=18.0 * N * D, loss=test.loss)
    again = compare(chinchilla_pair, holdout=off, prob=0.9).loc["chinchilla"]
    assert again["holdout_lpd"] == pytest.approx(chin["holdout_lpd"], rel=1e-12)


def test_pareto_k_warning_on_an_outlier():
    loss = _noisy(1.7 + 400.0 * N20**-0.34, 0)
    loss[-1] *= 1.25  # one run 25% off the law, at the edge of the data
    fits = _fits(bs.from_arrays(N=N20, loss=loss), ["power_n", "kaplan_n"])
    with pytest.warns(LOOWarning, match="Pareto k > 0.7"):
        table = compare(fits)
    assert table["n_bad_k"].max() >= 1 and table["pareto_k_max"].max() > 0.7


def test_stacking_weights_known_cases():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(50, 1))
    np.testing.assert_allclose(stacking_weights(np.hstack([same, same])).sum(), 1.0)
    dominated = np.hstack([same, same - 5.0])
    np.testing.assert_allclose(stacking_weights(dominated), [1.0, 0.0], atol=1e-6)
    # each model predicts half the runs much better: the optimum mixes them equally
    half = np.zeros((40, 2))
    half[:20, 0], half[20:, 1] = 3.0, 3.0
    np.testing.assert_allclose(stacking_weights(half), [0.5, 0.5], atol=1e-4)


def test_holdout_split_and_input_errors(chinchilla_pair, power_data_fits):
    data = bs.datasets.chinchilla_synthetic(seed=0)
    train, test = holdout_split(data, C=1e21)
    assert len(train) + len(test) == len(data) and test.C.min() >= 1e21 > train.C.max()
    mask = np.zeros(len(data), dtype=bool)
    mask[:5] = True
    train, test = holdout_split(data, mask)
    assert len(test) == 5
    with pytest.raises(ValueError, match="exactly one"):
        holdout_split(data)
    with pytest.raises(bs.DataError, match="non-empty"):
        holdout_split(data, C=1e30)
    with pytest.raises(bs.DataError, match="boolean"):
        holdout_split(data, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="different runs"):
        compare([chinchilla_pair[0], power_data_fits[0]])
    with pytest.raises(ValueError, match="at least 2"):
        compare(chinchilla_pair[:1])
    with pytest.raises(ValueError, match="method"):
        compare(chinchilla_pair, method="bma")
    with pytest.raises(ValueError, match="duplicate"):
        compare(chinchilla_pair, names=["a", "a"])
    with pytest.raises(TypeError, match="not a bayescale Fit"):
        compare([chinchilla_pair[0], "kaplan_nd"])
    named = compare({"A": chinchilla_pair[0], "B": chinchilla_pair[1]}, method="pseudo-bma")
    assert list(named.index) == ["A", "B"] and named["weight"].sum() == pytest.approx(1.0)
    with pytest.raises(bs.DataError, match="lack input"):
        compare(power_data_fits, holdout=bs.from_arrays(D=[1e9, 2e9, 3e9], loss=[3.0, 2.9, 2.8]))


@pytest.mark.slow
def test_epoch_chinchilla_beats_kaplan_and_bnsl(shared):
    """Epoch's digitised Hoffmann runs: the Chinchilla law beats kaplan_nd and a BNSL of
    compute alone (which cannot represent the IsoFLOP valleys) by many standard errors."""
    from bayescale.laws.broken import bnsl_1_c

    data = bs.datasets.load("epoch-chinchilla", data_dir=shared, drop_highest_loss=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        fits = [bs.fit(data, law=law, rng_key=0, **FAST) for law in ("chinchilla", "kaplan_nd")]
        fits.append(bs.fit(data, law=bnsl_1_c, rng_key=0, target_accept_prob=0.99, **FAST))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LOOWarning)  # two digitisation outliers
        table = compare(fits)
    assert table.index[0] == "chinchilla", table
    for other in ("kaplan_nd", "bnsl_1_c"):
        assert table.loc[other, "elpd_diff"] > 4 * table.loc[other, "dse"], table
