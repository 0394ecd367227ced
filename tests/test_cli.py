"""Tests of the ``bayescale`` command line (bayescale/cli.py).

Most tests call :func:`bayescale.cli.main` in-process; two run the installed console script in a
subprocess (exit status and the single stderr line on bad input, and the XLA device count set
before JAX starts). One module-scoped fit (the suite's sampler settings, so the compiled NUTS
program is shared with the other tests of the same data shape) serves the fit, optimal and
refusal tests.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import call_cli

import bayescale as bs
from bayescale import cli
from bayescale.datasets import BESIROGLU_2024, chinchilla_synthetic, compute_optimal_N
from bayescale.results import Convergence

#: Sampler settings of tests/conftest.py FAST, also `demo --quick`: one compile for all.
SAMPLER = ["--num-warmup", "400", "--num-samples", "600"]
#: Forecast targets of the module fit: inside the data, 3x beyond it (Chinchilla), 40x beyond.
TARGETS = {"N=1e9,D=2e10": (1e9, 2e10), "N=70B,D=1.4T": (70e9, 1.4e12), "N=1T,D=20T": (1e12, 2e13)}


def _true_loss(N: float, D: float, p=BESIROGLU_2024) -> float:
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def run_cli(argv: list[str]) -> SimpleNamespace:
    """``main(argv)`` in-process; captures stdout/stderr and leaves ``XLA_FLAGS`` as it was."""
    rc, out, err = call_cli(argv)
    return SimpleNamespace(rc=rc, out=out, err=err)


def _error_line(result: SimpleNamespace, *, after_fit: bool = False) -> str:
    """The error line of a failed command: the only stderr line, or after a fit the last one
    (following the progress lines ``bayescale: compiling and sampling ...``)."""
    assert result.rc == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    if after_fit:
        assert [line.startswith("bayescale: error: ") for line in lines].count(True) == 1
    else:
        assert len(lines) == 1, result.err
    assert lines[-1].startswith("bayescale: error: "), lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory) -> Path:
    """63 synthetic runs (seed 3) of the Besiroglu et al. 2024 law, written as CSV."""
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    chinchilla_synthetic(seed=3, as_data=False).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(synthetic_csv) -> SimpleNamespace:
    """One `bayescale fit` run with forecasts at 99% intervals, a saved fit and a forecast CSV."""
    folder = synthetic_csv.parent
    argv = ["fit", synthetic_csv, "--law", "chinchilla", *SAMPLER, "--prob", "0.99"]
    for target in TARGETS:
        argv += ["--predict", target]
    argv += ["--out", folder / "fit.nc", "--csv", folder / "forecast.csv"]
    result = run_cli(argv)
    result.fit_path, result.csv_path = folder / "fit.nc", folder / "forecast.csv"
    return result


# --------------------------------------------------------------------------------- fit
def _printed_forecast(out: str, target: str) -> tuple[float, float, float]:
    """(loss_median, loss_lower, loss_upper) printed on the forecast line of ``target``."""
    pattern = rf"^\s*{re.escape(target)}\s.*?\s(\d+\.\d+)\s+\[(\d+\.\d+), (\d+\.\d+)\]"
    match = re.search(pattern, out, flags=re.MULTILINE)
    assert match, f"no forecast line for {target} in:\n{out}"
    return tuple(float(g) for g in match.groups())


def test_fit_prints_summary_verdict_and_timing(fitted):
    assert fitted.rc == 0, fitted.err
    assert "Convergence: OK" in fitted.out
    # the gate reads the sampled coordinates, which the table (E, A, B, ...) does not show
    assert (
        "tail " in fitted.out and " over the sampled log_L_ref, frac, split, alpha, " in fitted.out
    )
    assert re.search(r"Timing: compile \d+\.\d s, sampling \d+\.\d+ s", fitted.out)
    for name in ("E", "A", "B", "alpha", "beta", "sigma"):
        assert re.search(rf"^{name}\s+\d", fitted.out, flags=re.MULTILINE), name
    assert "compiling and sampling" in fitted.err
    assert fitted.fit_path.is_file()


@pytest.mark.parametrize("target", list(TARGETS))
def test_fit_forecast_brackets_the_true_law(fitted, target):
    """The printed 99% interval of the mean loss contains the generating law's value.

    Inside the data the posterior is tight (the interval must be < 2% wide); at 3x and 40x
    beyond it widens but must stay informative (< 10% wide).
    """
    median, lower, upper = _printed_forecast(fitted.out, target)
    truth = _true_loss(*TARGETS[target])
    assert lower <= truth <= upper, (target, truth, lower, upper)
    assert lower <= median <= upper
    assert (upper - lower) / truth < (0.02 if target == "N=1e9,D=2e10" else 0.10)
    # The CSV holds the same numbers unrounded.
    table = pd.read_csv(fitted.csv_path).set_index("target")
    assert table.loc[target, "loss_median"] == pytest.approx(median, abs=5e-5)
    assert table.loc[target, "N"] * table.loc[target, "D"] * 6 == pytest.approx(
        table.loc[target, "C"]
    )


def test_fit_warns_in_one_line_when_extrapolating(fitted, synthetic_csv):
    lines = [line for line in fitted.err.splitlines() if "extrapolating" in line]
    assert len(lines) == 1  # only N=1T,D=20T lies more than 10x beyond the data
    runs = pd.read_csv(synthetic_csv)
    factor = max(1e12 / runs["N"].max(), 2e13 / runs["D"].max())
    assert lines[0].startswith(f"bayescale: warning: extrapolating {factor:.0f}x beyond")


# --------------------------------------------------------------------------------- optimal
def test_optimal_on_saved_fit_matches_the_true_optimum(fitted):
    """N* at the Chinchilla budget: the 90% interval holds the law's closed-form optimum."""
    result = run_cli(["optimal", fitted.fit_path, "--compute", "5.88e23", "--compute", "1e21"])
    assert result.rc == 0, result.err
    assert "Compute-optimal allocation" in result.out
    rows = {}
    for line in result.out.splitlines():
        match = re.match(r"^\s*(5\.88e\+23|1e\+21)\s+(\S+)\s+\[(\S+), (\S+)\]", line)
        if match:
            rows[match.group(1)] = [_from_human(g) for g in match.groups()[1:]]
    assert set(rows) == {"5.88e+23", "1e+21"}, result.out
    for budget, (median, lower, upper) in rows.items():
        truth = compute_optimal_N(float(budget), BESIROGLU_2024)
        assert lower <= truth <= upper, (budget, truth, lower, upper)
        assert lower <= median <= upper


