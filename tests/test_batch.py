"""fit_many / BatchFit: one compiled program for many curves, checked against single fits, known
truth, ArviZ's diagnostics, padding, devices, executors and storage."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import potential_energy
from scipy import stats

import bayescale as bs
from bayescale import _arviz_compat as azc
from bayescale import check
from bayescale.batch import BatchFit, _status, fit_many, load_batch, synthetic_curves, thin_draws
from bayescale.infer import batch as engine
from bayescale.model import build_model
from bayescale.results import Convergence, Fit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

#: Batch-equals-single settings: enough draws (4 x 2000) that 5% quantiles of the published
#: amplitude A (relative posterior SD up to ~40%) have a Monte Carlo error well under 5%.
EQUAL = {"num_warmup": 500, "num_samples": 2000, "num_chains": 4}
#: Recovery settings: the issue's example (2 chains) at the default iterations; the 200-curve
#: test in the normal suite uses fewer draws (coverage does not depend on them). The default
#: iterations there re-fit half as many curves (20 against 40) yet cost more: 161 s against
#: 122 s alone, 248 s against 193 s in the CI suite (2-core AMD EPYC).
RECOVER = {"num_warmup": 500, "num_samples": 1000, "num_chains": 2}
RECOVER_FAST = {"num_warmup": 400, "num_samples": 600, "num_chains": 2}
NATURAL = ("E", "A", "alpha", "sigma")


def _quiet(**kwargs):
    return {"progress": False, **kwargs}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def curves20():
    """20 power-law curves of 30 points each (padded to the 32-point bucket in the batch)."""
    return synthetic_curves(20, seed=3, num_points=(30, 30))


@pytest.fixture(scope="module")
def batch20(curves20):
    data, _ = curves20
    return fit_many(data, "power_n", rng_key=7, **EQUAL, **_quiet())


@pytest.fixture(scope="module")
def recovery200():
    """200 ragged curves (20-60 points) plus two bad ones, as one long DataFrame."""
    data, truth = synthetic_curves(200, seed=11)
    frame = data.to_frame()
    bad_value = pd.DataFrame({"N": [1e6, 1e7, 1e8, 1e9, 1e10], "loss": [3.0, 2.5, -1.0, 2.1, 2.0]})
    too_few = pd.DataFrame({"N": [1e6, 1e7, 1e8], "loss": [3.0, 2.5, 2.2]})
    bad_value["curve"], too_few["curve"] = "bad_value", "too_few"
    frame = pd.concat([frame.iloc[:100], bad_value, frame.iloc[100:], too_few], ignore_index=True)
    batch = fit_many(frame, "power_n", curve="curve", rng_key=1, **RECOVER_FAST, **_quiet())
    return batch, truth


# ----------------------------------------------------------------------------- diagnostics
def _ar1(rng, phi, shape):
    x = np.zeros(shape)
    e = rng.normal(size=shape)
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + e[..., t]
    return x


def test_vectorised_diagnostics_agree_with_arviz():
    """R-hat (rank), bulk/tail ESS and MCSE equal ArviZ's to 1e-6 on chains with known
    autocorrelation (AR(1), phi from -0.3 to 0.99), a shifted chain, ties and short chains."""
    rng = np.random.default_rng(0)
    cases = [_ar1(rng, phi, (4, 500)) for phi in (0.0, 0.5, 0.9, 0.99, -0.3)]
    shifted = rng.normal(size=(4, 500))
    shifted[0] += 3.0
    cases += [shifted, np.round(rng.normal(size=(4, 500)), 1), rng.normal(size=(2, 501))]
    for x in cases:
        ref = {"a": x}
        want = (
            azc.rhat(ref)["a"],
            azc.ess(ref, "bulk")["a"],
            azc.ess(ref, "tail")["a"],
            azc.mcse_mean(ref)["a"],
        )
        got = (engine.rhat_rank(x), engine.ess_bulk(x), engine.ess_tail(x), engine.mcse_mean(x))
        np.testing.assert_allclose(np.array(got, dtype=float), want, rtol=1e-6)
    # Vectorised over leading axes: the same numbers as one array at a time.
    stacked = np.stack(cases[:7])
    np.testing.assert_array_equal(engine.ess_bulk(stacked), [engine.ess_bulk(x) for x in cases[:7]])
    # Known truth: independent draws have ESS near the number of draws and R-hat near 1; the
    # AR(1) integrated autocorrelation time is (1 + phi) / (1 - phi) = 19 at phi = 0.9.
    assert abs(engine.ess_bulk(cases[0]) / 2000 - 1) < 0.15
    assert 2000 / 19 * 0.6 < engine.ess_mean(cases[2]) < 2000 / 19 * 1.6
    assert engine.rhat_rank(shifted) > 1.1
    # NaN draws and a single chain give NaN R-hat (as ArviZ does), not an exception.
    with_nan = stacked.copy()
    with_nan[1, 0, 3] = np.nan
    assert np.isnan(engine.rhat_rank(with_nan)[1]) and np.isfinite(engine.rhat_rank(with_nan)[0])
    assert np.isnan(engine.rhat_rank(rng.normal(size=(1, 100))))
    energy = rng.normal(size=(3, 4, 800))
    np.testing.assert_allclose(engine.bfmi(energy)[1], azc.bfmi(energy[1]), rtol=1e-12)


def test_status_follows_the_single_fit_policy():
    """The vectorised status uses Convergence.status's thresholds and precedence."""
    rows = [
        (1.001, 900.0, 800.0, 0, 0.9),
        (1.02, 900.0, 800.0, 0, 0.9),
        (1.02, 300.0, 800.0, 2, 0.9),
        (1.001, 900.0, 350.0, 0, 0.9),
        (1.001, 900.0, 800.0, 0, 0.2),
        (float("nan"), 900.0, 800.0, 0, 0.9),
    ]
    diag = {
        "r_hat": np.array([[r[0], 1.0] for r in rows]),
        "ess_bulk": np.array([[r[1], 1e4] for r in rows]),
        "ess_tail": np.array([[r[2], 1e4] for r in rows]),
        "divergences": np.array([r[3] for r in rows]),
        "min_bfmi": np.array([r[4] for r in rows]),
    }
    valid = np.array([True] * 5 + [True])
    got = _status(diag, valid)
    want = [Convergence(r[0], r[1], r[2], r[3], 4000, r[4]).status for r in rows]
    assert (
        got.tolist()
        == want
        == ["ok", "rhat_high", "divergences", "ess_low", "bfmi_low", "rhat_high"]
    )
    assert _status(diag, np.array([False] + [True] * 5))[0] == "invalid_input"


