"""Hierarchical pooling: partially pooled against independent fits, on synthetic and real curves.

Three studies, each scored on points the fits never saw:

* **synthetic** families (``bayescale.pooling.synthetic_family``): 12 ``power_n`` curves with
  5-6 points over one decade of N, exponents drawn from a population (median 0.35, log-SD
  0.15), noise 2%. Scored at 10x the largest N of each curve against the true law:
  extrapolation error (mean absolute log error, %), coverage of the 90% credible interval of
  the mean loss, error of the exponents, and whether the population median lies in its 90%
  interval. Scenario ``short``: all curves short; ``anchored``: 4 long curves (12 points over
  two decades) and 8 short ones, scored on the short ones. ``pooled`` is
  ``fit_many(pooling="partial", share=["alpha"])``, ``independent`` plain ``fit_many``.
* **ObsScaling** (Ruan, Maddison & Hashimoto 2024; ``shared/data/obsscaling``), the sigmoid
  of compute in its slope form (``sigmoid("C", form="slope")``: pooling shares sampled
  parameters, and the slope ``k`` is one only in that form) with the beta likelihood,
  accuracy against training compute:

  - *benchmarks as curves*: each of the 8 benchmarks is a curve over the models below the
    paper's 8.4e22 FLOP cutoff; the scores of the models above it are held out. ``pooled``
    shares the sigmoid's ``height`` and slope ``k`` across benchmarks (where it rises,
    ``logit_ref``, and its chance level, ``floor``, stay per benchmark); ``independent`` is
    ``fit_many``; ``independent_anchors`` is ``fit_many`` with ``sigmoid_c`` itself (the
    default anchor form: other coordinates, other priors).
  - *families as curves* (MMLU; not with ``--quick``): the model families with at least 3
    models are the curves, each family's largest-compute model held out; ``pooled`` shares
    floor, height, k and logit_ref across families, ``independent`` is the same joint program with
    nothing shared (each family alone, same priors: ``fit_many`` refuses families with fewer
    points than parameters), ``complete`` one sigmoid through all families.

  Scored on the held-out accuracies: mean absolute error (accuracy points) and coverage of the
  90% posterior-predictive interval.
* **IsoFLOP** studies (Open-Athena; ``shared/data/open-athena-isoflops``): the 7 experiments
  (``llama_3__exp_loss`` left out: a transform of ``llama_3__raw_loss``), rows with
  ``outlier == False``, law ``chinchilla`` (N = params, D = tokens); each experiment's largest
  IsoFLOP budget is held out. ``pooled`` shares ``alpha`` and ``beta`` across experiments.
  Scored on the held-out losses: mean absolute log error (%) and 90% predictive coverage.

Prints markdown tables and writes every number to ``--json``. Timings (compile and sampling
apart) are indicative: the script is meant to be re-run on a quiet machine.

Usage::

    python benchmarks/pooling.py [--quick] [--json benchmarks/results/pooling_cpu.json]
                                 [--only synthetic obsscaling isoflops] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARKS = (
    "MMLU",
    "ARC-C",
    "HellaSwag",
    "Winograd",
    "TruthfulQA",
    "GSM8K",
    "XWinograd",
    "HumanEval",
)
SAMPLER = {"num_warmup": 500, "num_samples": 1000, "progress": False}


def _quiet():
    import bayescale as bs
    from bayescale.check import IdentifiabilityWarning

    warnings.simplefilter("ignore", bs.ConvergenceWarning)
    warnings.simplefilter("ignore", bs.ExtrapolationWarning)
    warnings.simplefilter("ignore", bs.DataWarning)
    warnings.simplefilter("ignore", IdentifiabilityWarning)


def _diagonal(frame: pd.DataFrame, column: str, num: int) -> np.ndarray:
    """predict() evaluates every curve at every target; keep curve i at target i."""
    return frame[column].to_numpy().reshape(num, num).diagonal()


# ============================================================================= synthetic
def score_synthetic(batch, truth: pd.DataFrame, keep: np.ndarray) -> dict:
    n = len(truth)
    target = 10.0 * truth["N_max"].to_numpy()
    pred = batch.predict(N=target)
    true = (truth["E"] + truth["A"] * target ** -truth["alpha"]).to_numpy()
    med = _diagonal(pred, "loss_median", n)
    lo, hi = _diagonal(pred, "loss_lower", n), _diagonal(pred, "loss_upper", n)
    s = batch.summary()
    alpha = truth["alpha"].to_numpy()
    a_lo, a_hi = s["alpha_lower"].to_numpy(), s["alpha_upper"].to_numpy()
    return {
        "extrapolation_error_pct": float(100 * np.mean(np.abs(np.log(med / true))[keep])),
        "covered": int(np.sum(((lo <= true) & (true <= hi))[keep])),
        "alpha_rmse_log": float(np.sqrt(np.mean(np.log(s["alpha_median"] / alpha)[keep] ** 2))),
        "alpha_covered": int(np.sum(((a_lo <= alpha) & (alpha <= a_hi))[keep])),
        "scored": int(keep.sum()),
        "not_ok": int(np.sum(batch.status != "ok")),
    }


def run_synthetic(seeds: int) -> dict:
    import bayescale as bs
    from bayescale.pooling import synthetic_family

    rows = []
    for scenario, anchors in (("short", 0), ("anchored", 4)):
        for seed in range(seeds):
            data, truth, pop = synthetic_family(12, seed=seed, sigma=0.02, anchors=anchors)
            keep = ~truth["anchor"].to_numpy()
            start = time.perf_counter()
            pooled = bs.fit_many(
                data, "power_n", pooling="partial", share=["alpha"], rng_key=seed, **SAMPLER
            )
            t_pooled = time.perf_counter() - start
            start = time.perf_counter()
            indep = bs.fit_many(data, "power_n", rng_key=seed, **SAMPLER)
            t_indep = time.perf_counter() - start
            mu = pooled.population.loc["alpha"]
            row = {
                "scenario": scenario,
                "seed": seed,
                "pooled": score_synthetic(pooled, truth, keep),
                "independent": score_synthetic(indep, truth, keep),
                "mu_alpha": [float(mu.mu_lower), float(mu.mu_median), float(mu.mu_upper)],
                "mu_alpha_covered": bool(mu.mu_lower <= pop["alpha_median"] <= mu.mu_upper),
                "joint": pooled.joint_diagnostics,
                "retried": bool(pooled.retried.any()),
                "timing_pooled": {**pooled.timing, "call_s": t_pooled},
                "timing_independent": {**indep.timing, "call_s": t_indep},
            }
            rows.append(row)
            print(
                f"  {scenario} seed {seed}: error {row['pooled']['extrapolation_error_pct']:.2f}%"
                f" pooled vs {row['independent']['extrapolation_error_pct']:.2f}% independent",
                flush=True,
            )
    summary = []
    for scenario in ("short", "anchored"):
        part = [r for r in rows if r["scenario"] == scenario]
        line = {"scenario": scenario, "datasets": len(part)}
        for way in ("pooled", "independent"):
            err = [r[way]["extrapolation_error_pct"] for r in part]
            scored = sum(r[way]["scored"] for r in part)
            line[f"{way}_error_pct"] = float(np.mean(err))
            line[f"{way}_coverage90"] = sum(r[way]["covered"] for r in part) / scored
            line[f"{way}_alpha_rmse_log"] = float(np.mean([r[way]["alpha_rmse_log"] for r in part]))
            line[f"{way}_alpha_coverage90"] = sum(r[way]["alpha_covered"] for r in part) / scored
            line[f"{way}_call_s"] = float(np.mean([r[f"timing_{way}"]["call_s"] for r in part]))
        line["pooled_wins"] = sum(
            r["pooled"]["extrapolation_error_pct"] < r["independent"]["extrapolation_error_pct"]
            for r in part
        )
        line["error_ratio"] = line["pooled_error_pct"] / line["independent_error_pct"]
        line["mu_alpha_coverage90"] = float(np.mean([r["mu_alpha_covered"] for r in part]))
        line["pooled_mean_leapfrog_steps"] = float(
            np.mean([r["joint"]["mean_num_steps"] for r in part])
        )
        summary.append(line)
    return {"rows": rows, "summary": summary}


# ============================================================================= ObsScaling
#: Ruan et al.'s cutoff: models trained with more compute are the ones to forecast.
OBS_CUTOFF = 8.4e22


@functools.cache
def _slope_law():
    """``sigmoid_c`` in its slope form: ``k`` and ``height`` are sampled, so they can be shared.
    Built once: every study then passes the same Law object."""
    from bayescale.laws.sigmoid import sigmoid

    return sigmoid("C", form="slope")


#: The families study: fewer draws (the sigmoid's joint posterior needs hundreds of leapfrog
#: steps per draw).
FAMILY_SAMPLER = {"num_warmup": 300, "num_samples": 300, "progress": False}


def obsscaling_table(data_dir: Path) -> pd.DataFrame:
    """Long table: one row per (model, benchmark) with known compute and accuracy > 0."""
    df = pd.read_csv(data_dir / "obsscaling" / "base_llm_benchmark_eval.csv")
    df = df[df["FLOPs (1E21)"].notna()]
    long = df.melt(
        id_vars=["Model", "Model Family", "FLOPs (1E21)"],
        value_vars=list(BENCHMARKS),
        var_name="benchmark",
        value_name="loss",
    ).dropna()
    long = long[long["loss"] > 0].copy()
    long["C"] = long["FLOPs (1E21)"] * 1e21
    long["family"] = long["Model Family"]
    return long


def _score_rows(batch, held: pd.DataFrame, key: str) -> tuple[dict, dict]:
    """Per-curve and overall error (accuracy points) and 90% predictive coverage on ``held``."""
    per, errs, cover = {}, [], []
    for cid in batch.curve_ids:
        h = held[held[key] == cid]
        if h.empty or not batch.fitted[batch.index(cid)]:
            continue
        pred = batch[cid].predict(C=h["C"].to_numpy(), allow_unconverged=True)
        y = h["loss"].to_numpy()
        e = np.abs(pred["pred_median"].to_numpy() - y) * 100
        c = (pred["pred_lower"].to_numpy() <= y) & (y <= pred["pred_upper"].to_numpy())
        per[cid] = {"error": float(e.mean()), "coverage90": float(c.mean()), "held_out": len(h)}
        errs.append(e)
        cover.append(c)
    total = {
        "error": float(np.mean(np.concatenate(errs))),
        "coverage90": float(np.mean(np.concatenate(cover))),
        "held_out": int(sum(len(e) for e in errs)),
        "not_ok": int(np.sum(batch.status != "ok")),
    }
    return per, total


def run_obsscaling_benchmarks(data_dir: Path) -> dict:
    """Benchmarks as curves: each benchmark's sigmoid of compute fitted to the models below
    Ruan et al.'s 8.4e22 FLOP cutoff, scored on the models above it."""
    import bayescale as bs

    long = obsscaling_table(data_dir)
    train, held = long[long["C"] <= OBS_CUTOFF], long[long["C"] > OBS_CUTOFF]
    out = {"train_points": len(train), "held_out": len(held), "cutoff": OBS_CUTOFF}
    for way, law, kw in (
        ("pooled", _slope_law(), {"pooling": "partial", "share": ["height", "k"]}),
        ("independent", _slope_law(), {}),
        ("independent_anchors", "sigmoid_c", {}),
    ):
        start = time.perf_counter()
        batch = bs.fit_many(
            train[["benchmark", "C", "loss"]],
            law,
            curve="benchmark",
            likelihood="beta",
            **kw,
            **SAMPLER,
        )
        per, total = _score_rows(batch, held, "benchmark")
        out[way] = {**total, "per_curve": per, "call_s": time.perf_counter() - start}
        out[way]["timing"] = dict(batch.timing)
        if way == "pooled":
            out["joint"] = batch.joint_diagnostics
            out["centred"] = bool(batch.centred)
            out["population"] = batch.population[
                ["mu_median", "mu_lower", "mu_upper", "tau_median"]
            ].to_dict(orient="index")
        print(f"  benchmarks as curves, {way}: error {total['error']:.2f} points", flush=True)
    return out


