"""Single-fit benchmark: one 4-chain NUTS fit of the Chinchilla law on Epoch's 240 points.

Measures, side by side in one run: bayescale.fit (compile and sampling apart, ESS per second),
the textbook NumPyro ``MCMC`` on the *same* NumPyro model and settings (chain_method
"vectorized" and "sequential") and emcee on the same log density, and reports ratios. Targets on
the 2-core CPU machine (issue 2): sampling <= 5 s and compile <= 10 s for 4 chains x (500
warm-up + 1,000 draws). The measurement code is :func:`bayescale.bench.bench_single`; the whole
suite is ``python -m benchmarks`` / ``bayescale bench``.

Usage::

    python benchmarks/bench_single.py [--quick] [--json results.json] [--devices 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--no-emcee", action="store_true", help="leave out the emcee baseline")
    args = ap.parse_args(argv)
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bayescale import bench

    settings = dict(bench.QUICK["single"] if args.quick else bench.FULL["single"])
    if args.quick:  # this script's historical --quick: 250 + 500 draws, vectorized only
        settings.update(num_warmup=250, num_samples=500)
    if args.no_emcee:
        settings["emcee_walkers"] = 0
    section = bench.bench_single(data_dir=args.data_dir, **settings)
    result = {"benchmark": "single_fit", "environment": bench.environment(), **section}
    print(
        f"single fit, {section['data']}, {section['num_chains']} chains x "
        f"({section['num_warmup']} + {section['num_samples']}), "
        f"{result['environment']['num_devices']} device(s)"
    )
    print(
        f"{'method':28s} {'compile s':>10s} {'sampling s':>11s} {'min ESS':>8s} {'ESS/s':>8s} "
        f"{'bayescale ESS/s ratio':>22s}"
    )
    for r in section["rows"]:
        if r["status"] != "ok":
            print(f"{r['method']:28s} {r['status']}")
            continue
        print(
            f"{r['method']:28s} {r['compile_s']:10.2f} {r['sampling_s']:11.2f} "
            f"{r['min_ess']:8.0f} {r['ess_per_s']:8.0f} {r['ess_per_s_ratio']:22.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(bench._jsonable(result), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
