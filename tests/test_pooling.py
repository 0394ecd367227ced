"""Hierarchical (partial) pooling: ``fit_many(..., pooling="partial", share=[...])``.

Ground truth: synthetic families of short ``power_n`` curves whose exponents come from a known
population (``bayescale.pooling.synthetic_family``), exact log densities, and closed-form moments.
The two fits of the module fixtures are shared by the tests (one compile each).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.util import log_density
from scipy import special, stats

import bayescale as bs
from bayescale import pooling
from bayescale._fit import reference_point
from bayescale.infer.batch import pad_curves
from bayescale.infer.pooled import MOMENT_DRAWS, PooledSpec, population_moments
from bayescale.model import build_model
from bayescale.pooling import PooledBatchFit, PoolingError, synthetic_family

#: 4 chains x (500 + 500) at target acceptance 0.99, the pooled re-fit's setting
#: (``RETRY_TARGET_ACCEPT``), without the automatic re-fit (it would double the module's
#: runtime). At 0.95 the joint run of ``family`` diverged on one CPU and not on another (83 and
#: 120 divergent draws under two seeds on an AMD EPYC, population bulk ESS 79-102); at 0.99 it
#: had none there (population bulk ESS 287 and 419, R-hat <= 1.007) at the same cost.
SETTINGS = {
    "num_warmup": 500,
    "num_samples": 500,
    "target_accept_prob": 0.99,
    "retry": False,
    "progress": False,
}
SIGMA = 0.02
ONE_POINT = pd.DataFrame({"curve": ["lonely"], "N": [1e7], "loss": [3.0]})


def _family(seed: int, *, lonely: bool = False):
    """12 curves of 5-6 points over one decade (plus one curve with a single point, invalid)."""
    data, truth, pop = synthetic_family(12, seed=seed, sigma=SIGMA)
    frame = pd.DataFrame({"curve": data.curve, "N": data.N, "loss": data.loss})
    if lonely:
        frame = pd.concat([frame, ONE_POINT], ignore_index=True)
    return frame, truth, pop


def _quiet():
    warnings.simplefilter("ignore", bs.ConvergenceWarning)
    warnings.simplefilter("ignore", bs.ExtrapolationWarning)


@pytest.fixture(scope="module")
def family():
    return _family(seed=0)


@pytest.fixture(scope="module")
def pooled(family):
    frame, _, _ = family
    with warnings.catch_warnings():
        _quiet()
        return bs.fit_many(
            frame, "power_n", curve="curve", pooling="partial", share=["alpha"], **SETTINGS
        )


@pytest.fixture(scope="module")
def independent(family):
    frame, _, _ = family
    with warnings.catch_warnings():
        _quiet()
        return bs.fit_many(frame, "power_n", curve="curve", **SETTINGS)


# ----------------------------------------------------------------------------- the model
def test_joint_density_is_the_sum_of_curve_densities_and_padding_is_inert():
    """Nothing shared: the joint log density equals the sum of the single-curve model's log
    densities, at two padded lengths; with ``alpha`` shared it adds the population terms and
    each curve's likelihood at ``alpha_k = exp(mu + tau z_k)``."""
    data, _, _ = synthetic_family(3, seed=4)
    curves = list(data.curves().values())
    base = build_model("power_n")
    refs = [reference_point(c, ("N",)) for c in curves]
    ref = {k: np.array([r[k] for r in refs]) for k in ("N", "loss")}
    log_x = [{"N": c.log_inputs()["N"]} for c in curves]
    key = jax.random.PRNGKey(3)

    def density(model, args, params):
        return float(jax.jit(lambda a, p: log_density(model, a, {}, p)[0])(args, params))

    # nothing shared
    spec = PooledSpec(base, ())
    arg_ref = {**ref, "pop_loc": np.zeros(0), "pop_scale": np.zeros(0)}
    params = {n: spec.prior(n, arg_ref).sample(jax.random.fold_in(key, i)) for i, n in
              enumerate(spec.site_names)}  # fmt: skip
    single = 0.0
    for i, c in enumerate(curves):
        p = {k: params[k][i] for k in base.site_names}
        single += density(base, (log_x[i], refs[i], c.log_loss, None), p)
    for length in (8, 16):
        xs, ys, mask = pad_curves(log_x, [c.log_loss for c in curves], length)
        joint = density(spec, (xs, arg_ref, ys, mask), params)
        assert joint == pytest.approx(single, rel=1e-12)
    # alpha shared
    spec = PooledSpec(base, ("alpha",))
    loc, scale = population_moments(base, ["alpha"], {"N": 0.0, "loss": 1.0})
    arg_ref = {**ref, "pop_loc": loc, "pop_scale": scale}
    params = {n: spec.prior(n, arg_ref).sample(jax.random.fold_in(key, 9 + i)) for i, n in
              enumerate(spec.site_names)}  # fmt: skip
    mu, tau, z = (np.asarray(params[k]) for k in ("mu_alpha", "tau_alpha", "z_alpha"))
    expected = stats.norm.logpdf(mu, loc[0], scale[0] / np.sqrt(2))
    expected += stats.halfnorm.logpdf(tau, scale=scale[0] / np.sqrt(2))
    expected += stats.norm.logpdf(z).sum()
    for i, c in enumerate(curves):
        p = {k: params[k][i] for k in ("log_L_ref", "frac", "sigma")}
        p["alpha"] = np.exp(mu + tau * z[i])
        lp, tr = log_density(base, (log_x[i], refs[i], c.log_loss, None), {}, p)
        expected += float(lp) - float(tr["alpha"]["fn"].log_prob(p["alpha"]))
    xs, ys, mask = pad_curves(log_x, [c.log_loss for c in curves], 8)
    joint = density(spec, (xs, arg_ref, ys, mask), params)
    assert joint == pytest.approx(expected, rel=1e-10)


