"""Batch benchmark: ``fit_many`` against a loop of single NumPyro fits and a curve_fit loop.

For K = 10, 100, 1,000, 10,000 synthetic ``power_n`` curves (20-60 points each, known
parameters), measured side by side in one run:

* ``fit_many``: NUTS for every curve in one compiled program per shape (compile and sampling
  reported apart), with its sampler overhead (sampling time over gradient evaluations x one
  batched gradient);
* (a) a Python loop of single NumPyro ``MCMC(NUTS)`` fits of the *same* NumPyro model and
  settings (dense mass, target 0.9, ``jit_model_args=True``, curves padded to one length with
  the model's mask so the loop compiles once: its best case), timed on a sample of curves and
  reported per curve;
* (b) a loop of ``scipy.optimize.curve_fit`` point fits (no posterior), timed likewise.

The measurement code is :func:`bayescale.bench.bench_batch`; the whole suite is
``python -m benchmarks`` / ``bayescale bench``. Acceptance (issue 4): ``fit_many`` beats the
NumPyro loop by at least 20x in curves per second at K = 1,000 on the 2-core CPU machine.

Usage::

    python benchmarks/bench_batch.py [--quick] [--sizes 10 100 1000 10000] [--json out.json]
                                     [--markdown out.md] [--devices 1] [--chains 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = [
    ("K", "K"),
    ("compile_s", "fit_many compile s"),
    ("run_s", "fit_many run s"),
    ("curves_per_s", "curves/s"),
    ("ess_per_s", "ESS/s"),
    ("numpyro_loop_time_per_curve_s", "NumPyro loop s/curve"),
    ("curve_fit_loop_time_per_curve_s", "curve_fit s/curve"),
    ("speedup_vs_numpyro_loop", "speed-up vs NumPyro"),
    ("ess_per_s_ratio_vs_numpyro_loop", "ESS/s ratio"),
    ("sampler_overhead", "sampler overhead"),
    ("lane_utilisation", "lane utilisation"),
    ("ok_fraction", "ok"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI size: K up to 100, small loop samples")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of curves K")
    ap.add_argument("--chains", type=int, default=2, help="chains per curve (default 2)")
    ap.add_argument("--loop-sample", type=int, default=None, help="curves timed in the loops")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--devices", type=int, default=1, help="host CPU devices to shard over")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
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
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bayescale import bench

    sizes = args.sizes or ([10, 100] if args.quick else list(bench.DEFAULT_SIZES))
    section = bench.bench_batch(
        sizes,
        num_chains=args.chains,
        batch_size=args.batch_size,
        loop_sample=args.loop_sample or (4 if args.quick else 12),
        curve_fit_sample=200,
        dtype=args.dtype,
        progress=lambda message: print(message, flush=True),
    )
    meta = {"environment": bench.environment(args.dtype)}
    meta.update({k: v for k, v in section.items() if k != "rows"})
    table = bench._table(section["rows"], COLUMNS)
    print(json.dumps(bench._jsonable(meta), indent=1))
    print(table)
    if args.json:
        doc = {"meta": meta, "rows": section["rows"]}
        args.json.write_text(json.dumps(bench._jsonable(doc), indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    at_1000 = [r for r in section["rows"] if r["K"] == 1000]
    if at_1000 and (at_1000[0]["speedup_vs_numpyro_loop"] or 0) < 20:
        print("FAIL: fit_many is less than 20x faster than the NumPyro loop at K = 1000")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