def _from_human(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def test_optimal_fits_a_csv_first(synthetic_csv):
    result = run_cli(["optimal", synthetic_csv, "--compute", "1e21", *SAMPLER])
    assert result.rc == 0, result.err
    assert "Convergence: OK" in result.out and "compiling and sampling" in result.err
    assert "Posterior summary (90% central intervals; published parametrisation)" in result.out
    line = next(row for row in result.out.splitlines() if row.lstrip().startswith("1e+21"))
    median, lower, upper = (_from_human(g) for g in re.findall(r"[\d.]+B", line)[:3])
    assert lower <= compute_optimal_N(1e21, BESIROGLU_2024) <= upper
    assert lower <= median <= upper


def test_fit_with_curves_fits_each_curve(tmp_path):
    """Two curves from different seeds: one fit (and one saved file) per curve."""
    frames = [chinchilla_synthetic(seed=s, as_data=False).assign(run_set=f"s{s}") for s in (1, 2)]
    path = tmp_path / "curves.csv"
    pd.concat(frames).to_csv(path, index=False)
    argv = ["fit", path, "--curve", "run_set", *SAMPLER, "--predict", "N=1e9,D=2e10"]
    result = run_cli([*argv, "--out", tmp_path / "fit.nc", "--csv", tmp_path / "f.csv"])
    assert result.rc == 0, result.err
    assert "=== curve 's1' ===" in result.out and "=== curve 's2' ===" in result.out
    assert bs.load(tmp_path / "fit-s1.nc").converged and bs.load(tmp_path / "fit-s2.nc").converged
    table = pd.read_csv(tmp_path / "f.csv")
    assert list(table["curve"]) == ["s1", "s2"]
    truth = _true_loss(1e9, 2e10)
    assert np.all((table["loss_lower"] <= truth) & (truth <= table["loss_upper"]))


def test_fit_with_curves_refuses_two_curves_saved_to_one_file(tmp_path):
    """Curve ids 'run a' and 'run/a' both became fit-run_a.nc: the second fit overwrote
    the first, silently. Now a usage error before any fit."""
    frames = [
        chinchilla_synthetic(seed=1, as_data=False).assign(run_set=name)
        for name in ("run a", "run/a")
    ]
    path = tmp_path / "curves.csv"
    pd.concat(frames).to_csv(path, index=False)
    rc, out, err = call_cli(["fit", path, "--curve", "run_set", "--out", tmp_path / "fit.nc"])
    assert rc == 2 and "=== curve" not in out
    assert err.strip() == (
        f"bayescale: error: --out {tmp_path / 'fit.nc'}: curves 'run a' and 'run/a' would both "
        f"be saved to {tmp_path / 'fit-run_a.nc'}; rename one of them in the curve column"
    )
    assert not list(tmp_path.glob("*.nc"))


def test_optimal_rejects_a_law_other_than_the_saved_one(fitted):
    line = _error_line(
        run_cli(["optimal", fitted.fit_path, "--compute", "1e22", "--law", "power_n"])
    )
    assert "'chinchilla'" in line and "'power_n'" in line


def _badly_unconverged(path: Path) -> bs.Fit:
    good = bs.load(path)
    bad = Convergence(
        max_rhat=1.3,
        min_ess_bulk=12.0,
        min_ess_tail=9.0,
        divergences=0,
        num_draws=good.num_chains * good.num_draws,
        min_bfmi=0.9,
    )
    assert bad.fails_badly
    return dataclasses.replace(good, convergence=bad)


def test_unconverged_fit_needs_force(fitted, synthetic_csv, monkeypatch):
    bad = _badly_unconverged(fitted.fit_path)
    monkeypatch.setattr(bs, "fit", lambda *args, **kwargs: bad)
    argv = ["fit", synthetic_csv, "--predict", "N=70B,D=1.4T"]
    refused = run_cli(argv)
    line = _error_line(refused, after_fit=True)
    assert "--force" in line and "R-hat 1.300" in line
    assert "NOT CONVERGED" in refused.out  # the loud banner comes before the refusal
    forced = run_cli([*argv, "--force"])
    assert forced.rc == 0, forced.err
    median, _, _ = _printed_forecast(forced.out, "N=70B,D=1.4T")
    assert median > 0
    warned = [line for line in forced.err.splitlines() if "did not converge" in line]
    assert len(warned) == 1 and warned[0].startswith("bayescale: warning: ")

    # chains that disagree: the banner says the data may not identify the parameter
    split = dataclasses.replace(
        bad,
        convergence=dataclasses.replace(
            bad.convergence,
            worst_rhat="alpha",
            disagreement="chains disagree on alpha: means 0.1, 0.5, within-chain sd 0.01",
        ),
    )
    monkeypatch.setattr(bs, "fit", lambda *args, **kwargs: split)
    refused = run_cli(argv)
    assert refused.rc == 2
    assert "R-hat 1.300 > 1.01 (chains disagree on alpha: means 0.1, 0.5" in refused.out
    assert "The chains disagree on alpha: the data" in refused.out
    line = _error_line(refused, after_fit=True)
    assert "may not identify alpha" in line and "--force" in line
    assert "more --num-warmup" not in refused.out + line

    # trajectories cut at the tree-depth cap: deeper trees are named as the remedy, beside
    # the disagreement when the chains also disagree
    for base, identify in ((bad, False), (split, True)):
        deep = dataclasses.replace(
            base,
            convergence=dataclasses.replace(base.convergence, depth_hits=0.96, max_tree_depth=8),
        )
        monkeypatch.setattr(bs, "fit", lambda *args, _deep=deep, **kwargs: _deep)
        refused = run_cli(argv)
        assert "96% of draws hit the tree-depth cap (max_tree_depth=8" in refused.out
        assert "re-run with --max-tree-depth 10 (each level doubles the cost" in refused.out
        assert ("The chains disagree on alpha" in refused.out) == identify
        assert "more --num-warmup" not in refused.out
        line = _error_line(refused, after_fit=True)
        assert "re-run with --max-tree-depth 10" in line and "--force" in line
        assert ("may not identify alpha" in line) == identify

    monkeypatch.setattr(bs, "load", lambda path: bad)
    line = _error_line(run_cli(["optimal", fitted.fit_path, "--compute", "1e22"]))
    assert "--force" in line
    assert run_cli(["optimal", fitted.fit_path, "--compute", "1e22", "--force"]).rc == 0


@pytest.mark.parametrize("command", ["fit", "fit-many"])
def test_sampler_options_reach_the_fit(command, synthetic_csv, monkeypatch):
    """--max-tree-depth and --target-accept are passed on; left out, the functions' own
    defaults apply (10 and 0.9 for fit, 5 and 0.9 for fit-many)."""
    seen: list[dict] = []

    def stop(*args, **kwargs):
        seen.append(kwargs)
        raise bs.DataError("stopped after the call")

    monkeypatch.setattr(bs, "fit" if command == "fit" else "fit_many", stop)
    argv = [command, synthetic_csv, *(["--curve", "N"] if command == "fit-many" else [])]
    _error_line(
        run_cli([*argv, "--max-tree-depth", "7", "--target-accept", "0.95"]), after_fit=True
    )
    _error_line(run_cli(argv), after_fit=True)
    assert (seen[0]["max_tree_depth"], seen[0]["target_accept_prob"]) == (7, 0.95)
    assert "max_tree_depth" not in seen[1] and "target_accept_prob" not in seen[1]
    assert run_cli([*argv, "--target-accept", "1.5"]).rc == 2  # argparse: not in (0, 1)


@pytest.mark.parametrize("command", ["fit", "fit-many"])
def test_model_options_reach_the_fit(command, tmp_path, monkeypatch):
    """--likelihood (all six of bayescale.model), --trials, --df and --dtype are passed on;
    left out: lognormal, df learnt (None), no trials, float64."""
    from bayescale.model import LIKELIHOODS

    assert cli._LIKELIHOODS == LIKELIHOODS  # the parser offers every likelihood of the model
    seen: list[dict] = []

    def stop(*args, **kwargs):
        seen.append(kwargs)
        raise bs.DataError("stopped after the call")

    monkeypatch.setattr(bs, "fit" if command == "fit" else "fit_many", stop)
    path = tmp_path / "evals.csv"  # accuracies, which every likelihood takes
    C = np.geomspace(1e19, 1e23, 8)
    acc = [0.25, 0.26, 0.3, 0.41, 0.58, 0.72, 0.8, 0.84]
    pd.DataFrame({"bench": ["arc"] * 8, "C": C, "acc": acc}).to_csv(path, index=False)
    argv = [command, path, "--law", "sigmoid_c", "--loss", "acc"]
    argv += ["--curve", "bench"] if command == "fit-many" else []
    for extra in (
        [],
        ["--likelihood", "binomial", "--trials", "50"],
        ["--likelihood", "student_t", "--df", "4"],
        ["--likelihood", "beta"],
        ["--dtype", "float32"],
    ):
        _error_line(run_cli([*argv, *extra]), after_fit=True)
    got = [(k["likelihood"], k["trials"], k["df"], k["dtype"]) for k in seen]
    assert got == [
        ("lognormal", None, None, "float64"),
        ("binomial", 50, None, "float64"),
        ("student_t", None, 4.0, "float64"),
        ("beta", None, None, "float64"),
        ("lognormal", None, None, "float32"),
    ]


@pytest.mark.parametrize("command", ["fit", "fit-many", "optimal"])
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--likelihood", "binomial"], r"--likelihood binomial needs --trials N, the items"),
        (["--trials", "20"], r"--trials applies to --likelihood binomial only, not lognormal"),
        (["--likelihood", "laplace", "--df", "3"], r"--df applies to --likelihood student_t only"),
        (
            ["--likelihood", "beta", "--dtype", "float32"],
            r"--dtype float32 does not support --likelihood beta: .* fit accuracies in float64",
        ),
    ],
)
def test_model_options_that_do_not_fit_together_exit_2(
    command, extra, expected, synthetic_csv, monkeypatch
):
    """Caught before the data are read or anything compiles: one error line, exit 2."""

    def read(*args, **kwargs):
        raise bs.DataError("the CSV was read")

    monkeypatch.setattr(cli, "_read_data", read)  # fit, optimal
    monkeypatch.setattr(bs, "fit_many", read)  # fit-many reads inside fit_many
    argv = [command, synthetic_csv, *extra]
    argv += {"fit-many": ["--curve", "N"], "optimal": ["--compute", "1e22"]}.get(command, [])
    line = _error_line(run_cli(argv))
    assert re.search(expected, line), line
    # the same command with options that fit together goes on to read the CSV
    fine = [a for a in argv if a not in ("--dtype", "float32", "--df", "3", "--trials", "20")]
    fine += ["--trials", "20"] if "binomial" in fine else []
    assert "the CSV was read" in _error_line(run_cli(fine))


