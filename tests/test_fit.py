"""bs.fit end to end: real data, forecasts, containers, storage, compile cache, gates, errors."""

from __future__ import annotations

import re
import warnings

import jax
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from conftest import FAST
from scipy import stats

import bayescale as bs
from bayescale.datasets import BESIROGLU_2024

EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
EPOCH_95_WIDTH = {"alpha": 0.056, "beta": 0.084}  # Besiroglu et al. 2024, bootstrap intervals


@pytest.fixture(scope="module")
def synthetic():
    return bs.datasets.chinchilla_synthetic(seed=0)


@pytest.fixture(scope="module")
def synth_fit(synthetic):
    return bs.fit(synthetic, law="chinchilla", rng_key=0, **FAST)


@pytest.fixture(scope="module")
def epoch(shared):
    return bs.datasets.load("epoch-chinchilla", data_dir=shared, drop_highest_loss=5)


def test_epoch_real_data_matches_epoch_estimate(epoch):
    """Epoch's estimate is a Huber (robust) fit; its Bayesian analogue is the Student-t
    likelihood with learnt degrees of freedom. Default sampler settings, as users run it."""
    assert len(epoch) == 240
    fit = bs.fit(epoch, law="chinchilla", likelihood="student_t", rng_key=0)
    conv = fit.convergence
    assert conv.max_rhat <= 1.01 and conv.divergences == 0, conv
    s = fit.summary(prob=0.95)
    for k, v in EPOCH.items():
        z = (s.loc[k, "median"] - v) / s.loc[k, "sd"]
        assert abs(z) <= 2.0, f"{k}: median {s.loc[k, 'median']:.4g} is {z:.2f} sd from {v}"
    for k, width in EPOCH_95_WIDTH.items():
        ours = s.loc[k, "97.5%"] - s.loc[k, "2.5%"]
        assert ours >= 0.5 * width, f"{k}: 95% width {ours:.4f} < half of Epoch's {width}"


def test_summary_and_predict_against_the_true_law(synth_fit):
    assert synth_fit.converged, synth_fit.convergence.problems
    s = synth_fit.summary()
    assert list(s.index) == ["E", "A", "B", "alpha", "beta", "sigma"]
    assert {"mean", "sd", "median", "5%", "95%", "ess_bulk", "ess_tail", "r_hat"} <= set(s.columns)
    p = BESIROGLU_2024
    N, D = np.array([1e9, 7e10]), np.array([2e10, 1.4e12])
    true = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    pred = synth_fit.predict(N=N, D=D, prob=0.9)
    assert np.all(pred.loss_lower <= true) and np.all(true <= pred.loss_upper), (pred, true)
    # predictive intervals are wider than the mean function's and contain them
    assert np.all(pred.pred_lower < pred.loss_lower) and np.all(pred.pred_upper > pred.loss_upper)
    # the predictive spread of log loss matches the noise: width ~ 2 * 1.645 * sigma near data
    near = synth_fit.predict(N=1e9, D=2e10, prob=0.9)
    width = np.log(near.pred_upper[0] / near.pred_lower[0])
    assert width == pytest.approx(2 * 1.645 * 0.01, rel=0.25)
    assert pred.extrapolation[0] == pytest.approx(1.0) or pred.extrapolation[0] < 10


def test_predict_fills_the_third_input_from_c_equals_6nd(synth_fit):
    a = synth_fit.predict(N=70e9, D=1.4e12)
    b = synth_fit.predict(N=70e9, C=6 * 70e9 * 1.4e12)
    pd.testing.assert_frame_equal(a, b[a.columns], rtol=1e-12)
    assert a.C[0] == pytest.approx(6 * 70e9 * 1.4e12)


def test_predict_warns_far_beyond_the_data_and_rejects_bad_targets(synth_fit):
    with pytest.warns(bs.ExtrapolationWarning, match="beyond the fitted data"):
        synth_fit.predict(N=1e13, D=1e14)
    with pytest.raises(bs.DataError, match="N"):
        synth_fit.predict(N=-1.0, D=1e12)
    with pytest.raises(bs.DataError, match="missing D"):
        synth_fit.predict(N=1e9)


