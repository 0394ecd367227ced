"""Extrapolation backtests: fit the small runs, forecast the large ones, score the forecasts.

Runs :func:`bayescale.check.backtest` on

* **synthetic** curves with known parameters (``bayescale.check.synthetic_backtest_curves``):
  200 curves per law (``chinchilla``, ``power_n``, ``kaplan_n``; 20 with ``--quick``), cuts at
  1/10 and 1/100 of the largest compute (largest N for the single-input laws). Targets
  (issue 5): pooled 90% coverage in [0.85, 0.95] and median absolute relative error <= 1%.
  On the same held-out runs it scores point estimators (:func:`reference_points`: least
  squares, Hoffmann's Huber fit, least squares told the true E, the true law), which shows
  how much of the error any estimator must make on this design (``--no-reference`` skips);
* every **real** dataset of ``../shared/data`` with a scale axis, never tuning anything on the
  held-out runs:

  - Epoch's digitisation of Hoffmann et al.'s runs (Besiroglu et al. 2024), law
    ``chinchilla``, Gaussian (lognormal) and robust (Student-t) likelihoods, cuts on C;
  - Gadre et al. 2024 over-training grid (``models.csv``), law ``chinchilla`` on N, D with the
    C4 validation loss, one backtest per training dataset (c4_original, rpj, rw_original),
    cuts on C = 6ND;
  - Open-Athena IsoFLOP experiments (Czech et al. 2026), each experiment on its own, rows
    with ``outlier == False``, law ``chinchilla`` with N = params, D = tokens, cuts on the
    IsoFLOP budget;
  - revisiting-nsl (Alabdulmohsin et al. 2022), every curve (Domain, Task, Model) on its
    own, law ``power_d`` on "Seen Examples", trained on the ``Training == 1`` rows and scored
    on the held-out ``Training == 0`` rows (the paper's split; language rows de-duplicated);

  and reproduces Gadre et al.'s point forecasts of their two large runs (scipy least squares
  on their 5 small runs, their 4x4x2x4 start grid): relative errors 0.7103% and 0.7320%.

Prints one markdown table per dataset plus pooled rows per cut, and the timing of the whole
run; ``--json`` writes every row. Scores: ``median_are`` (median absolute relative error of
the posterior-median forecast), ``rmsle`` (root mean squared log error), ``cov50``/``cov90``
(coverage of the central posterior-predictive intervals), ``lpd`` (mean log predictive
density of the held-out log loss, nats), ``weak_E`` (fits whose irreducible loss the data do
not identify, :func:`bayescale.check.identifiability`).

Usage::

    python benchmarks/backtests.py [--quick] [--json out.json] [--only synthetic epoch gadre ...]
                                   [--curves 200] [--single] [--data-dir ../shared/data]
                                   [--no-reference]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Gadre et al. 2024's reference: relative errors of their least-squares law on their 5 small
#: rpj runs for open_lm_1b at M = 640 and open_lm_7b at M = 20 (scaling_explorer.ipynb).
GADRE_REFERENCE = {("open_lm_1b", 640.0): 0.7103, ("open_lm_7b", 20.0): 0.7320}
GADRE_SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")


# ----------------------------------------------------------------------------- datasets
def epoch(data_dir: Path):
    import bayescale as bs

    return bs.datasets.load("epoch-chinchilla", data_dir=data_dir)


def gadre_frame(data_dir: Path):
    import pandas as pd

    return pd.read_csv(data_dir / "gadre-overtraining" / "models.csv")


def gadre(data_dir: Path):
    import bayescale as bs

    df = gadre_frame(data_dir)
    return bs.from_dataframe(df, N="N", D="D", C=None, loss="loss_c4_val", curve="dataset")


def open_athena(data_dir: Path):
    import pandas as pd

    import bayescale as bs

    df = pd.read_csv(data_dir / "open-athena-isoflops" / "isoflops.csv")
    df = df[~df["outlier"].astype(bool)]
    return bs.from_dataframe(
        df, N="params", D="tokens", C="budget", loss="loss", curve="experiment"
    )


def revisiting(data_dir: Path, *, quick: bool = False):
    """revisiting-nsl curves (language de-duplicated) and the boolean training mask."""
    import pandas as pd

    import bayescale as bs

    frames = []
    for name in ("lang", "vision"):
        df = pd.read_csv(data_dir / "revisiting-nsl" / f"benchmark.{name}.csv")
        frames.append(df.drop_duplicates())
    df = pd.concat(frames, ignore_index=True)
    if quick:
        df = df[df["Domain"].isin(["NMT", "LM"])]
    df = df.reset_index(drop=True)
    data = bs.from_dataframe(
        df, N=None, D="Seen Examples", C=None, loss="Loss", curve=["Domain", "Task", "Model"]
    )
    return data, df["Training"].to_numpy() == 1


# ----------------------------------------------------------------------------- Gadre reference
def gadre_reference(data_dir: Path) -> list[dict]:
    """Gadre et al.'s law L(N, M) = a N^b + c 6^(b/2) (M N)^b + E by least squares on their 5
    small rpj runs (scipy curve_fit from their 4x4x2x4 start grid, best residual std), and its
    relative errors on open_lm_1b (M = 640) and open_lm_7b (M = 20)."""
    import numpy as np
    from scipy.optimize import curve_fit

    df = gadre_frame(data_dir)
    rpj = df[df["dataset"] == "rpj"]
    M = rpj["tokens_per_param_M"]
    small = rpj[
        (rpj["model"].isin(GADRE_SMALL) & (M == 20))
        | ((rpj["model"] == GADRE_SMALL[0]) & (M == 320))
    ]

    def law(x, a, c, b, E):
        N, M = x
        return a * N**b + c * 6 ** (b / 2) * (M * N) ** b + E

    x = (small["N"].to_numpy(float), small["tokens_per_param_M"].to_numpy(float))
    y = small["loss_c4_val"].to_numpy(float)
    best = None
    grid = itertools.product(
        [1e2, 3e2, 1e3, 3e3], [1e2, 3e2, 1e3, 3e3], [-0.1, -0.3], [0, 1, 2, 10]
    )
    for p0 in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                popt, _ = curve_fit(law, x, y, p0=p0, maxfev=10000)
            except RuntimeError:
                continue
        resid = y - law(x, *popt)
        score = float(np.sqrt(np.sum(resid**2) / (resid.size - 2)))
        if best is None or score < best[0]:
            best = (score, popt)
    rows = []
    for (model, m), published in GADRE_REFERENCE.items():
        run = rpj[(rpj["model"] == model) & (rpj["tokens_per_param_M"] == m)].iloc[0]
        pred = float(law((float(run["N"]), m), *best[1]))
        rows.append(
            {
                "model": model,
                "M": m,
                "loss": float(run["loss_c4_val"]),
                "least_squares": pred,
                "rel_error_pct": 100 * abs(pred - run["loss_c4_val"]) / run["loss_c4_val"],
                "published_pct": published,
                "params": dict(zip(("a", "c", "b", "E"), map(float, best[1]), strict=True)),
            }
        )
    return rows


# ----------------------------------------------------------------------------- reference estimators
#: Point estimators scored on the same synthetic held-out runs as bayescale's posterior median.
REFERENCE_ESTIMATORS = ("least squares", "Huber (Hoffmann)", "least squares, true E", "true law")


def _true_mean(law: str, p, N, D):
    """The law's mean loss at the true parameters ``p`` (a row of the synthetic truth)."""
    if law == "chinchilla":
        return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]
    if law == "power_n":
        return p["E"] + p["A"] * N ** -p["alpha"]
    return (p["N_c"] / N) ** p["alpha_N"]


