"""Laws: formulas against hand-written NumPy, natural parameters, registry, user laws."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import bayescale as bs
from bayescale.laws import get


def _ref(**logs):
    return {k: jnp.asarray(v) for k, v in logs.items()}


def test_chinchilla_formula_and_natural_parameters():
    law = get("chinchilla")
    N = np.array([1e8, 1e9, 7e10])
    D = np.array([2e9, 3e10, 1.4e12])
    ref = _ref(N=19.0, D=22.0, loss=1.0)
    E, A, B, a, b = 1.8172, 482.01, 2085.43, 0.3478, 0.3658
    a_ref, b_ref = A * np.exp(-a * 19.0), B * np.exp(-b * 22.0)  # terms at the reference
    level = E + a_ref + b_ref
    p = {
        "log_L_ref": np.log(level),
        "frac": (a_ref + b_ref) / level,
        "split": a_ref / (a_ref + b_ref),
        "alpha": a,
        "beta": b,
    }
    got = np.asarray(law.predict(p, {"N": np.log(N), "D": np.log(D)}, ref))
    np.testing.assert_allclose(got, E + A / N**a + B / D**b, rtol=1e-12)
    nat = law.natural(p, ref)
    np.testing.assert_allclose([nat[k] for k in ("E", "A", "B", "alpha", "beta")], [E, A, B, a, b])


@pytest.mark.parametrize("x", ["N", "D", "C"])
def test_kaplan_and_power_formulas(x):
    xs = np.array([1e7, 1e9, 1e11]) * (1e9 if x == "C" else 1.0)
    ref = _ref(**{x: 20.0, "loss": 1.0})
    kaplan = get(f"kaplan_{x.lower()}")
    xc, alpha = 8.8e13, 0.076
    p = {"log_L_ref": alpha * (np.log(xc) - 20.0), f"alpha_{x}": alpha}
    np.testing.assert_allclose(
        np.asarray(kaplan.predict(p, {x: np.log(xs)}, ref)), (xc / xs) ** alpha, rtol=1e-12
    )
    np.testing.assert_allclose(float(kaplan.natural(p, ref)[f"{x}_c"]), xc, rtol=1e-10)
    power = get(f"power_{x.lower()}")
    E, A, a = 1.7, 400.0, 0.3
    level = E + A * np.exp(-a * 20.0)  # loss at the reference scale
    q = {"log_L_ref": np.log(level), "frac": A * np.exp(-a * 20.0) / level, "alpha": a}
    np.testing.assert_allclose(
        np.asarray(power.predict(q, {x: np.log(xs)}, ref)), E + A * xs**-a, rtol=1e-12
    )
    nat = power.natural(q, ref)
    np.testing.assert_allclose([float(nat["E"]), float(nat["A"])], [E, A], rtol=1e-10)


def test_kaplan_nd_formula_and_natural_round_trip():
    law = get("kaplan_nd")
    Nc, Dc, aN, aD = 8.8e13, 5.4e13, 0.076, 0.095
    N = np.array([1e8, 1e9, 1e10])
    D = np.array([1e10, 3e9, 1e11])
    ref = _ref(N=20.0, D=22.0, loss=1.0)
    # parameters that reproduce (Nc, Dc, aN, aD): u0, v0 are the two terms at the reference
    u0 = (aN / aD) * (np.log(Nc) - 20.0)
    v0 = np.log(Dc) - 22.0
    s = np.logaddexp(u0, v0)
    p = {"log_L_ref": aD * s, "share_N": np.exp(u0 - s), "alpha_N": aN, "alpha_D": aD}
    want = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    got = np.asarray(law.predict(p, {"N": np.log(N), "D": np.log(D)}, ref))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    nat = law.natural(p, ref)
    np.testing.assert_allclose([nat["N_c"], nat["D_c"]], [Nc, Dc], rtol=1e-8)


def test_registry_lists_every_shipped_law_and_rejects_unknown():
    assert {
        "kaplan_n",
        "kaplan_d",
        "kaplan_c",
        "kaplan_nd",
        "power_n",
        "power_d",
        "power_c",
        "chinchilla",
    } <= set(bs.laws.available())
    with pytest.raises(bs.UnknownLawError, match=r"known laws: .*chinchilla") as err:
        bs.laws.get("chinchila")
    assert isinstance(err.value, ValueError)
    for name in bs.laws.available():
        law = bs.laws.get(name)
        assert law.citation and law.formula, name


def test_user_law_from_function_matches_numpy():
    law = bs.laws.from_function(
        "test_user_power",
        lambda N, E, A, alpha: E + A * N**-alpha,
        inputs=("N",),
        priors={
            "E": dist.LogNormal(0.0, 1.0),
            "A": dist.LogNormal(3.0, 3.0),
            "alpha": dist.LogNormal(-1.0, 1.0),
        },
    )
    bs.laws.register(law, overwrite=True)
    assert bs.laws.get("test_user_power") is law
    N = np.array([1e6, 1e8])
    got = np.asarray(law.predict({"E": 1.5, "A": 300.0, "alpha": 0.3}, {"N": np.log(N)}, {}))
    np.testing.assert_allclose(got, 1.5 + 300.0 * N**-0.3, rtol=1e-12)
    with pytest.raises(ValueError, match="already registered"):
        bs.laws.register(law)


def test_user_law_that_ignores_an_input_gives_one_value_per_point():
    """A constant baseline law predicts one value per point (and per draw); its scalar output
    made the model fail on an IndexError."""
    law = bs.laws.from_function(
        "test_constant", lambda N, a: a, inputs=("N",), priors={"a": dist.LogNormal(0.0, 1.0)}
    )
    log_n = np.log(np.array([1e6, 1e7, 1e8]))
    np.testing.assert_allclose(np.asarray(law.predict({"a": 2.5}, {"N": log_n}, {})), [2.5] * 3)
    draws = {"a": np.array([[2.0], [3.0]])}  # (draw, 1) against (point,)
    assert np.asarray(law.predict(draws, {"N": log_n}, {})).shape == (2, 3)
    spec = bs.build_model(law)
    from numpyro.infer.util import log_density

    ld, _ = log_density(spec, (), {"log_x": {"N": log_n}, "ref": {"N": 0.0, "loss": 0.0},
                                         "log_loss": np.log([2.4, 2.5, 2.6])},
                        {"a": 2.5, "sigma": 0.05})  # fmt: skip
    assert np.isfinite(float(ld))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"priors": {"sigma": dist.HalfNormal(1.0)}}, r"parameter name\(s\) \['sigma'\] are taken"),
        ({"priors": {"N": dist.HalfNormal(1.0)}}, r"\['N'\] are taken"),
        ({"priors": {"a": 1.0}}, r"prior of 'a' must be a NumPyro distribution instance"),
        ({"priors": {"a": dist.LogNormal}}, r"prior of 'a' must be a NumPyro distribution"),
    ],
)
def test_user_law_with_bad_names_or_priors_is_refused_up_front(kwargs, match):
    """These failed deep in NumPyro (duplicate site names, 'float' has no attribute
    'support', a class where an instance belongs)."""
    with pytest.raises(ValueError, match=match):
        bs.laws.from_function("test_bad", lambda N, **p: N, inputs=("N",), **kwargs)
    with pytest.raises(ValueError, match="appear more than once"):
        bs.Law("twice", ("N",), (bs.Parameter("a", None), bs.Parameter("a", None)), lambda *a: 0)
