"""Numbers at the edges a scaling-law user reaches (found by a review of numerics at the
extremes; each case gave a wrong number silently or a misleading message)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.check import backtest_points
from bayescale.model import check_proportions

C8 = np.geomspace(1e18, 1e23, 8)
ACC8 = np.array([0.26, 0.27, 0.31, 0.42, 0.6, 0.74, 0.82, 0.86])


def test_binomial_accuracies_that_are_no_whole_count_are_said():
    """The binomial likelihood counts round(accuracy * trials) items: 0.263, 0.281 and 0.347
    with trials=10 were all fitted as 3/10, silently."""
    spec = bs.build_model("sigmoid_c", likelihood="binomial", trials=10)
    assert check_proportions([0.3, 0.5, 0.9], spec) == ""
    # float error of a whole count (0.29 * 100 = 28.999999999999996) is no rounding
    assert (
        check_proportions([0.29, 0.57], bs.build_model(spec.law, likelihood="binomial", trials=100))
        == ""
    )
    note = check_proportions([0.3, 0.263, 0.281, 0.347], spec)
    assert note.startswith("row 1: accuracy 0.263 is not a whole number of the trials=10 items")
    assert "(3 such row(s))" in note and "round(accuracy * trials) = 3 correct" in note
    # 0.1% of items in 1e6 is a whole 1000 items; 0.9000005 is not, and is said
    big = bs.build_model(spec.law, likelihood="binomial", trials=10**6)
    assert check_proportions([0.001], big) == "" and check_proportions([0.9000005], big)
    beta = bs.build_model("sigmoid_c", likelihood="beta")
    assert check_proportions([0.263], beta) == ""  # the Beta takes any accuracy in (0, 1)
    # every item right is a count the binomial scores; the Beta density at 1 is 0 or inf
    assert check_proportions([0.3, 0.5, 1.0], spec) == ""
    for spec_, bad, interval in ((spec, 1.5, r"\(0, 1\]"), (beta, 1.0, r"\(0, 1\)")):
        with pytest.raises(bs.DataError, match=rf"accuracies in {interval}; row 2 has {bad}"):
            check_proportions([0.3, 0.5, bad], spec_)
    assert check_proportions([0.3, 1.5], bs.build_model("sigmoid_c")) == ""  # a loss: unchecked


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_fit_many_refuses_an_accuracy_of_one_per_curve_and_notes_rounding(fake_nuts, tmp_path):
    """fit_many fitted a curve with accuracy 1.0 under the Beta likelihood (its density is 0
    or infinite there); bs.fit refused it. Now that curve alone is invalid_input, and the
    message names the row of the whole table (and its CSV line), as the other checks do (it
    named the 8th row of curve 'b', "row 7")."""

    table = pd.DataFrame(
        {"task": ["a"] * 8 + ["b"] * 8, "C": [*C8, *C8], "loss": [*ACC8, *ACC8[:-1], 1.0]}
    )
    kwargs = dict(curve="task", num_chains=2, num_samples=20, progress=False, retry=False)
    batch = bs.fit_many(table, "sigmoid_c", likelihood="beta", **kwargs)
    assert list(batch.status) != ["invalid_input"] * 2 and batch.status[1] == "invalid_input"
    assert batch.summary()["message"].iloc[1] == (
        "curve 'b': the beta likelihood models accuracies in (0, 1); row 15 has 1.0"
    )
    path = tmp_path / "acc.csv"
    table.to_csv(path, index=False)
    batch = bs.fit_many(path, "sigmoid_c", likelihood="beta", **kwargs)
    assert batch.summary()["message"].iloc[1] == (
        "curve 'b': the beta likelihood models accuracies in (0, 1); row 15 (CSV line 17) has 1.0"
    )
    with pytest.warns(
        bs.DataWarning, match=r"curve 'b': row 8: accuracy 0.26 .* = 3 correct"
    ) as rec:
        whole = table.assign(
            loss=np.where(table["task"] == "a", np.round(table["loss"], 1), table["loss"])
        )
        bs.fit_many(whole, "sigmoid_c", likelihood="binomial", trials=10, **kwargs)
    assert sum(issubclass(w.category, bs.DataWarning) for w in rec) == 1
    with pytest.raises(bs.DataError, match=r"row 15 \(CSV line 17\) has 1.0") as err:
        bs.fit(path, "sigmoid_c", likelihood="beta")  # refused before anything compiles
    assert (err.value.row, err.value.line, err.value.value) == (15, 17, 1.0)


def test_backtest_refuses_a_held_out_accuracy_of_one():
    """A held-out run at accuracy 1.0 under the Beta likelihood was scored lpd = +inf (an
    infinitely good forecast, which swamped every pooled mean); now it is refused before any
    fit, as bs.fit refuses it in the training runs."""
    for kw, bad in (
        ({"likelihood": "beta"}, 1.0),
        ({"likelihood": "binomial", "trials": 100}, 1.5),
    ):
        data = bs.from_arrays(C=C8, loss=[*ACC8[:-1], bad])
        with pytest.raises(bs.DataError, match=rf"row 7 has {bad}"):
            backtest_points(data, "sigmoid_c", cuts=[0.01], fit_kwargs=kw)


def test_compute_for_loss_tells_beyond_the_search_from_unreachable():
    """The numerical path called every draw not reached by its grid's last point (7.4e39,
    short of the documented 1e40 FLOP) "unreachable (irreducible loss at or above the
    target)", even for Kaplan's law, which has no irreducible loss."""
    from bayescale.datasets import BESIROGLU_2024
    from bayescale.planning import PlanningWarning, compute_for_loss

    kaplan = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    r = kaplan["alpha_N"] / kaplan["alpha_D"]

    def exact(loss):  # Kaplan et al. 2020's L(N, D) minimised at C = 6ND, solved for C
        n = (kaplan["N_c"] ** r * (1 + r) / loss ** (1 / kaplan["alpha_D"])) ** (1 / r)
        return 6 * kaplan["D_c"] * n ** (1 + r) / (r * kaplan["N_c"] ** r)

    row = compute_for_loss(kaplan, loss=0.35).iloc[0]  # 8.4e39 FLOP: inside the search
    assert row["compute_median"] == pytest.approx(exact(0.35), rel=1e-6)
    assert exact(0.35) < 1e40
    with pytest.warns(PlanningWarning, match=r"100.0% .* need more than 1e\+40 FLOP") as rec:
        row = compute_for_loss(kaplan, loss=0.3).iloc[0]  # 3.2e41 FLOP
    assert not any("irreducible" in str(w.message) for w in rec)
    assert np.isinf(row["compute_median"]) and exact(0.3) > 1e40
    assert row["beyond_range"] == 1.0 and row["unreachable"] == 0.0
    # a law with an irreducible loss: draws whose E is above the target are unreachable
    draws = {k: np.full(10, v) for k, v in BESIROGLU_2024.items()}
    draws["E"] = np.array([1.70] * 7 + [1.90] * 3)
    with pytest.warns(PlanningWarning, match="30.0% of posterior draws cannot reach"):
        row = compute_for_loss(draws, loss=1.85, method="numerical").iloc[0]
    assert row["unreachable"] == pytest.approx(0.3) and row["beyond_range"] == 0.0


