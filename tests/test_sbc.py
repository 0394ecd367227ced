"""Simulation-based calibration (issue 5, part 1): bayescale.check.sbc.

Talts et al. 2018 (arXiv:1804.06788): when parameters are drawn from the prior, data are
simulated from the model and the posterior is computed correctly, the rank of each true value
among (near-independent) posterior draws is uniform. CI runs 50 simulations of ``power_n``
and ``chinchilla`` with 2 short chains and no automatic re-fit (one compiled batch program per
law, shared by the negative control), asserts a chi-square p >= 0.001 for every test quantity and a 90% coverage
inside the central 99.9% binomial band at 50 simulations, and keeps the negative control: the
simulator's noise x1.5 must fail. The 200-simulation check of every shipped law is the slow
test at the end (and benchmarks/sbc.py, which stores its results).
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_benchmark
from numpyro.distributions import Normal
from scipy import stats

import bayescale as bs
from bayescale import check
from bayescale._fit import reference_point
from bayescale.check import SBC_EXTRAPOLATION, SBC_LOGLIK, coverage_band, sbc, sbc_design

#: CI sampler settings: 2 chains x (300 + 500) draws per simulation, one compile per law, and
#: no automatic re-fit (at 2 x 500 draws most fits miss ESS >= 400 and the re-fit would
#: quadruple the cost; calibration does not depend on it: the re-fit and the convergence gate
#: are the 200-simulation slow test's and benchmarks/sbc.py's).
CI = {"num_chains": 2, "num_warmup": 300, "num_samples": 500, "retry": False}
NUM_CI = 50


@pytest.fixture(scope="module")
def power_sbc():
    return sbc("power_n", num_simulations=NUM_CI, seed=0, fit_kwargs=CI)


@pytest.fixture(scope="module")
def power_negative(power_sbc):
    """The negative control on the same design and settings (reuses the compiled program), with
    simulation 7's data made invalid, and every re-draw of it too, to check that a simulation
    that stays invalid is reported."""
    original = check._simulate

    def broken(*args, **kwargs):
        loss = original(*args, **kwargs)
        if loss.shape[0] == NUM_CI:
            loss[7, 3] = np.nan
        else:  # the re-draws of simulation 7
            loss[:, 3] = np.nan
        return loss

    mp = pytest.MonkeyPatch()
    mp.setattr(check, "_simulate", broken)
    try:
        return sbc("power_n", num_simulations=NUM_CI, noise_scale=1.5, seed=0, fit_kwargs=CI)
    finally:
        mp.undo()


# ----------------------------------------------------------------------------- pieces
def test_bins_and_coverage_band():
    """sqrt(n/2) bins (10 at 200, 5 at 50); the band is the central 99.9% binomial interval."""
    assert [check._sbc_bins(n) for n in (8, 50, 200, 2000)] == [2, 5, 10, 20]
    lo, hi = coverage_band(50, 0.9, 0.001)
    assert (
        lo == stats.binom.ppf(0.0005, 50, 0.9) / 50 and hi == stats.binom.isf(0.0005, 50, 0.9) / 50
    )
    # the probability of a calibrated coverage falling outside is at most 0.001
    inside = stats.binom.cdf(hi * 50, 50, 0.9) - stats.binom.cdf(lo * 50 - 1, 50, 0.9)
    assert inside >= 0.999
    assert coverage_band(200) == (0.825, 0.96)
    assert all(math.isnan(b) for b in coverage_band(0))  # no simulation ranked


@pytest.mark.parametrize("law", bs.laws.available())
def test_default_designs(law):
    """Every shipped law has a design that its fit accepts, spanning about three decades."""
    law_obj = bs.laws.get(law)
    design = sbc_design(law)
    design.require(law_obj.inputs, num_params=law_obj.num_params + 1, law=law)
    assert 20 <= len(design) <= 40
    for k in law_obj.inputs:
        x = getattr(design, k)
        assert 2.0 <= math.log10(x.max() / x.min()) <= 5.0, (k, x.min(), x.max())
    level = 0.5 if law.startswith("sigmoid") else 2.5
    np.testing.assert_allclose(design.loss, level)


def _simulate_power_n(*, likelihood: str, df: float | None) -> dict:
    """4,000 SBC prior draws and simulations of power_n on its default design (seed 3)."""
    return check._sbc_simulate(
        bs.laws.get("power_n"),
        None,
        4000,
        likelihood=likelihood,
        noise_scale=1.0,
        seed=3,
        priors=None,
        df=df,
    )


def test_priors_are_fixed_at_the_design_reference():
    """The fit's priors are the default priors evaluated at the design's reference point
    (reference_point(design), as bs.fit computes it), whatever data are simulated; the prior
    draws follow them (LogNormal(log 0.3, 0.75) exponent: median 0.3, sd of log 0.75)."""
    design = sbc_design("power_n")
    ref = reference_point(design, ("N",))
    assert ref["loss"] == pytest.approx(math.log(2.5)) and ref["N"] == pytest.approx(
        np.mean(np.log(design.N))
    )
    sim = _simulate_power_n(likelihood="lognormal", df=4.0)
    fixed = dict(sim["spec"].priors)
    assert set(fixed) == {"log_L_ref", "frac", "alpha", "sigma"}
    shifted = {**ref, "loss": ref["loss"] + 3.0}  # another data set's mean log loss
    default = bs.model.build_model("power_n")
    assert float(sim["spec"].prior("log_L_ref", shifted).loc) == pytest.approx(ref["loss"])
    assert float(default.prior("log_L_ref", shifted).loc) == pytest.approx(ref["loss"] + 3.0)
    log_alpha = np.log(sim["truth"]["alpha"])
    # 4000 draws: the sd of the mean of log alpha is 0.75 / sqrt(4000) = 0.012; 4 sd
    assert np.mean(log_alpha) == pytest.approx(math.log(0.3), abs=0.05)
    assert np.std(log_alpha) == pytest.approx(0.75, rel=0.05)


def test_learnt_student_t_df_is_simulated_from_its_prior():
    """With df=None the Student-t degrees of freedom are a sampled site: SBC fixes their prior
    too (Gamma(2, 0.1), mean 20) and draws them with the law's parameters."""
    sim = _simulate_power_n(likelihood="student_t", df=None)
    assert sim["spec"].site_names[-1] == "nu" and "nu" in dict(sim["spec"].priors)
    # Gamma(2, 0.1): mean 20, sd 14.1; the mean of 4000 draws has sd 0.22 (4.5 sd below)
    assert np.mean(sim["truth"]["nu"]) == pytest.approx(20.0, abs=1.0)