# ----------------------------------------------------------------------------- padding
def test_bucket_lengths_and_padding_leave_the_posterior_unchanged():
    """Padded points are masked out exactly: potential energy and gradient of a 30-point curve
    padded to 64 equal the unpadded ones at random parameter values."""
    assert [engine.bucket_length(n) for n in (3, 20, 21, 33, 60, 64, 65, 780)] == [
        8,
        20,
        24,
        40,
        64,
        64,
        80,
        896,
    ]
    for n in range(1, 2000):
        b = engine.bucket_length(n)
        assert n <= b <= max(8, 1.25 * n)
    data, _ = synthetic_curves(1, seed=5, num_points=(30, 30))
    spec = build_model("power_n")
    ref = bs._fit.reference_point(data, ("N",))
    log_x = {"N": np.log(data.N)}
    xs, ys, mask = engine.pad_curves([log_x], [data.log_loss], 64)
    assert mask.sum() == 30 and xs["N"].shape == (1, 64)
    ref_j = {k: jnp.asarray(v) for k, v in ref.items()}

    def pe(args):
        return jax.value_and_grad(lambda u: potential_energy(spec, args, {}, u))

    plain = jax.jit(pe(({"N": jnp.asarray(log_x["N"])}, ref_j, jnp.asarray(data.log_loss), None)))
    padded = jax.jit(
        pe(({"N": jnp.asarray(xs["N"][0])}, ref_j, jnp.asarray(ys[0]), jnp.asarray(mask[0])))
    )
    rng = np.random.default_rng(0)
    for _ in range(5):
        u = {k: jnp.asarray(rng.normal(scale=0.5)) for k in spec.site_names}
        (v1, g1), (v2, g2) = plain(u), padded(u)
        np.testing.assert_allclose(float(v2), float(v1), rtol=1e-12)
        for k in spec.site_names:
            np.testing.assert_allclose(float(g2[k]), float(g1[k]), rtol=1e-10, atol=1e-12)


def test_chunk_plan_merges_small_buckets_and_bounds_shapes():
    """Few curves share one program (padding is cheaper than a compile); many curves keep
    their own length buckets; every chunk is at most batch_size curves."""
    from bayescale.batch import _chunk_size, _Runner
    from bayescale.infer.nuts import SamplerConfig

    config = SamplerConfig(num_warmup=500, num_samples=1000, num_chains=2)

    def plan(lengths, batch_size):
        datas = [type("D", (), {"__len__": lambda self, n=n: n})() for n in lengths]
        runner = _Runner(
            build_model("power_n"),
            config,
            datas,
            {},
            None,
            (None,),
            "float64",
            None,
            batch_size,
            False,
        )
        return runner.chunks(np.arange(len(lengths)), config)

    few = plan([20, 33, 47, 60], 1024)
    assert [(len(p), L, s) for p, L, s in few] == [(4, 64, 4)]
    rng = np.random.default_rng(0)
    many = plan(rng.integers(20, 61, 20_000).tolist(), 1024)
    assert len({L for _, L, _ in many}) > 1
    assert all(len(p) <= s <= 1024 for p, _, s in many)
    assert sorted(np.concatenate([p for p, _, _ in many]).tolist()) == list(range(20_000))
    assert len({(L, s) for _, L, s in many}) <= 2 * len({L for _, L, _ in many})
    assert _chunk_size(5, 1024, 4) == 8 and _chunk_size(1, 1024, 1) == 1
    assert _chunk_size(3000, 1024, 3) == 1026


# ----------------------------------------------------------------------------- batch = single
def _mcse_quantile(x, prob):
    """MCSE of a quantile (Vehtari et al. 2021, Sec. 4.3; ArviZ's ``mcse(method="quantile")``):
    half the width of the central 68% interval of the quantile's order statistic, with the
    indicator's ESS."""
    flat = np.sort(x.reshape(-1))
    q = np.quantile(flat, prob)
    ess = float(engine.ess_mean((x <= q).astype(float)))
    lo, hi = stats.beta.ppf([0.1586553, 0.8413447], ess * prob + 1, ess * (1 - prob) + 1)
    i, j = int(np.floor(lo * flat.size - 1)), int(np.ceil(hi * flat.size - 1))
    return (flat[min(j, flat.size - 1)] - flat[max(i, 0)]) / 2


def test_batch_equals_single(curves20, batch20):
    """Each curve's batch posterior matches its single NUTS fit: means within 4 MCSE and 90%
    interval ends within 5%, for every published parameter (issue 4 acceptance)."""
    data, _ = curves20
    singles = [
        bs.fit(d, law="power_n", rng_key=100 + i, retry=False, **EQUAL)
        for i, d in enumerate(data.curves().values())
    ]
    worst, within = 0.0, {True: 0, False: 0}
    for i, single in enumerate(singles):
        for k in NATURAL:
            b = batch20.params[k][i]
            s = single.params[k]
            mcse = np.hypot(engine.mcse_mean(b), engine.mcse_mean(s))
            z = abs(b.mean() - s.mean()) / mcse
            assert z <= 4.0, f"curve {i} {k}: means differ by {z:.1f} MCSE"
            for p in (0.05, 0.95):
                qb, qs = np.quantile(b, p), np.quantile(s, p)
                rel = abs(qb / qs - 1)
                tol = 4 * np.hypot(_mcse_quantile(b, p), _mcse_quantile(s, p))
                assert rel <= 0.05 or abs(qb - qs) <= tol, (
                    f"curve {i} {k}: {p:.0%} quantile {qb:.4g} vs single {qs:.4g} "
                    f"({rel:.1%}, MCSE tolerance {tol:.3g})"
                )
                within[rel <= 0.05] += 1
            worst = max(worst, z)
    # The 5% criterion is met by nearly every interval end; the rest lie in prior-dominated
    # tails of weakly identified parameters, where the quantiles' own MCSE exceeds 5%.
    assert within[True] >= 0.9 * (within[True] + within[False]), within
    assert worst > 0  # the comparison ran on real draws
    assert (batch20.status == "ok").all(), batch20.summary()[["status", "message"]]