def fit_true_e(law: str, E: float, N, D, loss):
    """Least squares on the log loss with the irreducible loss fixed at its true value ``E``:
    an oracle no real method has, showing what knowing E would buy. Returns the fitted mean
    as a function of ``(N, D)``. Log-amplitude and exponent per term, the best of a start grid
    (exponents 0.1..0.8, amplitudes matching the reducible loss of the smallest run)."""
    import numpy as np
    from scipy.optimize import least_squares

    N, D, y = (np.asarray(v, dtype=np.float64) for v in (N, D, loss))
    log_y = np.log(y)
    if law == "power_n":
        terms = [np.log(N)]
    elif law == "chinchilla":
        terms = [np.log(N), np.log(D)]
    else:
        raise ValueError(f"no irreducible loss in {law!r}")
    k = len(terms)
    first = int(np.argmin(terms[0]))
    excess = max(float(y[first] - E), 1e-3 * float(y[first])) / k

    def mean(theta, lx):
        return E + sum(np.exp(theta[2 * i] - theta[2 * i + 1] * lx[i]) for i in range(k))

    def resid(theta):
        m = mean(theta, terms)
        return np.log(np.maximum(m, 1e-300)) - log_y

    best = None
    for exps in itertools.product((0.1, 0.2, 0.4, 0.8), repeat=k):
        theta0 = []
        for i, a in enumerate(exps):
            theta0 += [np.log(excess) + a * terms[i][first], a]
        bounds = ([-np.inf, 0.0] * k, [np.inf, 5.0] * k)
        sol = least_squares(resid, np.asarray(theta0), bounds=bounds, method="trf")
        if best is None or sol.cost < best.cost:
            best = sol
    theta = best.x

    def predict(N, D):
        lx = [np.log(np.asarray(N, float))]
        if k == 2:
            lx.append(np.log(np.asarray(D, float)))
        return mean(theta, lx)

    return predict


