"""The reparametrisations of benchmarks/bnsl_variants.py mean what docs/convergence.md says.

The script's SBC figures (docs/convergence.md) are only worth something if its
laws are the 1-break BNSL in other coordinates: the sampled edge slopes must be the local
log-log slopes of the reducible loss at the data's edges, and the ``ratio`` form must keep both
asymptotic slopes positive. Checked on prior draws against the slope of the shipped formula,
differentiated by JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("bnsl_variants")


def _prior_draws(law, num=300, seed=0):
    ref = {"D": 20.0, "loss": 0.9}
    key = jax.random.PRNGKey(seed)
    return ref, {
        p.name: p.prior_at(ref).sample(jax.random.fold_in(key, i), (num,))
        for i, p in enumerate(law.parameters)
    }


def _reducible_slope(law, params, lx, ref):
    """-d log(L - E) / d log x at ``lx`` (relative to the centre), per draw."""

    def log_reducible(p, x):
        p = {**p, "frac": jnp.asarray(1.0)}  # E = 0: the law is its reducible term
        return law.log_predict(p, {"D": jnp.atleast_1d(x + ref["D"])}, ref)[0]

    grad = jax.vmap(jax.grad(log_reducible, argnums=1), in_axes=(0, None))
    return -np.asarray(grad(params, lx))


@pytest.mark.parametrize("name", ["edge", "ratio", "edge_normal", "ratio_normal"])
def test_edge_slopes_are_the_slopes_at_the_data_edges(mod, name):
    law = mod.variant(name)
    ref, draws = _prior_draws(law)
    left = _reducible_slope(law, draws, -mod.H, ref)
    np.testing.assert_allclose(left, np.asarray(draws["slope_lo"]), rtol=1e-9)
    if name.startswith("edge"):
        right = _reducible_slope(law, draws, mod.H, ref)
        np.testing.assert_allclose(right, np.asarray(draws["slope_hi"]), rtol=1e-9)


def test_ratio_form_keeps_both_asymptotic_slopes_positive(mod):
    law = mod.variant("ratio")
    _, draws = _prior_draws(law, num=2000)
    a0, a1 = (np.asarray(a) for a in mod._asymptotes_ratio(draws))
    assert np.all(a0 > 0) and np.all(a1 > 0)
    # ... while the edge form, with independent edge slopes, does not (about 1.5% each)
    edge = mod.variant("edge")
    _, draws = _prior_draws(edge, num=2000)
    e0, e1 = (np.asarray(a) for a in mod._asymptotes_edge(draws))
    assert 0.002 < np.mean(e0 < 0) < 0.05 and 0.002 < np.mean(e1 < 0) < 0.05


def test_bounded_break_stays_between_the_edges(mod):
    law = mod.variant("bounded")
    _, draws = _prior_draws(law, num=2000)
    loc = np.asarray(draws["loc_1"])
    assert np.all(np.abs(loc) < mod.H) and loc.std() > 0.3 * mod.H


@pytest.mark.parametrize("name", ["edge_normal", "ratio_normal"])
def test_normal_variants_keep_the_shipped_break_prior(mod, name):
    from bayescale.laws import bnsl_1

    law = mod.variant(name)
    assert law.name == f"bnsl_1_{name}"
    shipped = {p.name: p for p in bnsl_1.parameters}["loc_1"]
    ours = {p.name: p for p in law.parameters}["loc_1"]
    assert ours is shipped
    # the shipped prior is unbounded: Normal(0, 1.15), so about 0.27% of draws fall beyond the
    # data's edges (|loc| > H = 3.45 nats, 3 sd), where the bounded variants never go
    _, draws = _prior_draws(law, num=20000, seed=1)
    loc = np.asarray(draws["loc_1"])
    assert abs(loc.std() - 3.0 * np.log(10.0) / 6.0) < 0.03  # MC sd of the sd: 0.006
    assert 20 <= np.sum(np.abs(loc) > mod.H) <= 90  # expected 54, Poisson sd 7
    if name == "edge_normal":
        a0, a1 = (np.asarray(a) for a in mod._asymptotes_edge(draws))
        # docs/convergence.md: 1.7% of prior draws have a negative asymptotic slope (MC sd 0.09 points)
        assert 0.012 < np.mean((a0 < 0) | (a1 < 0)) < 0.022


def test_shipped_baseline_is_the_library_law(mod):
    from bayescale.laws import bnsl_1

    assert mod.variant("shipped") is bnsl_1
    assert set(mod.VARIANTS) == {
        "bounded",
        "edge",
        "ratio",
        "edge_normal",
        "ratio_normal",
        "shipped",
    }
    with pytest.raises(ValueError, match="unknown variant 'kinked'"):
        mod.variant("kinked")


def test_sigma_scale_must_be_positive(mod, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bnsl_variants.py", "edge_normal", "--sigma-scale", "0"])
    with pytest.raises(SystemExit) as exc:
        mod.main()
    assert exc.value.code == 2
    assert "--sigma-scale must be > 0, got 0.0" in capsys.readouterr().err
