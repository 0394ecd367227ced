"""Matplotlib figures of fits and plans: data with credible bands, IsoFLOP profiles, frontiers.

Every function takes ``ax=None`` (a new figure is made) or an existing Axes and returns the Axes
it drew on (:func:`plot_posterior` takes and returns a square array of Axes). Bands are central
credible intervals of the law's mean loss over the posterior draws, 50% and 90% by default;
curves continue beyond the fitted data into the extrapolation region, which is shaded and
bounded by a dotted line.

References
----------
Hoffmann et al. 2022, arXiv:2203.15556 (IsoFLOP profiles, Figure 3; frontier, Figure 1);
Besiroglu et al. 2024, arXiv:2404.10102 (tokens per parameter with intervals, Figure 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import planning
from .check import interval_masses
from .model import beta_precision
from .results import ConvergenceWarning, Fit, _check_prob

__all__ = [
    "plot_fit",
    "plot_frontier",
    "plot_isoflop",
    "plot_posterior",
    "plot_residuals",
]

_LABELS = {
    "N": "parameters N",
    "D": "training tokens D",
    "C": "training compute C (FLOP)",
    "loss": "loss",
}
_EXTRAPOLATION_SHADE = {"color": "0.5", "alpha": 0.08, "lw": 0}
_EDGE = {"color": "0.35", "ls": ":", "lw": 1.2}
_CMAP = "viridis"


# ---------------------------------------------------------------------------------- helpers
def _new_axes(ax: Axes | None, figsize=(8.0, 4.8)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _probs(prob: float | Sequence[float], draws: int | None = None) -> list[float]:
    """The band masses, widest first (drawn underneath); the widest is checked against the
    posterior's ``draws`` (an IntervalWarning at the plotting call when too few)."""
    probs = sorted(interval_masses(prob), reverse=True)
    if probs and draws is not None and draws > 1:  # law constants: one draw, no bands
        _check_prob(probs[0], draws, stacklevel=4)  # the widest says it for all
    return probs


def _sci(value: float, name: str | None = None) -> str:
    """Mathtext ``3×10^{19}`` (and ``C = ...`` with a name)."""
    exp = math.floor(math.log10(value))
    mant = value / 10**exp
    if round(mant, 1) >= 10:
        mant, exp = mant / 10, exp + 1
    body = f"10^{{{exp}}}" if abs(mant - 1) < 0.05 else f"{mant:.2g}\\times10^{{{exp}}}"
    return f"${name} = {body}$" if name else f"${body}$"


def _bands(
    ax: Axes,
    x: np.ndarray,
    log_mu: np.ndarray,
    probs: list[float],
    color,
    *,
    ls="-",
    label=None,
    zorder=2,
) -> None:
    """Median line and central bands of ``exp(log_mu)`` (draws, points) against ``x``.

    A single draw (published constants) has no bands: only its line is drawn.
    """
    if log_mu.shape[0] > 1:
        for p, alpha in zip(probs, _band_alpha(len(probs)), strict=True):
            lo, hi = np.nanquantile(log_mu, [(1 - p) / 2, (1 + p) / 2], axis=0)
            ax.fill_between(
                x, np.exp(lo), np.exp(hi), color=color, alpha=alpha, lw=0, zorder=zorder
            )
    ax.plot(
        x,
        np.exp(np.nanmedian(log_mu, axis=0)),
        color=color,
        ls=ls,
        lw=1.8,
        label=label,
        zorder=zorder + 1,
    )


def _band_alpha(n: int) -> tuple[float, ...]:
    """Opacity of each band, widest (drawn first, lightest) to narrowest."""
    return (0.25,) if n == 1 else tuple(np.linspace(0.14, 0.28, n))


def _band_handles(probs: list[float]) -> list[Any]:
    return [
        Patch(color="0.4", alpha=a, lw=0, label=f"{p:.0%} credible")
        for p, a in zip(probs, _band_alpha(len(probs)), strict=True)
    ]


def _mark_extrapolation(
    ax: Axes,
    edge: float,
    upper: float,
    *,
    lower_edge: float | None = None,
    lower: float | None = None,
    text_y: float = 0.98,
) -> None:
    """Dotted line at the edge of the data, shaded region beyond it (both sides if given)."""
    if upper > edge:
        ax.axvspan(edge, upper, **_EXTRAPOLATION_SHADE, zorder=0)
        ax.axvline(edge, **_EDGE, zorder=1)
        top = text_y > 0.5
        ax.annotate(
            "extrapolation",
            (upper, text_y),
            xycoords=ax.get_xaxis_transform(),
            xytext=(-4, -2 if top else 2),
            textcoords="offset points",
            ha="right",
            va="top" if top else "bottom",
            fontsize=8,
            color="0.35",
        )
    if lower_edge is not None and lower is not None and lower < lower_edge:
        ax.axvspan(lower, lower_edge, **_EXTRAPOLATION_SHADE, zorder=0)
        ax.axvline(lower_edge, **_EDGE, zorder=1)