def test_compute_for_loss_reads_a_custom_laws_floor_from_far_budgets(monkeypatch):
    """A user law whose irreducible loss has another name (L0): draws with L0 above the
    target are unreachable (the first version took them for 'beyond 1e40 FLOP')."""
    import numpyro.distributions as dist

    from bayescale import planning
    from bayescale.datasets import BESIROGLU_2024 as published

    law = bs.laws.from_function(
        "chinchilla_l0_test",
        lambda N, D, L0, A, B, alpha, beta: L0 + A / N**alpha + B / D**beta,
        inputs=("N", "D"),
        priors={k: dist.LogNormal(0.0, 1.0) for k in ("L0", "A", "B", "alpha", "beta")},
    )
    nat = {"L0": np.array([1.70] * 7 + [1.90] * 3)}
    nat |= {k: np.full(10, published[k]) for k in ("A", "B", "alpha", "beta")}
    post = planning._Posterior(
        law=law, sampled=dict(nat), natural=nat, ref={"N": 0.0, "D": 0.0, "loss": 0.0},
        log_ratio0=np.log(20.0),
    )  # fmt: skip
    monkeypatch.setattr(planning, "_as_posterior", lambda *a, **k: post)
    with pytest.warns(planning.PlanningWarning, match="30.0% of posterior draws cannot reach"):
        row = planning.compute_for_loss({}, loss=1.85).iloc[0]
    assert row["unreachable"] == pytest.approx(0.3) and row["beyond_range"] == 0.0


