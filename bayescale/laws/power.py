"""Single-input power laws: Kaplan et al. 2020 and the power law with irreducible loss."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import _priors
from .base import Law, Parameter

KAPLAN_2020 = (
    "Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361 (Eqs. 1.1-1.3)"
)
GPT4_2023 = "OpenAI 2023, GPT-4 Technical Report, arXiv:2303.08774 (Sec. 3.1, L(C) = a C^b + c)"
HESTNESS_2017 = (
    "Hestness et al. 2017, Deep Learning Scaling is Predictable, Empirically, arXiv:1712.00409; "
    "Henighan et al. 2020, Scaling Laws for Autoregressive Generative Modeling, arXiv:2010.14701"
)

_INPUT_WORD = {"N": "parameters", "D": "tokens", "C": "compute (FLOP)"}


def _kaplan(x: str) -> Law:
    r"""Kaplan et al. 2020 pure power law ``L = (X_c / X)^alpha_X``.

    Sampled as ``log L = log_L_ref - alpha_X (log X - log X_ref)``: ``log_L_ref`` is the log loss at
    the reference scale ``X_ref`` (geometric mean of the data); ``X_c = X_ref exp(log_L_ref /
    alpha_X)``.
    """
    a = f"alpha_{x}"

    def log_predict(p, log_x, ref):
        return p["log_L_ref"] - p[a] * (log_x[x] - ref[x])

    def natural(p, ref):
        return {f"{x}_c": jnp.exp(ref[x] + p["log_L_ref"] / p[a]), a: p[a]}

    return Law(
        name=f"kaplan_{x.lower()}",
        inputs=(x,),
        parameters=(
            Parameter(
                "log_L_ref", _priors.log_loss_at_reference, "log loss at the reference scale"
            ),
            Parameter(a, _priors.kaplan_exponent, f"exponent of {_INPUT_WORD[x]}"),
        ),
        log_predict=log_predict,
        natural=natural,
        natural_names=(f"{x}_c", a),
        formula=f"L = ({x}_c / {x})^{a}",
        citation=KAPLAN_2020,
    )


def _reducible_fraction_prior(ref):
    import numpyro.distributions as dist

    return dist.Beta(1.5, 1.5)


def _power(x: str) -> Law:
    r"""Power law with irreducible loss ``L = E + A x^(-alpha)``.

    Sampled by the loss at the reference scale ``L_ref``, the reducible fraction of it ``frac``
    and ``alpha``: ``E = L_ref (1 - frac)``, ``A x_ref^-alpha = L_ref frac``. The data pin down
    ``L_ref`` on their own and leave only the (frac, alpha) trade-off, which halves the NUTS
    steps per draw and doubles ESS against sampling ``(E, log A, alpha)`` (measured on the
    recovery designs of tests/test_recovery.py).
    """

    def log_predict(p, log_x, ref):
        reducible = p["log_L_ref"] + jnp.log(p["frac"]) - p["alpha"] * (log_x[x] - ref[x])
        log_e = jnp.broadcast_to(p["log_L_ref"] + jnp.log1p(-p["frac"]), jnp.shape(reducible))
        return logsumexp(jnp.stack([log_e, reducible]), axis=0)

    def natural(p, ref):
        level = jnp.exp(p["log_L_ref"])
        return {
            "E": level * (1.0 - p["frac"]),
            "A": level * p["frac"] * jnp.exp(p["alpha"] * ref[x]),
            "alpha": p["alpha"],
        }

    return Law(
        name=f"power_{x.lower()}",
        inputs=(x,),
        parameters=(
            Parameter(
                "log_L_ref", _priors.log_loss_at_reference, "log loss at the reference scale"
            ),
            Parameter("frac", _reducible_fraction_prior, "reducible fraction of the loss there"),
            Parameter("alpha", _priors.exponent, f"exponent of {_INPUT_WORD[x]}"),
        ),
        log_predict=log_predict,
        natural=natural,
        natural_names=("E", "A", "alpha"),
        formula=f"L = E + A * {x}^(-alpha)",
        citation=GPT4_2023 if x == "C" else HESTNESS_2017,
    )


kaplan_n = _kaplan("N")
kaplan_d = _kaplan("D")
kaplan_c = _kaplan("C")
power_n = _power("N")
power_d = _power("D")
power_c = _power("C")