def test_hyperpriors_derive_from_the_law_priors():
    """Population moments: exact for LogNormal (alpha), and for Beta (frac) the logit moments
    psi(a) - psi(b) and sqrt(psi'(a) + psi'(b)) within 4 Monte Carlo standard errors."""
    spec = build_model("power_n")
    loc, scale = population_moments(spec, ["alpha", "frac"], {"N": 0.0, "loss": 1.0})
    assert loc[0] == pytest.approx(np.log(0.3), abs=1e-12)
    assert scale[0] == pytest.approx(0.75, abs=1e-12)
    a = b = 1.5
    sd = np.sqrt(special.polygamma(1, a) + special.polygamma(1, b))
    n = MOMENT_DRAWS
    assert loc[1] == pytest.approx(special.digamma(a) - special.digamma(b), abs=4 * sd / n**0.5)
    assert scale[1] == pytest.approx(sd, abs=4 * sd / (2 * n) ** 0.5 * 1.5)


def test_reference_dependent_shares_use_one_reference():
    """Exponents mean the same at every reference point; the sigmoid's logit at the reference,
    its anchors (accuracies a decade either side of the reference) and the reducible fraction
    do not, so sharing them centres all curves on one reference."""
    free = pooling._reference_free
    slope = bs.laws.sigmoid("C", form="slope")
    assert free(bs.laws.get("power_n"), "alpha")
    assert free(bs.laws.get("chinchilla"), "beta")
    assert free(slope, "k")
    assert free(slope, "floor")
    assert free(bs.laws.get("power_n"), "sigma")
    assert not free(slope, "logit_ref")
    assert not free(bs.laws.get("power_n"), "frac")
    for name in bs.laws.get("sigmoid_c").param_names:
        assert not free(bs.laws.get("sigmoid_c"), name)


# ----------------------------------------------------------------------------- the fits
def _scores(batch, truth):
    """Error of the median forecast at 10x the largest N (mean |log|), and coverage of the
    90% intervals of the mean loss there and of alpha, for the 12 synthetic curves.

    Every curve's forecast is scored, also one that ``predict`` would refuse: an independent
    fit of five points can fail the gate badly (the pooled fit's gate is tested below)."""
    ids = list(truth.index)
    target = 10.0 * truth["N_max"].to_numpy()
    pred = batch.predict(N=target, allow_unconverged=True).set_index("curve")
    n = len(ids)
    med = np.array([pred.loc[c, "loss_median"].to_numpy()[i] for i, c in enumerate(ids)])
    lo = np.array([pred.loc[c, "loss_lower"].to_numpy()[i] for i, c in enumerate(ids)])
    hi = np.array([pred.loc[c, "loss_upper"].to_numpy()[i] for i, c in enumerate(ids)])
    true = (truth["E"] + truth["A"] * target ** -truth["alpha"]).to_numpy()
    s = batch.summary().loc[ids]
    alpha = truth["alpha"].to_numpy()
    return {
        "error": float(np.mean(np.abs(np.log(med / true)))),
        "covered": int(np.sum((lo <= true) & (true <= hi))),
        "alpha_covered": int(np.sum((s["alpha_lower"] <= alpha) & (alpha <= s["alpha_upper"]))),
        "alpha_rmse": float(np.sqrt(np.mean(np.log(s["alpha_median"] / alpha) ** 2))),
        "n": n,
    }