def test_optimal_refuses_a_law_without_n_and_d_before_fitting(synthetic_csv, monkeypatch):
    """`optimal --law sigmoid_c` on a CSV fitted the whole law, then refused to plan."""

    def read(*args, **kwargs):
        raise bs.DataError("the CSV was read")

    monkeypatch.setattr(cli, "_read_data", read)
    line = _error_line(
        run_cli(["optimal", synthetic_csv, "--compute", "1e22", "--law", "sigmoid_c"])
    )
    assert "compute-optimal planning needs a law of N and D" in line, line


def test_accuracy_forecasts_are_called_accuracies(tmp_path, fake_sampler):
    """A sigmoid fitted to accuracies with the binomial likelihood: the forecast header names
    the accuracy and the law's one input (it said "the loss ... at N, D" for every law)."""
    C = np.geomspace(1e19, 1e23, 8)
    acc = [0.25, 0.26, 0.3, 0.41, 0.58, 0.72, 0.8, 0.84]
    table = pd.DataFrame({"bench": ["arc"] * 8 + ["mmlu"] * 8, "C": [*C, *C], "acc": acc * 2})
    table.to_csv(tmp_path / "evals.csv", index=False)
    argv = ["fit-many", tmp_path / "evals.csv", "--curve", "bench", "--law", "sigmoid_c"]
    argv += ["--loss", "acc", "--likelihood", "binomial", "--trials", "100"]
    result = run_cli([*argv, *fake_sampler, "--predict", "C=1e24", "--force"])
    assert result.rc == 0, result.err
    assert "Forecast of the accuracy (90% central intervals). loss_*: the law's mean accuracy " in (
        result.out
    )
    assert bs.laws.get("power_n").quantity("beta") == "proportion"  # error rates, say
    assert "(expected accuracy of a run at C)" in result.out
    spec = bs.build_model("sigmoid_c", likelihood="binomial", trials=100)
    assert cli._likelihood_text(spec) == "binomial likelihood (trials=100)"
    assert spec.law.quantity("lognormal") == "accuracy"
    t = bs.build_model("power_n", likelihood="student_t", df=None)
    assert cli._likelihood_text(t) == "student_t likelihood (df learnt)"
    assert t.law.quantity("student_t") == "loss"
    assert cli._likelihood_text(bs.build_model("power_n", likelihood="student_t", df=4)) == (
        "student_t likelihood (df=4)"
    )