def test_check_is_a_module_of_the_package():
    """`bs.check.sbc` works right after `import bayescale as bs` (README, docstrings)."""
    import subprocess
    import sys

    code = "import bayescale as bs; print(bs.check.sbc.__name__, bs.check.backtest.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sbc", "backtest"]


@pytest.mark.parametrize("noise_scale", [1.0, 1.5])
def test_simulator_noise(noise_scale):
    """The simulated log losses scatter around the law with sd noise_scale x sigma."""
    law = bs.laws.get("chinchilla")
    sim = check._sbc_simulate(
        law, None, 400, likelihood="lognormal", noise_scale=noise_scale, seed=1, priors=None, df=4.0
    )
    params = {k: jnp.asarray(v)[:, None] for k, v in sim["truth"].items()}
    log_x = {k: jnp.asarray(v)[None, :] for k, v in sim["log_x"].items()}
    log_mu = np.asarray(law.log_predict(params, log_x, sim["ref"]))
    z = (np.log(sim["loss"]) - log_mu) / sim["truth"]["sigma"][:, None]
    assert sim["valid"].all() and z.shape == (400, 30)
    # 12,000 standardised residuals: sd of their sd about 0.0065 x noise_scale; 5 sd
    assert np.std(z) == pytest.approx(noise_scale, rel=0.035)
    assert abs(np.mean(z)) < 5 * noise_scale / math.sqrt(z.size)


