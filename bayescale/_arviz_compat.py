"""The only module that calls ArviZ.

ArviZ 0.23 (Python 3.11) and ArviZ 1.x (Python >= 3.12) differ: 1.x returns an ``xarray.DataTree``
from ``from_dict({group: {var: array}})`` and moved statistics into ``arviz_stats``. Everything
bayescale needs from ArviZ goes through the small functions here, which branch on the major
version once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

with warnings.catch_warnings():
    # ArviZ 0.23 announces its 1.x refactor with a FutureWarning on import; this module is
    # exactly where that refactor is handled, so the notice is not news to bayescale users.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    import arviz as az

ARVIZ_MAJOR = int(az.__version__.split(".")[0])


def _dataset(draws: Mapping[str, np.ndarray]) -> xr.Dataset:
    return xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in draws.items()})


def _to_dict(result: Any, names) -> dict[str, float]:
    if isinstance(result, xr.DataTree if hasattr(xr, "DataTree") else ()):  # arviz 1.x
        result = result.to_dataset()
    return {k: float(np.asarray(result[k])) for k in names}


def rhat(draws: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Rank-normalized split R-hat (Vehtari et al. 2021) of (chain, draw) arrays."""
    return _to_dict(az.rhat(_dataset(draws), method="rank"), draws)


def ess(draws: Mapping[str, np.ndarray], method: str) -> dict[str, float]:
    """Bulk (``method="bulk"``) or tail (``"tail"``) effective sample size."""
    return _to_dict(az.ess(_dataset(draws), method=method), draws)


def mcse_mean(draws: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Monte Carlo standard error of the posterior mean."""
    return _to_dict(az.mcse(_dataset(draws), method="mean"), draws)


def bfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from the Hamiltonian energy, shape (chain, draw)."""
    energy = np.asarray(energy, dtype=float)
    if ARVIZ_MAJOR == 0:
        return np.asarray(az.bfmi(energy))
    # ArviZ 1.x takes a DataTree; the estimator (Betancourt 2016) is this one line:
    num = np.sum(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.sum((energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return num / den


def from_dict(
    groups: Mapping[str, Mapping[str, np.ndarray]], *, coords=None, dims=None, attrs=None
):
    """Posterior container (InferenceData on 0.x, DataTree on 1.x) from group -> var -> array."""
    groups = {g: dict(v) for g, v in groups.items() if v}
    if ARVIZ_MAJOR == 0:
        idata = az.from_dict(**groups, coords=coords, dims=dims)
        if attrs:
            for g in idata.groups():
                idata[g].attrs.update(attrs)
        return idata
    tree = az.from_dict(groups, coords=coords, dims=dims)
    if attrs:
        tree.attrs.update(attrs)
        for g in tree.children:
            tree[g].attrs.update(attrs)
    return tree


def group(container, name: str) -> xr.Dataset:
    """A group of the posterior container as an ``xarray.Dataset``."""
    if ARVIZ_MAJOR == 0:
        return container[name]
    return container[name].to_dataset()


def groups(container) -> list[str]:
    """Names of the groups of the posterior container."""
    if ARVIZ_MAJOR == 0:
        return list(container.groups())
    return list(container.children)


def to_netcdf(container, path) -> None:
    """Write the container to a netCDF file (h5netcdf engine, one netCDF group per group)."""
    if ARVIZ_MAJOR == 0:
        container.to_netcdf(str(path), engine="h5netcdf")
    else:
        container.to_netcdf(str(path), engine="h5netcdf")


def from_netcdf(path):
    """Read a container written by :func:`to_netcdf`."""
    if ARVIZ_MAJOR == 0:
        return az.from_netcdf(str(path), engine="h5netcdf")
    return xr.open_datatree(str(path), engine="h5netcdf").load()


def loo(container, *, pointwise: bool = True):
    """PSIS-LOO of a container with a ``log_likelihood`` group."""
    return az.loo(container, pointwise=pointwise)