def test_float32_refuses_the_accuracy_likelihoods():
    """float32 rounds the Beta and beta-binomial log densities by up to 1.6 and 0.4 nats at
    precise data (phi log phi cancellation): a binomial sigmoid fit left 2 of 4 chains with
    step size 0 and R-hat 2.16 where float64 converged. Refused before anything compiles."""
    from scipy import stats

    from bayescale.model import beta_binomial_logpmf

    # the rounding behind it, at phi = 1e5 (sigma about 1.6e-3)
    a, b = 0.5e5, 0.5e5
    with jax.enable_x64(False):
        f32 = float(
            beta_binomial_logpmf(jnp.float32(250), jnp.float32(500), jnp.float32(a), jnp.float32(b))
        )
    exact = float(beta_binomial_logpmf(250.0, 500.0, a, b, xp=np))
    assert abs(exact - stats.betabinom.logpmf(250, 500, a, b)) < 1e-6
    assert abs(f32 - exact) > 0.03  # 0.069 nats: -3.405 against -3.336
    data = {"C": C8, "loss": ACC8}
    for kw in ({"likelihood": "beta"}, {"likelihood": "binomial", "trials": 100}):
        with pytest.raises(ValueError, match=f"float32' does not support the {kw['likelihood']}"):
            bs.fit(data, law="sigmoid_c", dtype="float32", **kw)
        with pytest.raises(ValueError, match="fit accuracies in float64"):
            bs.fit_many({"a": data}, "sigmoid_c", dtype="float32", progress=False, **kw)


def test_pooled_curves_with_an_accuracy_of_one_are_invalid():
    from bayescale.pooling import _validate_curve

    spec = bs.build_model("sigmoid_c", likelihood="beta")
    ok = bs.from_arrays(C=C8, loss=ACC8)
    bad = bs.from_arrays(C=C8, loss=[*ACC8[:-1], 1.0])
    assert _validate_curve("a", ok, spec.law, spec) == ""
    assert _validate_curve("b", bad, spec.law, spec) == (
        "curve 'b': the beta likelihood models accuracies in (0, 1); row 7 has 1.0"
    )


def test_summary_of_a_parameter_with_an_overflowing_draw_is_quiet():
    """Flat (pre-emergence) accuracies leave the sigmoid's log C0 free: a draw of C0 can
    overflow to inf (1 of 1,200 here: 90% interval 0.003 to 2.9e92 FLOP). The summary's
    mean is then inf and its sd and MCSE NaN, as the table shows; NumPy's and ArviZ's
    RuntimeWarnings ("invalid value encountered in subtract") leaked to the user."""
    rng = np.random.default_rng(0)
    C = np.logspace(18, 22, 12)
    acc = 0.25 + 0.01 * rng.standard_normal(12)
    fit = bs.fit(
        {"C": C, "loss": acc}, law="sigmoid_c", likelihood="normal", rng_key=0, retry=False,
        num_warmup=300, num_samples=300,
    )  # fmt: skip
    params = dict(fit.params)
    params["C0"] = params["C0"].copy()
    params["C0"][0, 0] = np.inf  # whatever this machine's rounding drew
    fit.__dict__["params"] = params
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = fit.summary()
    assert np.isposinf(table.loc["C0", "mean"]) and np.isnan(table.loc["C0", "sd"])
    assert np.isfinite(table.loc["C0", "median"]) and np.isfinite(table.loc["k", "mean"])


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_batch_predict_names_curves_beyond_their_tokens_per_parameter(fake_nuts):
    """BatchFit.predict warns, once, for the curves whose data never saw the target's D/N
    (inside each curve's N and D), naming them and the farthest curve; a curve that was not
    fitted is left out, and a curve whose ratios cover the target is not named."""
    from bayescale.datasets import chinchilla_synthetic

    a = chinchilla_synthetic(seed=0, as_data=False)
    wide = a.assign(D=a["D"] * 30)  # ratios 10 to 49,000: the target inside
    bad = a.iloc[:3]  # too few points: not fitted
    table = pd.concat([a.assign(task="a"), wide.assign(task="wide"), bad.assign(task="bad")])
    kwargs = dict(curve="task", num_chains=2, num_samples=20, progress=False, retry=False)
    batch = bs.fit_many(table, "chinchilla", **kwargs)
    assert list(batch.status)[2] == "invalid_input"
    ratio = a["D"] / a["N"]
    n, d = a["N"].min(), a["D"].max() / 2  # inside curve a's N and D; D/N 15x its largest
    with pytest.warns(bs.ExtrapolationWarning) as rec:
        batch.predict(N=[1e9, n], D=[2e10, d], allow_unconverged=True)
    (message,) = [str(w.message) for w in rec if "tokens per parameter" in str(w.message)]
    factor = (d / n) / ratio.max()
    assert message.startswith(
        f"1 curve(s) ('a') forecast beyond the tokens per parameter of their data; the "
        f"farthest, curve 'a' at N={n:.3g}, D={d:.3g}: {d / n:.3g} tokens per parameter (D/N) "
        f"lies {factor:.0f}x beyond the data's {ratio.min():.3g} to {ratio.max():.3g}"
    ), message