def test_simulator_beta():
    """Beta likelihood for accuracies: mean the law, variance m (1 - m) / (1 + phi) with
    phi = 0.25 / sigma^2 - 1 (sigma = the sd of an accuracy of 0.5)."""
    law = bs.laws.get("sigmoid_c")
    sim = check._sbc_simulate(
        law, None, 400, likelihood="beta", noise_scale=1.0, seed=2, priors=None, df=4.0
    )
    params = {k: jnp.asarray(v)[:, None] for k, v in sim["truth"].items()}
    log_x = {k: jnp.asarray(v)[None, :] for k, v in sim["log_x"].items()}
    m = np.exp(np.asarray(law.log_predict(params, log_x, sim["ref"])))
    phi = 0.25 / sim["truth"]["sigma"][:, None] ** 2 - 1
    z = (sim["loss"] - m) / np.sqrt(m * (1 - m) / (1 + phi))
    assert sim["valid"].all() and ((0 < sim["loss"]) & (sim["loss"] < 1)).all()
    # ceilings within 1e-4 of 1 make some Beta draws round to exactly 1.0: those simulations
    # were drawn again (about 4.5% of them; the chance that none of 400 was is ~1e-8)
    assert 0 < sim["redrawn"] < 60
    # 12,000 residuals (skewed near 0 and 1): 5% on the sd, 5 sd on the mean
    assert np.std(z) == pytest.approx(1.0, rel=0.05)
    assert abs(np.mean(z)) < 5 / math.sqrt(z.size)


def test_binomial_simulates_counts_and_fits_them(monkeypatch):
    """likelihood="binomial" with fit_kwargs={"trials": n}: the simulator draws counts of n
    items (accuracies k / n strictly inside (0, 1): all-wrong or all-right data are drawn
    again) and fit_many gets the same trials (its call is stopped here; the SBC run itself is
    the slow test below)."""
    seen = {}

    class Stop(Exception):
        pass

    def fake_fit_many(curves, law, **kwargs):
        seen.update(kwargs, curves=curves)
        raise Stop

    import bayescale.batch

    monkeypatch.setattr(bayescale.batch, "fit_many", fake_fit_many)
    with pytest.raises(Stop):
        sbc("sigmoid_c", num_simulations=8, likelihood="binomial", fit_kwargs={"trials": 50})
    assert seen["trials"] == 50 and seen["likelihood"] == "binomial"
    assert len(seen["curves"]) == 8
    counts = np.array([c["loss"] for c in seen["curves"].values()]) * 50
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert counts.min() >= 1 and counts.max() <= 49


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_simulations"):
        sbc("power_n", num_simulations=1)
    with pytest.raises(ValueError, match="noise_scale"):
        sbc("power_n", noise_scale=0.0)
    with pytest.raises(ValueError, match="thin"):
        sbc("power_n", thin=0)
    with pytest.raises(ValueError, match="thin"):
        sbc("power_n", thin=True)  # a bool is not a thinning factor
    with pytest.raises(bs.ModelError, match="needs trials="):
        sbc("sigmoid_c", likelihood="binomial")
    with pytest.raises(bs.ModelError, match="binomial likelihood only"):
        sbc("power_n", fit_kwargs={"trials": 100})
    with pytest.raises(ValueError, match="not in fit_kwargs"):
        sbc("power_n", fit_kwargs={"rng_key": 3})
    with pytest.raises(bs.DataError, match="too few points"):
        sbc(
            "chinchilla",
            design=bs.from_arrays(N=[1e8, 1e9, 1e10], D=[1e9, 1e10, 1e11], loss=[3, 2, 1]),
        )
    odd = bs.laws.from_function(
        "sbc_two_inputs", lambda N, C, a: a * N * C, inputs=("N", "C"), priors={"a": Normal(0, 1)}
    )
    with pytest.raises(ValueError, match="no default SBC design"):
        sbc_design(odd)


# ----------------------------------------------------------------------------- CI runs
def _assert_calibrated(result):
    table = result.table()
    assert result.num_failed == 0 and result.num_simulations == NUM_CI
    assert (table["p_value"] >= 0.001).all(), table
    lo, hi = coverage_band(NUM_CI, 0.9)
    assert table["cov90"].between(lo, hi).all(), table
    assert result.passed
    return table