def test_predict_warns_at_tokens_per_parameter_beyond_the_data(synth_fit):
    """A target inside the data's N and inside its D can lie far outside the tokens per
    parameter the law was fitted on (the smallest model on the most tokens): its extrapolation
    factor is 1, and predict said nothing."""
    data = synth_fit.data
    ratio = data.D / data.N
    n, d = data.N.min(), data.D.max()  # each inside the data; D/N 29x above its largest
    factor = (d / n) / ratio.max()
    assert factor > 10
    note = (
        f"at N={n:.3g}, D={d:.3g}: {d / n:.3g} tokens per parameter (D/N) lies {factor:.0f}x "
        f"beyond the data's {ratio.min():.3g} to {ratio.max():.3g}: the law's trade-off"
    )
    with pytest.warns(bs.ExtrapolationWarning) as rec:
        row = synth_fit.predict(N=n, D=d)
    assert [str(w.message)[: len(note)] for w in rec] == [note]
    assert row.extrapolation[0] == pytest.approx(1.0)
    with pytest.warns(bs.ExtrapolationWarning, match=r"lies 30x beyond the data's 0\.337"):
        synth_fit.predict(N=data.N.max(), D=ratio.min() * data.N.max() / 30)  # below, too
    with warnings.catch_warnings():  # inside the ratios: no warning (Chinchilla's 20)
        warnings.simplefilter("error")
        synth_fit.predict(N=1e9, D=2e10)


def test_pointwise_log_likelihood_in_container_matches_scipy(synth_fit):
    idata = synth_fit.to_arviz()
    from bayescale import _arviz_compat as azc

    ll = np.asarray(azc.group(idata, "log_likelihood")["loss"])
    assert ll.shape == (4, FAST["num_samples"], len(synth_fit.data))
    post = azc.group(idata, "posterior")
    assert {"E", "A", "B", "alpha", "beta", "sigma", "frac"} <= set(post.data_vars)
    c, d = 1, 7
    draw = {k: float(v[c, d]) for k, v in synth_fit.samples.items()}
    import jax.numpy as jnp

    mu = np.asarray(
        synth_fit.law.log_predict(
            {k: jnp.asarray(draw[k]) for k in synth_fit.law.param_names},
            {k: jnp.asarray(v) for k, v in synth_fit.data.log_inputs().items()},
            {k: jnp.asarray(v) for k, v in synth_fit.ref.items()},
        )
    )
    want = stats.norm.logpdf(synth_fit.data.log_loss, mu, draw["sigma"])
    np.testing.assert_allclose(ll[c, d], want, rtol=1e-9)
    st = azc.group(idata, "sample_stats")
    assert {"diverging", "energy", "n_steps", "acceptance_rate"} <= set(st.data_vars)


def test_save_load_round_trip(synth_fit, tmp_path):
    path = synth_fit.save(tmp_path / "fit.nc")
    back = bs.load(path)
    pd.testing.assert_frame_equal(back.summary(), synth_fit.summary())
    pd.testing.assert_frame_equal(
        back.predict(N=7e10, D=1.4e12), synth_fit.predict(N=7e10, D=1.4e12)
    )
    assert back.law is synth_fit.law and back.convergence == synth_fit.convergence
    np.testing.assert_array_equal(back.data.loss, synth_fit.data.loss)


def test_fit_is_immutable_and_reproducible(synthetic, synth_fit):
    with pytest.raises(ValueError):
        synth_fit.samples["alpha"][0, 0] = 1.0
    with pytest.raises(AttributeError):
        synth_fit.data = None
    again = bs.fit(synthetic, law="chinchilla", rng_key=0, **FAST)
    np.testing.assert_array_equal(again.samples["alpha"], synth_fit.samples["alpha"])


