"""SBC of experimental parametrisations of the 1-break BNSL that are *not* in the library.

The shipped ``bnsl_1`` samples the slope of each segment (``alpha_0``, ``alpha_1``) and a break
location ``loc_1 ~ Normal(0, 1.15)`` around the data's centre (Normal(0, 2.3) when the first
three variants were measured; docs/convergence.md). This script measures, with
:func:`bayescale.check.sbc` on the default ``bnsl_1`` design (40 points over three decades,
half-span ``H`` = 3.45 nats), these alternatives:

* ``bounded``: the shipped coordinates, with the break kept between the data's edges,
  ``loc_1 = -H + 2 H u``, ``u ~ Beta(2, 2)``;
* ``edge``: the same bounded break, with the slopes of the reducible term sampled at the two
  edges of the data (``slope_lo``, ``slope_hi``, each the shipped segment prior
  LogNormal(log 0.3, 0.75)); the asymptotic slopes follow from them and may be negative in about
  1.5% of prior draws;
* ``ratio``: the left-edge slope and ``bend ~ Normal(0, 1)``, mapped to the log ratio of the two
  edge slopes inside the interval that keeps both asymptotic slopes positive (a logistic squash
  with slope 1 at ``bend = 0``);
* ``edge_normal`` and ``ratio_normal``: the edge and ratio coordinates with the shipped
  location prior instead of the bounded one;
* ``shipped``: ``bnsl_1`` itself, the baseline for the same seed and options.

Each simulation is drawn from the variant's own prior, so the ranks test the variant.
``--sigma-scale S`` replaces the noise prior HalfNormal(0.1) by HalfNormal(S), in the simulator
and the fit alike: a stress test on precise data, where the shipped law's failures gather.

Usage::

    python benchmarks/bnsl_variants.py edge [--num-simulations 40] [--seed 0] [--sigma-scale S]

Measured on the 2-core CPU machine (fit_many defaults with the re-fit), fits meeting the gate:

* 40 simulations, seed 0: ``bounded`` 0 of 8 (8 simulations), ``edge`` 5 of 40, ``ratio``
  2 of 40 (the shipped law then met it on 151 of 200); with the present location prior,
  ``edge_normal`` 37 of 40 (1 with divergent draws, 1 on ESS, 1 whose forecast at 10x
  overflowed), ``ratio_normal`` 21 of 40 (19 with divergent draws), ``shipped`` 37 of 40
  (2 divergent, 1 ESS), each about 12 minutes with two runs sharing the machine;
* precise data, ``--sigma-scale 0.015 --num-simulations 24 --seed 5``: ``shipped`` 15 of 24
  (5 with divergent draws, 4 on R-hat), ``edge_normal`` 17 of 24 (1 divergent, 4 on R-hat,
  1 ESS, 1 overflowed forecast). The edge slopes remove most divergences on precise data,
  not the slow mixing (simulations 12, 13, 18 and 20: R-hat 1.08-1.74 with the edge slopes,
  1.17-2.07 shipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.transforms import AffineTransform

from bayescale import check
from bayescale.bench import sbc_variant_report
from bayescale.laws import _priors, bnsl_1
from bayescale.laws.base import Law, Parameter

#: The coordinates this script can measure (``shipped`` is ``bnsl_1`` itself).
VARIANTS = ("bounded", "edge", "ratio", "edge_normal", "ratio_normal", "shipped")

#: Half-span of the default design in nats (D from 1e8 to 1e11).
H = 0.5 * math.log(1e3)


def _bounded_loc(ref):
    return dist.TransformedDistribution(dist.Beta(2.0, 2.0), AffineTransform(-H, 2.0 * H))


def _edge_logits(p):
    """``(edge - loc) / f`` at the left and right edges of the data."""
    return (-H - p["loc_1"]) / p["f_1"], (H - p["loc_1"]) / p["f_1"]


def _asymptotes_from_edges(p, s_r):
    """Asymptotic slopes ``alpha_0, alpha_1`` whose slope profile
    ``alpha_0 + (alpha_1 - alpha_0) sigmoid((lx - loc) / f)`` is ``slope_lo`` at the left edge
    and ``s_r`` at the right edge."""
    t_l, t_r = _edge_logits(p)
    u_l, u_r = jax.nn.sigmoid(t_l), jax.nn.sigmoid(t_r)
    s_l = p["slope_lo"]
    a0 = (s_l * u_r - s_r * u_l) / (u_r - u_l)
    a1 = (s_r * (1.0 - u_l) - s_l * (1.0 - u_r)) / (u_r - u_l)
    return a0, a1


def _asymptotes_edge(p):
    return _asymptotes_from_edges(p, p["slope_hi"])


def _asymptotes_ratio(p):
    t_l, t_r = _edge_logits(p)
    lo = jax.nn.log_sigmoid(-t_r) - jax.nn.log_sigmoid(-t_l)  # a1 > 0 needs log ratio > lo
    hi = jax.nn.log_sigmoid(t_r) - jax.nn.log_sigmoid(t_l)  # a0 > 0 needs log ratio < hi
    scale = (hi - lo) / (-lo * hi)  # d(log ratio)/d(bend) = 1 at bend = 0
    rho = lo + (hi - lo) * jax.nn.sigmoid(scale * p["bend"] + jnp.log(-lo) - jnp.log(hi))
    return _asymptotes_from_edges(p, p["slope_lo"] * jnp.exp(rho))


def variant(name: str) -> Law:
    """The ``bnsl_1`` variant ``name`` (one of :data:`VARIANTS`)."""
    if name == "shipped":
        return bnsl_1
    shipped = {p.name: p for p in bnsl_1.parameters}
    loc = Parameter("loc_1", _bounded_loc, "break location, inside the data's edges")
    suffix = ""
    if name in ("edge_normal", "ratio_normal"):
        loc, name, suffix = shipped["loc_1"], name.removesuffix("_normal"), "_normal"
    if name == "bounded":
        params = tuple(loc if p.name == "loc_1" else p for p in bnsl_1.parameters)
        return dataclasses.replace(bnsl_1, name="bnsl_1_bounded", parameters=params)
    if name == "edge":
        second = Parameter("slope_hi", _priors.exponent, "slope at the right edge")
        asymptotes = _asymptotes_edge
    elif name == "ratio":
        second = Parameter("bend", dist.Normal(0.0, 1.0), "squashed log ratio of edge slopes")
        asymptotes = _asymptotes_ratio
    else:
        raise ValueError(f"unknown variant {name!r}")

    def shipped_params(p):
        q = {k: p[k] for k in ("log_L_ref", "frac", "loc_1", "f_1")}
        q["alpha_0"], q["alpha_1"] = asymptotes(p)
        return q

    params = (
        shipped["log_L_ref"],
        shipped["frac"],
        Parameter("slope_lo", _priors.exponent, "slope at the left edge"),
        second,
        loc,
        shipped["f_1"],
    )
    return dataclasses.replace(
        bnsl_1,
        name=f"bnsl_1_{name}{suffix}",
        parameters=params,
        log_predict=lambda p, log_x, ref: bnsl_1.log_predict(shipped_params(p), log_x, ref),
        natural=lambda p, ref: bnsl_1.natural(shipped_params(p), ref),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--num-simulations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sigma-scale",
        type=float,
        default=None,
        help="noise prior HalfNormal(S) instead of the default (precise-data stress test)",
    )
    args = ap.parse_args()
    fit_kwargs = {}
    if args.sigma_scale is not None:
        if not args.sigma_scale > 0:
            ap.error(f"--sigma-scale must be > 0, got {args.sigma_scale}")
        fit_kwargs["priors"] = {"sigma": dist.HalfNormal(args.sigma_scale)}
    start = time.time()
    res = check.sbc(
        variant(args.variant),
        check.sbc_design(bnsl_1),
        num_simulations=args.num_simulations,
        seed=args.seed,
        fit_kwargs=fit_kwargs,
    )
    print(sbc_variant_report(res, time.time() - start))


if __name__ == "__main__":
    main()