def run_obsscaling_families(data_dir: Path, benchmark: str) -> dict:
    """Families as curves (one benchmark): families with >= 3 models; each family's
    largest-compute model held out."""
    import bayescale as bs
    from bayescale.pooling import fit_pooled

    long = obsscaling_table(data_dir)
    df = long[long["benchmark"] == benchmark]
    counts = df["family"].value_counts()
    df = df[df["family"].isin(counts.index[counts >= 3])]
    held = df.loc[df.groupby("family")["C"].idxmax()]
    train = df.drop(index=held.index)
    frame = train[["family", "C", "loss"]]
    out = {"benchmark": benchmark, "families": int(train["family"].nunique())}
    out["train_points"], out["held_out"] = len(train), len(held)
    for way, share in (("pooled", ["floor", "height", "k", "logit_ref"]), ("independent", [])):
        start = time.perf_counter()
        batch = fit_pooled(
            frame, _slope_law(), share=share, curve="family", likelihood="beta", **FAMILY_SAMPLER
        )
        _, total = _score_rows(batch, held, "family")
        out[way] = {**total, "call_s": time.perf_counter() - start, "timing": dict(batch.timing)}
        out[way]["joint"] = batch.joint_diagnostics
        if way == "pooled":
            out["population"] = batch.population[
                ["mu_median", "mu_lower", "mu_upper", "tau_median"]
            ].to_dict(orient="index")
        print(f"  {benchmark} families, {way}: error {total['error']:.2f} points", flush=True)
    # Complete pooling: one sigmoid through all families' points.
    start = time.perf_counter()
    settings = {k: v for k, v in FAMILY_SAMPLER.items() if k != "progress"}
    fit = bs.fit(frame[["C", "loss"]], _slope_law(), likelihood="beta", **settings)
    pred = fit.predict(C=held["C"].to_numpy(), allow_unconverged=True)
    y = held["loss"].to_numpy()
    out["complete"] = {
        "error": float(np.mean(np.abs(pred["pred_median"].to_numpy() - y)) * 100),
        "coverage90": float(
            np.mean((pred["pred_lower"].to_numpy() <= y) & (y <= pred["pred_upper"].to_numpy()))
        ),
        "held_out": len(held),
        "status": fit.convergence.status,
        "call_s": time.perf_counter() - start,
    }
    print(f"  {benchmark} families, complete: error {out['complete']['error']:.2f}", flush=True)
    return out


