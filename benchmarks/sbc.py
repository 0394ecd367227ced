"""Simulation-based calibration of every shipped law, and the convergence-gate figures.

For each law of ``bayescale.laws.available()`` (or ``--laws``), runs
:func:`bayescale.check.sbc` with 200 simulations (50 with ``--quick``) on the law's default
design (:func:`bayescale.check.sbc_design`) with ``fit_many``'s default sampler settings
(4 chains x (500 + 1000) draws, tree depth 5, one automatic re-fit of the failing curves with
twice the warm-up, four times the draws thinned by 4, tree depth 8 and target 0.999, the
curves that failed without a divergence with an unshrunk mass matrix), and
reports per law:

* the chi-square p-value of the rank histogram of every test quantity (sampled parameters,
  noise scale, log-likelihood, loss at 10x the largest inputs), the smallest of them, and
  the 50% / 90% coverage of central posterior intervals;
* the convergence gate (DESIGN.md §5, issue 5 part 4): the fraction of fits with R-hat
  <= 1.01, bulk and tail ESS >= 400, no divergences and E-BFMI >= 0.3 after at most one
  automatic retry.

Targets (issue 5): every law chi-square p >= 0.001 for each quantity and 90% coverage in
[0.85, 0.95]; gate >= 99% of the fits.

Each law gets its own seed (``--seed`` + CRC32 of its name): ``power_n``, ``power_d`` and
``power_c`` (likewise the Kaplan and BNSL variants) are one model in reference-centred log
inputs, so one seed would repeat the same check. The full run adds ``sigmoid_c`` with the Beta
likelihood (``sigmoid_c/beta``). Unregistered sigmoid variants are built from their names:
``sigmoid_c_floor0.25`` (floor fixed at 0.25), ``sigmoid_c_slope`` (the slope form).

``--backtests`` adds the gate figures of the synthetic backtest fits
(:func:`bayescale.check.synthetic_backtest_curves`, 200 curves per law, cuts 1/10 and 1/100,
the fits of benchmarks/backtests.py).

Results (ranks, p-values, coverage, convergence counts, code version = bayescale version +
git commit, date, device, library versions) go to ``benchmarks/results/sbc_cpu.json``
(``--json``; ``--quick`` writes only where ``--json`` says), written after every law (``--resume`` skips laws already there); a markdown
table is printed.

Usage::

    python benchmarks/sbc.py [--quick] [--laws power_n chinchilla] [--num-simulations 200]
                             [--backtests] [--json PATH] [--resume]
    python benchmarks/sbc.py --by-noise [--laws ...]   # gate by true noise sd, no fitting
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bayescale.laws import Law

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "sbc_cpu.json"
QUICK_LAWS = ("power_n", "chinchilla")


def _meta(args, num_sims: int) -> dict:
    import jax
    import numpy as np
    import numpyro
    import pandas as pd
    import scipy

    import bayescale as bs
    from bayescale.bench import git_commit_label

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "bayescale": bs.__version__,
        "git_commit": git_commit_label(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "devices": [str(d) for d in jax.devices()],
        "num_simulations": num_sims,
        "seed": args.seed,
        "fit_kwargs": "fit_many defaults (4 chains x (500 + 1000), max_tree_depth 5, retry)",
        "retry": "2x warm-up, 4x draws thinned by 4, max_tree_depth 8, target 0.999; curves "
        "that failed without a divergence re-fitted apart with an unshrunk mass matrix",
        "quick": bool(args.quick),
    }


def _record(result) -> dict:
    """The stored part of an SBC result: no truth or design arrays (re-simulated from seed)."""
    full = result.to_dict()
    keep = (
        "law",
        "likelihood",
        "noise_scale",
        "num_simulations",
        "num_failed",
        "passed",
        "num_bins",
        "cov90_band",
        "table",
        "gate",
        "status_counts",
        "settings",
        "timing",
        "ref",
        "ranks",
        "num_rank_draws",
        "status",
        "retried",
        "messages",
    )
    out = {k: full[k] for k in keep}
    out["pit"] = {
        q: [None if v is None else round(v, 5) for v in p] for q, p in full["pit"].items()
    }
    out["diagnostics"] = {
        k: [None if v is None else round(v, 4) for v in vals]
        for k, vals in full["diagnostics"].items()
    }
    table = result.table()
    worst = table.loc[table["p_value"].idxmin()]
    out["gate_by_sigma"] = _band_records(result.gate_by("sigma"))
    out["min_p"] = float(worst["p_value"])
    out["min_p_quantity"] = str(worst["quantity"])
    out["cov50_mean"] = float(table["cov50"].mean())
    out["cov90_mean"] = float(table["cov90"].mean())
    out["cov90_min"] = float(table["cov90"].min())
    out["cov90_max"] = float(table["cov90"].max())
    out["meets_target"] = bool(
        result.num_failed == 0
        and (table["p_value"] >= 0.001).all()
        and 0.85 <= out["cov90_mean"] <= 0.95
        and table["cov90"].between(*result.coverage_band(0.9)).all()
    )
    return out


def backtest_gate(num_curves: int, seed: int) -> dict:
    """Gate fractions of the synthetic backtest fits (fit_many defaults), per law and cut."""
    import numpy as np

    import bayescale as bs
    from bayescale.check import SYNTHETIC_LAWS, backtest_points, synthetic_backtest_curves
    from bayescale.results import BFMI_MIN, ESS_MIN, RHAT_MAX

    out = {}
    for law, axis in SYNTHETIC_LAWS.items():
        data, _ = synthetic_backtest_curves(law, num_curves, seed=seed)
        batches = []

        def fm(train, law_obj, _store=batches, **kwargs):
            batch = bs.fit_many(train, law_obj, progress=False, **kwargs)
            _store.append(batch)
            return batch

        t0 = time.perf_counter()
        points = backtest_points(data, law, axis=axis, fit_many=fm, check_identifiability=False)
        wall = time.perf_counter() - t0
        for cut, batch in zip(("0.1", "0.01"), batches, strict=True):
            d = batch.diagnostics
            fitted = batch.fitted
            with np.errstate(invalid="ignore"):
                checks = {
                    "rhat": np.max(d["r_hat"], axis=1) <= RHAT_MAX,
                    "ess_bulk": np.min(d["ess_bulk"], axis=1) >= ESS_MIN,
                    "ess_tail": np.min(d["ess_tail"], axis=1) >= ESS_MIN,
                    "divergences": d["divergences"] == 0,
                    "bfmi": d["min_bfmi"] >= BFMI_MIN,
                }
            row = {k: float(np.mean(v & fitted)) for k, v in checks.items()}
            row["all"] = float(np.mean(batch.status == "ok"))
            row["retried"] = float(np.mean(batch.retried))
            row["fits"] = len(batch)
            row["status_counts"] = {
                str(k): int(v)
                for k, v in zip(*np.unique(batch.status, return_counts=True), strict=True)
            }
            out[f"{law}/{cut}"] = row
        held = points[np.isfinite(points["median"].to_numpy(dtype=float))]
        out[f"{law}/wall_s"] = wall
        out[f"{law}/cov90"] = float(
            ((held["lower90"] <= held["loss"]) & (held["loss"] <= held["upper90"])).mean()
        )
    return out


def _write(path: Path | None, report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str))


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def markdown(rows: dict) -> str:
    head = (
        "| law | sims | failed | min p (quantity) | cov50 | cov90 mean (min-max) | "
        "gate ok | R-hat | ESS bulk | ESS tail | no div. | E-BFMI | retried | target | s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for law, r in rows.items():
        g = r["gate"]
        lines.append(
            f"| {law} | {r['num_simulations']} | {r['num_failed']} | "
            f"{r['min_p']:.3g} ({r['min_p_quantity']}) | {r['cov50_mean']:.2f} | "
            f"{r['cov90_mean']:.3f} ({r['cov90_min']:.2f}-{r['cov90_max']:.2f}) | "
            f"{_pct(g['all'])} | {_pct(g['rhat'])} | {_pct(g['ess_bulk'])} | "
            f"{_pct(g['ess_tail'])} | {_pct(g['divergences'])} | {_pct(g['bfmi'])} | "
            f"{_pct(g['retried'])} | {'met' if r['meets_target'] else 'MISSED'} | "
            f"{r['timing']['total_s']:.0f} |"
        )
    return "\n".join(lines)


def detail(law: str, r: dict) -> str:
    lines = [
        f"\n#### {law}\n",
        "| quantity | chi2 | p | cov50 | cov90 | mean rank |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["table"]:
        lines.append(
            f"| {row['quantity']} | {row['chi2']:.1f} | {row['p_value']:.3g} | "
            f"{row['cov50']:.2f} | {row['cov90']:.3f} | {row['mean_pit']:.3f} |"
        )
    return "\n".join(lines)


def _band_records(bands) -> list[dict]:
    """The stored part of a :func:`bayescale.check.gate_by_band` table: label and counts."""
    return bands[["band", "simulations", "met"]].to_dict(orient="records")


def noise_bands(key: str, r: dict) -> list[dict]:
    """Gate per band of the true noise scale (:meth:`bayescale.check.SBCResult.gate_by`) of a
    stored law: from the record, or, for records written before it was stored, from the
    statuses and the noise scales re-simulated from the record's seed (the simulations are
    deterministic in it)."""
    if "gate_by_sigma" in r:
        return r["gate_by_sigma"]
    from bayescale import check, laws

    law, likelihood = _law_and_likelihood(key)
    settings = r["settings"]
    sim = check._sbc_simulate(
        laws.get(law),
        None,
        r["num_simulations"],
        likelihood=likelihood.partition(":")[0],
        noise_scale=r["noise_scale"],
        seed=settings["seed"],
        priors=None,
        df=settings.get("df", 4.0),
        trials=settings.get("trials"),
    )
    stored_ref = r.get("ref", {})
    drift = {k: v for k, v in stored_ref.items() if abs(float(sim["ref"][k]) - v) > 1e-9}
    if drift or sim["redrawn"] != settings.get("redrawn", sim["redrawn"]):
        raise SystemExit(
            f"--by-noise: re-simulating {key} does not reproduce its record (reference point "
            f"{dict(sim['ref'])} against {stored_ref}, {sim['redrawn']} re-drawn simulations "
            f"against {settings.get('redrawn')}): the simulator or the priors changed since "
            "it was written; run its SBC again"
        )
    return _band_records(
        check.gate_by_band(sim["truth"]["sigma"], r["status"], check.SBC_NOISE_BANDS)
    )


def noise_markdown(rows: dict) -> str:
    """Markdown table: per law, fits missing the gate / simulations in each noise band."""
    bands = [b["band"] for b in next(iter(rows.values()))["bands"]] if rows else []
    head = "| law | gate ok | " + " | ".join(f"sigma {b}" for b in bands) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, r in rows.items():
        cells = [f"{b['simulations'] - b['met']} / {b['simulations']}" for b in r["bands"]]
        lines.append(f"| {key} | {_pct(r['gate'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Items per evaluation of the binomial SBC (``LAW/binomial``; ``LAW/binomial:N`` for N).
BINOMIAL_TRIALS = 500


def _law_and_likelihood(key: str) -> tuple[str | Law, str]:
    """``"sigmoid_c/beta"`` -> ``("sigmoid_c", "beta")``; a bare law name is log-normal. A
    sigmoid variant named as :func:`sigmoid` names it -- ``"sigmoid_c_floor0.25"`` (floor
    fixed), ``"sigmoid_c_slope"`` (slope form), ``"sigmoid_c_floor0.25_ceiling1_slope"`` -- is
    built: only ``sigmoid_c`` is registered."""
    import re

    law, _, likelihood = key.partition("/")
    variant = re.fullmatch(
        r"sigmoid_([cnd])(?:_floor([0-9.]+))?(?:_ceiling([0-9.]+))?(_slope)?", law
    )
    if variant and law != "sigmoid_c":
        from bayescale.laws.sigmoid import sigmoid

        x, floor, ceiling, slope = variant.groups()
        law = sigmoid(
            x.upper(),
            floor=None if floor is None else float(floor),
            ceiling=None if ceiling is None else float(ceiling),
            form="slope" if slope else "anchors",
        )
    return law, likelihood or "lognormal"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 simulations of power_n, chinchilla")
    ap.add_argument(
        "--laws",
        nargs="+",
        help="laws to check, LAW or LAW/LIKELIHOOD (default: every shipped law, sigmoid_c/beta and "
        "sigmoid_c/binomial); LAW/binomial:N draws counts of N items (default "
        f"{BINOMIAL_TRIALS}); "
        "sigmoid_c_floor0.25 is the sigmoid with its floor fixed, sigmoid_c_slope its slope form",
    )
    ap.add_argument("--num-simulations", type=int, help="simulations per law (200; quick 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--json", type=Path, help=f"where to store results (default {DEFAULT_JSON}; none --quick)"
    )
    ap.add_argument("--resume", action="store_true", help="skip laws already in --json")
    ap.add_argument("--backtests", action="store_true", help="gate of synthetic backtest fits")
    ap.add_argument("--backtest-curves", type=int, help="synthetic curves per law (200; quick 20)")
    ap.add_argument("--detail", action="store_true", help="print the per-quantity tables")
    ap.add_argument(
        "--by-noise",
        action="store_true",
        help="fit nothing: print, for the laws stored in --json, how many fits missed the gate "
        "in each band of the true noise scale sigma",
    )
    args = ap.parse_args(argv)
    out_path = args.json or (None if args.quick else DEFAULT_JSON)
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        count = min(4, os.cpu_count() or 1)
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"
    import bayescale as bs
    from bayescale import check

    if args.by_noise:
        path = args.json or DEFAULT_JSON
        stored = json.loads(path.read_text())["laws"]
        missing = [k for k in args.laws or () if k not in stored]
        if missing:
            raise SystemExit(f"--by-noise: {', '.join(missing)} not in {path}")
        rows = {
            key: {"gate": r["gate"]["all"], "bands": noise_bands(key, r)}
            for key, r in stored.items()
            if not args.laws or key in args.laws
        }
        print(
            f"## Fits missing the gate / simulations, by the true noise scale sigma "
            f"({path.name}; the sd of the log loss, for the beta and binomial likelihoods "
            "the sd of an accuracy at 50%)\n"
        )
        print(noise_markdown(rows))
        return 0
    keys = args.laws or (list(QUICK_LAWS) if args.quick else bs.laws.available())
    if not args.laws and not args.quick:
        keys = [*keys, "sigmoid_c/beta", "sigmoid_c/binomial"]
    jobs = [(key, *_law_and_likelihood(key)) for key in keys]
    num = args.num_simulations or (50 if args.quick else 200)
    report = {"meta": _meta(args, num), "laws": {}}
    if args.resume and out_path is not None and out_path.exists():
        old = json.loads(out_path.read_text())
        if old.get("meta", {}).get("num_simulations") == num:
            report["laws"] = old.get("laws", {})
            report.update({k: v for k, v in old.items() if k not in ("meta", "laws")})
    start = time.perf_counter()
    for key, law, likelihood in jobs:
        if key in report["laws"]:
            print(f"{key}: kept from {out_path}", flush=True)
            continue
        t0 = time.perf_counter()
        # one seed per law: power_n/_d/_c (and the kaplan and bnsl variants) are the same
        # model in reference-centred log inputs, so a shared seed would repeat one check
        seed = args.seed + zlib.crc32(key.encode()) % 100_000
        likelihood, _, items = likelihood.partition(":")
        fit_kwargs = {"trials": int(items or BINOMIAL_TRIALS)} if likelihood == "binomial" else {}
        result = check.sbc(
            law, num_simulations=num, likelihood=likelihood, seed=seed, fit_kwargs=fit_kwargs
        )
        row = _record(result)
        row["seed"] = seed
        report["laws"][key] = row
        print(
            f"{key}: {time.perf_counter() - t0:.0f} s, min p {row['min_p']:.3g} "
            f"({row['min_p_quantity']}), cov90 {row['cov90_mean']:.3f}, gate "
            f"{_pct(row['gate']['all'])}, {row['status_counts']}",
            flush=True,
        )
        _write(out_path, report)
    if args.backtests:
        curves = args.backtest_curves or (20 if args.quick else 200)
        report["backtest_gate"] = backtest_gate(curves, args.seed)
        _write(out_path, report)
    rows = {key: report["laws"][key] for key, _, _ in jobs if key in report["laws"]}
    print(f"\n## SBC: {num} simulations per law (fit_many defaults)\n")
    print(markdown(rows))
    fits = sum(r["num_simulations"] for r in rows.values())
    ok = sum(r["gate"]["all"] * r["num_simulations"] for r in rows.values())
    print(f"\nconvergence gate over all SBC fits: {ok:.0f} / {fits} = {_pct(ok / max(fits, 1))}")
    met = all(r["meets_target"] for r in rows.values())
    print(
        "target (chi-square p >= 0.001 per quantity, mean cov90 in [0.85, 0.95]): "
        + (
            "MET"
            if met
            else "NOT MET for " + ", ".join(k for k, r in rows.items() if not r["meets_target"])
        )
    )
    if args.detail:
        for law, r in rows.items():
            print(detail(law, r))
    if "backtest_gate" in report:
        print("\n## Convergence gate of the synthetic backtest fits\n")
        print("| fits | n | gate ok | R-hat | ESS bulk | ESS tail | no div. | E-BFMI | retried |")
        print("|---|---|---|---|---|---|---|---|---|")
        for key, g in report["backtest_gate"].items():
            if isinstance(g, dict):
                print(
                    f"| {key} | {g['fits']} | {_pct(g['all'])} | {_pct(g['rhat'])} | "
                    f"{_pct(g['ess_bulk'])} | {_pct(g['ess_tail'])} | {_pct(g['divergences'])} | "
                    f"{_pct(g['bfmi'])} | {_pct(g['retried'])} |"
                )
    report["meta"]["wall_s"] = time.perf_counter() - start
    _write(out_path, report)
    print(
        f"\nwhole run: {report['meta']['wall_s']:.0f} s"
        + (f"; wrote {out_path}" if out_path else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