def _colors(values: Sequence[float], vmin: float, vmax: float):
    cmap = plt.get_cmap(_CMAP)
    if vmax <= vmin:
        return [cmap(0.4) for _ in values], None
    norm = LogNorm(vmin=vmin, vmax=vmax)
    return [cmap(0.05 + 0.8 * float(norm(v))) for v in values], norm


def _group_values(
    values: np.ndarray, max_groups: int, *, min_members: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Group values (e.g. IsoFLOP budgets): the groups and each point's group index (-1: none).

    Few distinct values (to 3 significant figures) are the groups. Otherwise the groups are the
    peaks of a kernel density of log10(values) (bandwidth 0.04 dex), each labelled by the
    geometric mean of its members; peaks with fewer than ``min_members`` points, beyond the
    ``max_groups`` most populated, or points more than 0.15 dex from their peak stay ungrouped.
    """
    values = np.asarray(values, dtype=float)
    rounded = np.array([float(f"{v:.3g}") for v in values])
    distinct = np.unique(rounded)
    if distinct.size <= max_groups:
        return distinct, np.searchsorted(distinct, rounded)
    lv = np.log10(values)
    step, bw = 0.005, 0.04
    edges = np.arange(lv.min() - 4 * bw, lv.max() + 4 * bw + step, step)
    hist, _ = np.histogram(lv, bins=edges)
    kernel = np.exp(-0.5 * (np.arange(-4 * bw, 4 * bw + step / 2, step) / bw) ** 2)
    dens = np.convolve(hist, kernel, mode="same")
    centres = 0.5 * (edges[1:] + edges[:-1])
    inner = dens[1:-1]
    peaks = centres[1:-1][(inner > dens[:-2]) & (inner >= dens[2:])]
    idx = np.argmin(np.abs(lv[:, None] - peaks[None, :]), axis=1)
    counts = np.bincount(idx, minlength=peaks.size)
    keep = np.flatnonzero(counts >= min_members)
    keep = keep[np.argsort(-counts[keep], kind="stable")][:max_groups]
    peaks = np.sort(peaks[keep])
    idx = np.argmin(np.abs(lv[:, None] - peaks[None, :]), axis=1)
    idx = np.where(np.abs(lv - peaks[idx]) <= 0.15, idx, -1)
    groups = np.array([10 ** lv[idx == j].mean() for j in range(peaks.size)])
    return groups, idx


def _assign(values: np.ndarray, groups: np.ndarray, tol_dex: float = 0.2) -> np.ndarray:
    """Index of the nearest group in log space, -1 when further than ``tol_dex``."""
    d = np.abs(np.log10(values)[:, None] - np.log10(groups)[None, :])
    idx = np.argmin(d, axis=1)
    return np.where(d[np.arange(values.size), idx] <= tol_dex, idx, -1)


#: Likelihoods whose ``sigma`` is the sd of the log loss itself (Laplace and Student-t: their
#: scale), the same at every point.
_LOG_SCALE_NOISE = ("lognormal", "laplace", "student_t")


def _log_noise_scale(spec: Any, log_mu: np.ndarray, sigma: float) -> np.ndarray:
    """Standard deviation of ``log(observed / fitted)`` at each point of fitted log value
    ``log_mu``, for noise ``sigma`` (delta method: sd / mean off the log scale).

    ``normal``: ``sigma`` is the sd of the loss, so ``sigma / mu``. ``beta``: the Beta's sd
    ``sqrt(m (1 - m) / (1 + phi))`` (``sigma`` is its value at m = 0.5) over ``m``;
    ``binomial``: ``n`` items add their sampling, variance ``m (1 - m) (n + phi) / (n (1 +
    phi))``. The others are already on the log scale."""
    log_mu = np.asarray(log_mu, dtype=float)
    lik = spec.likelihood
    if lik in _LOG_SCALE_NOISE:
        return np.full(log_mu.shape, sigma)
    mu = np.exp(log_mu)
    if lik == "normal":
        return sigma / mu
    m = np.clip(mu, 1e-9, 1.0 - 1e-9)
    phi = float(beta_precision(sigma))
    var = m * (1.0 - m) / (1.0 + phi)
    if lik == "binomial":
        n = float(spec.trials)
        var = var * (n + phi) / n
    return np.sqrt(var) / m


def _plain_log_axis(axis, lo: float, hi: float) -> None:
    """Plain numbers (2, 2.5, 3 ...) instead of 2x10^0 on a log axis spanning little range."""
    span = math.log10(hi / lo)
    if span > 2:
        return
    if span < 0.5:
        subs = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    elif span < 1:
        subs = tuple(float(k) for k in range(1, 10))
    else:
        subs = (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _legend_outside(ax: Axes, handles: list[Any]) -> None:
    ax.legend(
        handles=handles,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
    )


def _inputs_along(
    x_name: str, x: np.ndarray, by: str, g: float, fixed: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """All of N, D, C along ``x`` at fixed ``by = g`` (C = 6ND), and any other input held
    at its ``fixed`` value (the unique tokens U of ``datablations``)."""
    vals = {x_name: x, by: np.full_like(x, g)}
    vals.update({k: np.full_like(x, v) for k, v in (fixed or {}).items()})
    six = planning.FLOP_PER_PARAM_TOKEN
    if "C" not in vals:
        vals["C"] = six * vals["N"] * vals["D"]
    elif "N" not in vals:
        vals["N"] = vals["C"] / (six * vals["D"])
    else:
        vals["D"] = vals["C"] / (six * vals["N"])
    return vals


def _data_values(fit: Fit, name: str) -> np.ndarray:
    v = getattr(fit.data, name)
    if v is None:
        raise ValueError(f"the fitted data has no {name!r} column")
    return np.asarray(v, dtype=float)


def _title(fit: Fit) -> str:
    return f"{fit.law.name}: {fit.law.formula}"


#: ``gid`` of the stamp across a plot drawn from a fit that misses the convergence policy.
UNCONVERGED_GID = "bayescale-unconverged"


def _verdict(fit: Fit) -> str:
    return "FAILS THE CONVERGENCE GATE BADLY" if fit.convergence.fails_badly else "NOT CONVERGED"


def _state(fit: Fit) -> str:
    """Title suffix of the diagnostic plots (posterior, residuals) of an unconverged fit."""
    return "" if fit.converged else f" [{_verdict(fit)}]"


def _mark_unconverged(ax: Axes, fit: Fit | None) -> None:
    """Stamp a forecast plot drawn from a fit that misses the convergence policy and warn.

    Plots never refuse (they are how one inspects a failed fit), but their bands must not
    pass for trustworthy ones: ``Fit.predict`` warns or refuses for the same fit.
    """
    if fit is None or fit.converged:
        return
    verdict = _verdict(fit)
    ax.text(
        0.5,
        0.5,
        verdict,
        transform=ax.transAxes,
        ha="center",
        va="center",
        rotation=20,
        color="red",
        alpha=0.4,
        fontsize=15,
        fontweight="bold",
        zorder=10,
        gid=UNCONVERGED_GID,
    )
    warnings.warn(
        f"plotting a fit that "
        f"{'fails the convergence gate badly' if fit.convergence.fails_badly else 'did not converge'}"
        f" ({'; '.join(fit.convergence.problems)}): "
        "its bands and forecasts are unreliable",
        ConvergenceWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------------- plot_fit
def plot_fit(
    fit: Fit,
    *,
    x: str | None = None,
    by: str | None = None,
    groups: Sequence[float] | None = None,
    extrapolate: float = 10.0,
    prob: float | Sequence[float] = (0.5, 0.9),
    max_groups: int = 10,
    num_points: int = 150,
    show_data: bool = True,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Data, posterior median and credible bands of the fitted law on log-log axes.

    A single-input law is drawn against its input, extended ``extrapolate`` times beyond the
    largest observed input. A law of N and D is drawn as one curve per group: by default loss
    against ``N`` at each compute budget found in the data (IsoFLOP profiles; scattered budgets,
    as in digitised data, are grouped around the peaks of their density and runs far from any
    peak are drawn grey), plus one dashed curve at ``extrapolate`` times the largest budget.
    The edges of the observed range of ``x`` are dotted lines and the region beyond is shaded.

    Parameters
    ----------
    fit
        The fit to draw.
    x
        Horizontal axis: an input of the law (default: its first input, ``N`` for laws of N, D).
    by
        For laws of N and D: the input held fixed along each curve, ``"C"`` (default), ``"N"``
        or ``"D"``; ``x`` and ``by`` must differ.
    groups
        Values of ``by`` to draw (default: grouped from the data).
    extrapolate
        Factor beyond the data for the extra curve / the x-range (``1`` for none).
    prob
        Masses of the credible bands.
    max_groups, num_points
        At most this many curves; points per curve.
    show_data, legend
        Draw the observations; draw a legend.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_fit(fit)                       # doctest: +SKIP
    >>> ax.figure.savefig("fit.png", dpi=150)    # doctest: +SKIP
    """
    ax = _new_axes(ax)
    probs = _probs(prob, fit.num_chains * fit.num_draws)
    if extrapolate < 1:
        raise ValueError(f"extrapolate must be >= 1, got {extrapolate!r}")
    law = fit.law
    loss = np.asarray(fit.data.loss)
    if len(law.inputs) == 1 or ("N" not in law.inputs or "D" not in law.inputs):
        ax = _plot_fit_single(
            fit, ax, x or law.inputs[0], probs, extrapolate, num_points, show_data
        )
    else:
        ax = _plot_fit_groups(
            fit,
            ax,
            x or "N",
            by or "C",
            groups,
            probs,
            extrapolate,
            max_groups,
            num_points,
            show_data,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(fit.law.quantity(fit.spec.likelihood))  # loss, accuracy or proportion
    medians = [ln.get_ydata() for ln in ax.get_lines() if len(ln.get_ydata()) > 2]
    lo_y = min(loss.min(), *(np.nanmin(m) for m in medians))
    # Up to the medians' top, which an extrapolated accuracy may take past the data, but at
    # most 4x the data's top (a loss's medians rise to the left of its smallest runs).
    hi_y = min(max(loss.max(), *(np.nanmax(m) for m in medians)), 4.0 * loss.max())
    ax.set_ylim(lo_y / 1.03, hi_y * 1.08)
    _plain_log_axis(ax.yaxis, lo_y / 1.03, hi_y * 1.08)
    ax.set_title(_title(fit), fontsize=10)
    if legend:
        handles, _ = ax.get_legend_handles_labels()
        _legend_outside(ax, handles + _band_handles(probs))
    _mark_unconverged(ax, fit)
    return ax


def _plot_fit_single(fit, ax, x_name, probs, extrapolate, num_points, show_data) -> Axes:
    if x_name not in fit.law.inputs:
        raise ValueError(
            f"x must be an input of law {fit.law.name!r} {fit.law.inputs}, got {x_name!r}"
        )
    xv = _data_values(fit, x_name)
    lo, hi = xv.min() / 1.5, xv.max() * extrapolate
    grid = np.geomspace(lo, hi, num_points)
    log_mu = fit._log_mean({x_name: grid})
    color = plt.get_cmap(_CMAP)(0.3)
    _bands(ax, grid, log_mu, probs, color, label="posterior median")
    if show_data:
        ax.scatter(xv, fit.data.loss, s=14, color="k", alpha=0.7, zorder=4, label="data")
    _mark_extrapolation(ax, xv.max(), hi)
    ax.set_xlim(lo, hi)
    ax.set_xlabel(_LABELS[x_name])
    return ax


def _plot_fit_groups(
    fit, ax, x_name, by, groups, probs, extrapolate, max_groups, num_points, show_data
) -> Axes:
    names = ("N", "D", "C")
    if x_name not in names or by not in names or x_name == by:
        raise ValueError(
            f"x and by must be two different inputs of N, D, C; got {x_name!r}, {by!r}"
        )
    xv, bv = _data_values(fit, x_name), _data_values(fit, by)
    if groups is None:
        gvals, gidx = _group_values(bv, max_groups)
    else:
        gvals = np.sort(planning._compute_array(groups, "groups"))
        gidx = _assign(bv, gvals)
    # Per-group x-range of the data, padded by 2x on each side.
    ranges = []
    for j in range(gvals.size):
        sel = xv[gidx == j]
        ranges.append((sel.min() / 2, sel.max() * 2) if sel.size else (xv.min(), xv.max()))
    extra = []
    if extrapolate > 1 and gvals.size:
        g_ext = gvals.max() * extrapolate
        half = max(math.log(r[1] / r[0]) for r in ranges) / 2
        if by == "C" and fit.law.inputs in (("N", "D"), ("D", "N")):
            # Centre the extrapolated IsoFLOP curve on its median optimum.
            opt = planning._optimum(
                planning._as_posterior(fit, gate=False), np.log([g_ext]), "auto"
            )
            centre = float(np.nanmedian(opt["log_N" if x_name == "N" else "log_D"]))
        else:  # continue the trend of the group centres
            centres = np.array([math.log(r[0] * r[1]) / 2 for r in ranges])
            slope = np.polyfit(np.log(gvals), centres, 1)[0] if gvals.size > 1 else 0.0
            centre = centres[-1] + slope * math.log(extrapolate)
        extra.append((g_ext, (math.exp(centre - half), math.exp(centre + half))))
    every = list(gvals) + [e[0] for e in extra]
    colors, _ = _colors(every, min(every), max(every))
    # inputs beyond N, D, C (U): held at the data's geometric mean, said in the x label
    fixed = {
        k: float(np.exp(np.mean(np.log(_data_values(fit, k)))))
        for k in fit.law.inputs
        if k not in names
    }
    for j, g in enumerate(gvals):
        grid = np.geomspace(*ranges[j], num_points)
        log_mu = fit._log_mean(_inputs_along(x_name, grid, by, g, fixed))
        _bands(ax, grid, log_mu, probs, colors[j], label=_sci(g, by))
        if show_data:
            sel = gidx == j
            ax.scatter(
                xv[sel],
                fit.data.loss[sel],
                s=16,
                color=colors[j],
                edgecolor="k",
                linewidth=0.4,
                zorder=5,
            )
    if show_data and np.any(gidx < 0):
        sel = gidx < 0
        ax.scatter(
            xv[sel],
            fit.data.loss[sel],
            s=14,
            color="0.75",
            edgecolor="0.4",
            linewidth=0.4,
            zorder=4,
            label=f"other runs ({int(sel.sum())})",
        )
    for k, (g, rng) in enumerate(extra):
        grid = np.geomspace(*rng, num_points)
        log_mu = fit._log_mean(_inputs_along(x_name, grid, by, g, fixed))
        _bands(
            ax,
            grid,
            log_mu,
            probs,
            colors[gvals.size + k],
            ls="--",
            label=_sci(g, by) + " (extrapolated)",
        )
    lo = min(r[0] for r in ranges + [e[1] for e in extra])
    hi = max(r[1] for r in ranges + [e[1] for e in extra])
    _mark_extrapolation(ax, xv.max(), hi, lower_edge=xv.min(), lower=lo)
    ax.set_xlim(lo, hi)
    held = ", ".join(f"{k} = {v:.3g}" for k, v in fixed.items())
    ax.set_xlabel(_LABELS[x_name] + (f" (curves at {held})" if held else ""))
    return ax


# ---------------------------------------------------------------------------------- isoflop
def plot_isoflop(
    fit: Fit | Mapping[str, Any],
    compute: Any = None,
    *,
    extrapolate: float | None = 100.0,
    prob: float | Sequence[float] = (0.5, 0.9),
    interval: float = 0.9,
    span: float = 10.0,
    num_points: int = 150,
    show_data: bool = True,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """IsoFLOP profiles: loss against N at fixed budgets, with the optimum and its interval.

    Each budget's curve is the posterior median of ``L(N, C/(6N))`` with credible bands, drawn
    over ``N*/span .. N*·span`` around the median optimum. The optimum is marked at the median
    ``(N*, L*)`` with a horizontal bar spanning the ``interval`` credible interval of ``N*``
    (Hoffmann et al. 2022, Figure 3). Budgets beyond the fitted data are dashed, and the
    range of N beyond the data is shaded.

    Parameters
    ----------
    fit
        A fit of a law of N and D, or published constants (one draw: no bands).
    compute
        Budgets in FLOP (default: the budgets found in the data plus one ``extrapolate`` times
        the largest; 1e19..1e24 for constants).
    extrapolate
        With ``compute=None``: factor of the extra budget beyond the data (``None`` for none).
    prob
        Masses of the credible bands of the curves.
    interval
        Mass of the interval of N* drawn at each optimum.
    span
        Each curve covers ``N*/span`` to ``N*·span``.
    num_points, show_data, legend, ax
        Points per curve; draw the fitted runs; draw a legend; Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_isoflop(fit, compute=[1e19, 1e20, 1e21, 5.88e23])  # doctest: +SKIP
    """
    ax = _new_axes(ax)
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval!r}")
    post = planning._as_posterior(fit, gate=False)
    probs = _probs(prob, post.num_draws)
    _probs(interval, post.num_draws)  # the optimum's interval, too
    data = post.fit.data if post.fit is not None else None
    if compute is None:
        if data is not None:
            compute, _ = _group_values(np.asarray(data.C), 10)
            if extrapolate is not None and extrapolate > 1:
                compute = np.append(compute, compute.max() * extrapolate)
        else:
            compute = 10.0 ** np.arange(19, 25)
    c = np.sort(planning._compute_array(compute))
    opt = planning._optimum(post, np.log(c), "auto")
    summary = planning._summarise({"N": np.exp(opt["log_N"]), "loss": opt["loss"]}, interval)
    c_edge = data.C.max() * 1.5 if data is not None else np.inf
    colors, _ = _colors(c, c.min(), c.max())
    lows, highs, curve_min, curve_max = [], [], [], []
    for j, cj in enumerate(c):
        n_mid = summary["N_median"][j]
        grid = np.geomspace(n_mid / span, n_mid * span, num_points)
        log_mu = post.log_mean(_inputs_along("N", grid, "C", cj))
        beyond = cj > c_edge
        label = _sci(cj, "C") + (" (extrapolated)" if beyond else "")
        _bands(ax, grid, log_mu, probs, colors[j], ls="--" if beyond else "-", label=label)
        ax.errorbar(
            n_mid,
            summary["loss_median"][j],
            xerr=[[n_mid - summary["N_lower"][j]], [summary["N_upper"][j] - n_mid]],
            fmt="o",
            color=colors[j],
            mec="k",
            mew=0.6,
            ms=6,
            capsize=3,
            lw=1.4,
            zorder=6,
        )
        lows.append(grid[0])
        highs.append(grid[-1])
        curve_min.append(np.exp(np.nanmin(np.nanmedian(log_mu, axis=0))))
        curve_max.append(np.exp(np.nanmax(np.nanmedian(log_mu, axis=0))))
    y_lo, y_hi = min(curve_min) / 1.03, None
    if show_data and data is not None:
        near = _assign(np.asarray(data.C), c, tol_dex=0.15)
        sel = near >= 0
        if np.any(sel):
            ax.scatter(
                data.N[sel],
                data.loss[sel],
                s=16,
                c=[colors[i] for i in near[sel]],
                edgecolor="k",
                linewidth=0.4,
                zorder=5,
            )
            y_lo = min(y_lo, data.loss[sel].min() / 1.03)
            y_hi = data.loss[sel].max() * 1.08
    if y_hi is None:
        y_hi = max(curve_max) * 1.03
    lo, hi = min(lows), max(highs)
    if data is not None:
        _mark_extrapolation(ax, data.N.max(), hi, lower_edge=data.N.min(), lower=lo)
    ax.set_xlim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(y_lo, y_hi)
    _plain_log_axis(ax.yaxis, y_lo, y_hi)
    ax.set_xlabel(_LABELS["N"])
    ax.set_ylabel(_LABELS["loss"])
    ax.set_title(
        f"IsoFLOP profiles ({post.law.name}): optimum N* with its {interval:.0%} interval",
        fontsize=10,
    )
    if legend:
        handles, _ = ax.get_legend_handles_labels()
        marker = Line2D([], [], marker="o", color="0.3", mec="k", ls="-", label="optimum N*")
        bands = _band_handles(probs) if post.num_draws > 1 else []
        _legend_outside(ax, [*handles, marker, *bands])
    _mark_unconverged(ax, post.fit)
    return ax


# ---------------------------------------------------------------------------------- frontier
#: Label offsets (points) of the default famous models, chosen so the labels do not collide.
_MODEL_OFFSETS = {
    "GPT-3": (-7, 5),
    "Gopher": (7, 5),
    "Chinchilla": (-7, -12),
    "Llama 2 70B": (7, -12),
}


def plot_frontier(
    fit: Fit | Mapping[str, Any],
    compute: Any = None,
    *,
    kind: str = "allocation",
    prob: float | Sequence[float] = (0.5, 0.9),
    models: pd.DataFrame | None = planning.FAMOUS_MODELS,
    rule: float | None = 20.0,
    num_points: int = 80,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Compute-optimal frontier: N*(C) and D*(C) (or D*/N*) against C, with credible bands.

    Parameters
    ----------
    fit
        A fit of a law of N and D, or published constants (one draw: no bands).
    compute
        Budgets in FLOP along the x-axis (default: from the smallest fitted budget, or 1e18,
        to 1e26).
    kind
        ``"allocation"`` (N* and D* on one log axis) or ``"tokens_per_param"`` (D*/N*).
    prob
        Masses of the credible bands.
    models
        Models to mark, a DataFrame with ``N``, ``D``, ``C`` indexed by name (default
        :data:`bayescale.planning.FAMOUS_MODELS`: GPT-3, Gopher, Chinchilla, Llama 2 70B);
        ``None`` for none.
    rule
        Tokens per parameter of the rule of thumb drawn dashed (Hoffmann et al.'s ~20);
        ``None`` for none.
    num_points, legend, ax
        Budgets along the curve; draw a legend; Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes

    References
    ----------
    Hoffmann et al. 2022, arXiv:2203.15556; Besiroglu et al. 2024, arXiv:2404.10102.

    Examples
    --------
    >>> ax = plot_frontier(fit, kind="tokens_per_param")  # doctest: +SKIP
    """
    if kind not in ("allocation", "tokens_per_param"):
        raise ValueError(f"kind must be 'allocation' or 'tokens_per_param', got {kind!r}")
    ax = _new_axes(ax)
    post = planning._as_posterior(fit, gate=False)
    probs = _probs(prob, post.num_draws)
    data = post.fit.data if post.fit is not None else None
    if compute is None:
        lo = data.C.min() if data is not None else 1e18
        compute = np.geomspace(lo, max(1e26, lo * 100), num_points)
    c = np.sort(planning._compute_array(compute))
    opt = planning._optimum(post, np.log(c), "auto")
    cmap = plt.get_cmap("tab10")
    six = planning.FLOP_PER_PARAM_TOKEN
    if kind == "allocation":
        series = [("N*: parameters", opt["log_N"], cmap(0)), ("D*: tokens", opt["log_D"], cmap(1))]
    else:
        series = [("D*/N*: tokens per parameter", opt["log_D"] - opt["log_N"], cmap(2))]
    for label, log_v, color in series:
        _bands(ax, c, log_v, probs, color, label=label)
    if rule is not None:
        n_rule = np.sqrt(c / (six * rule))
        if kind == "allocation":
            ax.plot(c, n_rule, color="0.45", ls="--", lw=1, label=f"{rule:g} tokens per parameter")
            ax.plot(c, rule * n_rule, color="0.45", ls="--", lw=1)
        else:
            ax.axhline(rule, color="0.45", ls="--", lw=1, label=f"{rule:g} tokens per parameter")
    if models is not None and len(models):
        _mark_models(ax, models, kind, cmap)
    if data is not None:
        _mark_extrapolation(ax, data.C.max(), c.max(), text_y=0.015)
    ax.set_xlim(c.min(), c.max())
    ax.set_xscale("log")
    ax.set_yscale("log")
    if kind == "tokens_per_param":
        y = ax.get_ylim()
        _plain_log_axis(ax.yaxis, *y)
    ax.set_xlabel(_LABELS["C"])
    ax.set_ylabel("compute-optimal N* and D*" if kind == "allocation" else "tokens per parameter")
    what = "N*(C), D*(C)" if kind == "allocation" else "D*/N*"
    ax.set_title(f"Compute-optimal {what} ({post.law.name}), C = 6ND", fontsize=10)
    if legend:
        handles, _ = ax.get_legend_handles_labels()
        bands = _band_handles(probs) if post.num_draws > 1 else []
        _legend_outside(ax, handles + bands)
    _mark_unconverged(ax, post.fit)
    return ax


def _mark_models(ax: Axes, models: pd.DataFrame, kind: str, cmap) -> None:
    fallback = [(7, 5), (7, -12), (-7, 5), (-7, -12)]
    for i, (name, row) in enumerate(models.iterrows()):
        c = float(row["C"])
        dx, dy = _MODEL_OFFSETS.get(str(name), fallback[i % len(fallback)])
        first = i == 0
        if kind == "allocation":
            ax.plot([c, c], [row["N"], row["D"]], color="0.6", lw=0.8, zorder=6)
            ax.scatter(
                [c],
                [row["N"]],
                marker="o",
                s=36,
                color=cmap(0),
                edgecolor="k",
                zorder=7,
                label="models: N (circle)" if first else None,
            )
            ax.scatter(
                [c],
                [row["D"]],
                marker="s",
                s=30,
                color=cmap(1),
                edgecolor="k",
                zorder=7,
                label="models: D (square)" if first else None,
            )
            y = row["N"]
        else:
            y = row["D"] / row["N"]
            ax.scatter(
                [c],
                [y],
                marker="o",
                s=36,
                color=cmap(2),
                edgecolor="k",
                zorder=7,
                label="models" if first else None,
            )
        ax.annotate(
            str(name),
            (c, y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=8,
            ha="left" if dx > 0 else "right",
            color="0.15",
        )


# ---------------------------------------------------------------------------------- posterior
_LOG_DISPLAY = {"A", "B", "N_c", "D_c", "C_c"}


def plot_posterior(
    fit: Fit,
    var_names: Sequence[str] | None = None,
    *,
    max_draws: int = 2000,
    bins: int = 30,
    ax: np.ndarray | None = None,
) -> np.ndarray:
    """Corner plot of the posterior of the law's published parameters.

    Diagonal: histograms; below it: pairwise scatter of the draws. Amplitudes (``A``, ``B``,
    ``N_c``, ``D_c``) are shown as ``log10``. Drawn with matplotlib (the strong A-alpha and
    B-beta correlations of the Chinchilla law are the thing to look at).

    Parameters
    ----------
    fit
        The fit.
    var_names
        Parameters to show (default: the law's published parameters).
    max_draws
        Thin the draws to at most this many points in the scatter panels.
    bins
        Histogram bins.
    ax
        A ``(k, k)`` array of Axes for ``k`` parameters (default: a new figure).

    Returns
    -------
    numpy.ndarray
        The ``(k, k)`` array of Axes; the panels above the diagonal are switched off.

    Examples
    --------
    >>> axes = plot_posterior(fit)              # doctest: +SKIP
    >>> axes[0, 0].figure.savefig("corner.png")  # doctest: +SKIP
    """
    if var_names is None or (not isinstance(var_names, str) and len(var_names) == 0):
        var_names = fit.law.natural_names
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    unknown = [n for n in names if n not in fit.params]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; available: {list(fit.params)}")
    k = len(names)
    if ax is None:
        _, ax = plt.subplots(k, k, figsize=(1.9 * k + 1, 1.9 * k + 1), layout="constrained")
        ax = np.asarray(ax).reshape(k, k)
    else:
        ax = np.asarray(ax)
        if ax.shape != (k, k):
            raise ValueError(f"ax must be a ({k}, {k}) array of Axes, got shape {ax.shape}")
    draws, labels = {}, {}
    for n in names:
        v = np.asarray(fit.params[n]).reshape(-1)
        if n in _LOG_DISPLAY:
            v, labels[n] = np.log10(v), f"log10 {n}"
        else:
            labels[n] = n
        draws[n] = v
    total = next(iter(draws.values())).size
    keep = np.linspace(0, total - 1, min(total, max_draws)).astype(int)
    color = plt.get_cmap(_CMAP)(0.3)
    for i, ni in enumerate(names):
        for j, nj in enumerate(names):
            a = ax[i, j]
            if j > i:
                a.set_axis_off()
                continue
            if i == j:
                a.hist(draws[ni], bins=bins, color=color, alpha=0.75)
                a.set_yticks([])
            else:
                a.scatter(
                    draws[nj][keep], draws[ni][keep], s=2, alpha=0.3, color=color, rasterized=True
                )
            if i == k - 1:
                a.set_xlabel(labels[nj])
            else:
                a.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                a.set_ylabel(labels[ni])
            elif j > 0:
                a.tick_params(labelleft=False)
            a.tick_params(labelsize=7)
    ax[0, 0].figure.suptitle(
        f"Posterior of {fit.law.name} ({total} draws)" + _state(fit), fontsize=10
    )
    return ax


# ---------------------------------------------------------------------------------- residuals
def plot_residuals(
    fit: Fit,
    *,
    x: str | None = None,
    prob: float = 0.9,
    ax: Axes | None = None,
) -> Axes:
    """Log residuals ``log(observed / fitted median)`` against an input, with noise bands.

    Error bars are the ``prob`` credible interval of the fitted mean at each run; the shaded
    bands are ±1 and ±2 posterior-median noise scales (``sigma``, on the log scale; for the
    ``normal`` likelihood ``sigma / loss``). Points beyond 3 sigma are outlined in red.

    Parameters
    ----------
    fit
        The fit.
    x
        Horizontal axis: ``"N"``, ``"D"`` or ``"C"`` (default ``C`` if present, else the
        law's first input).
    prob
        Mass of the error bars.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_residuals(fit)   # doctest: +SKIP
    """
    ax = _new_axes(ax, figsize=(7.0, 3.8))
    _check_prob(prob, fit.num_chains * fit.num_draws)
    data = fit.data
    x = x or ("C" if data.C is not None else fit.law.inputs[0])
    xv = _data_values(fit, x)
    vals = {k: getattr(data, k) for k in fit.law.inputs}
    log_mu = fit._log_mean(vals)  # (S, n)
    med = np.median(log_mu, axis=0)
    lo, hi = np.quantile(log_mu, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    res = np.log(data.loss) - med
    sigma = float(np.median(fit.samples["sigma"]))
    scale = _log_noise_scale(fit.spec, med, sigma)  # sd of a log residual, per point
    constant = fit.spec.likelihood in _LOG_SCALE_NOISE
    order = np.argsort(xv, kind="stable")
    for m, alpha in ((2, 0.08), (1, 0.12)):
        if constant:
            ax.axhspan(-m * sigma, m * sigma, color="0.5", alpha=alpha, lw=0, zorder=0)
        else:  # the noise of a loss (normal) or an accuracy (beta, binomial) varies with it
            band = m * scale[order]
            ax.fill_between(xv[order], -band, band, color="0.5", alpha=alpha, lw=0, zorder=0)
    ax.axhline(0.0, color="k", lw=1, zorder=1)
    color = plt.get_cmap(_CMAP)(0.3)
    ax.errorbar(
        xv, res, yerr=[hi - med, med - lo], fmt="none", ecolor=color, alpha=0.5, lw=0.8, zorder=2
    )
    outlier = np.abs(res) > 3 * scale
    ax.scatter(xv, res, s=14, color=color, zorder=3, label="runs")
    if np.any(outlier):
        ax.scatter(
            xv[outlier],
            res[outlier],
            s=40,
            facecolor="none",
            edgecolor="tab:red",
            zorder=4,
            label=f"|residual| > 3σ ({int(outlier.sum())})",
        )
    ax.set_xscale("log")
    ax.set_xlabel(_LABELS[x])
    ax.set_ylabel("log(observed / fitted)")
    varies = "" if constant else " at each run's fitted value"
    ax.set_title(
        f"Residuals of {fit.law.name} ({fit.spec.likelihood}); bands ±1σ, ±2σ{varies} "
        f"(σ = {sigma:.3g})" + _state(fit),
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper right")
    return ax
