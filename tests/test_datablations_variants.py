"""The variant of benchmarks/datablations_variants.py means what its docstring says.

Its SBC figures (docs/convergence.md) compare the shipped data-constrained law
with the same law sampled in ``log_opt``; they are only worth something if ``log_opt`` *is* the
log ratio of the compute-optimal model size for the reference tokens to the reference model
size. Checked on prior draws against Muennighoff et al.'s ``N_opt(D)`` in natural units.
"""

from __future__ import annotations

import jax
import numpy as np
from conftest import load_benchmark

from bayescale.laws.datablations import optimal_params_for_tokens


def test_log_opt_is_the_compute_optimal_size_at_the_reference():
    mod = load_benchmark("datablations_variants")
    law = mod.variant(2.3)
    assert law.param_names == (
        "log_L_ref", "frac", "log_opt", "alpha", "beta", "R_N_star", "R_D_star",
    )  # fmt: skip
    ref = {"N": np.log(1e9), "D": np.log(3.6e10), "U": np.log(1e10), "loss": 1.0}
    key = jax.random.PRNGKey(0)
    draws = {
        p.name: np.asarray(p.prior_at(ref).sample(jax.random.fold_in(key, i), (500,)))
        for i, p in enumerate(law.parameters)
    }
    nat = {k: np.asarray(v, dtype=np.float64) for k, v in law.natural(draws, ref).items()}
    n_opt = optimal_params_for_tokens(np.exp(ref["D"]), nat)
    np.testing.assert_allclose(np.log(n_opt) - ref["N"], draws["log_opt"], atol=1e-9)
    # the same law: its prediction equals the shipped one at the derived split
    shipped = mod._build()
    log_x = {"N": np.log([1e8, 1e10]), "D": np.log([2e9, 4e11]), "U": np.log([1e9, 2e10])}
    one = {k: v[0] for k, v in draws.items()}
    np.testing.assert_allclose(
        law.log_predict(one, log_x, ref),
        shipped.log_predict(mod.split_from_opt(one), log_x, ref),
        rtol=1e-12,
    )