def test_pooling_beats_independent_fits_and_stays_calibrated(family, pooled, independent):
    """Few points per curve: the pooled forecasts at 10x the largest N are closer to the truth
    and the exponents better estimated than by independent fits, while the 90% intervals
    still cover the truth at a rate consistent with 0.9 (one-sided binomial test at 0.1%)."""
    _, truth, _ = family
    with warnings.catch_warnings():
        _quiet()
        p, i = _scores(pooled, truth), _scores(independent, truth)
    assert p["error"] < 0.9 * i["error"], (p, i)
    assert p["alpha_rmse"] < 0.8 * i["alpha_rmse"], (p, i)
    events = p["covered"] + p["alpha_covered"]
    assert events >= stats.binom.ppf(0.001, 2 * p["n"], 0.9), p
    assert p["covered"] >= stats.binom.ppf(0.001, p["n"], 0.9), p


def test_population_median_and_spread_are_recovered(family, pooled):
    """The population median of alpha (0.35) and its log-scale spread (0.15) lie in their 90%
    posterior intervals, after an ESS gate."""
    _, _, pop = family
    diag = pooled.population_diagnostics
    assert diag["ess_bulk"].min() > 200 and diag["r_hat"].max() < 1.05
    row = pooled.population.loc["alpha"]
    assert row["transform"] == "log"
    assert row["mu_lower"] <= pop["alpha_median"] <= row["mu_upper"]
    assert row["tau_lower"] <= pop["alpha_spread"] <= row["tau_upper"]
    assert row["new_lower"] < row["mu_median"] < row["new_upper"]


def test_pooled_result_is_a_batchfit(pooled, tmp_path):
    """summary/predict/[curve]/to_arviz/save-load work unchanged; the population travels with
    the file; sampler statistics are the joint model's."""
    assert isinstance(pooled, PooledBatchFit) and isinstance(pooled, bs.BatchFit)
    assert pooled.share == ("alpha",) and not pooled.centred and not pooled.common_reference
    s = pooled.summary()
    assert len(s) == 12 and np.isfinite(s["alpha_median"]).all()
    joint = pooled.joint_diagnostics
    assert joint["num_curves"] == 12
    fitted = pooled.fitted
    assert (pooled.diagnostics["divergences"][fitted] == joint["divergences"]).all()
    fit = pooled["fam_03"]
    np.testing.assert_array_equal(fit.samples["alpha"], pooled.samples["alpha"][3])
    # a curve's settings are the joint run's, also when that run was the re-fit (whose
    # settings are the pooled result's config): not the independent fits' retry_config
    assert fit.config == pooled.config
    refitted = dataclasses.replace(pooled, retried=np.ones(len(pooled), dtype=bool))
    assert refitted["fam_03"].config == pooled.config
    assert fit.summary().loc["alpha", "median"] == pytest.approx(s.loc["fam_03", "alpha_median"])
    with warnings.catch_warnings():
        _quiet()
        pred = pooled.predict(N=1e9)
    assert pred["loss_median"].notna().sum() == 12
    idata = pooled.to_arviz(log_likelihood=False)
    post = bs._arviz_compat.group(idata, "posterior")
    assert post["mu_alpha"].dims == ("chain", "draw")
    np.testing.assert_allclose(post["mu_alpha"].values, pooled.population_draws["mu_alpha"])
    back = bs.load_batch(pooled.save(tmp_path / "pooled.nc"))
    assert isinstance(back, PooledBatchFit) and back.share == ("alpha",)
    for k, v in pooled.population_draws.items():
        np.testing.assert_array_equal(back.population_draws[k], v)
    pd.testing.assert_frame_equal(back.population, pooled.population)
    assert "partial pooling of alpha" in repr(pooled)


def test_second_call_with_same_shapes_does_not_recompile(pooled, count_compiles):
    """New data of the same shapes (12 fitted curves, same padded length) reuse the program;
    an unusable curve is reported as invalid_input and left out of the joint model."""
    frame, _, _ = _family(seed=1, lonely=True)
    with warnings.catch_warnings(), count_compiles() as counter:
        _quiet()
        again = bs.fit_many(
            frame, "power_n", curve="curve", pooling="partial", share=["alpha"], **SETTINGS
        )
    assert again.timing["compile_s"] == 0.0
    assert not counter.messages, counter.messages[:3]
    s = again.summary()
    assert s.loc["lonely", "status"] == "invalid_input"
    assert "needs at least 2" in s.loc["lonely", "message"]
    assert np.isnan(again.samples["alpha"][again.index("lonely")]).all()
    assert again.joint_diagnostics["num_curves"] == 12
    # the curve left out has none of the joint model's divergences or steps (fit_many's way)
    lonely = again.index("lonely")
    assert s.loc["lonely", "divergences"] == 0
    assert not again.sample_stats["diverging"][lonely].any()
    for k in ("num_steps", "depth_hit", "warmup_divergences"):
        assert (again.sample_stats[k][lonely] == 0).all(), k


