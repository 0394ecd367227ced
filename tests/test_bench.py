"""The benchmark suite: ``bayescale bench --quick`` runs end to end, its JSON follows the schema,
its numbers agree with known truth, and the schema rejects broken documents."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bayescale import bench, check
from bayescale.datasets import BESIROGLU_2024

ROOT = Path(__file__).resolve().parents[1]


def _run(
    args: list[str], timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", **(env or {})}
    env.pop("XLA_FLAGS", None)  # the CLI picks min(4, cores) host devices itself
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory, shared):
    """One ``bayescale bench --quick`` run in a fresh process (it empties bayescale's compile
    cache to time a real compile, which must not slow down the rest of the test session)."""
    out = tmp_path_factory.mktemp("bench")
    # a persistent compilation cache of its own, which the suite must leave unused (compile
    # times of real compiles, not of reads from disk)
    cache = out / "xla-cache"
    proc = _run(
        ["-m", "bayescale.cli", "bench", "--quick", "--out", str(out), "--data-dir", str(shared)],
        env={
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        },
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not cache.exists() or not any(cache.iterdir()), sorted(cache.iterdir())[:3]
    return out, json.loads((out / "results.json").read_text()), proc


def test_quick_suite_writes_valid_results(quick):
    out, doc, proc = quick
    bench.validate(doc)
    assert doc["quick"] is True and doc["schema_version"] == bench.SCHEMA_VERSION
    env = doc["environment"]
    assert env["backend"] == "cpu" and env["dtype"] == "float64"
    assert env["git_commit"] is None or len(env["git_commit"]) == 40
    md = (out / "results.md").read_text()
    for heading in ("## Single fit", "## Hoffmann MAP fit", "## Batch NUTS", "## SBC"):
        assert heading in md
    assert md in proc.stdout  # the table is printed too
    for name in ("batch_time_per_curve.png", "batch_overhead.png", "single_fit.png", "map_fit.png"):
        assert (out / name).stat().st_size > 10_000


def test_quick_single_fit_rows(quick):
    _, doc, _ = quick
    single = doc["single_fit"]
    assert single["status"] == "ok"
    rows = {r["method"]: r for r in single["rows"]}
    assert set(rows) >= {"bayescale.fit", "numpyro.MCMC[vectorized]", "emcee"}
    assert all(r["status"] == "ok" for r in rows.values())
    base = rows["bayescale.fit"]
    assert base["ess_per_s_ratio"] == pytest.approx(1.0) and base["compile_s"] > 0
    for r in rows.values():  # the ratio is bayescale's ESS/s over the row's, as documented
        assert r["ess_per_s"] == pytest.approx(r["min_ess"] / r["sampling_s"])
        assert r["ess_per_s_ratio"] == pytest.approx(base["ess_per_s"] / r["ess_per_s"])
    # emcee ran the documented number of log-density evaluations
    e = single["emcee"]
    assert rows["emcee"]["log_density_evaluations"] == e["walkers"] * (e["burn"] + e["steps"])


def test_quick_map_fit_reaches_epochs_optimum(quick):
    """Every method reaches the same optimum, and it is Besiroglu et al.'s (2024) refit: E
    and the exponents within 1% of the published E = 1.8172, alpha = 0.3478, beta = 0.3658, and
    an objective no worse than the published constants give."""
    _, doc, _ = quick
    section = doc["map_fit"]
    assert section["status"] == "ok" and section["same_optimum"] is True
    assert section["starts"] == 4500
    for r in section["rows"]:
        assert r["value"] <= section["epoch_published_objective"]
        for k in ("E", "alpha", "beta"):
            assert r["params"][k] == pytest.approx(BESIROGLU_2024[k], rel=0.01)
    assert section["rows"][0]["speedup_vs_scipy"] == 1.0


def test_quick_batch_counts_gradient_evaluations(quick):
    """Each NUTS iteration takes between 1 and 2**5 - 1 leapfrog steps (tree depth 5), so the
    batched gradient evaluations per chunk lie in chains x iterations x [1, 31]."""
    _, doc, _ = quick
    section = doc["batch"]
    st = section["settings"]
    assert section["status"] == "ok"
    assert [r["K"] for r in section["rows"]] == doc["settings"]["batch"]["sizes"]
    iterations = st["num_chains"] * (st["num_warmup"] + st["num_samples"])
    for r in section["rows"]:
        chunks = r["chunks"]
        assert sum(c["curves"] for c in chunks) == r["K"] and r["num_chunks"] == len(chunks)
        full = sum(c["curves"] / c["lanes"] for c in chunks)
        assert iterations * full <= r["gradient_evaluations"] <= 31 * iterations * full
        assert r["sampler_overhead"] == pytest.approx(
            r["sampling_s"] / (r["gradient_evaluations"] * r["gradient_s"]), rel=1e-9
        )
        assert 0 < r["lane_utilisation"] <= 1
        assert r["time_per_curve_s"] == pytest.approx(r["run_s"] / r["K"])
        loop = section["numpyro_loop"]["time_per_curve_s"]
        assert r["speedup_vs_numpyro_loop"] == pytest.approx(loop / r["time_per_curve_s"])
    assert section["numpyro_loop"]["timed_curves"] >= 1
    assert section["curve_fit_loop"]["failures"] == 0  # synthetic curves of the fitted law


def test_quick_sbc_runs_when_available(quick):
    _, doc, _ = quick
    expected = "ok" if hasattr(check, "sbc") else "skipped: not available"
    assert doc["sbc"]["status"] == expected


def test_load_results_skips_other_json(quick, tmp_path):
    out, _, _ = quick
    (tmp_path / "cpu.json").write_text((out / "results.json").read_text())
    (tmp_path / "single_cpu.json").write_text(json.dumps({"benchmark": "single_fit"}))
    docs = bench.load_results(tmp_path)
    assert [Path(d["path"]).name for d in docs] == ["cpu.json"]
    assert bench.to_markdown(docs[0]) == (out / "results.md").read_text()


def _breakages(doc):
    def drop(d, *path):
        for p in path[:-1]:
            d = d[p]
        del d[path[-1]]

    def put(d, value, *path):
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value

    yield "no environment", lambda d: drop(d, "environment")
    yield "no git commit key", lambda d: drop(d, "environment", "git_commit")
    yield "bad commit", lambda d: put(d, "abc", "environment", "git_commit")
    yield "bad dtype", lambda d: put(d, "float16", "environment", "dtype")
    yield "bad version", lambda d: put(d, 2, "schema_version")
    yield "bad status", lambda d: put(d, "fine", "batch", "status")
    yield "ok without rows", lambda d: put(d, [], "map_fit", "rows")
    yield "negative overhead", lambda d: put(d, -1.0, "batch", "rows", 0, "sampler_overhead")
    yield "K as text", lambda d: put(d, "16", "batch", "rows", 0, "K")
    yield "no ratio", lambda d: drop(d, "single_fit", "rows", 0, "ess_per_s_ratio")
    yield "ok fraction > 1", lambda d: put(d, 1.5, "batch", "rows", 0, "ok_fraction")
    yield "no sbc", lambda d: drop(d, "sbc")


def test_schema_rejects_broken_documents(quick):
    _, doc, _ = quick
    bench.validate(doc)
    for name, breakage in _breakages(doc):
        broken = copy.deepcopy(doc)
        breakage(broken)
        with pytest.raises(jsonschema.ValidationError):
            bench.validate(broken)
            pytest.fail(f"schema accepted a document with {name}")


def test_scripts_keep_their_flags():
    for script, flags in (
        ("benchmarks/bench_single.py", ["--quick", "--json", "--devices", "--data-dir"]),
        (
            "benchmarks/bench_batch.py",
            [
                "--quick",
                "--sizes",
                "--chains",
                "--loop-sample",
                "--batch-size",
                "--devices",
                "--json",
                "--markdown",
            ],
        ),
    ):
        proc = _run([script, "--help"], timeout=120)
        assert proc.returncode == 0, proc.stderr
        for flag in flags:
            assert flag in proc.stdout, (script, flag)
    proc = _run(["-m", "benchmarks", "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--quick", "--device", "--dtype", "--sizes", "--out", "--only"):
        assert flag in proc.stdout


def test_cli_bench_bad_device_is_one_line(tmp_path):
    """No GPU on the CI machine: ``--device gpu`` is a usage error (exit 2, one line)."""
    proc = _run(["-m", "bayescale.cli", "bench", "--device", "gpu", "--out", str(tmp_path)], 300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayescale: error: --device gpu")