def test_data_read_from_a_file_pickles_and_keeps_its_lines(tmp_path):
    """ScalingData.origin names the CSV line of a row after the read: it must pickle (data
    sent to worker processes; a closure did not) and name the lines of the file as it was
    read, not as it is when a message is needed. Rows replaced by others drop it."""
    import dataclasses
    import pickle

    path = tmp_path / "runs.csv"
    table = pd.DataFrame({"task": ["a"] * 8 + ["b"] * 8, "C": [*C8, *C8], "loss": [*ACC8] * 2})
    text = "\n" + table.to_csv(index=False).replace("\n", "\n\n", 3)  # blank lines
    path.write_text(text)
    filled = [i + 1 for i, line in enumerate(text.splitlines()) if line]  # header, rows
    data = bs.read_csv(path, curve="task")
    path.unlink()
    again = pickle.loads(pickle.dumps(data))
    b = again.curves()["b"]
    assert b.locate(7) == (15, filled[16]) == (15, 21)  # its 8th row: table row 15
    assert np.array_equal(b.loss, ACC8)
    shorter = dataclasses.replace(data, C=C8, loss=ACC8, curve=None)
    assert shorter.origin is None and shorter.subset([1, 2]).locate(1) == (1, None)


def test_beta_binomial_cdf_is_exact_at_any_precision():
    """prob_beats(predictive=True) under the binomial likelihood used SciPy's betabinom.cdf,
    whose error grows with the precision phi = a + b: 3e-3 at 1e12 and 0.25 at 1e16 (it
    returned 1 for a probability of 0.75). The CDF is checked against the exact sum of the
    rising-factorial probabilities; tolerance: SciPy's 2e-6 below 1e9, the binomial limit's
    about 0.12 n / phi above."""
    from types import SimpleNamespace

    from scipy import stats

    from bayescale.model import beta_binomial_cdf, beta_binomial_logpmf, beta_shapes
    from bayescale.planning import _predictive_cdf

    for n, m, k in ((100, 0.37, 40), (1000, 0.37, 380), (14000, 0.6, 8450), (10**5, 0.9, 90100)):
        for phi in (1e2, 1e6, 1e9, 1.01e9, 1e12, 1e14, 1e16):
            a, b = m * phi, (1 - m) * phi
            j = np.arange(k + 1.0)
            exact = np.exp(beta_binomial_logpmf(j, float(n), a, b, xp=np)).sum()
            tol = 5e-6 if phi <= 1e9 else max(5e-6, 0.15 * n / phi)  # binomial limit: 0.12 n/phi
            assert float(beta_binomial_cdf(k, n, a, b)) == pytest.approx(exact, abs=tol)
    # SciPy up to a + b = 1e9, the binomial above
    assert beta_binomial_cdf(380, 1000, 0.37e9, 0.63e9) == stats.betabinom.cdf(
        380, 1000, 0.37e9, 0.63e9
    )
    a = 0.37e9 + 1
    assert beta_binomial_cdf(380, 1000, a, 0.63e9) == stats.binom.cdf(380, 1000, a / (a + 0.63e9))
    # prob_beats' predictive CDF takes it: draws at sigma 1e-8 (phi 2.5e15) and 0.05 (99)
    spec = bs.build_model("sigmoid_c", likelihood="binomial", trials=1000)
    fit = SimpleNamespace(spec=spec, samples={"sigma": np.array([1e-8, 0.05])})
    log_mu = np.log(np.full((2, 1), 0.37))
    a, b = beta_shapes(log_mu, fit.samples["sigma"][:, None])
    got = _predictive_cdf(fit, log_mu, 0.381, strict=True)  # P(k < 381) = P(k <= 380)
    assert np.allclose(got, beta_binomial_cdf(380, 1000, a, b), atol=0, rtol=0)
    assert got[0, 0] == pytest.approx(0.754650734, abs=1e-8)  # the binomial's P(k <= 380)


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::bayescale.ExtrapolationWarning")
def test_intervals_wider_than_the_draws_say_so(fake_nuts):
    """prob=0.99999 from 1,200 draws gave the extreme draws as the interval, without a word.
    Now an IntervalWarning says so wherever a central interval is asked for: 40 draws leave
    0.2 draws beyond each bound of a 99% interval, 2 of a 90% one (no warning)."""
    import warnings

    import matplotlib.pyplot as plt

    from bayescale import planning
    from bayescale.datasets import BESIROGLU_2024, chinchilla_synthetic
    from bayescale.plot import plot_fit, plot_residuals

    table = chinchilla_synthetic(seed=0, as_data=False).assign(task="a")
    kwargs = dict(curve="task", num_chains=2, num_samples=20, progress=False, retry=False)
    batch = bs.fit_many(table, "chinchilla", **kwargs)
    fit = batch["a"]
    calls = {
        "Fit.summary": lambda p: fit.summary(prob=p),
        "Fit.predict": lambda p: fit.predict(N=1e9, D=2e10, prob=p, allow_unconverged=True),
        "BatchFit.summary": lambda p: batch.summary(prob=p),
        "BatchFit.predict": lambda p: batch.predict(N=1e9, D=2e10, prob=p, allow_unconverged=True),
        "optimal_allocation": lambda p: planning.optimal_allocation(
            fit, compute=1e21, prob=p, allow_unconverged=True
        ),
        "plot_fit": lambda p: plot_fit(fit, prob=(0.5, p)),
        "plot_residuals": lambda p: plot_residuals(fit, prob=p),
    }
    for name, call in calls.items():
        with pytest.warns(bs.IntervalWarning) as rec:
            call(0.99)
        (w,) = [w for w in rec if issubclass(w.category, bs.IntervalWarning)]
        assert str(w.message).startswith(
            "a 99% central interval from 40 draws leaves 0.2 draws beyond each bound: its "
            "bounds are interpolated between the most extreme draws, not quantiles; use at "
            "least 200 draws in all"
        ), name
        assert w.filename == __file__, (name, w.filename)  # points at the caller
        with warnings.catch_warnings():
            warnings.simplefilter("error", bs.IntervalWarning)
            call(0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bs.IntervalWarning)
        # law constants: one draw, no interval to warn about
        planning.optimal_allocation(BESIROGLU_2024, compute=1e21, prob=0.99)
        # nobody asked for the 90% intervals of a table shown by repr
        repr(fit), fit._repr_html_(), repr(batch)
        # 20 draws leave exactly one beyond each bound of a 90% interval (1 - 0.9 < 0.1)
        few = bs.fit_many(table, "chinchilla", **{**kwargs, "num_samples": 10})["a"]
        few.summary(prob=0.9)
    plt.close("all")


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_prob_beats_reads_the_direction_from_the_law_not_the_likelihood(fake_nuts):
    """prob_beats counted plans above the target for the Beta and binomial likelihoods and
    below it otherwise: a sigmoid's accuracy fitted with the lognormal likelihood beat its
    target from below, an error rate fitted with the Beta likelihood from above. The law
    says which way is better (law.higher_is_better); the plots' axis and the CLI's forecast
    read the same (law.quantity)."""
    import matplotlib.pyplot as plt

    from bayescale.planning import prob_beats
    from bayescale.plot import plot_fit

    kwargs = dict(curve="task", num_chains=2, num_samples=200, progress=False, retry=False)
    acc = pd.DataFrame({"task": "a", "C": C8, "loss": ACC8})
    err = pd.DataFrame({"task": "a", "N": np.geomspace(1e7, 1e10, 8), "loss": 1 - ACC8[::-1]})
    for table, law, likelihood, higher in (
        (acc, "sigmoid_c", "lognormal", True),
        (acc, "sigmoid_c", "beta", True),
        (err, "power_n", "beta", False),
        (err, "power_n", "lognormal", False),
    ):
        fit = bs.fit_many(table, law, likelihood=likelihood, **kwargs)["a"]
        assert fit.law.higher_is_better is higher
        at = {"C": 1e22} if law == "sigmoid_c" else {"N": 1e9}
        pred = fit.predict(**at, prob=0.9, allow_unconverged=True)
        # 5% of the 400 draws' means lie below the 90% interval's lower bound, 5% above
        bound = pred.loss_lower[0] if higher else pred.loss_upper[0]
        p = prob_beats(fit, **at, loss=float(bound), allow_unconverged=True)
        assert p == pytest.approx(0.95, abs=0.01), (law, likelihood, p)
        word = "accuracy" if higher else "proportion" if likelihood == "beta" else "loss"
        assert fit.law.quantity(likelihood) == word
        assert plot_fit(fit).get_ylabel() == word  # the axis says what the law predicts
    plt.close("all")