def test_fit_many_share_refuses_the_binomial_likelihood_in_cli_words(synthetic_csv):
    argv = ["fit-many", synthetic_csv, "--curve", "N", "--share", "alpha", "--law", "power_n"]
    line = _error_line(run_cli([*argv, "--likelihood", "binomial", "--trials", "100"]))
    assert "--share does not take --likelihood binomial yet: drop --share" in line, line


@pytest.mark.parametrize(
    "extra", [["--trials", "0"], ["--df", "0"], ["--df", "inf"], ["--dtype", "float16"]]
)
def test_model_option_values_are_checked_by_the_parser(extra, synthetic_csv):
    result = run_cli(["fit", synthetic_csv, "--likelihood", "student_t", *extra])
    assert result.rc == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("bayescale: error: argument --") and "fit --help" in line, line


def test_fit_with_curves_forecasts_the_others_when_one_is_refused(fitted, tmp_path, monkeypatch):
    """A curve whose fit fails badly is refused, the other curves are still fitted and
    forecast (and written to --csv); the command then exits 2 naming the refused curve."""
    good, bad = bs.load(fitted.fit_path), _badly_unconverged(fitted.fit_path)
    fits = iter([bad, good])
    monkeypatch.setattr(bs, "fit", lambda *args, **kwargs: next(fits))
    frames = [chinchilla_synthetic(seed=s, as_data=False).assign(run_set=f"s{s}") for s in (1, 2)]
    path = tmp_path / "curves.csv"
    pd.concat(frames).to_csv(path, index=False)
    argv = ["fit", path, "--curve", "run_set", "--predict", "N=1e9,D=2e10"]
    result = run_cli([*argv, "--csv", tmp_path / "f.csv"])
    line = _error_line(result, after_fit=True)
    assert "refused to forecast 1 of 2 curves ('s1')" in line and "--force" in line
    assert "no forecasts for curve 's1'" in result.out
    assert list(pd.read_csv(tmp_path / "f.csv")["curve"]) == ["s2"]