# ----------------------------------------------------------------------------- recovery
def _coverage(batch, truth, prob=0.9):
    s = batch.summary(prob=prob).loc[truth.index]
    return {
        k: float(np.mean((s[f"{k}_lower"] <= truth[k]) & (truth[k] <= s[f"{k}_upper"])))
        for k in NATURAL
    }


def test_recovery_coverage_200_curves_and_invalid_curves_reported(recovery200):
    """90% intervals cover the known parameters of 200 ragged synthetic curves at the nominal
    rate: the band 0.9 +/- 3 binomial SDs (0.836-0.964) for each parameter. Two bad curves
    (a negative loss, 3 points) are reported as invalid_input and the others still fit."""
    batch, truth = recovery200
    assert len(batch) == 202
    s = batch.summary()
    assert s.loc["bad_value", "status"] == "invalid_input"
    assert "'loss'" in s.loc["bad_value", "message"] and "-1.0" in s.loc["bad_value", "message"]
    assert s.loc["too_few", "status"] == "invalid_input"
    assert "too few points" in s.loc["too_few", "message"]
    assert np.isnan(s.loc["bad_value", "E_median"])
    with pytest.raises(bs.DataError, match="not fitted"):
        batch["too_few"]
    fitted = s.drop(["bad_value", "too_few"])
    # Nearly all chains mix (the few ess_low curves have a weakly identified E; more draws fix
    # them): R-hat <= 1.01 and no divergences for at least 95% of the curves.
    assert fitted["status"].isin(["ok", "ess_low"]).mean() >= 0.95, fitted["status"].value_counts()
    # Forecasting far beyond the data warns once about the curves that miss the convergence
    # policy, once that it extrapolates and once naming the curves whose E the data leave
    # free, nothing else: the unfitted curves' all-NaN rows must not raise NumPy's "All-NaN
    # slice" RuntimeWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        far = batch.predict(N=1e14)
    weak = int((s["identifiability"] != "").sum())
    missed = int((fitted["status"] != "ok").sum())  # counted in one ConvergenceWarning
    expected = [bs.ConvergenceWarning] * (missed > 0) + [bs.ExtrapolationWarning]
    expected += [check.IdentifiabilityWarning] * (weak > 0)
    assert [w.category for w in caught] == expected, [str(w) for w in caught]
    bad = int(batch.fails_badly.sum())  # refused: NaN rows; the mild misses are forecast
    assert far["refused"].sum() == bad and far["loss_median"].notna().sum() == 200 - bad
    if missed > bad:
        assert f"{missed - bad} forecast curve(s) miss" in str(caught[0].message)
    caught = caught[missed > 0 :]
    assert f"{200 - bad} curve(s)" in str(caught[0].message)
    if weak:
        assert f"beyond the data of {weak} curve(s)" in str(caught[1].message)
    assert s.loc[["bad_value", "too_few"], "identifiability"].tolist() == ["", ""]
    assert np.isnan(far.set_index("curve").loc["bad_value", "loss_median"])  # not fitted
    band = 3 * np.sqrt(0.9 * 0.1 / 200)
    cov = _coverage(batch, truth)
    for k, c in cov.items():
        assert abs(c - 0.9) <= band, f"{k}: coverage {c:.3f} outside 0.9 +/- {band:.3f}"


@pytest.mark.slow
def test_recovery_coverage_1000_curves():
    """Issue 4 acceptance: over 1,000 synthetic curves the 90% intervals contain the truth for
    a fraction within [0.85, 0.95] of curves, for each parameter."""
    data, truth = synthetic_curves(1000, seed=12)
    batch = fit_many(data, "power_n", rng_key=2, **RECOVER, **_quiet())
    cov = _coverage(batch, truth)
    print("coverage over 1000 curves:", cov, dict(pd.Series(batch.status).value_counts()))
    for k, c in cov.items():
        assert 0.85 <= c <= 0.95, f"{k}: {c:.3f}"


# ----------------------------------------------------------------------------- the API
def test_batchfit_api_summary_fit_predict(curves20, batch20):
    data, truth = curves20
    assert isinstance(batch20, BatchFit) and len(batch20) == 20
    s = batch20.summary()
    assert list(s.index) == data.curve_ids
    for k in NATURAL:
        assert {f"{k}_median", f"{k}_lower", f"{k}_upper"} <= set(s.columns)
    assert {"status", "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"} <= set(s.columns)
    assert (s["max_rhat"] <= 1.01).all() and (s["min_ess_bulk"] >= 400).all()
    one = batch20["curve_0007"]
    assert isinstance(one, Fit) and one.num_chains == 4 and one.num_draws == 2000
    assert len(one.data) == 30
    assert one.convergence.status == s.loc["curve_0007", "status"]
    # Per-curve diagnostics (vectorised) equal ArviZ's on the curve's own draws.
    table = one.summary(sampled=True)
    np.testing.assert_allclose(one.diagnostics["r_hat"], table["r_hat"], rtol=1e-6)
    np.testing.assert_allclose(one.diagnostics["ess_bulk"], table["ess_bulk"], rtol=1e-6)
    assert batch20[7].samples["alpha"].shape == (4, 2000)
    with pytest.raises(KeyError, match="no curve"):
        batch20["nope"]
    # Forecast: one row per curve; the law's median at N=1e9 matches the true mean within the
    # 90% interval for most curves (the interval is a credible interval, so ~90%).
    pred = batch20.predict(N=1e9)
    assert len(pred) == 20 and list(pred["curve"]) == data.curve_ids
    true = truth["E"] + truth["A"] * 1e9 ** -truth["alpha"]
    inside = (pred["loss_lower"].to_numpy() <= true.to_numpy()) & (
        true.to_numpy() <= pred["loss_upper"].to_numpy()
    )
    assert inside.mean() >= 0.7
    assert (pred["pred_upper"] >= pred["loss_upper"]).all()
    single = one.predict(N=1e9)
    np.testing.assert_allclose(pred.loc[7, "loss_median"], single.loc[0, "loss_median"], rtol=1e-9)
    assert "curve_0007" in repr(batch20) and "20 curves" in repr(batch20)


