"""Batch benchmark: ``fit_many`` against a loop of single NumPyro fits and a curve_fit loop.

For K = 10, 100, 1,000, 10,000 synthetic ``power_n`` curves (20-60 points each, known
parameters), measured side by side in one run:

* ``fit_many``: NUTS for every curve in one compiled program per shape (compile and sampling
  reported apart);
* (a) a Python loop of single NumPyro ``MCMC(NUTS)`` fits of the *same* NumPyro model and
  settings (dense mass, target 0.9, ``jit_model_args=True``, curves padded to one length with
  the model's mask so the loop compiles once: its best case), timed on a sample of curves and
  reported per curve;
* (b) a loop of ``scipy.optimize.curve_fit`` point fits (no posterior), timed likewise.

Reports curves per second, per-curve ESS per second (median over curves of the smallest bulk
ESS over parameters, times curves per second) and speed-up ratios. Acceptance (issue 4):
``fit_many`` beats the NumPyro loop by at least 20x in curves per second at K = 1,000 on the
2-core CPU machine.

Usage::

    python benchmarks/bench_batch.py [--quick] [--sizes 10 100 1000 10000] [--json out.json]
                                     [--devices 1] [--chains 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI size: K up to 100, small loop samples")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of curves K")
    ap.add_argument("--chains", type=int, default=2, help="chains per curve (default 2)")
    ap.add_argument("--loop-sample", type=int, default=None, help="curves timed in the loops")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--devices", type=int, default=1, help="host CPU devices to shard over")
    ap.add_argument("--json", type=Path, help="write results as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the table as markdown here")
    args = ap.parse_args(argv)
    if args.devices > 1 and "xla_force_host_platform_device_count" not in os.environ.get(
        "XLA_FLAGS", ""
    ):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS
    from scipy.optimize import curve_fit

    import bayescale as bs
    from bayescale._fit import reference_point
    from bayescale.batch import fit_many, synthetic_curves
    from bayescale.infer import batch as engine
    from bayescale.model import build_model

    sizes = args.sizes or ([10, 100] if args.quick else [10, 100, 1000, 10000])
    loop_sample = args.loop_sample or (4 if args.quick else 12)
    warmup, samples, chains = 500, 1000, args.chains
    spec = build_model("power_n")

    def min_ess(samples_by_site):
        x = np.stack([np.asarray(v) for v in samples_by_site.values()], axis=-3)
        return engine.ess_bulk(x).min(axis=-1)

    # ------------------------------------------------------------------ (a) NumPyro loop
    pad_to = 64
    mcmc = MCMC(
        NUTS(spec, target_accept_prob=0.9, dense_mass=True),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
        jit_model_args=True,
    )

    def numpyro_one(d, seed):
        ref = reference_point(d, ("N",))
        xs, ys, mask = engine.pad_curves([{"N": np.log(d.N)}], [d.log_loss], pad_to)
        mcmc.run(
            jax.random.PRNGKey(seed),
            {"N": xs["N"][0]},
            {k: np.float64(v) for k, v in ref.items()},
            ys[0],
            mask[0],
        )
        draws = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(draws)
        return {k: np.asarray(v) for k, v in draws.items()}

    def law(n, e, log_a, alpha):
        return e + np.exp(log_a - alpha * np.log(n))

    def curve_fit_one(d):
        p0 = (0.5 * d.loss.min(), np.log(d.loss.max()) + 0.3 * np.log(d.N.min()), 0.3)
        popt, _ = curve_fit(law, d.N, d.loss, p0=p0, maxfev=5000)
        return popt

    # The loops do not depend on K: time them once on a sample, per curve.
    sample_data, _ = synthetic_curves(loop_sample + 1, seed=999)
    sample_curves = list(sample_data.curves().values())
    start = time.perf_counter()
    numpyro_one(sample_curves[0], 0)
    numpyro_compile = time.perf_counter() - start
    loop_times, loop_ess = [], []
    for i, d in enumerate(sample_curves[1:]):
        start = time.perf_counter()
        draws = numpyro_one(d, i + 1)
        loop_times.append(time.perf_counter() - start)
        loop_ess.append(float(min_ess(draws)))
    numpyro_per_curve = float(np.mean(loop_times))
    numpyro_ess = float(np.median(loop_ess))
    cf_data, _ = synthetic_curves(200, seed=998)
    cf_curves = list(cf_data.curves().values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        for d in cf_curves:
            try:
                curve_fit_one(d)
            except RuntimeError:
                pass
        cf_per_curve = (time.perf_counter() - start) / len(cf_curves)

    # ------------------------------------------------------------------ fit_many
    rows = []
    for K in sizes:
        data, _ = synthetic_curves(K, seed=K)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            batch = fit_many(
                data,
                "power_n",
                num_warmup=warmup,
                num_samples=samples,
                num_chains=chains,
                batch_size=args.batch_size,
                retry=False,
                progress=False,
                rng_key=0,
            )
            wall = time.perf_counter() - start
        compile_s = batch.timing["compile_s"]
        run_s = wall - compile_s
        ess = float(np.median(batch.diagnostics["ess_bulk"].min(axis=1)))
        cps = K / run_s
        row = {
            "K": K,
            "fit_many_compile_s": round(compile_s, 2),
            "fit_many_run_s": round(run_s, 2),
            "fit_many_curves_per_s": round(cps, 2),
            "fit_many_ess_per_s": round(ess * cps, 1),
            "fit_many_median_ess": round(ess, 1),
            "fit_many_ok_fraction": round(float(np.mean(batch.status == "ok")), 3),
            "numpyro_loop_curves_per_s": round(1 / numpyro_per_curve, 3),
            "numpyro_loop_ess_per_s": round(numpyro_ess / numpyro_per_curve, 1),
            "curve_fit_loop_curves_per_s": round(1 / cf_per_curve, 1),
            "speedup_vs_numpyro_loop": round(cps * numpyro_per_curve, 1),
            "ess_per_s_ratio_vs_numpyro_loop": round(
                (ess * cps) / (numpyro_ess / numpyro_per_curve), 1
            ),
            "speedup_vs_curve_fit_loop": round(cps * cf_per_curve, 3),
            "num_chunks": batch.timing["num_chunks"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "devices": [str(d) for d in jax.local_devices()],
        "law": "power_n",
        "settings": {"num_warmup": warmup, "num_samples": samples, "num_chains": chains},
        "numpyro_loop": {
            "compile_s": round(numpyro_compile, 2),
            "per_curve_s": round(numpyro_per_curve, 3),
            "median_ess": round(numpyro_ess, 1),
            "timed_curves": len(loop_times),
            "padded_to": pad_to,
        },
        "curve_fit_loop": {"per_curve_ms": round(1000 * cf_per_curve, 3), "timed_curves": 200},
        "bayescale": bs.__version__,
    }
    header = (
        "| K | fit_many compile s | fit_many run s | curves/s | ESS/s | NumPyro loop curves/s "
        "| NumPyro ESS/s | curve_fit curves/s | speed-up vs NumPyro | ESS/s ratio | ok |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['K']} | {r['fit_many_compile_s']} | {r['fit_many_run_s']} | "
            f"{r['fit_many_curves_per_s']} | {r['fit_many_ess_per_s']} | "
            f"{r['numpyro_loop_curves_per_s']} | {r['numpyro_loop_ess_per_s']} | "
            f"{r['curve_fit_loop_curves_per_s']} | {r['speedup_vs_numpyro_loop']}x | "
            f"{r['ess_per_s_ratio_vs_numpyro_loop']}x | {r['fit_many_ok_fraction']} |"
        )
    table = "\n".join(lines)
    print(json.dumps(meta, indent=1))
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    at_1000 = [r for r in rows if r["K"] == 1000]
    if at_1000 and at_1000[0]["speedup_vs_numpyro_loop"] < 20:
        print("FAIL: fit_many is less than 20x faster than the NumPyro loop at K = 1000")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