# ============================================================================= IsoFLOP
def isoflop_split(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(data_dir / "open-athena-isoflops" / "isoflops.csv")
    df = df[(~df["outlier"]) & (df["experiment"] != "llama_3__exp_loss")]
    df = df.rename(columns={"params": "N", "tokens": "D", "experiment": "family"})
    top = df.groupby("family")["budget"].transform("max")
    return df[df["budget"] < top], df[df["budget"] == top]


def run_isoflops(data_dir: Path) -> dict:
    import bayescale as bs

    train, held = isoflop_split(data_dir)
    cols = {"N": "N", "D": "D", "loss": "loss"}
    out = {"train_points": len(train), "held_out": len(held), "experiments": {}}
    batches = {}
    for way, kw in (
        ("pooled", {"pooling": "partial", "share": ["alpha", "beta"]}),
        ("independent", {}),
    ):
        start = time.perf_counter()
        batch = bs.fit_many(
            train[["family", "N", "D", "loss"]],
            "chinchilla",
            curve="family",
            columns=cols,
            **kw,
            **SAMPLER,
        )
        call_s = time.perf_counter() - start
        batches[way] = batch
        errs, cover = [], []
        for cid in batch.curve_ids:
            h = held[held["family"] == cid]
            pred = batch[cid].predict(
                N=h["N"].to_numpy(), D=h["D"].to_numpy(), allow_unconverged=True
            )
            y = h["loss"].to_numpy()
            med = pred["pred_median"].to_numpy()
            lo, hi = pred["pred_lower"].to_numpy(), pred["pred_upper"].to_numpy()
            e = np.abs(np.log(med / y)) * 100
            errs.append(e)
            cover.append((lo <= y) & (y <= hi))
            s = batch.summary().loc[cid]
            out["experiments"].setdefault(cid, {})[way] = {
                "error_pct": float(np.mean(e)),
                "coverage90": float(np.mean(cover[-1])),
                "held_out": len(h),
                "alpha": [
                    float(s["alpha_lower"]),
                    float(s["alpha_median"]),
                    float(s["alpha_upper"]),
                ],
                "beta": [float(s["beta_lower"]), float(s["beta_median"]), float(s["beta_upper"])],
                "status": str(s["status"]),
            }
        out[way] = {
            "error_pct": float(np.mean(np.concatenate(errs))),
            "coverage90": float(np.mean(np.concatenate(cover))),
            "call_s": call_s,
            "timing": dict(batch.timing),
            "not_ok": int(np.sum(batch.status != "ok")),
        }
        if way == "pooled":
            out["joint"] = batch.joint_diagnostics
            out["centred"] = bool(batch.centred)
            out["population"] = batch.population[
                ["mu_median", "mu_lower", "mu_upper", "tau_median", "new_lower", "new_upper"]
            ].to_dict(orient="index")
        print(f"  isoflops {way}: held-out error {out[way]['error_pct']:.2f}%", flush=True)
    return out


# ============================================================================= report
def markdown(results: dict) -> str:
    lines = []
    if "synthetic" in results:
        lines += [
            "### Synthetic families (12 power_n curves, 5-6 points over one decade, 2% noise; "
            "scored at 10x the largest N)",
            "",
            "| scenario | datasets | error pooled | error independent | ratio | pooled wins "
            "| 90% coverage pooled / indep. | exponent RMSE (log) pooled / indep. "
            "| mu_alpha in 90% interval |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in results["synthetic"]["summary"]:
            lines.append(
                f"| {s['scenario']} | {s['datasets']} | {s['pooled_error_pct']:.2f}% "
                f"| {s['independent_error_pct']:.2f}% | {s['error_ratio']:.2f} "
                f"| {s['pooled_wins']}/{s['datasets']} "
                f"| {s['pooled_coverage90']:.2f} / {s['independent_coverage90']:.2f} "
                f"| {s['pooled_alpha_rmse_log']:.3f} / {s['independent_alpha_rmse_log']:.3f} "
                f"| {s['mu_alpha_coverage90']:.2f} |"
            )
        lines.append("")
    if "obsscaling" in results:
        r = results["obsscaling"]["benchmarks"]
        lines += [
            "### ObsScaling, benchmarks as curves: the sigmoid of compute (beta likelihood) "
            f"fitted below {r['cutoff']:.1e} FLOP, scored on the {r['held_out']} (model, "
            "benchmark) scores above it; mean absolute error in accuracy points (90% predictive "
            "coverage); slope form except the last column",
            "",
            "| benchmark | pooled (height, k shared) | independent | independent, anchor form |",
            "| --- | --- | --- | --- |",
        ]
        ways = [w for w in ("pooled", "independent", "independent_anchors") if w in r]
        for cid in r["pooled"]["per_curve"]:
            cells = [r[w]["per_curve"][cid] for w in ways]
            lines.append(
                f"| {cid} | "
                + " | ".join(f"{c['error']:.2f} ({c['coverage90']:.2f})" for c in cells)
                + " |"
            )
        lines.append(
            "| all | "
            + " | ".join(f"**{r[w]['error']:.2f}** ({r[w]['coverage90']:.2f})" for w in ways)
            + " |"
        )
        lines.append(
            "| seconds (curves not ok) | "
            + " | ".join(f"{r[w]['call_s']:.0f} ({r[w].get('not_ok', '-')})" for w in ways)
            + " |"
        )
        lines.append("")
        for f in results["obsscaling"].get("families", []):
            lines += [
                f"### ObsScaling, families as curves ({f['benchmark']}): {f['families']} "
                "families with >= 3 models, the largest-compute model of each held out",
                "",
                "| fit | error (points) | 90% coverage | mean leapfrog steps / draw |",
                "| --- | --- | --- | --- |",
            ]
            for way in ("pooled", "independent"):
                lines.append(
                    f"| {way} | {f[way]['error']:.2f} | {f[way]['coverage90']:.2f} "
                    f"| {f[way]['joint']['mean_num_steps']:.0f} |"
                )
            c = f["complete"]
            lines.append(f"| complete pooling | {c['error']:.2f} | {c['coverage90']:.2f} | |")
            lines.append("")
    if "isoflops" in results:
        r = results["isoflops"]
        lines += [
            "### IsoFLOP studies: held-out largest budget of each experiment (chinchilla; "
            "error = mean |log| error of the predictive median, 90% predictive coverage)",
            "",
            "| experiment | pooled error | independent error | alpha pooled | alpha indep. "
            "| beta pooled | beta indep. |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for cid, e in r["experiments"].items():
            p, i = e["pooled"], e["independent"]
            lines.append(
                f"| {cid} | {p['error_pct']:.2f}% | {i['error_pct']:.2f}% "
                f"| {p['alpha'][1]:.3f} [{p['alpha'][0]:.3f}, {p['alpha'][2]:.3f}] "
                f"| {i['alpha'][1]:.3f} [{i['alpha'][0]:.3f}, {i['alpha'][2]:.3f}] "
                f"| {p['beta'][1]:.3f} [{p['beta'][0]:.3f}, {p['beta'][2]:.3f}] "
                f"| {i['beta'][1]:.3f} [{i['beta'][0]:.3f}, {i['beta'][2]:.3f}] |"
            )
        lines.append(
            f"| all ({r['held_out']} held out) | **{r['pooled']['error_pct']:.2f}%** "
            f"({r['pooled']['coverage90']:.2f}) | **{r['independent']['error_pct']:.2f}%** "
            f"({r['independent']['coverage90']:.2f}) | | | | |"
        )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 synthetic seeds, no ObsScaling families study"
    )
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument(
        "--only", nargs="+", default=["synthetic", "obsscaling", "isoflops"],
        choices=["synthetic", "obsscaling", "isoflops"],
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None, help="synthetic datasets per scenario")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    _quiet()
    seeds = args.seeds or (2 if args.quick else 8)
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "settings": {**SAMPLER, "quick": args.quick, "seeds": seeds},
    }
    start = time.perf_counter()
    if "synthetic" in args.only:
        print("synthetic families", flush=True)
        results["synthetic"] = run_synthetic(seeds)
    if "obsscaling" in args.only:
        print("ObsScaling", flush=True)
        results["obsscaling"] = {"benchmarks": run_obsscaling_benchmarks(args.data_dir)}
        if not args.quick:
            results["obsscaling"]["families"] = [run_obsscaling_families(args.data_dir, "MMLU")]
    if "isoflops" in args.only:
        print("IsoFLOP studies", flush=True)
        results["isoflops"] = run_isoflops(args.data_dir)
    results["wall_s"] = time.perf_counter() - start
    text = markdown(results)
    print(text)
    print(f"total {results['wall_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=_jsonable))
        print(f"wrote {args.json}")
    return 0


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