def test_predict_refuses_curves_that_fail_the_gate_badly(batch20, with_rhat):
    """Issue 5's gate, curve by curve: a curve failing badly (R-hat 1.3 > 1.05) gets NaN rows
    and refused=True, one warning names it; a mildly failing curve (R-hat 1.02) is forecast
    and counted; allow_unconverged=True forecasts both with the same law medians."""
    bad = with_rhat(batch20, {3: 1.3, 5: 1.02})
    assert bad.status[3] == bad.status[5] == "rhat_high"
    assert bad.fails_badly.tolist() == [i == 3 for i in range(20)]
    good = batch20.predict(N=[1e9, 1e11])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = bad.predict(N=[1e9, 1e11])
    conv = [str(w.message) for w in caught if w.category is bs.ConvergenceWarning]
    assert len(conv) == 1, [str(w.message) for w in caught]
    assert "refused to forecast 1 of 20 curves ('curve_0003')" in conv[0]
    assert "R-hat 1.300 > 1.01" in conv[0] and "allow_unconverged=True" in conv[0]
    assert "1 forecast curve(s) miss the convergence policy" in conv[0]
    rows = pred.set_index("curve")
    assert rows.loc["curve_0003", "loss_median"].isna().all()
    assert rows.loc["curve_0003", "refused"].all() and rows["refused"].sum() == 2
    assert list(pred.attrs["refused"]) == ["curve_0003"]
    assert pred.attrs["refused"]["curve_0003"].startswith("R-hat 1.300 > 1.01")
    kept = ~pred["refused"].to_numpy()
    np.testing.assert_array_equal(pred["loss_median"][kept], good["loss_median"][kept])
    with pytest.warns(bs.ConvergenceWarning, match="2 forecast curve"):
        forced = bad.predict(N=[1e9, 1e11], allow_unconverged=True)
    np.testing.assert_array_equal(forced["loss_median"], good["loss_median"])
    assert not forced["refused"].any() and forced.attrs["refused"] == {}
    # a converged batch refuses nothing and warns nothing about convergence
    assert not good["refused"].any() and not batch20.fails_badly.any()


def test_to_arviz_and_save_load_roundtrip(batch20, tmp_path):
    idata = batch20.to_arviz()
    post = azc.group(idata, "posterior")
    assert post["alpha"].dims == ("chain", "draw", "curve")
    assert post.sizes["curve"] == 20 and list(post["curve"].values[:2]) == [
        "curve_0000",
        "curve_0001",
    ]
    assert "log_likelihood" in azc.groups(idata)
    ll = np.asarray(azc.group(idata, "log_likelihood")["loss"])
    assert ll.shape == (4, 2000, 600)
    # The first curve's pointwise log-likelihood equals the single-curve computation.
    np.testing.assert_allclose(ll[..., :30], batch20[0].log_likelihood(), rtol=1e-10)
    path = batch20.save(tmp_path / "batch.nc")
    back = load_batch(path)
    assert back.curve_ids == batch20.curve_ids
    np.testing.assert_array_equal(back.status, batch20.status)
    for k in batch20.samples:
        np.testing.assert_array_equal(back.samples[k], batch20.samples[k])
    np.testing.assert_allclose(back.diagnostics["r_hat"], batch20.diagnostics["r_hat"])
    np.testing.assert_array_equal(back[3].data.loss, batch20[3].data.loss)
    pd.testing.assert_frame_equal(back.summary(), batch20.summary())
    np.testing.assert_array_equal(back.sample_stats["bfmi"], batch20.sample_stats["bfmi"])
    assert (
        json.loads(azc.group(azc.from_netcdf(path), "posterior").attrs["config"])["max_tree_depth"]
        == 5
    )


def test_float32_agrees_with_float64(curves20, batch20):
    """dtype="float32": posterior means within 0.25 posterior SD of the float64 fit."""
    data, _ = curves20
    b32 = fit_many(data, "power_n", rng_key=8, dtype="float32", **EQUAL, **_quiet())
    for k in NATURAL:
        m64, sd64 = batch20.params[k].mean(axis=(1, 2)), batch20.params[k].std(axis=(1, 2))
        m32 = b32.params[k].mean(axis=(1, 2))
        z = np.abs(m32 - m64) / sd64
        assert z.max() <= 0.25, f"{k}: float32 means off by up to {z.max():.2f} SD"


def test_second_call_does_not_recompile_and_executors_give_equal_draws(
    curves20, batch20, count_compiles
):
    """A second call with the same shapes compiles nothing, and chunks submitted to any
    concurrent.futures-style executor give the same draws as the local run."""
    data, _ = curves20
    before = engine.num_compiled()
    with (
        count_compiles() as counter,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
    ):
        again = fit_many(data, "power_n", rng_key=7, client=pool, **EQUAL, **_quiet())
    assert engine.num_compiled() == before
    assert again.timing["compile_s"] == 0.0
    assert not [m for m in counter.messages if "_batch_run" in m], counter.messages
    for k in batch20.samples:
        np.testing.assert_array_equal(again.samples[k], batch20.samples[k])


_SHARD_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import warnings
import jax, numpy as np
from bayescale.batch import fit_many, synthetic_curves
from bayescale.infer import batch as engine
warnings.simplefilter("ignore")
assert jax.local_device_count() == 4
data, _ = synthetic_curves(6, seed=4, num_points=(20, 40))
base = dict(num_chains=2, rng_key=3, progress=False, retry=False, batch_size=8)
if sys.argv[1] == "exact":
    # Before adaptation the sharded program computes exactly what one device computes.
    kw = dict(num_warmup=0, num_samples=4, **base)
    one = fit_many(data, "power_n", devices=jax.local_devices()[0], **kw)  # one Device
    four = fit_many(data, "power_n", **kw)
    for k in one.samples:
        np.testing.assert_allclose(four.samples[k], one.samples[k], rtol=1e-12, atol=1e-14)
else:
    # Full runs: the same posterior (means within 4 MCSE) for every curve and parameter.
    kw = dict(num_warmup=300, num_samples=600, **base)
    one = fit_many(data, "power_n", devices=jax.local_devices()[:1], **kw)
    four = fit_many(data, "power_n", **kw)
    for k in ("E", "A", "alpha", "sigma"):
        a, b = one.params[k], four.params[k]
        mcse = np.hypot(engine.mcse_mean(a), engine.mcse_mean(b))
        z = np.abs(a.mean(axis=(1, 2)) - b.mean(axis=(1, 2))) / mcse
        assert (z <= 4).all(), (k, z)
