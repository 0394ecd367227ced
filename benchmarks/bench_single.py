"""Single-fit benchmark: one 4-chain NUTS fit of the Chinchilla law on Epoch's 240 points.

Measures, side by side in one run: bayescale.fit (compile and sampling apart, ESS per second) and
the textbook NumPyro ``MCMC`` on the *same* NumPyro model and settings (chain_method
"vectorized" and "sequential"), and reports ratios. Targets on the 2-core CPU machine (issue 2):
sampling <= 5 s and compile <= 10 s for 4 chains x (500 warm-up + 1,000 draws).

Usage::

    python benchmarks/bench_single.py [--quick] [--json results.json] [--devices 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer draws, no sequential baseline")
    ap.add_argument("--json", type=Path, help="write results as JSON here")
    ap.add_argument(
        "--devices",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="host CPU devices for parallel chains (XLA flag; default min(4, cores))",
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
    )
    args = ap.parse_args(argv)
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    import bayescale as bs
    from bayescale import _arviz_compat as azc
    from bayescale._fit import reference_point
    from bayescale.model import build_model

    warmup, samples = (250, 500) if args.quick else (500, 1000)
    data = bs.datasets.load("epoch-chinchilla", data_dir=args.data_dir, drop_highest_loss=5)
    rows = []

    def record(name, compile_s, sampling_s, draws, extra=None):
        ess = min(min(azc.ess(draws, "bulk").values()), min(azc.ess(draws, "tail").values()))
        rows.append(
            {
                "method": name,
                "compile_s": compile_s,
                "sampling_s": sampling_s,
                "min_ess": ess,
                "ess_per_s": ess / sampling_s,
                **(extra or {}),
            }
        )

    # bayescale: first call compiles + samples, second call is the warm run
    kw = {"num_warmup": warmup, "num_samples": samples, "retry": False}
    bs.fit(data, law="chinchilla", rng_key=0, **kw)
    fit = bs.fit(data, law="chinchilla", rng_key=1, **kw)
    sampled = dict(fit.samples)
    t0 = time.perf_counter()
    bs.fit(data, law="chinchilla", rng_key=2, **kw)
    total_warm = time.perf_counter() - t0
    record(
        "bayescale.fit",
        _first_compile(bs, data, kw),
        fit.timing["sampling_s"],
        sampled,
        {
            "warm_call_s": total_warm,
            "divergences": fit.convergence.divergences,
            "max_rhat": fit.convergence.max_rhat,
        },
    )

    # textbook NumPyro MCMC on the same model
    spec = build_model("chinchilla")
    ref = reference_point(data, ("N", "D"))
    log_x = {k: jax.numpy.asarray(v) for k, v in data.log_inputs().items() if k in ("N", "D")}
    refj = {k: jax.numpy.asarray(v) for k, v in ref.items()}
    methods = ["vectorized"] if args.quick else ["vectorized", "sequential"]
    if jax.local_device_count() >= 4:
        methods.append("parallel")
    log_loss = jax.numpy.asarray(data.log_loss)

    def model():  # the same NumPyro model, data bound by closure as in a hand-written script
        spec(log_x, refj, log_loss)

    for method in methods:
        mcmc = MCMC(
            NUTS(model, target_accept_prob=0.9, dense_mass=True),
            num_warmup=warmup,
            num_samples=samples,
            num_chains=4,
            chain_method=method,
            progress_bar=False,
        )
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(0))
        jax.block_until_ready(mcmc.get_samples())
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(1))
        jax.block_until_ready(mcmc.get_samples())
        warm_s = time.perf_counter() - t0
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        record(
            f"numpyro.MCMC[{method}]",
            max(first_s - warm_s, 0.0),
            warm_s,
            draws,
            {"warm_call_s": warm_s},
        )

    base = rows[0]
    for r in rows:
        r["sampling_ratio_vs_bayescale"] = r["sampling_s"] / base["sampling_s"]
        r["ess_per_s_ratio_bayescale_over_this"] = base["ess_per_s"] / r["ess_per_s"]
    result = {
        "benchmark": "single_fit",
        "data": "epoch-chinchilla (240 rows)",
        "law": "chinchilla",
        "chains": 4,
        "num_warmup": warmup,
        "num_samples": samples,
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "bayescale": bs.__version__,
        "dtype": "float64",
        "rows": rows,
    }
    print(
        f"single fit, Epoch Chinchilla data (240 rows), 4 chains x ({warmup} + {samples}), "
        f"{jax.local_device_count()} device(s)"
    )
    print(
        f"{'method':28s} {'compile s':>10s} {'sampling s':>11s} {'min ESS':>8s} {'ESS/s':>8s} "
        f"{'bayescale ESS/s ratio':>22s}"
    )
    for r in rows:
        print(
            f"{r['method']:28s} {r['compile_s']:10.2f} {r['sampling_s']:11.2f} "
            f"{r['min_ess']:8.0f} {r['ess_per_s']:8.0f} {r['ess_per_s_ratio_bayescale_over_this']:22.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


def _first_compile(bs, data, kw) -> float:
    """Compile time of a fresh program: clear bayescale's executable cache and re-fit."""
    from bayescale.infer import nuts

    nuts._EXECUTABLES.clear()
    nuts._RUNNERS.clear()
    fit = bs.fit(data, law="chinchilla", rng_key=0, **kw)
    return fit.timing["compile_s"]


if __name__ == "__main__":
    raise SystemExit(main())
