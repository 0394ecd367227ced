"""``python -m benchmarks``: the bayescale benchmark suite (the same runner as ``bayescale bench``).

Run from the repository root. The measurement code lives in :mod:`bayescale.bench` so that
``bayescale bench`` works from an installed wheel, where this folder is absent.

Usage::

    python -m benchmarks [--quick] [--device cpu|gpu] [--dtype float64|float32]
                         [--sizes K ...] [--only single map batch sbc] [--out DIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The SciPy baselines run fastest with one BLAS thread (set before NumPy starts; bayescale.bench
# also pins it with threadpoolctl when installed). JAX does not use BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from bayescale.bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