# ----------------------------------------------------------------------------- errors
def test_bad_pooling_arguments_are_refused_with_the_allowed_names(family):
    frame, _, _ = family
    kw = {"curve": "curve", "progress": False}
    with pytest.raises(PoolingError, match=r"log_L_ref, frac, alpha, sigma"):
        bs.fit_many(frame, "power_n", pooling="partial", share=["beta"], **kw)
    with pytest.raises(PoolingError, match=r"published names such as E"):
        bs.fit_many(frame, "power_n", pooling="partial", share=["E"], **kw)
    with pytest.raises(PoolingError, match=r"needs share=\[...\]"):
        bs.fit_many(frame, "power_n", pooling="partial", **kw)
    with pytest.raises(PoolingError, match=r"needs pooling='partial'"):
        bs.fit_many(frame, "power_n", share=["alpha"], **kw)
    with pytest.raises(PoolingError, match=r"complete pooling .* bs.fit"):
        bs.fit_many(frame, "power_n", pooling="full", share=["alpha"], **kw)
    with pytest.raises(PoolingError, match=r"more than once"):
        bs.fit_many(frame, "power_n", pooling="partial", share=["alpha", "alpha"], **kw)
    with pytest.raises(PoolingError, match=r"client="):
        bs.fit_many(frame, "power_n", pooling="partial", share=["alpha"], client=object(), **kw)
    with pytest.raises(PoolingError, match=r"float64"):
        bs.fit_many(frame, "power_n", pooling="partial", share=["alpha"], dtype="float32", **kw)
    with pytest.raises(PoolingError, match=r"mass must be"):
        pooling.fit_pooled(frame, "power_n", share=["alpha"], mass="dense", **kw)
    one = pd.concat([frame[frame.curve == "fam_00"], ONE_POINT])
    with pytest.raises(PoolingError, match=r"at least 2 curves .* got 1 of 2 .*'lonely'"):
        bs.fit_many(one, "power_n", pooling="partial", share=["alpha"], **kw)
    priors = {"alpha": dist.LogNormal(0.0, 0.5)}
    with pytest.raises(PoolingError, match=r"at least 2 curves"):
        bs.fit_many(
            frame[frame.curve == "fam_00"], "power_n", pooling="partial", share="alpha",
            priors=priors, **kw,
        )  # fmt: skip


def test_a_population_that_fails_badly_refuses_every_curve(pooled):
    """Each curve's posterior depends on the population: when the population's chains
    disagree (one chain of mu_alpha moved by 5 posterior sds, statuses recomputed as the fit
    does), every curve's convergence, message and the gate of predict say so, not only its
    status."""
    from bayescale.pooling import _diagnose_joint

    pop = {k: np.array(v) for k, v in pooled.population_draws.items()}
    mu = pop["mu_alpha"]
    mu[0] += 5.0 * mu.std()
    _, status = _diagnose_joint(
        pooled.samples, pooled.sample_stats, pop, pooled.spec, pooled.fitted
    )
    bad = dataclasses.replace(pooled, population_draws=pop, status=status)
    fitted = pooled.fitted
    assert not pooled.fails_badly.any()
    assert (bad.status[fitted] != "ok").all()
    assert bad.fails_badly[fitted].all() and not bad.fails_badly[~fitted].any()
    conv = bad.convergence("fam_03")
    assert conv.worst_rhat == "mu_alpha" and conv.max_rhat > 1.05
    assert "chains disagree on mu_alpha" in bad.message("fam_03")
    with pytest.warns(bs.ConvergenceWarning, match="fam_03"):
        pred = bad.predict(N=1e9)
    assert pred["refused"][pred["curve"].isin(np.asarray(pooled.curve_ids)[fitted])].all()
    assert pred["loss_median"].isna().all()
    with pytest.raises(bs.UnconvergedError, match="mu_alpha"):
        bad["fam_03"].predict(N=1e9)


def test_pooled_fit_reads_a_csv_path_with_its_delimiter(tmp_path, monkeypatch):
    """fit_many(path, sep=";", share=...) reads the semicolon file with bayescale.read_csv's
    checks, as the independent fits do (the joint run is stopped right after: its input is
    what is checked)."""
    frame, _, _ = _family(0)
    path = tmp_path / "semi.csv"
    frame.to_csv(path, sep=";", index=False)
    seen = {}

    def stop(pooled_spec, cfg, **kwargs):
        seen["curves"] = np.asarray(kwargs["log_loss"]).shape[0]
        raise RuntimeError("stopped before sampling")

    monkeypatch.setattr(pooling, "run_pooled", stop)
    pool = dict(curve="curve", pooling="partial", share=["alpha"], progress=False)
    with pytest.raises(RuntimeError, match="stopped before sampling"):
        bs.fit_many(str(path), "power_n", sep=";", **pool)
    assert seen["curves"] == frame["curve"].nunique()
    with pytest.raises(bs.DataError, match="pass sep=';'"):
        bs.fit_many(str(path), "power_n", **pool)
