"""Ordinary values in another container or type give the numbers of the plain call (found
by a review of the public API's input types; each case was a crash or a wrong number)."""

from decimal import Decimal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale import planning
from bayescale.check import backtest_points, interval_masses
from bayescale.compare import holdout_split
from bayescale.datasets import BESIROGLU_2024
from bayescale.infer.optimize import _seed


def test_hoffmann_objective_reads_named_parameters_by_name():
    """A Series, a DataFrame of starts and a dict of arrays were read by position (a Series
    of the published fit gave 131.3 against 0.00044; a dict of 7 starts gave 5 values)."""
    d = bs.datasets.chinchilla_synthetic()
    args = (np.log(d.N), np.log(d.D), d.log_loss)
    want = bs.huber_objective_hoffmann(BESIROGLU_2024, *args)
    assert bs.huber_objective_hoffmann(pd.Series(BESIROGLU_2024), *args) == want
    starts = bs.hoffmann_starts().head(7)
    cols = ["a", "b", "e", "alpha", "beta"]
    by_row = bs.huber_objective_hoffmann(starts[cols].to_numpy(), *args)
    assert by_row.shape == (7,)
    np.testing.assert_array_equal(
        bs.huber_objective_hoffmann(starts.to_dict("list"), *args), by_row
    )
    np.testing.assert_array_equal(bs.huber_objective_hoffmann(starts[cols[::-1]], *args), by_row)
    np.testing.assert_array_equal(bs.huber_objective_hoffmann(starts, *args), by_row)


def test_a_dict_of_series_pairs_rows_by_position_whatever_its_keys():
    """Role keys (N, loss) paired by position and alias keys (params) by index label: the
    same data gave opposite pairings."""
    n = pd.Series([1e8, 1e9, 1e10, 1e11], index=[3, 2, 1, 0])
    loss = pd.Series([3.0, 2.8, 2.6, 2.4])
    by_role = bs.as_scaling_data({"N": n, "loss": loss})
    by_alias = bs.as_scaling_data({"params": n, "loss": loss})
    np.testing.assert_array_equal(by_role.N, [1e8, 1e9, 1e10, 1e11])  # by position
    np.testing.assert_array_equal(by_role.loss, [3.0, 2.8, 2.6, 2.4])
    np.testing.assert_array_equal(by_alias.N, by_role.N)
    np.testing.assert_array_equal(by_alias.loss, by_role.loss)
    with pytest.raises(bs.DataError, match="'params' has 3, 'loss' has 4"):
        bs.as_scaling_data({"params": [1e8, 1e9, 1e10], "loss": [3.0, 2.8, 2.6, 2.4]})


def test_a_column_of_jax_or_0d_numpy_scalars_is_numbers():
    """Losses collected from a JAX loop (an object column of 0-d arrays) were 'not a number'."""
    n, loss = [1e8, 1e9, 1e10, 1e11], [3.2, 2.8, 2.6, 2.4]
    want = bs.as_scaling_data(pd.DataFrame({"N": n, "loss": loss}))
    for wrap in (jnp.asarray, np.asarray):
        column = pd.Series([wrap(v) for v in loss], dtype=object)
        got = bs.as_scaling_data(pd.DataFrame({"params": n, "loss": column}))
        np.testing.assert_array_equal(got.loss, want.loss)
    with pytest.raises(bs.DataError, match="not a number"):  # a 0-d bool is still no number
        bs.as_scaling_data(pd.DataFrame({"N": n, "loss": [np.asarray(True)] * 4}))


def test_optimize_seeds_a_key_as_the_integer_it_holds():
    """rng_key=0 and PRNGKey(0) gave different bootstraps in optimize (as_key serves fit)."""
    assert _seed(0) == _seed(jax.random.PRNGKey(0)) == _seed(jax.random.key(0)) == 0
    assert _seed(2**40 + 3) == _seed(jax.random.key(2**40 + 3)) == 2**40 + 3
    assert _seed(-1) == 2**64 - 1  # a valid NumPy seed (default_rng(-1) raised)
    np.random.default_rng(_seed(-1))


def test_interval_masses_take_any_real_scalar():
    """A 0-d JAX array or a Decimal crashed the plots and the backtest (np.isscalar)."""
    for p in (0.9, np.float32(0.9), np.array(0.9), jnp.array(0.9), Decimal("0.9")):
        assert interval_masses(p) == pytest.approx((0.9,), rel=1e-7)
    assert interval_masses(jnp.array([0.5, 0.9])) == (0.5, 0.9)
    for text in ("wide", "0.9", ["0.9"]):
        with pytest.raises(ValueError, match="must be numbers"):
            interval_masses(text)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        interval_masses(np.array(1.5))