assert four.timing["num_chunks"] == 1
print("OK")
"""


def _run_sharded(mode: str) -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SHARD_SCRIPT), mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_sharding_over_four_cpu_devices_equals_one_device():
    """XLA_FLAGS=--xla_force_host_platform_device_count=4: curves sharded over 4 devices with
    shard_map give the one-device draws exactly (before adaptation; see the slow test for
    full runs)."""
    _run_sharded("exact")


@pytest.mark.slow
def test_sharded_full_runs_give_the_one_device_posterior():
    """Full runs sharded over 4 CPU devices give the one-device posterior (means within 4
    MCSE). Draws are not bitwise equal: multi-device XLA programs round some operations
    differently in the last bit, and warm-up amplifies that into different chains (one device
    with chunks of 2 or 8 curves is bitwise equal)."""
    _run_sharded("full")


@pytest.mark.slow
def test_dask_local_cluster_equals_local():
    """Chunks dispatched to a dask LocalCluster of 2 worker processes give the same draws."""
    distributed = pytest.importorskip("distributed")
    data, _ = synthetic_curves(12, seed=6, num_points=(20, 40))
    kw = dict(num_warmup=150, num_samples=150, num_chains=2, rng_key=5, progress=False)
    local = fit_many(data, "power_n", batch_size=4, **kw)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = fit_many(data, "power_n", batch_size=4, client=client, **kw)
    for k in local.samples:
        np.testing.assert_array_equal(remote.samples[k], local.samples[k])
    np.testing.assert_array_equal(remote.status, local.status)


# ----------------------------------------------------------------------------- real curves
@pytest.mark.slow
def test_real_curves_revisiting_nsl():
    """All 92 curves of Alabdulmohsin et al. 2022 (vision + language, duplicates dropped) in
    one call with the saturating law L = E + A D^-alpha, default settings (4 chains); held-out
    RMSLE of the median forecast on the Training == 0 rows."""
    frames = []
    for name in ("vision", "lang"):
        df = pd.read_csv(SHARED / "revisiting-nsl" / f"benchmark.{name}.csv").drop_duplicates()
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["curve"] = df["Domain"] + "/" + df["Task"] + "/" + df["Model"]
    train = df[df["Training"] == 1]
    batch = fit_many(
        train,
        "power_d",
        curve="curve",
        columns={"D": "Seen Examples", "loss": "Loss", "N": None, "C": None},
        rng_key=0,
        **_quiet(),
    )
    assert len(batch) == 92
    errors = []
    for cid, rows in df[df["Training"] == 0].groupby("curve"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = batch[cid].predict(D=rows["Seen Examples"].to_numpy(), allow_unconverged=True)
        errors.append(np.log(pred["loss_median"].to_numpy()) - np.log(rows["Loss"].to_numpy()))
    rmsle = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))
    ok = int((batch.status == "ok").sum())
    print(f"revisiting-nsl: {ok}/92 converged, held-out RMSLE {rmsle:.4f}")
    # Measured: 71/92 converged (4 chains), held-out RMSLE 0.060 over 15,323 points.
    assert ok >= 65 and rmsle < 0.1


def _record_runs(monkeypatch) -> list:
    """Spy on ``fit_many``'s runner: the (curve rows, SamplerConfig) of every run it makes, in
    order (first pass, then each re-fit chunk group)."""
    from bayescale import batch as batch_module

    configs = []
    original = batch_module._Runner.run

    def spy(self, index, state, config, label="fit"):
        configs.append((np.asarray(index).copy(), config))
        return original(self, index, state, config, label)

    monkeypatch.setattr(batch_module._Runner, "run", spy)
    return configs


def test_retry_refits_every_failing_curve_with_longer_thinned_chains(monkeypatch, tmp_path):
    """retry=True re-fits each curve that misses the policy (here: ess_low from 60 draws) once
    with twice the warm-up, four times the draws, target 0.999 and tree depth 8, stores every
    fourth draw (same shape), and leaves the curves that passed untouched."""
    from bayescale import batch as batch_module

    data, _ = synthetic_curves(3, seed=5, num_points=(20, 20))
    configs = _record_runs(monkeypatch)
    unthinned = []
    original_thin = batch_module.thin_draws

    def thin_spy(samples, stats, factor):
        unthinned.append((np.array(stats["energy"]), np.array(stats["num_steps"])))
        return original_thin(samples, stats, factor)

    monkeypatch.setattr(batch_module, "thin_draws", thin_spy)
    small = dict(num_chains=2, num_warmup=60, num_samples=60, rng_key=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        batch = fit_many(data, "power_n", **small)
    (first, c1), *refits = configs
    assert first.tolist() == [0, 1, 2] and (c1.num_warmup, c1.num_samples) == (60, 60)
    # 2 chains x 60 draws: every curve misses the policy; divergent curves and the others are
    # re-fitted apart, the latter without the mass matrix's shrinkage
    again = np.sort(np.concatenate([rows for rows, _ in refits]))
    assert again.tolist() == [0, 1, 2] and 1 <= len(refits) <= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        first_pass = fit_many(data, "power_n", **small, retry=False)  # same keys: same draws
    diverged = first_pass.diagnostics["divergences"] > 0
    for rows, c2 in refits:
        assert (c2.num_warmup, c2.num_samples, c2.target_accept_prob) == (120, 240, 0.999)
        assert (c1.max_tree_depth, c2.max_tree_depth) == (5, 8)
        assert c1.regularize_mass
        assert (diverged[rows] == c2.regularize_mass).all()
    assert batch.retried.all()
    # a re-fitted curve's Fit says what the re-fit ran (the CLI's retry report reads it), with
    # its kept draws: 60 per chain after thinning
    c = batch[0].config
    assert (c.num_warmup, c.num_samples, c.target_accept_prob, c.max_tree_depth) == (
        120, 60, 0.999, 8,
    )  # fmt: skip
    assert first_pass[0].config == first_pass.config  # not re-fitted: the first pass's
    # each curve's Fit records whether its re-fit unshrank the mass matrix, also after a save
    assert batch.retry_unshrunk.tolist() == (~diverged).tolist()
    assert [batch[i].config.regularize_mass for i in range(3)] == diverged.tolist()
    path = tmp_path / "b.nc"
    batch.save(path)
    loaded = bs.load(path)
    assert loaded.retry_unshrunk.tolist() == batch.retry_unshrunk.tolist()
    assert [loaded[i].config for i in range(3)] == [batch[i].config for i in range(3)]
    assert batch.samples["alpha"].shape == (3, 2, 60)
    assert batch.sample_stats["diverging"].shape == (3, 2, 60)
    # E-BFMI of a re-fitted curve is that of its 240 consecutive transitions per chain, not of
    # the 60 kept (thinned) ones.
    ((energy, steps),) = unthinned
    assert energy.shape == (3, 2, 240)
    np.testing.assert_allclose(batch.sample_stats["bfmi"], engine.bfmi(energy), rtol=1e-12)
    np.testing.assert_allclose(batch.diagnostics["min_bfmi"], engine.bfmi(energy).min(axis=1))
    thinned = engine.bfmi(batch.sample_stats["energy"])
    assert not np.allclose(thinned, batch.sample_stats["bfmi"])
    # the share of draws at the tree-depth cap is the re-fit's: of its 240 transitions per
    # chain at depth 8 (255 leapfrog steps), also after a save
    at_cap = steps >= 255
    for i in range(3):
        conv = batch.convergence(i)
        assert conv.max_tree_depth == 8 and conv.depth_hits == pytest.approx(at_cap[i].mean())
    np.testing.assert_allclose(
        batch.sample_stats["depth_hit"], at_cap.reshape(3, 2, 60, 4).mean(axis=-1)
    )
    assert [loaded.convergence(i).depth_hits for i in range(3)] == [
        batch.convergence(i).depth_hits for i in range(3)
    ]


def test_curves_whose_trees_hit_the_depth_cap_say_so(tmp_path):
    """Without the re-fit, at max_tree_depth=2 (3 leapfrog steps) every curve's draws reach
    the cap: each curve's message ends with the note, with the share of its own draws."""
    data, _ = synthetic_curves(3, seed=5, num_points=(20, 20))
    small = dict(num_chains=2, num_warmup=60, num_samples=60, rng_key=0, progress=False)
    with pytest.warns(bs.ConvergenceWarning):
        batch = fit_many(data, "power_n", max_tree_depth=2, retry=False, **small)
    steps = batch.sample_stats["num_steps"]
    assert steps.max() == 3
    for i in range(3):
        conv = batch.convergence(i)
        assert conv.max_tree_depth == 2 and conv.depth_hits == pytest.approx((steps[i] == 3).mean())
        assert conv.deep_trees
        assert batch.message(i).endswith(
            "(max_tree_depth=2, 3 leapfrog steps): try max_tree_depth=4"
        )
        assert batch[i].convergence == conv
    loaded = load_batch(batch.save(tmp_path / "b.nc"))
    assert [loaded.message(i) for i in range(3)] == [batch.message(i) for i in range(3)]
    # the gate survives the file: the same curves fail badly and predict refuses them
    assert batch.fails_badly.any()
    assert loaded.fails_badly.tolist() == batch.fails_badly.tolist()
    with pytest.warns(bs.ConvergenceWarning, match="refused"):
        pred = loaded.predict(N=1e9)
    assert pred["refused"].tolist() == batch.fails_badly.tolist()