def test_power_n_is_calibrated(power_sbc):
    """50 simulations of E + A N^-alpha on 24 runs over three decades."""
    table = _assert_calibrated(power_sbc)
    assert list(table["quantity"]) == [
        "log_L_ref",
        "frac",
        "alpha",
        "sigma",
        SBC_LOGLIK,
        SBC_EXTRAPOLATION,
    ]
    assert power_sbc.num_bins == 5 and (table["n"] == NUM_CI).all()


def test_ranks_thinning_and_record(power_sbc):
    """Ranks lie in 0..L with L the thinned draws (thin = ceil(draws / min ESS)), normalised
    ranks in (0, 1), coverage flags agree with the ranks' extremes, and the JSON record holds
    ranks, p-values, coverage and convergence."""
    r = power_sbc
    total = CI["num_chains"] * CI["num_samples"]
    thin = r.diagnostics["thin"].astype(int)
    assert (thin >= 1).all()
    np.testing.assert_array_equal(
        r.num_rank_draws, CI["num_chains"] * -(-CI["num_samples"] // thin)
    )
    assert (r.num_rank_draws <= total).all()
    for q in r.quantities:
        assert ((0 <= r.ranks[q]) & (r.ranks[q] <= r.num_rank_draws)).all()
        assert ((0 < r.pit[q]) & (r.pit[q] < 1)).all()
        # the 90% interval is wider than the 50% one, so it covers whenever the 50% one does
        assert not (r.inside50[q] & ~r.inside90[q]).any()
        np.testing.assert_array_equal(r.histogram(q).sum(), NUM_CI)
    record = json.loads(r.to_json())
    assert record["law"] == "power_n" and record["passed"] is True
    assert len(record["ranks"]["alpha"]) == NUM_CI
    assert set(record["gate"]) == {
        "rhat",
        "ess_bulk",
        "ess_tail",
        "divergences",
        "bfmi",
        "all",
        "retried",
    }
    assert sum(record["status_counts"].values()) == NUM_CI
    assert record["table"][2]["quantity"] == "alpha"
    # a fitted simulation that missed the gate says why (at 2 x 500 draws most miss ESS 400)
    missed = [i for i, s in enumerate(r.status) if s not in ("ok", check.SBC_FAILED)]
    assert missed, r.status_counts()
    text = {"ess_low": "ESS bulk", "rhat_high": "R-hat", "divergences": "divergent"}
    for i in missed:
        assert text.get(r.status[i], "") in record["messages"][i], (i, r.messages[i])
    assert all(not record["messages"][i] for i, s in enumerate(r.status) if s == "ok")
    # refitting one simulation from its data reproduces its truth's scale
    one = r.data(0)
    assert len(one) == 24 and np.all(one.loss > 0)


def test_negative_control_fails(power_negative):
    """Simulator noise x1.5, model unchanged: the posterior of sigma sits above the truth (its
    ranks pile up at 0) and the data's log-likelihood is lower than the posterior expects; the
    check must fail. (Measured: p about 1e-30 for sigma.) The fixture also holds one failed
    simulation, which fails ``passed`` on its own, so the rank tests are checked apart: the
    table covers the 49 ranked simulations only, and its verdict fails without the failure."""
    r = power_negative
    table = r.table().set_index("quantity")
    assert not r.passed
    assert (table["n"] == NUM_CI - 1).all()  # the failed simulation is not in the rank tests
    assert table.loc["sigma", "p_value"] < 1e-6 and table.loc["sigma", "mean_pit"] < 0.2
    assert table.loc["sigma", "cov90"] < coverage_band(NUM_CI - 1, 0.9)[0]
    assert table.loc[SBC_LOGLIK, "p_value"] < 0.001
    assert not table.loc["sigma", "passed"] and not table.loc[SBC_LOGLIK, "passed"]
    assert r.min_p_value == table["p_value"].min() < 1e-6
    # the verdict without the failed simulation: the rank tests alone fail it
    assert not table["passed"].all()


def _mark_failed(result, i: int):
    """``result`` with simulation ``i`` marked failed (as sbc() records a failure)."""
    status = result.status.copy()
    status[i] = check.SBC_FAILED
    ranks = {q: np.where(np.arange(len(v)) == i, -1, v) for q, v in result.ranks.items()}
    pit = {q: np.where(np.arange(len(v)) == i, np.nan, v) for q, v in result.pit.items()}
    return dataclasses.replace(result, status=status, ranks=ranks, pit=pit)


def test_one_failed_simulation_alone_fails(power_sbc):
    """The calibrated power_n result with one simulation marked failed: the rank tests and
    coverages of the 49 others still pass, yet ``passed`` is False."""
    r = _mark_failed(power_sbc, 7)
    assert r.num_failed == 1 and (r.table()["n"] == NUM_CI - 1).all()
    assert r.table()["passed"].all(), r.table()
    assert not r.passed and power_sbc.passed
    assert "FAILED" in repr(r) and json.loads(r.to_json())["passed"] is False


def test_min_p_value_is_nan_aware(power_sbc, monkeypatch):
    """min_p_value is the table's smallest p-value; NaN (no simulation ranked) whenever a
    quantity has none, wherever that quantity comes in the order (min() over NaN did not)."""
    assert power_sbc.min_p_value == power_sbc.table()["p_value"].min()
    every = _mark_failed(power_sbc, 0)
    for i in range(1, NUM_CI):
        every = _mark_failed(every, i)
    assert every.table()["p_value"].isna().all() and math.isnan(every.min_p_value)
    for nan_at in (power_sbc.quantities[0], power_sbc.quantities[-1]):
        monkeypatch.setattr(
            check.SBCResult,
            "chi2",
            lambda self, q, nan_at=nan_at: (0.0, math.nan if q == nan_at else 0.5),
        )
        assert math.isnan(power_sbc.min_p_value)


def test_failed_simulation_is_reported(power_negative):
    """Simulation 7 (NaN simulated loss, re-drawn SBC_MAX_REDRAWS times in vain) keeps its row:
    status failed, rank -1, a message; the others are ranked (that the failure alone fails the
    check: test_one_failed_simulation_alone_fails)."""
    r = power_negative
    assert r.num_simulations == NUM_CI and r.num_failed == 1
    assert r.settings["redrawn"] == check.SBC_MAX_REDRAWS
    assert r.status[7] == "failed" and "point 3" in r.messages[7]
    assert all(r.ranks[q][7] == -1 for q in r.quantities)
    assert (r.table()["n"] == NUM_CI - 1).all()
    assert r.gate()["all"] <= (NUM_CI - 1) / NUM_CI


def test_chinchilla_is_calibrated():
    """50 simulations of the Chinchilla law on a 5-budget x 6-size IsoFLOP grid."""
    result = sbc("chinchilla", num_simulations=NUM_CI, seed=0, fit_kwargs=CI)
    table = _assert_calibrated(result)
    assert len(table) == 8


# ----------------------------------------------------------------------------- validation
@pytest.mark.slow
def test_binomial_is_calibrated():
    """20 simulations of sigmoid_c with beta-binomial counts of 200 items (65-90 s on the
    2-core machine, a third of it compiling): every rank test and 90% coverage passes."""
    num = 20
    result = sbc(
        "sigmoid_c",
        num_simulations=num,
        likelihood="binomial",
        seed=0,
        fit_kwargs={**CI, "trials": 200},
    )
    table = result.table()
    assert result.num_failed == 0 and result.settings["trials"] == 200
    assert (table["p_value"] >= 0.001).all(), table
    assert table["cov90"].between(*coverage_band(num, 0.9)).all(), table
    assert result.passed
    counts = result.simulated_loss * 200
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("law", bs.laws.available())
def test_every_law_at_200_simulations(law):
    """Issue 5's target with fit_many's default sampler settings: chi-square p >= 0.001 for
    every quantity, each 90% coverage in the 99.9% binomial band at 200 ([0.825, 0.96]) and
    the mean 90% coverage over quantities in [0.85, 0.95]."""
    result = sbc(law, num_simulations=200, seed=0)
    table = result.table()
    assert result.num_failed == 0, result.status_counts()
    assert (table["p_value"] >= 0.001).all(), table
    assert table["cov90"].between(*coverage_band(200)).all(), table
    assert 0.85 <= table["cov90"].mean() <= 0.95, table


def test_gate_by_band_counts_and_errors():
    """Bands are half-open [lower, upper); every simulation lands in exactly one; the miss
    columns count each status; bad input is refused with a message naming it."""
    values = [0.001, 0.01, 0.02, 0.0299, 0.03, 0.5, 7.0]
    status = ["rhat_high", "ok", "divergences", "ok", "ok", "ess_low", "ok"]
    t = check.gate_by_band(values, status, [0.01, 0.03])
    assert t["band"].tolist() == ["< 0.01", "0.01-0.03", ">= 0.03"]
    assert t["simulations"].tolist() == [1, 3, 3]
    assert t["met"].tolist() == [0, 2, 2]
    np.testing.assert_allclose(t["share"], [0.0, 2 / 3, 2 / 3])
    assert t["divergences"].tolist() == [0, 1, 0]
    assert t["rhat_high"].tolist() == [1, 0, 0]
    assert t["ess_low"].tolist() == [0, 0, 1]
    empty = check.gate_by_band([1.0], ["ok"], [0.5, 0.7])
    assert np.isnan(empty["share"].iloc[1]) and empty["simulations"].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="strictly increasing"):
        check.gate_by_band(values, status, [0.03, 0.01])
    with pytest.raises(ValueError, match="7 values but 6 statuses"):
        check.gate_by_band(values, status[:6], [0.01])
    with pytest.raises(ValueError, match="value 2 is nan"):
        check.gate_by_band([0.1, 0.2, np.nan], ["ok"] * 3, [0.01])
    with pytest.raises(ValueError, match="value 0 is inf"):
        check.gate_by_band([np.inf, 0.2], ["ok"] * 2, [0.01])