def test_second_fit_on_same_shaped_data_compiles_nothing(synth_fit, count_compiles):
    other = bs.datasets.chinchilla_synthetic(seed=5)  # same design, new noise
    assert len(other) == len(synth_fit.data)
    with count_compiles() as compiles:
        fit = bs.fit(other, law="chinchilla", rng_key=3, **FAST)
        fit.predict(N=7e10, D=1.4e12)
        fit.summary()
    assert fit.timing["compile_s"] == 0.0
    assert compiles.messages == [], compiles.messages[:3]


def test_repr_and_html(synth_fit):
    text = repr(synth_fit)
    assert "chinchilla" in text and "converged" in text and "alpha" in text
    assert "<table" in synth_fit._repr_html_()


@pytest.mark.parametrize("likelihood", ["student_t", "laplace", "normal"])
def test_other_likelihoods_recover_the_exponents(synthetic, likelihood):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        fit = bs.fit(synthetic, law="chinchilla", likelihood=likelihood, rng_key=1, **FAST)
    s = fit.summary(prob=0.99)
    for k in ("alpha", "beta", "E"):
        assert s.loc[k, "0.5%"] <= BESIROGLU_2024[k] <= s.loc[k, "99.5%"], (likelihood, k, s)


def test_prior_override_moves_the_posterior(synthetic):
    tight = dist.Normal(0.5, 0.002)  # far from the truth 0.3478, and very confident
    fit = bs.fit(
        synthetic, law="chinchilla", priors={"alpha": tight}, rng_key=0, retry=False, **FAST
    )
    assert abs(np.median(fit.params["alpha"]) - 0.5) < 0.01
    with pytest.raises(bs.ModelError, match="unknown parameter"):
        bs.fit(synthetic, law="chinchilla", priors={"gamma": tight})