def test_one_cut_needs_no_tuple():
    """backtest(cuts=0.1) was a TypeError ('float' object is not iterable)."""
    d = bs.datasets.chinchilla_synthetic()
    with pytest.raises(ValueError, match=r"cuts must lie in \(0, 1\), got 1.5"):
        backtest_points(d, "chinchilla", cuts=1.5)


def test_planning_and_holdout_read_targets_as_predict_does():
    """prob_beats took no "70B" (a raw NumPy ValueError), 10**400 FLOP was an OverflowError,
    and a one-element array cut of holdout_split a TypeError."""
    const = BESIROGLU_2024
    want = planning.prob_beats(const, N=70e9, D=1.4e12, loss=2.0)
    assert planning.prob_beats(const, N="70B", D="1.4T", loss=2.0) == want
    assert planning.prob_beats(const, N=70 * 10**9, D=Decimal("1.4e12"), loss=2.0) == want
    with pytest.raises(bs.DataError, match="prediction target 'N'"):
        planning.prob_beats(const, N=-1.0, D=1.4e12, loss=2.0)
    with pytest.raises(ValueError, match="overflows a float"):
        planning.optimal_allocation(const, compute=10**400)
    d = bs.datasets.chinchilla_synthetic()
    train, test = holdout_split(d, C=1e21)
    for cut in (np.array([1e21]), "1e21", 10**21):
        t2, s2 = holdout_split(d, C=cut)
        assert len(t2) == len(train) and len(s2) == len(test)
    with pytest.raises(bs.DataError, match="must be one value"):
        holdout_split(d, C=[1e20, 1e21])
    with pytest.raises(bs.DataError, match=r"holdout cut C=: value -1.0 must be > 0"):
        holdout_split(d, C=-1.0)


def test_a_series_of_starts_is_read_by_name():
    """optimize(starts=pd.Series) was read by position (a permuted start; for chinchilla a
    ValueError about non-positive E, A or B)."""
    from bayescale.infer.optimize import _chinchilla_fast_starts, _starts_array

    names = ("E", "A", "alpha")
    series = pd.Series({"alpha": 0.3, "A": 400.0, "E": 1.7})
    np.testing.assert_array_equal(_starts_array(series, names), [[1.7, 400.0, 0.3]])
    unlabelled = pd.Series([1.7, 400.0, 0.3])  # a RangeIndex: by position, as an array
    np.testing.assert_array_equal(_starts_array(unlabelled, names), [[1.7, 400.0, 0.3]])
    with pytest.raises(ValueError, match="A, B and E must be > 0"):
        bs.huber_objective_hoffmann(
            {"E": 1.0, "A": -1.0, "B": 1.0, "alpha": 0.3, "beta": 0.3}, 1, 1, 1
        )
    published = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
    law, ref = bs.laws.get("chinchilla"), {"N": 20.0, "D": 23.0}
    np.testing.assert_array_equal(
        _chinchilla_fast_starts(pd.Series(published), law, ref),
        _chinchilla_fast_starts(published, law, ref),
    )


def test_integer_curve_ids_are_not_taken_for_positions(batch_of_three):
    """An integer curve column (7, 2, 5) gives ids '7', '2', '5': batch[2] silently returned
    the curve at position 2 ('5'), and batch[7] an IndexError that did not name the id."""
    batch = batch_of_three
    assert batch.curve_ids == ("7", "2", "5")
    assert "7" in batch and 7 not in batch  # an int is a position: batch[k] if k in batch
    assert batch[0].data is batch.data[0]  # '0' is no id: a position
    with pytest.raises(KeyError, match=r"2 is ambiguous: the curve with id '2' is at position 1"):
        batch[2]
    with pytest.raises(IndexError, match=r"the curve with id '7' is batch\['7'\]"):
        batch.message(7)
    assert batch["2"].data is batch.data[1]
    assert batch[batch.curve_ids[2]].data is batch.data[2]


@pytest.fixture(scope="module")
def batch_of_three():
    data, _ = bs.batch.synthetic_curves(3, seed=2, num_points=(12, 12))
    frame = data.to_frame()
    frame["seed"] = frame["curve"].map(dict(zip(data.curve_ids, (7, 2, 5), strict=True)))
    return bs.fit_many(
        frame.drop(columns="curve"),
        "power_n",
        curve="seed",
        num_warmup=20,
        num_samples=20,
        num_chains=2,
        retry=False,
        progress=False,
    )