def test_optimal_rejects_a_saved_batch(fitted, monkeypatch):
    """A file written by fit-many holds many curves: one line, exit 2 (not a traceback)."""

    class Batch(bs.BatchFit):  # what bs.load returns for a batch file, without fitting one
        def __init__(self):
            pass

        def __len__(self):
            return 3

    monkeypatch.setattr(bs, "load", lambda path: Batch())
    line = _error_line(run_cli(["optimal", fitted.fit_path, "--compute", "1e22"]))
    assert "holds a batch of 3 curves" in line


def test_retry_is_described_from_its_settings():
    """The report says what the retry ran: smaller steps after divergences, longer chains
    with an unshrunk mass matrix after slow mixing (not always 'target 0.99')."""
    from bayescale.infer.nuts import SamplerConfig

    slow = SimpleNamespace(
        config=SamplerConfig(num_warmup=1000, num_samples=2000, regularize_mass=False)
    )
    assert cli._retry_text(slow) == (
        "after one automatic retry (1000 warm-up + 2000 draws per chain, "
        "target_accept_prob=0.9, unshrunk mass matrix)"
    )
    steps = SimpleNamespace(config=SamplerConfig(target_accept_prob=0.99))
    assert cli._retry_text(steps).endswith("draws per chain, target_accept_prob=0.99)")


# --------------------------------------------------------------------------------- demo, laws
def test_demo_quick_writes_figures_and_tables(tmp_path):
    out = tmp_path / "demo"
    result = run_cli(["demo", "--quick", "--out", out])
    assert result.rc == 0, result.err
    assert "SYNTHETIC" in result.out
    for name in ("fit.png", "frontier.png", "fit.nc", "forecast.csv", "allocation.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    forecast = pd.read_csv(out / "forecast.csv").set_index("model")
    assert list(forecast.index) == ["GPT-3", "Gopher", "Chinchilla", "Llama 2 70B"]
    truth = _true_loss(forecast["N"].to_numpy(), forecast["D"].to_numpy())
    np.testing.assert_allclose(forecast["true_loss"], truth, rtol=1e-12)
    # 90% intervals, up to 13x beyond the data: each must hold the truth (seed 0 is fixed).
    assert np.all((forecast["loss_lower"] <= truth) & (truth <= forecast["loss_upper"]))
    allocation = pd.read_csv(out / "allocation.csv")
    np.testing.assert_allclose(
        allocation["true_N_opt"], compute_optimal_N(allocation["compute"], BESIROGLU_2024)
    )
    assert bs.load(out / "fit.nc").converged


def test_laws_lists_chinchilla_with_formula_and_citation():
    result = run_cli(["laws"])
    assert result.rc == 0
    line = next(row for row in result.out.splitlines() if row.startswith("chinchilla "))
    assert "L = E + A / N^alpha + B / D^beta" in line and "arXiv:2203.15556" in line
    listed = {row.split()[0] for row in result.out.splitlines()[1:]}
    assert listed == set(bs.laws.available())


# --------------------------------------------------------------------------------- bad input
@pytest.fixture
def bad_inputs(tmp_path, synthetic_csv) -> dict[str, Path]:
    good = pd.read_csv(synthetic_csv)
    nan = good.copy()
    nan.loc[5, "loss"] = np.nan
    (tmp_path / "nan.csv").write_text(nan.to_csv(index=False))
    (tmp_path / "empty.csv").write_text("")
    dup = good.iloc[[0, 9, 18, 0]]  # 4 rows, one repeated: too few for 6 parameters
    (tmp_path / "dup.csv").write_text(dup.to_csv(index=False))
    (tmp_path / "five.csv").write_text(good.iloc[[0, 9, 18, 27, 36]].to_csv(index=False))
    return {p.stem: p for p in tmp_path.glob("*.csv")} | {"good": synthetic_csv}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "{nan}"], r"column 'loss', row 5 \(CSV line 7\): value nan is not a finite"),
        (["fit", "{good}", "--law", "chinchila"], r"unknown law 'chinchila'; known laws: "),
        (["fit", "{good}", "--loss", "final_loss"], r"no column 'final_loss' for loss"),
        (["fit", "{empty}"], r"has no data rows"),
        (["fit", "{good}", "--predict", "N=-70e9,D=1.4T"], r"N value '-70e9' must be > 0"),
        (["fit", "{good}", "--predict", "N=70B"], r"'chinchilla' needs N, D to predict; missing D"),
        (["fit", "{good}", "--likelihood", "laplace", "--N", "C"], r"column 'C' is used for both"),
        (["fit", "{good}", "--predict", "P=70B"], r"expected comma-separated N=\.\.\."),
        (["fit", "{good}", "--likelihood", "normal", "--law", "nope"], r"unknown law 'nope'"),
        (["fit", "{missing}"], r"no such file: .*missing\.csv"),
        # student_t learns its degrees of freedom: 5 parameters, caught before sampling
        (
            ["fit", "{five}", "--law", "power_n", "--likelihood", "student_t"],
            r"law 'power_n' has 5 parameters to fit but the data has 5 points",
        ),
        (["optimal", "{missing_nc}", "--compute", "1e22"], r"no such file"),
        (["optimal", "{good}", "--compute", "0"], r"--compute '0': value '0' must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, bad_inputs, tmp_path):
    paths = {**bad_inputs, "missing": tmp_path / "missing.csv", "missing_nc": tmp_path / "x.nc"}
    result = run_cli([a.format(**paths) for a in argv])
    line = _error_line(result)
    assert re.search(expected, line), line


def test_data_warnings_are_one_line_each(bad_inputs):
    result = run_cli(["fit", bad_inputs["dup"]])
    warning, error = result.err.strip().splitlines()
    assert warning.startswith("bayescale: warning: 1 duplicated row")
    assert error.startswith("bayescale: error: too few points")
    assert result.rc == 2


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fit"],
        ["fit", "x.csv", "--prob", "1.5"],
        ["fit", "x.csv", "--likelihood", "cauchy"],
        ["fit", "x.csv", "--seed", "99999999999999999999"],  # JAX seeds are C longs
        ["demo", "--seed", "-1"],
        ["fit-many", "x.csv", "--bogus", "3"],
    ],
)
def test_usage_errors_exit_2(argv):
    """One line, as for bad data (argparse printed its whole usage block first: 12 lines),
    naming the help of the sub-command that was given."""
    result = run_cli(argv)
    assert result.rc == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("bayescale: error: ")
    assert line.endswith(f"(see `bayescale{' ' + argv[0] if argv else ''} --help`)"), line