def reference_points(data, truth, law: str, *, axis: str, cuts=(0.1, 0.01), dataset: str = ""):
    """Held-out forecasts of point estimators on the synthetic curves, split exactly as
    :func:`bayescale.check.backtest_points` splits them: one row per (held-out run, cut,
    estimator) with the absolute relative error ``are`` of the forecast.

    Estimators: ``least squares`` (``bs.optimize(objective="least_squares")``, the maximum
    likelihood fit of the simulated noise model), ``Huber (Hoffmann)`` (``objective="huber"``,
    delta 1e-3, Hoffmann et al. 2022 / Besiroglu et al. 2024), ``least squares, true E``
    (:func:`fit_true_e`, an oracle; for ``kaplan_n``, which has no E, plain least squares)
    and ``true law``
    (the true mean: the noise floor of the score).
    """
    import numpy as np
    import pandas as pd

    import bayescale as bs
    from bayescale.check import _cut_label, _split_indices

    rows = []
    for cid in data.curve_ids:
        idx = np.flatnonzero(data.curve == cid)
        x = np.asarray(getattr(data, axis))[idx]
        p = truth.loc[cid]
        for cut in cuts:
            tr, te = _split_indices(x, None, cut)
            if len(te) == 0:
                continue
            train, test = data.subset(idx[tr]), data.subset(idx[te])
            N = np.asarray(test.N, np.float64)
            D = None if test.D is None else np.asarray(test.D, np.float64)
            inputs = {"N": N} if law != "chinchilla" else {"N": N, "D": D}
            preds = {"true law": _true_mean(law, p, N, D)}
            for name, obj in (("least squares", "least_squares"), ("Huber (Hoffmann)", "huber")):
                with warnings.catch_warnings():  # extrapolation warnings: expected here
                    warnings.simplefilter("ignore")
                    pf = bs.optimize(train, law, objective=obj)
                    pred = pf.predict(**inputs, allow_unconverged=True)["loss"].to_numpy()
                preds[name] = pred
            if law == "kaplan_n":  # no E to know: the oracle is plain least squares
                preds["least squares, true E"] = preds["least squares"]
            else:
                preds["least squares, true E"] = fit_true_e(
                    law, float(p["E"]), train.N, train.D, train.loss
                )(N, D)
            for name, pred in preds.items():
                are = np.abs(pred - test.loss) / test.loss
                rows.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "curve": cid,
                            "cut": _cut_label(cut),
                            "estimator": name,
                            "are": are,
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def reference_table(bayes_points, ref_points, by=("dataset", "cut")):
    """Median ARE per group: bayescale's posterior median next to each reference estimator."""
    import pandas as pd

    by = list(by)
    bayes = bayes_points.dropna(subset=["are"]).assign(estimator="bayescale posterior median")
    both = pd.concat([bayes[[*by, "estimator", "are"]], ref_points[[*by, "estimator", "are"]]])
    table = both.groupby([*by, "estimator"], sort=False)["are"].median().unstack("estimator")
    order = ["bayescale posterior median", *REFERENCE_ESTIMATORS]
    return table[[c for c in order if c in table]].reset_index()