def _precise_kaplan_curves() -> tuple[pd.DataFrame, float]:
    """Four kaplan_n curves (24 runs, N 1e7..1e10, alpha_N = 0.076) with noise sd 1e-3, 3e-4,
    1e-4 and 5e-5 on the log loss: a table of losses printed to 3-5 significant digits."""
    rng = np.random.default_rng(21)
    N = np.geomspace(1e7, 1e10, 24)
    mu = (8.8e13 / N) ** 0.076
    frames = [
        pd.DataFrame(
            {"N": N, "loss": mu * np.exp(sd * rng.normal(size=N.size)), "curve": f"{sd:g}"}
        )
        for sd in (1e-3, 3e-4, 1e-4, 5e-5)
    ]
    return pd.concat(frames, ignore_index=True), 0.076


def test_precise_curves_converge_after_a_refit_without_mass_shrinkage(monkeypatch):
    """The posterior sd of log_L_ref is about sigma / sqrt(24): 1e-5 at sigma 5e-5. Stan's and
    NumPyro's shrinkage of the adapted mass matrix (+1e-3 x 5 / (n + 5), absolute) swamps that
    variance, the step size collapses and the chains do not mix: the first pass misses the
    policy on every curve with noise <= 3e-4 (R-hat up to 2.2, bulk ESS down to 5), without a
    divergence. Their re-fit adapts the mass matrix without the shrinkage and meets the
    policy, covering the true exponent."""

    frame, alpha = _precise_kaplan_curves()
    run = dict(curve="curve", rng_key=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        first = fit_many(frame, "kaplan_n", retry=False, **run)
    assert first.config.regularize_mass
    s1 = first.summary()
    assert (s1["status"].iloc[1:] != "ok").all(), s1[["status", "max_rhat", "min_ess_bulk"]]
    assert (s1["divergences"].iloc[1:] == 0).all()
    # the summary says which parameter missed the policy, as the curve's Convergence does
    sites = "|".join(first.spec.site_names)
    for cid, row in s1.iloc[1:].iterrows():
        assert row["message"] == "; ".join(first.convergence(cid).problems), row["message"]
        assert re.search(rf"\((chains disagree on )?({sites})\b", row["message"]), row["message"]

    configs = _record_runs(monkeypatch)
    b = fit_many(frame, "kaplan_n", **run)
    s = b.summary()
    assert (s["status"] == "ok").all(), s[["status", "max_rhat", "min_ess_bulk"]]
    assert b.retried[1:].all()
    (_, c1), (rows, c2) = configs
    assert c1.regularize_mass and not c2.regularize_mass and set(rows) >= {1, 2, 3}
    draws = b.params["alpha_N"]
    z = np.abs(draws.mean(axis=(1, 2)) - alpha) / draws.std(axis=(1, 2))
    assert (z < 4).all(), z


def test_thin_draws_keeps_every_kth_draw_and_counts_divergent_groups():
    samples = {"a": np.arange(12.0).reshape(1, 2, 6)}
    stats = {
        "diverging": np.array([[[0, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]], dtype=bool),
        "num_steps": np.full((1, 2, 6), 7, dtype=np.int32),
        "accept_prob": np.tile([0.5, 1.0], (1, 2, 3)),
        "energy": np.arange(12.0).reshape(1, 2, 6),
        "step_size": np.array([[0.1, 0.2]]),
    }
    s, st = thin_draws(samples, stats, 2)
    assert s["a"].tolist() == [[[1.0, 3.0, 5.0], [7.0, 9.0, 11.0]]]
    assert st["diverging"].tolist() == [[[True, False, True], [False, False, False]]]
    assert st["diverging"].sum() == 2  # two divergent pairs (three divergent transitions)
    assert st["num_steps"].tolist() == [[[14, 14, 14], [14, 14, 14]]]
    np.testing.assert_allclose(st["accept_prob"], 0.75)
    assert st["energy"].tolist() == s["a"].tolist()
    # groups of three: draws 2 and 5 of each chain kept; the groups (0-2) and (3-5) of chain 0
    # both hold a divergent transition
    s3, st3 = thin_draws(samples, stats, 3)
    assert s3["a"].tolist() == [[[2.0, 5.0], [8.0, 11.0]]]
    assert st3["diverging"].tolist() == [[[True, True], [False, False]]]
    assert st3["num_steps"].tolist() == [[[21, 21], [21, 21]]]
    np.testing.assert_allclose(st3["accept_prob"], [[[2.0 / 3.0, 5.0 / 6.0]] * 2])
    assert st3["energy"].tolist() == s3["a"].tolist()
    # E-BFMI from the consecutive transitions: a random-walk energy with unit steps has
    # E[(dE)^2] = 1 before thinning and k after thinning by k.
    walk = np.cumsum(np.random.default_rng(0).normal(size=(1, 2, 4000)), axis=-1)
    hits = {"depth_hit": np.array([[[1, 0, 1, 1, 0, 0]]], dtype=np.float32)}
    assert thin_draws({"a": samples["a"][:, :1]}, hits, 2)[1]["depth_hit"].tolist() == [
        [[0.5, 1.0, 0.0]]
    ]
    _, stw = thin_draws({"a": walk}, {"energy": walk}, 4)
    np.testing.assert_allclose(stw["bfmi"], engine.bfmi(walk), rtol=1e-12)
    ratio = engine.bfmi(stw["energy"]) / stw["bfmi"]
    np.testing.assert_allclose(ratio, 4.0, rtol=0.15)
    assert st["step_size"] is stats["step_size"]


def test_predictive_draws_follow_the_fitted_likelihood():
    """BatchFit.predict and Fit.predict share one sampler of new observations: for accuracies
    it draws the model's Beta (mean m, sd sqrt(m (1 - m) / (1 + phi))) or beta-binomial, never
    the Normal noise of a loss (which put 29% of the draws above 1 at m = 0.95, sigma = 0.1)."""
    from bayescale.model import predictive_draws

    rng = np.random.default_rng(0)
    log_mu = np.full((200_000, 1), np.log(0.95))
    sigma = np.full((200_000, 1), 0.1)
    phi = 0.25 / 0.1**2 - 1.0
    beta = predictive_draws(bs.build_model("sigmoid_c", likelihood="beta"), log_mu, sigma, rng)
    assert 0 < beta.min() and beta.max() < 1
    sd = np.sqrt(0.95 * 0.05 / (1 + phi))  # 0.0436; the mean of 2e5 draws has sd 1e-4
    assert beta.mean() == pytest.approx(0.95, abs=5e-4) and beta.std() == pytest.approx(
        sd, rel=0.01
    )
    spec = bs.build_model("sigmoid_c", likelihood="binomial", trials=50)
    counts = predictive_draws(spec, log_mu, sigma, rng) * 50
    assert np.allclose(counts, np.round(counts)) and counts.max() <= 50
    # beta-binomial variance: n m (1 - m) (n + phi) / (1 + phi)
    var = 50 * 0.95 * 0.05 * (50 + phi) / (1 + phi)
    assert counts.var() == pytest.approx(var, rel=0.02)
    normal = predictive_draws(bs.build_model("power_n"), np.zeros((200_000, 1)), sigma, rng)
    assert np.log(normal).std() == pytest.approx(0.1, rel=0.01)  # lognormal: sd of log loss


# ----------------------------------------------------------------------------- storage of inputs
def _datablations_curves() -> dict[str, dict[str, np.ndarray]]:
    """Two datablations curves (16 runs on a 4 x 4 grid of N and D, U <= D with 3 distinct
    values; only "a" has run ids) and two invalid ones: one without U (C is derived from N
    and D), one with N only."""
    from bayescale.laws.datablations import MUENNIGHOFF_2023_PARAMS, datablations_loss

    rng = np.random.default_rng(0)

    def curve(shift: float) -> dict[str, np.ndarray]:
        N, D = np.meshgrid(np.geomspace(1e7, 1e9, 4) * shift, np.geomspace(1e9, 1e11, 4))
        N, D = N.ravel(), D.ravel()
        U = np.minimum(D, 6e9 * shift)
        loss = datablations_loss(N, D, U, MUENNIGHOFF_2023_PARAMS)
        return {"N": N, "D": D, "U": U, "loss": loss * np.exp(0.01 * rng.normal(size=N.size))}

    a, b = curve(1.0), curve(2.0)
    return {
        "a": {**a, "run": np.array([f"a-{i:02d}" for i in range(a["N"].size)])},
        "b": b,
        "no_U": {k: a[k] for k in ("N", "D", "loss")},
        "no_D": {k: b[k] for k in ("N", "loss")},
    }


def test_save_load_keeps_every_curves_input_columns(tmp_path):
    """A saved batch gives each curve back exactly the input columns it had (N, D, C and the
    unique tokens U) and its run ids, also when other curves lack some of them, so the loaded batch
    forecasts as the original; the warm-up divergences per curve and chain survive too."""
    small = dict(num_chains=2, num_warmup=60, num_samples=60, retry=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        batch = fit_many(_datablations_curves(), "datablations", rng_key=0, **small)
    assert batch.status[2:].tolist() == ["invalid_input"] * 2 and batch.fitted[:2].all()
    assert [d.inputs for d in batch.data] == [("N", "D", "C", "U")] * 2 + [("N", "D", "C"), ("N",)]
    back = load_batch(batch.save(tmp_path / "b.nc"))
    assert back.status.tolist() == batch.status.tolist()
    assert [d.derived for d in batch.data] == [("C",)] * 3 + [()]
    for before, after in zip(batch.data, back.data, strict=True):
        assert after.inputs == before.inputs and after.derived == before.derived
        for k in (*before.inputs, "loss"):
            np.testing.assert_array_equal(getattr(after, k), getattr(before, k))
    # run ids: those of the one curve that has them, none for the others
    assert [d.run is not None for d in back.data] == [True, False, False, False]
    np.testing.assert_array_equal(back.data[0].run, batch.data[0].run)
    np.testing.assert_array_equal(
        back.sample_stats["warmup_divergences"], batch.sample_stats["warmup_divergences"]
    )
    # to_arviz: log_likelihood lines up with observed_data point by point, NaN at the points
    # of the two curves that have data but were not fitted (they shifted the others' points)
    idata = batch.to_arviz()
    ll = np.asarray(azc.group(idata, "log_likelihood")["loss"])
    point_curve = np.asarray(azc.group(idata, "constant_data")["point_curve"])
    assert ll.shape[-1] == azc.group(idata, "observed_data")["loss"].size == point_curve.size
    for i, cid in enumerate(batch.curve_ids):
        at = point_curve == cid
        if batch.fitted[i]:
            np.testing.assert_allclose(ll[..., at], batch[cid].log_likelihood(), rtol=1e-10)
        else:
            assert at.sum() == len(batch.data[i]) and np.isnan(ll[..., at]).all()
    target = dict(N=2e9, D=[2e11, 4e11], U=2e10, allow_unconverged=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want, got = batch.predict(**target), back.predict(**target)
        fit_want, fit_got = batch["b"].predict(**target), back["b"].predict(**target)
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(fit_got, fit_want)
    assert np.isfinite(got["loss_median"][got["curve"].isin(["a", "b"])]).all()
    # a curve saved as a single fit keeps it too ("C (derived: C = 6ND)" in describe())
    single = bs.load(back["b"].save(tmp_path / "b_fit.nc"))
    assert single.data.derived == ("C",) and "derived" in single.data.describe()


@pytest.fixture(scope="module")
def refitted3():
    """Three power_n curves re-fitted (thinned by 4) after 2 chains x 60 draws miss the policy
    (same settings as test_retry_refits_every_failing_curve_with_longer_thinned_chains)."""
    data, _ = synthetic_curves(3, seed=5, num_points=(20, 20))
    small = dict(num_chains=2, num_warmup=60, num_samples=60, rng_key=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        batch = fit_many(data, "power_n", **small)
    assert batch.retried.all()
    return batch


def test_saved_curve_of_a_refit_keeps_the_batch_e_bfmi(refitted3, tmp_path):
    """batch[i].save + bs.load keeps the curve's E-BFMI of its unthinned re-fit transitions
    (and the share of them at the depth cap), where recomputing from the thinned energies
    overstates E-BFMI about 4-fold."""
    batch = refitted3
    for i in range(len(batch)):
        fit, conv = batch[i], batch.convergence(i)
        np.testing.assert_array_equal(fit.sample_stats["bfmi"], batch.sample_stats["bfmi"][i])
        loaded = bs.load(fit.save(tmp_path / f"curve{i}.nc"))
        assert loaded.convergence.min_bfmi == conv.min_bfmi == fit.convergence.min_bfmi
        assert loaded.convergence.depth_hits == pytest.approx(conv.depth_hits, rel=1e-6)
        assert loaded.convergence.max_tree_depth == conv.max_tree_depth == 8
        thinned = float(np.min(azc.bfmi(fit.sample_stats["energy"])))
        assert thinned > 1.5 * conv.min_bfmi  # what bs.load used to report
        again = bs.load(loaded.save(tmp_path / f"again{i}.nc"))  # and it survives a re-save
        assert again.convergence.min_bfmi == conv.min_bfmi


def test_warmup_divergences_survive_save_and_default_to_zero_in_old_files(
    refitted3, tmp_path, monkeypatch
):
    batch = refitted3
    warm = batch.sample_stats["warmup_divergences"]
    assert warm.shape == (3, 2) and warm.any()
    back = load_batch(batch.save(tmp_path / "b.nc"))
    np.testing.assert_array_equal(back.sample_stats["warmup_divergences"], warm)
    assert back.sample_stats["warmup_divergences"].dtype == np.int32
    # a file written before they were stored: zeros
    original = azc.from_dict

    def old_writer(groups, **kwargs):
        groups = {g: dict(v) for g, v in groups.items()}
        groups["sample_stats"].pop("warmup_divergences")
        return original(groups, **kwargs)

    monkeypatch.setattr(azc, "from_dict", old_writer)
    path = batch.save(tmp_path / "old.nc")
    monkeypatch.undo()
    assert "warmup_divergences" not in azc.group(azc.from_netcdf(path), "sample_stats")
    old = load_batch(path)
    np.testing.assert_array_equal(old.sample_stats["warmup_divergences"], np.zeros((3, 2)))


def test_bad_value_names_the_row_of_the_whole_table(fake_nuts, tmp_path):
    """A bad value in one curve of a long table is reported at its row of the whole table
    (0-based, by position, whatever the index), with its CSV line when read from a file:
    not at its row within the curve, which the user cannot find in the file."""
    good = [3.1, 2.8, 2.6, 2.45, 2.35, 2.3]
    rows = [("a", 10.0 ** (7 + i), v) for i, v in enumerate(good)]
    rows += [("b", 10.0 ** (7 + i), v) for i, v in enumerate([*good[:4], -2.0, good[5]])]
    table = pd.DataFrame(rows, columns=["task", "N", "loss"], index=range(100, 112))
    kwargs = dict(curve="task", num_chains=2, num_samples=20, progress=False, retry=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = bs.fit_many(table, "power_n", **kwargs)
        path = tmp_path / "runs.csv"
        table.to_csv(path, index=False)
        from_file = bs.fit_many(path, "power_n", **kwargs)
    message = batch.summary().loc["b", "message"]
    assert "curve 'b': column 'loss', row 10: value -2.0 must be > 0" in message
    message = from_file.summary().loc["b", "message"]
    assert "column 'loss', row 10 (CSV line 12): value -2.0 must be > 0" in message
    assert batch.status.tolist()[1] == from_file.status.tolist()[1] == "invalid_input"
