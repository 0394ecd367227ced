"""Chain starts: a start where the log density is not finite is replaced by a prior draw
where it is (finite_init), and a chain that finds none is named by the diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest

import bayescale as bs
from bayescale.infer.nuts import finite_blocks, finite_init
from bayescale.results import ConvergenceWarning

INIT_TRIES = 16  # candidates per chain in these tests

jax.config.update("jax_enable_x64", True)


def test_finite_init_keeps_finite_starts_and_takes_the_first_finite_candidate():
    # potential: finite only where x > 0 (log of a negative loss is NaN)
    def pe(u):
        return -jnp.log(u["x"]) + u["x"]

    inits = {"x": jnp.array([0.5, -1.0, 2.0, -3.0])}
    cand = np.full((INIT_TRIES, 4), -1.0)
    cand[3, 1] = 7.0  # chain 1: first finite candidate is try 3 ...
    cand[5, 1] = 9.0  # ... not this later one
    cand[0, 0] = 4.0  # chain 0 is finite already: its candidates are ignored
    # chain 3 has no finite candidate: it keeps its point
    out = finite_init(pe, inits, {"x": jnp.asarray(cand)})
    np.testing.assert_array_equal(np.asarray(out["x"]), [0.5, 7.0, 2.0, -3.0])


def test_finite_init_moves_whole_points_with_trailing_axes():
    # (chain, curve) points: chain 0 has one curve where the log is NaN, so its whole point
    # moves to the candidate; chain 1 is finite and stays
    def pe(u):
        return -jnp.sum(jnp.log(u["w"]))

    inits = {"w": jnp.array([[-1.0, 1.0], [1.0, 3.0]])}
    cand = np.ones((INIT_TRIES, 2, 2)) * 2.0
    out = finite_init(pe, inits, {"w": jnp.asarray(cand)})
    np.testing.assert_array_equal(np.asarray(out["w"]), [[2.0, 2.0], [1.0, 3.0]])


def test_a_chain_that_never_moves_is_counted_whatever_its_energy():
    """A start with a finite value but a NaN gradient is not moved (only values are checked);
    its chain repeats its start with a finite energy, and is counted as stuck all the same."""
    from bayescale.results import stuck_chains

    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(size=(4, 50)), "b": rng.normal(size=(4, 50, 3))}
    energy = rng.normal(size=(4, 50))
    assert stuck_chains(draws, energy) == 0
    draws["a"][2], draws["b"][2] = 0.7, 1.5  # chain 2 repeats one point
    energy[3] = np.nan  # chain 3's energy is never finite
    assert stuck_chains(draws, energy) == 2


def test_finite_blocks_repairs_each_block_of_a_chain_whose_start_is_not_finite():
    # a joint density: population p, blocks finite only where x > 0, entering a squared
    # residual as a law's log loss does (so a NaN block has a NaN gradient)
    def pe(u):
        return u["population"] ** 2 + jnp.log(u["c0"]) ** 2 + jnp.log(u["c1"]) ** 2

    inits = {
        "population": jnp.array([1.0, 2.0]),
        "c0": jnp.array([-1.0, 1.0]),  # chain 0: c0 invalid, c1 valid -> only c0 replaced
        "c1": jnp.array([3.0, 1.0]),  # chain 1: valid, unchanged
    }
    cand = {
        "population": jnp.full((INIT_TRIES, 2), 9.0),
        "c0": jnp.full((INIT_TRIES, 2), -5.0).at[2, 0].set(0.25),
        "c1": jnp.full((INIT_TRIES, 2), 8.0),
    }
    out = finite_blocks(pe, inits, cand, "population")
    assert {k: np.asarray(v).tolist() for k, v in out.items()} == {
        "population": [1.0, 2.0],
        "c0": [0.25, 1.0],
        "c1": [3.0, 1.0],
    }


def _lin_log(prior_a):
    # L = a - b log(N / 1e6): a prior on a centred at 0 puts about half the dispersed starts
    # where the loss is negative at the largest N
    return bs.laws.from_function(
        "lin_log_init_test",
        lambda N, a, b: a - b * jnp.log(N / 1e6),
        inputs=("N",),
        priors={"a": prior_a, "b": dist.Normal(0.0, 0.3)},
    )


def _data(seed=0):
    rng = np.random.default_rng(seed)
    n = np.geomspace(1e6, 1e9, 12)
    loss = (3.0 - 0.1 * np.log(n / 1e6)) * np.exp(rng.normal(0.0, 0.01, n.size))
    return pd.DataFrame({"N": n, "loss": loss})


def test_a_user_law_negative_at_some_starts_still_converges():
    # Before finite_init three of the four chains stayed at a start with a negative loss:
    # 6,000 divergent draws and R-hat 9.4 blamed on the chains' disagreement.
    data = _data()
    fit = bs.fit(data, law=_lin_log(dist.Normal(0.0, 2.0)), rng_key=0, retry=False)
    conv = fit.convergence
    assert conv.converged, conv.problems
    assert conv.stuck_chains == 0
    # the truth (a = 3, b = 0.1) lies within 4 posterior sd
    for name, truth in (("a", 3.0), ("b", 0.1)):
        draws = fit.samples[name].ravel()
        assert abs(draws.mean() - truth) < 4 * draws.std(), name


def test_a_law_with_no_finite_start_is_named_not_blamed_on_mixing():
    law = bs.laws.from_function(
        "negative_init_test",
        lambda N, a: -a * jnp.ones_like(N),
        inputs=("N",),
        priors={"a": dist.LogNormal(0.0, 1.0)},
    )
    with pytest.warns(ConvergenceWarning, match="never moved"):
        fit = bs.fit(_data(), law=law, rng_key=0, retry=False, num_warmup=20, num_samples=20)
    conv = fit.convergence
    assert conv.stuck_chains == 4
    assert conv.status == "divergences" and conv.fails_badly
    assert conv.problems[0].startswith("4 chain(s) never moved")
    assert "positive and finite" in conv.remedy()
    with pytest.warns(ConvergenceWarning):
        batch = bs.fit_many(
            pd.concat([_data(0).assign(curve="a"), _data(1).assign(curve="b")]),
            law=law,
            curve="curve",
            retry=False,
            num_warmup=20,
            num_samples=20,
            progress=False,
        )
    assert [batch.convergence(k).stuck_chains for k in ("a", "b")] == [4, 4]
    assert "never moved" in batch.message("a")


def test_a_chain_stuck_at_a_finite_log_density_is_not_blamed_on_the_loss():
    """A log density that is finite where its gradient is not (here everywhere: the law's
    value is a, its gradient NaN) rejects every step, and warm-up shrinks the step size
    towards 0; float32 on very precise data does the same. The message said the log density
    "or its gradient" was not finite and asked whether the loss was <= 0: the finite case is
    now told apart, with its own remedy."""
    law = bs.laws.from_function(
        "nan_gradient_test",
        lambda N, a: (a + jnp.sqrt(a - a)) * jnp.ones_like(N),  # d/da sqrt(0) = NaN
        inputs=("N",),
        priors={"a": dist.LogNormal(0.0, 1.0)},
    )
    with pytest.warns(ConvergenceWarning, match="never moved"):
        fit = bs.fit(_data(), law=law, rng_key=0, retry=False, num_warmup=20, num_samples=20)
    conv = fit.convergence
    assert conv.stuck_chains == conv.stuck_finite == 4
    assert conv.problems[0].startswith("4 chain(s) never moved from a start with a finite log")
    assert not any("loss <= 0" in p for p in conv.problems)
    assert conv.remedy().startswith("check that the law's gradient is finite wherever its")
    assert "fit in float64 if this fit ran in float32" in conv.remedy()
    assert "float" not in conv.remedy(cli=True)  # the CLI fits in float64 only
    with pytest.warns(ConvergenceWarning):
        batch = bs.fit_many(
            {"a": _data(0), "b": _data(1)}, law=law, retry=False, num_warmup=20,
            num_samples=20, progress=False,
        )  # fmt: skip
    assert [batch.convergence(k).stuck_finite for k in ("a", "b")] == [4, 4]
    assert "from a start with a finite log density" in batch.message("a")
    # both kinds at once are counted apart
    both = bs.results.Convergence(
        max_rhat=1.0, min_ess_bulk=1e3, min_ess_tail=1e3, divergences=0, num_draws=100,
        min_bfmi=1.0, stuck_chains=3, stuck_finite=1,
    )  # fmt: skip
    assert [p[:40] for p in both.problems] == [
        "2 chain(s) never moved: the log density ",
        "1 chain(s) never moved from a start with",
    ]


def test_pooled_starts_are_repaired_curve_by_curve():
    # a joint prior draw must give a positive loss on all four curves at once (about 1 in 40
    # under this prior): before finite_blocks two of the four chains never moved
    law = _lin_log(dist.Normal(0.0, 2.0))
    frames = [_data(c).assign(curve=f"c{c}") for c in range(4)]
    pooled = bs.pooling.fit_pooled(
        pd.concat(frames),
        law=law,
        share="b",
        curve="curve",
        progress=False,
        rng_key=0,
        num_warmup=300,
        num_samples=300,
        retry=False,
    )
    for c in range(4):
        assert pooled.convergence(f"c{c}").stuck_chains == 0
        draws = pooled[f"c{c}"].samples["a"].ravel()
        assert abs(draws.mean() - 3.0) < 4 * draws.std()