# ----------------------------------------------------------------------------- output
def markdown(table, columns=None, fmt_all: str | None = None) -> str:
    """A markdown table; ``fmt_all`` formats every float column like that score column."""
    cols = list(columns or table.columns)
    fmt = {
        "median_are": lambda v: f"{100 * v:.2f}%",
        "mean_are": lambda v: f"{100 * v:.2f}%",
        "rmsle": lambda v: f"{v:.4f}",
        "cov50": lambda v: f"{v:.2f}",
        "cov90": lambda v: f"{v:.2f}",
        "lpd": lambda v: f"{v:.2f}",
        "max_extrapolation": lambda v: f"{v:.1f}x",
        "fit_s": lambda v: f"{v:.1f}",
    }
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float) and v != v:
                cells.append("-")
            elif c in fmt and isinstance(v, int | float):
                cells.append(fmt[c](v))
            elif fmt_all and isinstance(v, float):
                cells.append(fmt[fmt_all](v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SHOW = [
    "dataset",
    "curve",
    "cut",
    "likelihood",
    "n_train",
    "n_test",
    "n_unscored",
    "max_extrapolation",
    "median_are",
    "rmsle",
    "cov50",
    "cov90",
    "lpd",
    "weak_E",
    "status",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 synthetic curves, fewer draws")
    ap.add_argument("--json", type=Path, help="write all rows as JSON here")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["synthetic", "epoch", "gadre", "open-athena", "revisiting", "reference"],
        help="run only these parts",
    )
    ap.add_argument("--curves", type=int, help="synthetic curves per law (200; --quick 20)")
    ap.add_argument("--single", action="store_true", help="loop of bs.fit, not bs.fit_many")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the point estimators scored beside bayescale on the synthetic curves",
    )
    args = ap.parse_args(argv)
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        count = min(4, os.cpu_count() or 1)
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"
    import jax
    import pandas as pd

    from bayescale.bench import git_commit_label
    from bayescale.check import (
        SYNTHETIC_LAWS,
        backtest_points,
        summarize,
        synthetic_backtest_curves,
    )

    parts = set(
        args.only or ["synthetic", "epoch", "gadre", "open-athena", "revisiting", "reference"]
    )
    curves = args.curves or (20 if args.quick else 200)
    draws = {"num_warmup": 400, "num_samples": 600} if args.quick else {}
    batch = False
    if not args.single:
        try:
            from bayescale.batch import fit_many  # noqa: F401

            batch = True
        except ImportError:  # before issue 4's batch engine: a loop of bs.fit
            batch = False
    report: dict = {
        "meta": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "jax": jax.__version__,
            "commit": git_commit_label(),
            "devices": [str(d) for d in jax.devices()],
            "quick": args.quick,
            "synthetic_curves": curves,
            "fit_many": bool(batch),
            "draws": draws or "bayescale.fit defaults (4 chains x (500 + 1000))",
        },
        "datasets": {},
    }
    real_points = []
    start_all = time.perf_counter()

    def run(name, data, law, **kw):
        t0 = time.perf_counter()
        pts = backtest_points(data, law, dataset=name, **kw)
        wall = time.perf_counter() - t0
        table = summarize(pts)
        print(f"\n### {name} ({law}; {wall:.0f} s)\n")
        print(markdown(table, [c for c in SHOW if c in table]))
        report["datasets"][name] = {
            "law": law,
            "wall_s": wall,
            "rows": table.to_dict(orient="records"),
        }
        return pts

    if "synthetic" in parts:
        print(f"## Synthetic: {curves} curves per law (SYNTHETIC data, known truth)")
        pooled, ref_pooled = [], []
        for law, axis in SYNTHETIC_LAWS.items():
            data, truth = synthetic_backtest_curves(law, curves, seed=args.seed)
            pts = backtest_points(
                data,
                law,
                axis=axis,
                fit_kwargs=dict(draws),
                fit_many=batch,
                dataset=f"synthetic-{law}",
            )
            pooled.append(pts)
            table = summarize(pts, by=["dataset", "cut"])
            print(f"\n### synthetic {law} (axis {axis})\n")
            print(markdown(table, [c for c in SHOW if c in table and c != "curve"]))
            report["datasets"][f"synthetic-{law}"] = {
                "law": law,
                "rows": table.to_dict(orient="records"),
            }
            if not args.no_reference:
                t0 = time.perf_counter()
                refs = reference_points(data, truth, law, axis=axis, dataset=f"synthetic-{law}")
                ref_pooled.append(refs)
                comparison = reference_table(pts, refs)
                print(
                    f"\nmedian ARE of point estimators on the same held-out runs "
                    f"({time.perf_counter() - t0:.0f} s):\n"
                )
                print(markdown(comparison, fmt_all="median_are"))
                report["datasets"][f"synthetic-{law}"]["reference"] = comparison.to_dict(
                    orient="records"
                )
        all_synth = pd.concat(pooled, ignore_index=True)
        table = summarize(all_synth, by=["cut"])
        ok = table["cov90"].between(0.85, 0.95).all() and (table["median_are"] <= 0.01).all()
        print("\n### synthetic, pooled over laws\n")
        print(markdown(table, [c for c in SHOW if c in table and c not in ("dataset", "curve")]))
        print(
            "\ntarget: pooled cov90 in [0.85, 0.95] and median ARE <= 1% at every cut: "
            + ("MET" if ok else "NOT MET")
        )
        report["synthetic_pooled"] = table.to_dict(orient="records")
        if ref_pooled:
            comparison = reference_table(
                all_synth, pd.concat(ref_pooled, ignore_index=True), by=["cut"]
            )
            print("\npooled median ARE, bayescale next to point estimators:\n")
            print(markdown(comparison, fmt_all="median_are"))
            report["synthetic_reference_pooled"] = comparison.to_dict(orient="records")

    FK = dict(draws)
    if "epoch" in parts:
        data = epoch(args.data_dir)
        for lik in ("lognormal", "student_t"):
            real_points.append(
                run(
                    f"epoch-chinchilla/{lik}",
                    data,
                    "chinchilla",
                    fit_kwargs={**FK, "likelihood": lik},
                )
            )
    if "gadre" in parts:
        real_points.append(
            run("gadre-overtraining", gadre(args.data_dir), "chinchilla", fit_kwargs=FK)
        )
    if "open-athena" in parts:
        real_points.append(
            run("open-athena-isoflops", open_athena(args.data_dir), "chinchilla", fit_kwargs=FK)
        )
    if "revisiting" in parts:
        data, mask = revisiting(args.data_dir, quick=args.quick)
        pts = run("revisiting-nsl", data, "power_d", split=mask, fit_kwargs=FK, fit_many=batch)
        real_points.append(pts)
        # per domain (the curve id starts with it: IC, LM, NMT, BIG-bench), pooled over curves
        pts = pts.assign(domain=pts["curve"].astype(str).str.split("/").str[0])
        table = summarize(pts, by=["domain"])
        print("\n### revisiting-nsl per domain, pooled over its curves\n")
        print(markdown(table, ["domain"] + [c for c in SHOW if c in table and c != "curve"]))
        report["datasets"]["revisiting-nsl"]["by_domain"] = table.to_dict(orient="records")
    if real_points:
        pts = pd.concat(real_points, ignore_index=True)
        pts = pts[pts["likelihood"] == "lognormal"]
        table = summarize(pts, by=["dataset", "cut"])
        print("\n## Real data, pooled per dataset and cut (lognormal likelihood)\n")
        print(markdown(table, [c for c in SHOW if c in table and c != "curve"] + ["n_fits"]))
        pooled = summarize(pts, by=["cut"])
        print("\n## Real data, pooled over datasets (lognormal likelihood)\n")
        print(
            markdown(
                pooled,
                [c for c in SHOW if c in pooled and c not in ("dataset", "curve")] + ["n_fits"],
            )
        )
        report["real_pooled_by_dataset"] = table.to_dict(orient="records")
        report["real_pooled"] = pooled.to_dict(orient="records")
    if "reference" in parts:
        rows = gadre_reference(args.data_dir)
        print("\n## Gadre et al. 2024 reference (least squares on their 5 small rpj runs)\n")
        for r in rows:
            print(
                f"- {r['model']} at M = {r['M']:g}: observed {r['loss']:.4f}, predicted "
                f"{r['least_squares']:.4f}, relative error {r['rel_error_pct']:.4f}% "
                f"(published {r['published_pct']}%)"
            )
        report["gadre_reference"] = rows
    report["meta"]["wall_s"] = time.perf_counter() - start_all
    print(f"\nwhole run: {report['meta']['wall_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