def test_user_law_fits_by_name():
    law = bs.laws.from_function(
        "test_fit_user_power",
        lambda N, E, A, alpha: E + A * N**-alpha,
        inputs=("N",),
        priors={
            "E": dist.LogNormal(0.5, 0.5),
            "A": dist.LogNormal(5.0, 2.0),
            "alpha": dist.LogNormal(-1.0, 0.7),
        },
    )
    bs.laws.register(law, overwrite=True)
    rng = np.random.default_rng(0)
    N = np.logspace(7, 10, 20)
    loss = (1.7 + 400 * N**-0.34) * np.exp(0.01 * rng.standard_normal(20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        fit = bs.fit(bs.from_arrays(N=N, loss=loss), law="test_fit_user_power", **FAST)
    s = fit.summary(prob=0.99)
    assert s.loc["alpha", "0.5%"] <= 0.34 <= s.loc["alpha", "99.5%"]
    assert fit.convergence.divergences == 0


def test_unconverged_fit_refuses_to_forecast(synthetic):
    with pytest.warns(bs.ConvergenceWarning, match="did not converge"):
        bad = bs.fit(
            synthetic, law="chinchilla", num_warmup=5, num_samples=20, retry=False, rng_key=0
        )
    assert not bad.converged and bad.convergence.fails_badly
    with pytest.raises(bs.UnconvergedError, match="allow_unconverged"):
        bad.predict(N=7e10, D=1.4e12)
    with pytest.warns(bs.ConvergenceWarning, match="do not trust"):
        out = bad.predict(N=7e10, D=1.4e12, allow_unconverged=True)
    assert out.attrs["converged"] is False
    assert "NOT CONVERGED" in repr(bad)


def test_trajectories_cut_at_the_tree_depth_cap_name_a_deeper_cap(synthetic, synth_fit, tmp_path):
    """At max_tree_depth=2 NUTS builds at most 3 leapfrog steps per draw: nearly every draw
    reaches the cap, the chains crawl (R-hat, ESS miss the policy) and the fit says so and
    names a deeper cap. The default cap (10) is never reached on this posterior."""
    with pytest.warns(bs.ConvergenceWarning, match=r"try max_tree_depth=4"):
        shallow = bs.fit(
            synthetic, law="chinchilla", max_tree_depth=2, retry=False, rng_key=0, **FAST
        )
    conv = shallow.convergence
    steps = np.asarray(shallow.sample_stats["num_steps"])
    assert steps.max() == 3
    assert conv.max_tree_depth == 2 and conv.depth_hits == np.mean(steps == 3) > 0.9
    assert conv.deep_trees and not conv.converged
    assert re.fullmatch(
        r"\d+% of draws hit the tree-depth cap \(max_tree_depth=2, 3 leapfrog steps\): "
        r"try max_tree_depth=4",
        conv.problems[-1],
    )
    path = shallow.save(tmp_path / "shallow.nc")
    assert bs.load(path).convergence.depth_hits == conv.depth_hits
    # the module's converged fit: depth 10, no draw near 1023 steps, no note
    ok = synth_fit.convergence
    assert (ok.max_tree_depth, ok.depth_hits, ok.deep_trees) == (10, 0.0, False)


def test_tree_depth_note_only_explains_slow_mixing():
    """The tree-depth note joins a failed R-hat or ESS; it never fails a fit by itself, nor
    explains divergences."""
    from bayescale.results import Convergence

    fine = Convergence(1.002, 900.0, 900.0, 0, 4000, 0.9, depth_hits=0.8, max_tree_depth=8)
    assert fine.converged and not fine.deep_trees
    divergent = Convergence(1.002, 900.0, 900.0, 4, 4000, 0.9, depth_hits=0.8, max_tree_depth=8)
    assert divergent.problems == ["4 divergent transitions"]
    slow = Convergence(1.002, 300.0, 900.0, 0, 4000, 0.9, depth_hits=0.8, max_tree_depth=8)
    assert slow.deep_trees and "try max_tree_depth=10" in slow.problems[-1]
    rare = Convergence(1.002, 300.0, 900.0, 0, 4000, 0.9, depth_hits=0.05, max_tree_depth=8)
    assert not rare.deep_trees and len(rare.problems) == 1
    unknown = Convergence(1.2, 30.0, 90.0, 0, 4000, 0.9, depth_hits=1.0, max_tree_depth=0)
    assert not unknown.deep_trees


def test_seeds_beyond_a_c_long_are_a_value_error():
    """JAX's PRNGKey takes a C long; a larger integer seed was an OverflowError from deep in
    JAX (a traceback in the CLI), and a bool is not a seed."""
    from bayescale._fit import as_key, check_seed
    from bayescale.batch import _rng_keys

    assert check_seed(2**63 - 1) == 2**63 - 1 and check_seed(np.int64(-5)) == -5
    for bad in (2**63, -(2**63) - 1, 10**20):
        with pytest.raises(ValueError, match=r"seed .* is outside \[-2\*\*63, 2\*\*63\)"):
            as_key(bad)
        with pytest.raises(ValueError, match="outside"):
            _rng_keys(bad, 3)
    with pytest.raises(ValueError, match="must be an integer seed"):
        check_seed(True)


def test_every_fit_takes_a_typed_jax_key_as_its_integer_seed():
    """``jax.random.key`` (JAX's typed keys) was a TypeError in ``bs.fit`` (NumPy cannot
    hold it), while ``fit_many`` and ``fit_pooled`` took it: one rule (``as_key``) now
    serves all three, and a typed key gives the draws of the integer seed it holds."""
    from bayescale._fit import as_key

    for bad in ("abc", 1.5, np.zeros(2, np.float32), jax.random.split(jax.random.key(0), 2)):
        with pytest.raises(ValueError, match="rng_key must be"):
            as_key(bad)
    data = bs.datasets.chinchilla_synthetic()
    kw = {"law": "power_c", "num_warmup": 30, "num_samples": 30, "retry": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_seed = bs.fit(data, rng_key=5, **kw)
        by_key = bs.fit(data, rng_key=jax.random.key(5), **kw)
        by_raw = bs.fit(data, rng_key=jax.random.PRNGKey(5), **kw)
    assert by_seed.seed == 5 and by_key.seed is None
    for k in by_seed.samples:
        np.testing.assert_array_equal(by_key.samples[k], by_seed.samples[k])
        np.testing.assert_array_equal(by_raw.samples[k], by_seed.samples[k])


def test_remedy_follows_the_failure_in_api_and_cli_words():
    """One remedy text for predict()'s refusal and the CLI's (fit and fit-many), in the words
    of each: identification when the chains disagree, the tree cap when trees hit it, the
    step size when draws diverge, more draws when nothing else explains it."""
    from bayescale.results import Convergence

    assert Convergence(1.002, 900.0, 900.0, 0, 4000, 0.9).remedy() == ""
    slow = Convergence(1.2, 30.0, 90.0, 0, 4000, 0.9)
    assert slow.remedy() == "re-fit with more num_warmup/num_samples"
    assert slow.remedy(cli=True) == "re-run with more --num-warmup/--num-samples"
    deep = Convergence(1.2, 30.0, 90.0, 5, 4000, 0.9, depth_hits=0.8, max_tree_depth=8)
    assert deep.remedy() == (
        "re-fit with max_tree_depth=10; re-fit with target_accept_prob closer to 1 (smaller steps)"
    )
    split = Convergence(1.5, 30.0, 90.0, 0, 4000, 0.9, worst_rhat="loc_1",
                        disagreement="chains disagree on loc_1: means 0, 5, within-chain sd 1")  # fmt: skip
    assert split.remedy(cli=True) == (
        "the data may not identify loc_1: check the law and its priors"
    )


def test_bad_fit_requests_raise_typed_errors(synthetic):
    with pytest.raises(bs.UnknownLawError, match="known laws"):
        bs.fit(synthetic, law="chinchila")
    few = bs.from_arrays(N=[1e8, 1e9, 1e10], D=[1e9, 1e10, 1e11], loss=[3.0, 2.5, 2.2])
    with pytest.raises(bs.DataError, match="too few points"):
        bs.fit(few, law="chinchilla")
    one_scale = bs.from_arrays(N=[1e8] * 10, D=np.logspace(9, 11, 10), loss=np.linspace(3, 2, 10))
    with pytest.raises(bs.DataError, match="distinct"):
        bs.fit(one_scale, law="chinchilla")
    no_d = bs.from_arrays(N=np.logspace(7, 9, 10), loss=np.linspace(3, 2, 10))
    with pytest.raises(bs.DataError, match="D"):
        bs.fit(no_d, law="chinchilla")
    with pytest.raises(bs.ModelError, match="likelihood"):
        bs.fit(synthetic, law="chinchilla", likelihood="cauchy")


def test_float32_opt_in_samples_in_float32(synthetic):
    """dtype=float32 runs the sampler in float32 (the initial points were float64 and the
    program traced with x64 on, so the whole chain ran in float64 on float32-rounded data)."""
    from bayescale._fit import reference_point
    from bayescale.infer.nuts import SamplerConfig, run_nuts

    spec = bs.build_model("chinchilla")
    logs = synthetic.log_inputs()
    draws, _ = run_nuts(
        spec,
        SamplerConfig(num_warmup=20, num_samples=10, num_chains=1),
        log_x={k: logs[k] for k in ("N", "D")},
        ref=reference_point(synthetic, ("N", "D")),
        log_loss=synthetic.log_loss,
        rng_key=jax.random.PRNGKey(0),
        dtype=np.float32,
    )
    assert {v.dtype for v in draws["samples"].values()} == {np.dtype(np.float32)}
    assert draws["energy"].dtype == draws["step_size"].dtype == np.float32


def test_float32_opt_in_agrees_with_float64(synthetic, synth_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        f32 = bs.fit(synthetic, law="chinchilla", dtype="float32", rng_key=0, **FAST)
    a, b = f32.summary(), synth_fit.summary()
    for k in ("E", "alpha", "beta"):
        assert abs(a.loc[k, "mean"] - b.loc[k, "mean"]) <= 0.25 * b.loc[k, "sd"], k


def test_retry_config_picks_the_remedy_by_failure():
    """bs.fit's one retry: divergences -> target 0.99 (mass matrix as before); slow mixing
    without divergences -> twice the warm-up and draws and no absolute shrinkage of the mass
    matrix (the remedy of precise data, tests/test_batch.py)."""
    from bayescale._fit import retry_config
    from bayescale.infer.nuts import SamplerConfig
    from bayescale.results import Convergence

    base = SamplerConfig()
    slow = Convergence(1.05, 80.0, 90.0, 0, 4000, 0.9, False)
    divergent = Convergence(1.005, 900.0, 900.0, 3, 4000, 0.9, False)
    both = Convergence(1.05, 80.0, 90.0, 3, 4000, 0.9, False)
    c = retry_config(base, slow)
    assert (c.num_warmup, c.num_samples, c.regularize_mass) == (1000, 2000, False)
    assert c.target_accept_prob == base.target_accept_prob
    c = retry_config(base, divergent)
    assert (c.num_warmup, c.target_accept_prob, c.regularize_mass) == (500, 0.99, True)
    c = retry_config(base, both)
    assert (c.num_warmup, c.target_accept_prob, c.regularize_mass) == (1000, 0.99, True)


def test_convergence_names_the_worst_parameter_and_chain_disagreement():
    """A failed fit says which parameter failed and whether its chains sit in different places
    (separate modes or an unidentified direction) rather than mixing slowly around one mode."""
    from bayescale.results import chain_disagreement, diagnose

    rng = np.random.default_rng(0)
    n = 1000
    ok = rng.normal(size=(4, n))
    # loc_1: three chains near -2, one near 2.3 (sd 0.3): a chain in another mode
    split = rng.normal(size=(4, n)) * 0.3 + np.array([-2.0, 2.3, -2.0, -2.0])[:, None]
    # alpha: AR(1) chains with rho 0.995 around one mode: slow mixing, low ESS, no disagreement
    slow = np.zeros((4, n))
    for t in range(1, n):
        slow[:, t] = 0.995 * slow[:, t - 1] + 0.1 * rng.normal(size=4)
    energy = rng.normal(size=(4, n))
    diverging = np.zeros((4, n), dtype=bool)

    _, conv = diagnose({"E": ok, "loc_1": split}, energy, diverging, False)
    assert conv.worst_rhat == "loc_1" and conv.max_rhat > 1.4
    (rhat_msg,) = [p for p in conv.problems if p.startswith("R-hat")]
    assert re.fullmatch(
        r"R-hat 1\.\d{3} > 1\.01 \(chains disagree on loc_1: means -[12]\.\d+, 2\.3, -[12][.\d]*, "
        r"-[12][.\d]*, within-chain sd 0\.3\)",
        rhat_msg,
    ), rhat_msg

    _, conv = diagnose({"E": ok, "alpha": slow}, energy, diverging, False)
    assert conv.worst_ess == "alpha" and conv.min_ess_bulk < 400
    assert any(p.endswith("< 400 (alpha)") for p in conv.problems), conv.problems
    # chain means of an AR(1) with rho 0.995 over 1,000 draws differ by ~1 stationary sd
    assert chain_disagreement(slow, "alpha") == ""

    _, conv = diagnose({"E": ok}, energy, diverging, False)
    assert conv.converged and conv.disagreement == "" and conv.problems == []
    assert chain_disagreement(ok[:1], "E") == ""  # one chain: nothing to compare


def test_nan_diagnostics_fail_the_gate():
    """A parameter whose draws are NaN, or stuck at one value in every chain, has no R-hat:
    the fit fails the policy badly and names it (as a batch curve does), where np.nanmax
    used to pass it."""
    import warnings

    from bayescale.results import diagnose

    rng = np.random.default_rng(1)
    ok = rng.normal(size=(4, 500))
    energy = rng.normal(size=(4, 500))
    diverging = np.zeros((4, 500), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, conv = diagnose({"E": ok, "alpha": np.full((4, 500), np.nan)}, energy, diverging, False)
        assert conv.status == "rhat_high" and conv.fails_badly and not conv.converged
        assert conv.worst_rhat == "alpha" and "R-hat nan > 1.01 (alpha)" in conv.problems
        _, conv = diagnose({"E": ok, "floor": np.full((4, 500), 0.25)}, energy, diverging, False)
    assert conv.status == "rhat_high" and conv.worst_rhat == "floor"


def test_diagnose_takes_the_e_bfmi_and_depth_hits_of_unthinned_transitions():
    """A batch curve re-fitted with thinned draws brings its per-chain E-BFMI and per-draw
    depth-cap shares: diagnose (as bs.load calls it) uses them instead of recomputing from the
    thinned energies and summed num_steps; without them it computes as for a single fit."""
    from bayescale._arviz_compat import bfmi as az_bfmi
    from bayescale.results import diagnose

    rng = np.random.default_rng(2)
    draws = {"E": rng.normal(size=(2, 300))}
    energy = rng.normal(size=(2, 300))
    diverging = np.zeros((2, 300), dtype=bool)
    steps = np.full((2, 300), 4 * 255)  # four thinned transitions of depth up to 8 add up
    _, plain = diagnose(draws, energy, diverging, True, num_steps=steps, max_tree_depth=8)
    assert plain.min_bfmi == float(np.min(az_bfmi(energy))) and plain.depth_hits == 1.0
    share = np.full((2, 300), 0.25)
    _, kept = diagnose(
        draws,
        energy,
        diverging,
        True,
        num_steps=steps,
        max_tree_depth=8,
        bfmi=np.array([0.2, 0.5]),
        depth_hit=share,
    )
    assert kept.min_bfmi == 0.2 and kept.status == "bfmi_low"
    assert kept.depth_hits == 0.25 and kept.max_tree_depth == 8


def test_one_loop_of_warm_up_and_draws_is_the_chain_numpyro_steps():
    """``run_kernel`` runs warm-up and draws in one loop (the NUTS kernel is compiled once).
    It must give exactly the chain of NumPyro's kernel called once per iteration: the same
    draws, statistics, final step size, and the warm-up's divergences and leapfrog steps."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    from bayescale.infer.nuts import draw_record, run_kernel

    # a correlated, skewed 2-D target with a funnel-ish corner, so some warm-up steps diverge
    def pe(u):
        x, y = u["x"], u["y"]
        return 0.5 * (x / 3.0) ** 2 + 0.5 * (y - 0.8 * x) ** 2 * jnp.exp(-x) + 0.5 * x

    init_kernel, sample_kernel = hmc(potential_fn=pe, algo="NUTS")
    num_warmup, num_samples = 150, 60

    def start():
        return init_kernel(
            {"x": jnp.asarray(2.5), "y": jnp.asarray(-4.0)},
            num_warmup,
            dense_mass=True,
            max_tree_depth=6,
            rng_key=jax.random.PRNGKey(3),
        )

    _, got = jax.jit(lambda: run_kernel(sample_kernel, start(), num_warmup, num_samples))()
    step = jax.jit(sample_kernel)
    state, records, warm_div, warm_steps = start(), [], 0, 0
    for i in range(num_warmup + num_samples):
        state = step(state)
        if i < num_warmup:
            warm_div += int(state.diverging)
            warm_steps += int(state.num_steps)
        else:
            records.append(jax.tree_util.tree_map(np.asarray, draw_record(state)))
    want = jax.tree_util.tree_map(lambda *r: np.stack(r), *records)
    assert got["z"]["x"].shape == (num_samples,)
    for key in ("diverging", "num_steps", "energy", "accept_prob", "potential_energy"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, err_msg=key)
    for site in ("x", "y"):
        np.testing.assert_allclose(got["z"][site], want["z"][site], rtol=1e-12)
    np.testing.assert_allclose(got["step_size"], state.adapt_state.step_size, rtol=1e-12)
    assert (int(got["warmup_divergences"]), int(got["warmup_num_steps"])) == (warm_div, warm_steps)
    assert warm_steps > num_warmup and warm_div > 0, (warm_steps, warm_div)  # real sums