def test_help_documents_parallel_chains():
    result = run_cli(["--help"])
    assert result.rc == 0
    assert "xla_force_host_platform_device_count" in result.out
    assert "min(4, CPU cores)" in result.out


def test_configure_xla_sets_the_device_count_only_when_absent():
    env: dict[str, str] = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    cli.configure_xla(env)
    count = min(4, os.cpu_count() or 1)
    assert env["XLA_FLAGS"] == (
        f"--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count={count}"
    )
    mine = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    cli.configure_xla(mine)
    assert mine == {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


# --------------------------------------------------------------------------------- subprocess
def _console_script() -> list[str]:
    script = shutil.which("bayescale", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bayescale.cli"]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_console_script_bad_csv_exit_2_one_line(bad_inputs):
    proc = subprocess.run(
        [*_console_script(), "fit", str(bad_inputs["nan"]), "--predict", "N=70B,D=1.4T"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "bayescale: error: column 'loss', row 5 (CSV line 7): value nan is not a finite number"
    ]


def test_chains_get_parallel_devices_although_the_package_imports_jax():
    """`import bayescale.cli` imports JAX, but XLA reads the flag at backend start-up."""
    code = (
        "import bayescale.cli as c; c.configure_xla(); import jax; print(jax.local_device_count())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == min(4, os.cpu_count() or 1)


def test_fit_many_reports_every_curve_and_isolates_a_bad_one(
    tmp_path, capsys, monkeypatch, with_rhat
):
    """fit-many prints every curve's row, reports the invalid one, and forecasts the fitted
    curves at --predict (printed and written to --csv); a curve whose fit fails the gate
    badly is refused like `fit --curve` does: the others are forecast, then exit 2."""
    rng = np.random.default_rng(0)
    truth = {"task_0": (1.7, 400.0, 0.34), "task_1": (2.0, 300.0, 0.30)}
    rows = []
    for task, (E, A, alpha) in truth.items():
        for N in np.logspace(7, 10, 15):
            rows.append((task, N, (E + A * N**-alpha) * np.exp(0.01 * rng.standard_normal())))
    rows += [("bad", 1e8, float("nan")), ("bad", 1e9, 3.0), ("bad", 1e10, 2.9)]
    # exponent 0.05 over two decades: the data leave E free (tests/test_backtest.py)
    for N in np.logspace(7, 9, 11):
        rows.append(("flat", N, (1.5 + 20 * N**-0.05) * np.exp(0.01 * rng.standard_normal())))
    path = tmp_path / "curves.csv"
    pd.DataFrame(rows, columns=["task", "N", "loss"]).to_csv(path, index=False)
    out, csv = tmp_path / "batch.nc", tmp_path / "forecast.csv"
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", "--quiet"]
    argv += ["--predict", "N=1e11", "--predict", "N=3e11", "--prob", "0.99"]
    result = run_cli([*argv, "--out", out, "--csv", csv])
    text = result.out
    assert result.rc == 0, result.err
    assert "invalid_input" in text and "status: ok 3, invalid_input 1" in text
    assert "irreducible loss of 1 curve(s) (flat);" in text
    assert "Forecast of the loss (99% central intervals)" in text
    # one line for both targets, naming the curves and the farthest target (3e11 / 1e9)
    (far,) = [line for line in result.err.splitlines() if "extrapolating" in line]
    assert far.startswith("bayescale: warning: extrapolating more than 10x beyond the fitted")
    assert "of 3 curve(s) ('task_0', 'task_1', 'flat'), up to 300x (curve 'flat' at N=3e+11)" in far
    batch = bs.load(out)
    s = batch.summary(prob=0.99)
    for task, (E, _, alpha) in truth.items():
        assert s.loc[task, "alpha_lower"] <= alpha <= s.loc[task, "alpha_upper"], task
        assert s.loc[task, "E_lower"] <= E <= s.loc[task, "E_upper"], task
    table = pd.read_csv(csv)
    assert list(zip(table["curve"], table["target"], strict=True)) == [
        (c, t) for c in ("task_0", "task_1", "flat") for t in ("N=1e11", "N=3e11")
    ]  # curve by curve in the file's order; the invalid curve has no rows
    assert not table["refused"].any() and (table["status"] == "ok").all()
    for task, (E, A, alpha) in truth.items():
        rows = table[table["curve"] == task]
        mean = E + A * rows["N"] ** -alpha
        assert ((rows["loss_lower"] <= mean) & (mean <= rows["loss_upper"])).all(), rows

    monkeypatch.setattr(bs, "fit_many", lambda *a, **k: with_rhat(batch, {0: 1.3}))
    refused = run_cli([*argv, "--csv", csv])
    line = _error_line(refused, after_fit=True)  # after the extrapolation warnings
    assert "refused to forecast 1 of 4 curves ('task_0')" in line and "--force" in line
    assert "R-hat 1.300 > 1.01" in line
    assert sorted(set(pd.read_csv(csv)["curve"])) == ["flat", "task_1"]
    forced = run_cli([*argv, "--csv", csv, "--force"])
    assert forced.rc == 0, forced.err
    assert "Warning: the fits of 1 forecast curve(s) miss the convergence policy" in forced.out
    assert list(pd.read_csv(csv)["curve"]) == list(table["curve"])


def test_fit_many_share_pools_the_exponent_and_prints_the_population(tmp_path, capsys):
    """`--share alpha` fits the curves as one hierarchical model: the saved result is a
    PooledBatchFit whose per-curve exponents cover the truth (alpha = 0.30-0.36) and whose
    population median covers their centre; the population table is printed."""
    rng = np.random.default_rng(1)
    truth = {"a": (1.7, 400.0, 0.30), "b": (2.0, 300.0, 0.33), "c": (1.9, 350.0, 0.36)}
    rows = [
        (task, N, (E + A * N**-alpha) * np.exp(0.01 * rng.standard_normal()))
        for task, (E, A, alpha) in truth.items()
        for N in np.logspace(7, 10, 12)
    ]
    path = tmp_path / "family.csv"
    pd.DataFrame(rows, columns=["task", "N", "loss"]).to_csv(path, index=False)
    out = tmp_path / "pooled.nc"
    rc = cli.main(
        ["fit-many", str(path), "--curve", "task", "--law", "power_n", "--share", "alpha",
         "--quiet", "--prob", "0.99", "--num-warmup", "400", "--num-samples", "500",
         "--out", str(out)]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert "Population of the shared parameters (99% intervals):" in text
    assert any(line.split()[:1] == ["alpha"] for line in text.splitlines())
    pooled = bs.load(out)
    assert isinstance(pooled, bs.PooledBatchFit)
    s = pooled.summary(prob=0.99)
    for task, (_, _, alpha) in truth.items():
        assert s.loc[task, "alpha_lower"] <= alpha <= s.loc[task, "alpha_upper"], task
    pop = pooled.population_summary(prob=0.99).loc["alpha"]
    assert pop["mu_lower"] <= 0.33 <= pop["mu_upper"], pop


def test_fit_many_share_rejects_unknown_parameters(tmp_path, capsys):
    path = tmp_path / "c.csv"
    pd.DataFrame({"task": ["a"] * 4 + ["b"] * 4, "N": [1e7, 1e8, 1e9, 1e10] * 2,
                  "loss": [3.0, 2.6, 2.3, 2.1] * 2}).to_csv(path, index=False)  # fmt: skip
    rc = cli.main(["fit-many", str(path), "--curve", "task", "--share", "gamma", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "gamma" in err and "alpha" in err


@pytest.fixture
def fake_sampler(fake_nuts):
    """bayescale.fit_many without NUTS (conftest's fake_nuts: uniform draws in (0.1, 0.5) of
    every site; the statuses are then some failure, never ``invalid_input``), so that the
    command's input handling and output run in milliseconds; returns its CLI options."""
    return ["--quiet", "--num-chains", "2", "--num-samples", "20"]


def _power_curves(loss: dict[str, list[float]]) -> pd.DataFrame:
    """Long table of curves ``task`` -> losses at N = 1e7, 1e8, ... (one point per loss)."""
    rows = [(t, 10.0 ** (7 + i), v) for t, values in loss.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["task", "N", "loss"])


GOOD = [3.1, 2.8, 2.6, 2.45, 2.35, 2.3]


def test_fit_many_reads_the_csv_with_sep_and_the_package_checks(tmp_path, fake_sampler):
    """fit-many passes --sep on and reads the file with bayescale.read_csv: a semicolon file
    fits; a bad value makes only its curve invalid_input; a wrong delimiter or a misspelt
    column is one error line from the package's CSV checks (naming the fix)."""
    path = tmp_path / "semi.csv"
    table = _power_curves({"a": GOOD, "b": GOOD, "bad": [3.1, float("nan"), *GOOD[2:]]})
    table.to_csv(path, sep=";", index=False)
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", *fake_sampler]
    result = run_cli([*argv, "--sep", ";"])
    assert result.rc == 0, result.err
    rows = {line.split()[0]: line for line in result.out.splitlines() if line[:2] in ("a ", "b ")}
    assert set(rows) == {"a", "b"} and all("invalid_input" not in r for r in rows.values())
    bad = next(line for line in result.out.splitlines() if line.startswith("bad "))
    # rows and CSV lines of the whole file: 'bad' is the third curve of six runs each
    nan_at = "column 'loss', row 13 (CSV line 15): value nan is not a finite"
    assert "invalid_input" in bad and nan_at in bad
    assert "invalid_input 1" in result.out
    line = _error_line(run_cli(argv))
    assert "the delimiter is probably ';': pass sep=';'" in line
    argv[3] = "tsak"
    line = _error_line(run_cli([*argv, "--sep", ";"]))
    assert "no column 'tsak' for curve" in line and "did you mean 'task'?" in line


def test_fit_many_reading_flags_and_a_missing_curve_id(tmp_path, fake_sampler):
    """--parse-suffixes and --decimal reach fit-many's reads of the file (the first, and the
    one curve by curve after a bad value); a row without a curve id belongs to no curve, so
    the file is refused in one line naming it (it was a TypeError traceback)."""
    table = _power_curves({"a": GOOD, "b": GOOD, "bad": [3.1, -1.0, *GOOD[2:]]})
    table["N"] = [f"{n / 1e6:g}M" for n in table["N"]]
    table["loss"] = [f"{v:.2f}".replace(".", ",") for v in table["loss"]]
    path = tmp_path / "euro.csv"
    table.to_csv(path, sep=";", index=False)
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", "--sep", ";", *fake_sampler]
    line = _error_line(run_cli(argv))
    assert (
        'value \'3,10\' uses "," as the decimal mark; pass decimal="," (CLI: --decimal ,)' in line
    )
    line = _error_line(run_cli([*argv, "--decimal", ","]))
    assert (
        "value '10M' has a magnitude suffix; pass parse_suffixes=True (CLI: --parse-suffix" in line
    )
    result = run_cli([*argv, "--parse-suffixes", "--decimal", ","])
    assert result.rc == 0, result.err
    rows = {line.split()[0]: line for line in result.out.splitlines() if line[:2] in ("a ", "b ")}
    assert set(rows) == {"a", "b"} and all("invalid_input" not in r for r in rows.values())
    bad = next(line for line in result.out.splitlines() if line.startswith("bad "))
    assert "column 'loss', row 13 (CSV line 15): value -1.0 must be > 0" in bad

    table = _power_curves({"a": GOOD, "b": GOOD})
    table.loc[7, "task"] = None
    table.to_csv(path, index=False)
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", *fake_sampler]
    line = _error_line(run_cli(argv))
    assert "column 'task', row 7 (CSV line 9): value nan is a missing curve id" in line


def test_column_and_reading_flags_become_read_csv_keywords():
    """'' ignores an input column (an alias would otherwise claim it); the pandas reading
    flags pass on only when given; --predict takes U for the datablations law."""
    args = cli.build_parser().parse_args(
        ["fit", "x.csv", "--D", "", "--U", "uniq", "--thousands", ",", "--encoding", "latin-1"]
    )
    assert cli._read_options(args, ("curve",)) == {
        "D": None, "U": "uniq", "thousands": ",", "encoding": "latin-1",
    }  # fmt: skip
    assert cli._read_options(cli.build_parser().parse_args(["fit", "x.csv"])) == {}
    assert cli._parse_target("n=70B,d=1.4T,u=100B") == {"N": 7e10, "D": 1.4e12, "U": 1e11}
    cli._check_targets("datablations", [("N=70B,D=1.4T,U=100B", {"N": 1, "D": 1, "U": 1})])
    with pytest.raises(ValueError, match="needs N, D, U to predict; missing U"):
        cli._check_targets("datablations", [("N=70B,D=1.4T", {"N": 1, "D": 1})])


def test_fit_many_exits_2_when_no_curve_can_be_fitted(tmp_path, fake_sampler):
    """Every curve invalid: exit 2 with one error line giving the first reasons (not exit 0
    with a table of invalid_input rows and an empty --csv)."""
    path = tmp_path / "bad.csv"
    table = _power_curves(
        {"a": [3.1, float("nan"), *GOOD[2:]], "b": [-1.0, *GOOD[1:]], "c": GOOD[:3]}
    )
    table.to_csv(path, index=False)
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", *fake_sampler]
    result = run_cli([*argv, "--predict", "N=1e11", "--csv", tmp_path / "f.csv"])
    line = _error_line(result)  # the only stderr line: no "3 of 3 curves ..." warning
    assert "no curve could be fitted (3 with bad input)" in line
    nan_at = "curve 'a': column 'loss', row 1 (CSV line 3): value nan is not a finite number"
    assert nan_at in line
    assert "curve 'b': column 'loss', row 6 (CSV line 8): value -1.0 must be > 0" in line
    assert "curve 'c': too few points" in line
    assert "status: invalid_input 3" in result.out
    assert not (tmp_path / "f.csv").exists()


def test_fit_with_curves_skips_a_curve_it_cannot_fit(fitted, tmp_path, monkeypatch):
    """`fit --curve`: a curve with too few runs is skipped with a one-line warning, the others
    are fitted, forecast and written to --csv; then exit 2 naming it. No curve fittable:
    exit 2 too."""
    good = bs.load(fitted.fit_path)
    monkeypatch.setattr(bs, "fit", lambda *args, **kwargs: good)
    frames = [chinchilla_synthetic(seed=s, as_data=False).assign(run_set=f"s{s}") for s in (1, 2)]
    few = frames[1].iloc[[0, 9, 18, 27]].assign(run_set="few")
    path = tmp_path / "curves.csv"
    pd.concat([frames[0], few, frames[1]]).to_csv(path, index=False)
    argv = ["fit", path, "--curve", "run_set", "--predict", "N=1e9,D=2e10"]
    result = run_cli([*argv, "--csv", tmp_path / "f.csv"])
    line = _error_line(result, after_fit=True)
    assert "skipped 1 of 3 curves ('few')" in line and "too few points" in line
    warned = [w for w in result.err.splitlines() if w.startswith("bayescale: warning: skipping")]
    assert len(warned) == 1 and "curve 'few': too few points" in warned[0]
    assert list(pd.read_csv(tmp_path / "f.csv")["curve"]) == ["s1", "s2"]
    assert "=== curve 's2' ===" in result.out

    pd.concat([few, few.assign(run_set="few2")]).to_csv(path, index=False)
    line = _error_line(run_cli(argv), after_fit=True)
    assert "no curve could be fitted: skipped 2 of 2 curves ('few', 'few2')" in line