def test_gate_by_noise_band_of_an_sbc(power_sbc):
    """SBCResult.gate_by bands the true noise scales of the simulations: its counts agree with
    a direct count from the truths and statuses, and an unknown quantity is refused."""
    r = power_sbc
    t = r.gate_by()
    sigma = r.truth["sigma"]
    band = np.searchsorted(np.asarray(check.SBC_NOISE_BANDS), sigma, side="right")
    assert t["simulations"].tolist() == np.bincount(band, minlength=4).tolist()
    ok = r.status == "ok"
    assert t["met"].tolist() == np.bincount(band[ok], minlength=4).tolist()
    assert t["simulations"].sum() == NUM_CI and t["met"].sum() == ok.sum()
    missed = [
        s for s in t.columns if s not in ("band", "lower", "upper", "simulations", "met", "share")
    ]
    assert t[missed].to_numpy().sum() == (~ok).sum()
    alpha = r.gate_by("alpha", [0.3, 0.6])
    assert alpha["simulations"].sum() == NUM_CI
    with pytest.raises(ValueError, match=r"no true values of 'beta'.*alpha"):
        r.gate_by("beta")


def test_benchmark_stores_and_prints_gate_by_noise(power_sbc, tmp_path, capsys, monkeypatch):
    """benchmarks/sbc.py stores the gate per noise band, re-simulates the noise scales of
    older records (without the bands) from their seed to the same table, and --by-noise
    prints it without fitting."""
    # main() forces several host devices through XLA_FLAGS unless it is set: keep this
    # process's environment (inherited by the CLI tests' subprocesses) as it was
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

    bench = load_benchmark("sbc")
    record = bench._record(power_sbc)
    stored = record["gate_by_sigma"]
    expected = power_sbc.gate_by()
    assert [b["simulations"] for b in stored] == expected["simulations"].tolist()
    assert [b["met"] for b in stored] == expected["met"].tolist()
    older = {k: v for k, v in record.items() if k != "gate_by_sigma"}
    assert bench.noise_bands("power_n", older) == stored
    out = tmp_path / "sbc.json"
    out.write_text(json.dumps({"meta": {}, "laws": {"power_n": older}}))
    assert bench.main(["--by-noise", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| power_n |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == [f"{b['simulations'] - b['met']} / {b['simulations']}" for b in stored]
    with pytest.raises(SystemExit, match="chinchilla not in"):
        bench.main(["--by-noise", "--json", str(out), "--laws", "chinchilla"])
    moved = {**older, "ref": {**older["ref"], "loss": older["ref"]["loss"] + 0.1}}
    with pytest.raises(SystemExit, match="re-simulating power_n does not reproduce"):
        bench.noise_bands("power_n", moved)
