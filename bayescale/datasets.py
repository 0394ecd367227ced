"""Reference data sets for scaling-law fitting.

Two kinds of data live here:

* :func:`chinchilla_synthetic` -- a **synthetic** IsoFLOP design generated from a
  published Chinchilla law (no real training runs; useful for tests, tutorials and
  checking that a fit recovers known parameters).
* :func:`load` -- real, published data sets from a small registry (see
  :func:`list_datasets`), verified by SHA-256 and, when missing, downloaded once from a
  pinned URL into a local cache.

References
----------
Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models",
arXiv:2203.15556.

Besiroglu, Erdil, Barnett & You (2024), "Chinchilla Scaling: A replication attempt",
arXiv:2404.10102.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import numbers
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bayescale.data import ScalingData

__all__ = [
    "BESIROGLU_2024",
    "HOFFMANN_2022",
    "DatasetError",
    "DatasetInfo",
    "UnknownDatasetError",
    "chinchilla_synthetic",
    "compute_optimal_N",
    "get_cache_dir",
    "list_datasets",
    "load",
    "load_epoch_chinchilla",
]

#: Hoffmann et al. (2022), Approach 3 fit of ``L = E + A/N^alpha + B/D^beta``
#: (arXiv:2203.15556, eq. 10).
HOFFMANN_2022: dict[str, float] = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

#: Besiroglu et al. (2024) refit of the same law to the data digitised from Hoffmann
#: et al.'s Figure 4 (arXiv:2404.10102).
BESIROGLU_2024: dict[str, float] = {
    "E": 1.8172,
    "A": 482.01,
    "B": 2085.43,
    "alpha": 0.3478,
    "beta": 0.3658,
}

_LAW_KEYS = ("E", "A", "B", "alpha", "beta")

_HOFFMANN_CITATION = (
    "Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models', arXiv:2203.15556"
)
_BESIROGLU_CITATION = (
    "Besiroglu, Erdil, Barnett & You 2024, 'Chinchilla Scaling: A replication attempt', "
    "arXiv:2404.10102"
)

DATA_DIR_ENV = "BAYESCALE_DATA_DIR"


class DatasetError(RuntimeError):
    """A data set could not be found, downloaded, verified or parsed."""


class UnknownDatasetError(DatasetError, ValueError):
    """The requested data set name is not in the registry.

    Subclasses both :class:`DatasetError` and :class:`ValueError`.
    """


# ---------------------------------------------------------------------------
# Synthetic Chinchilla IsoFLOP design
# ---------------------------------------------------------------------------


def _check_law_params(params: Mapping[str, float]) -> dict[str, float]:
    missing = [k for k in _LAW_KEYS if k not in params]
    if missing:
        raise ValueError(f"params is missing {missing}; expected keys {list(_LAW_KEYS)}")
    out = {k: float(params[k]) for k in _LAW_KEYS}
    for k, v in out.items():
        if not np.isfinite(v):
            raise ValueError(f"params[{k!r}] must be finite, got {v}")
    for k in ("A", "B", "alpha", "beta"):
        if out[k] <= 0:
            raise ValueError(f"params[{k!r}] must be > 0, got {out[k]}")
    return out


def compute_optimal_N(C: float | np.ndarray, params: Mapping[str, float]) -> float | np.ndarray:
    """Compute-optimal model size of ``L = E + A/N^alpha + B/D^beta`` under ``C = 6 N D``.

    Closed form (Hoffmann et al. 2022, eq. 4)::

        N*(C) = G (C/6)^(beta/(alpha+beta)),   G = (alpha A / (beta B))^(1/(alpha+beta))

    Parameters
    ----------
    C : float or ndarray
        Training compute in FLOP.
    params : mapping
        Law parameters with keys ``E, A, B, alpha, beta``.

    Returns
    -------
    float or ndarray
        The loss-minimising parameter count for each budget.

    Examples
    --------
    >>> round(float(compute_optimal_N(1e21, HOFFMANN_2022)) / 1e9, 2)
    1.82
    """
    p = _check_law_params(params)
    a, b = p["alpha"], p["beta"]
    G = (a * p["A"] / (b * p["B"])) ** (1.0 / (a + b))
    n_opt = G * (np.asarray(C, dtype=float) / 6.0) ** (b / (a + b))
    return n_opt if np.ndim(n_opt) else float(n_opt)


def chinchilla_synthetic(
    *,
    budgets: Sequence[float] = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    points_per_budget: int = 9,
    params: Mapping[str, float] = BESIROGLU_2024,
    noise: float = 0.01,
    seed: int | None = 0,
    span: float = 8.0,
    as_data: bool = True,
) -> ScalingData | pd.DataFrame:
    """**SYNTHETIC** Chinchilla-style IsoFLOP data generated from a published law.

    .. warning::

       **These are not real measurements.** Every loss value is computed from the
       parametric law ``L = E + A/N^alpha + B/D^beta`` (Hoffmann et al. 2022,
       arXiv:2203.15556) with the given ``params`` plus multiplicative log-normal
       noise. Use it for tests, tutorials and parameter-recovery checks -- never as
       evidence about real models. For the real (digitised) Chinchilla points use
       ``load("epoch-chinchilla")``.

    The design mimics Hoffmann et al.'s Approach 2 (IsoFLOP profiles): for each compute
    budget ``C`` the model size ``N`` is swept over ``points_per_budget`` log-spaced
    values from ``N*/span`` to ``N*·span`` around the law's compute-optimal size
    ``N* = G (C/6)^(beta/(alpha+beta))`` with ``G = (alpha A/(beta B))^(1/(alpha+beta))``
    (see :func:`compute_optimal_N`), and ``D = C/(6N)``. The observed loss is
    ``(E + A/N^alpha + B/D^beta) * exp(noise * z)`` with ``z ~ N(0, 1)`` drawn from
    ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    budgets : sequence of float
        Compute budgets in FLOP, one IsoFLOP profile each.
    points_per_budget : int
        Number of model sizes per budget (>= 1). With an odd number the middle point
        is exactly ``N*``.
    params : mapping
        True law parameters ``E, A, B, alpha, beta``. Defaults to the Besiroglu et al.
        (2024, arXiv:2404.10102) refit :data:`BESIROGLU_2024`; :data:`HOFFMANN_2022`
        is the original Approach 3 fit.
    noise : float
        Standard deviation of the Gaussian noise on ``log(loss)``; ``0`` gives the
        law exactly.
    seed : int or None
        Seed for :func:`numpy.random.default_rng`.
    span : float
        Half-width of the sweep as a multiplicative factor (> 1): ``N`` runs from
        ``N*/span`` to ``N*·span``.
    as_data : bool
        If True (default) convert with :func:`bayescale.data.from_dataframe` and return
        a ``ScalingData``; otherwise return the :class:`pandas.DataFrame`.

    Returns
    -------
    ScalingData or pandas.DataFrame
        Columns ``N, D, C, loss, budget`` (``C`` equals ``budget``), one row per run,
        ordered by budget then ``N``. ``df.attrs`` holds ``"true_params"`` (the law
        parameters used), ``"synthetic": True``, ``"noise"``, ``"seed"`` and
        ``"citation"``. ``ScalingData`` has no metadata slot: its ``source`` is
        ``"<SYNTHETIC chinchilla_synthetic(...)>"`` and the true parameters are simply
        ``params`` (use ``as_data=False`` to get them attached in ``df.attrs``). The
        ``budget`` column is not carried into ``ScalingData``.

    Examples
    --------
    >>> df = chinchilla_synthetic(as_data=False, noise=0.0)
    >>> df.shape
    (63, 5)
    >>> df.attrs["true_params"] == BESIROGLU_2024
    True
    """
    p = _check_law_params(params)
    C_budgets = np.asarray(budgets, dtype=float).reshape(-1)
    if C_budgets.size == 0:
        raise ValueError("budgets must not be empty")
    if not np.all(np.isfinite(C_budgets)) or np.any(C_budgets <= 0):
        raise ValueError("budgets must be finite and > 0")
    C_budgets = np.sort(C_budgets)  # rows ordered by budget, as documented
    if not _is_whole(points_per_budget) or points_per_budget < 1:
        raise ValueError(f"points_per_budget must be a positive integer, got {points_per_budget}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    if not np.isfinite(span) or span <= 1:
        raise ValueError(f"span must be > 1, got {span}")
    k = int(points_per_budget)

    n_star = np.asarray(compute_optimal_N(C_budgets, p), dtype=float)
    # Multiplicative offsets N/N* on a log grid symmetric about 1.
    offsets = np.geomspace(1.0 / span, span, k) if k > 1 else np.ones(1)
    N = (n_star[:, None] * offsets[None, :]).reshape(-1)
    C = np.repeat(C_budgets, k)
    D = C / (6.0 * N)
    mean = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(N.shape)
    loss = mean * np.exp(noise * z)

    df = pd.DataFrame({"N": N, "D": D, "C": C, "loss": loss, "budget": C.copy()})
    df.attrs.update(
        {
            "name": "chinchilla-synthetic",
            "source": f"<SYNTHETIC chinchilla_synthetic(noise={noise:g}, seed={seed})>",
            "synthetic": True,
            "true_params": dict(p),
            "noise": float(noise),
            "seed": seed,
            "citation": f"{_HOFFMANN_CITATION}; {_BESIROGLU_CITATION}",
            "description": "SYNTHETIC IsoFLOP design generated from a Chinchilla law",
        }
    )
    return _to_scaling_data(df) if as_data else df


# ---------------------------------------------------------------------------
# Registry of real data sets
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Registry entry for a downloadable data set.

    Attributes
    ----------
    name : str
        Registry key passed to :func:`load`.
    filename : str
        File name looked up in the data directories and used in the cache.
    sha256 : str
        Expected SHA-256 hex digest of the file.
    url : str
        Download URL, pinned to an immutable revision.
    description : str
        One-line description.
    citation : str
        Paper(s) to cite when using the data.
    """

    name: str
    filename: str
    sha256: str
    url: str
    description: str
    citation: str

    def __str__(self) -> str:
        return f"{self.name}: {self.description} [{self.citation}]"


_EPOCH_CHINCHILLA = DatasetInfo(
    name="epoch-chinchilla",
    filename="svg_extracted_data.csv",
    sha256="193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30",
    url=(
        "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
        "92258837425e1b5f2851d624287f0120583a3d0e/data/svg_extracted_data.csv"
    ),
    description=(
        "245 Chinchilla training runs (N, C, final loss) digitised by Epoch AI from "
        "Figure 4 of Hoffmann et al. 2022"
    ),
    citation=f"{_BESIROGLU_CITATION}; data from {_HOFFMANN_CITATION}",
)

_REGISTRY: dict[str, DatasetInfo] = {_EPOCH_CHINCHILLA.name: _EPOCH_CHINCHILLA}


def list_datasets() -> dict[str, DatasetInfo]:
    """Data sets known to :func:`load`.

    Returns
    -------
    dict of str to DatasetInfo
        Maps each name to its :class:`DatasetInfo` (one-line ``description`` and
        ``citation``; ``str(info)`` gives ``"name: description [citation]"``).

    Examples
    --------
    >>> "epoch-chinchilla" in list_datasets()
    True
    >>> print(list_datasets()["epoch-chinchilla"].citation)  # doctest: +ELLIPSIS
    Besiroglu, Erdil, Barnett & You 2024, ... arXiv:2404.10102; data from Hoffmann ...
    """
    return dict(_REGISTRY)


def _info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known}. "
            "(For synthetic data use bayescale.datasets.chinchilla_synthetic().)"
        ) from None


def get_cache_dir() -> Path:
    """Directory where downloaded data sets are cached.

    ``$XDG_CACHE_HOME/bayescale`` if ``XDG_CACHE_HOME`` is set, else
    ``~/.cache/bayescale``. The directory is not created.

    Returns
    -------
    pathlib.Path
        The cache directory.

    Examples
    --------
    >>> get_cache_dir().name
    'bayescale'
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bayescale"


def _search_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(get_cache_dir())
    return dirs


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str) -> bytes:
    """Download ``url`` and return its bytes (monkeypatch this in tests)."""
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read()


def _download(info: DatasetInfo) -> Path:
    target = get_cache_dir() / info.name / info.filename
    try:
        payload = _fetch(info.url)
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(
            f"could not download dataset {info.name!r} from {info.url}: {exc}. "
            f"If you are offline, download {info.filename} manually and put it in a "
            f"directory named by ${DATA_DIR_ENV} (or pass data_dir=...)."
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        digest = _sha256_file(tmp)
        if digest != info.sha256:
            raise DatasetError(
                f"checksum mismatch for dataset {info.name!r} downloaded from {info.url}: "
                f"expected sha256 {info.sha256}, got {digest}. The download was discarded."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _verified(path: Path, info: DatasetInfo) -> Path:
    digest = _sha256_file(path)
    if digest != info.sha256:
        raise DatasetError(
            f"checksum mismatch for dataset {info.name!r} at {path}: expected sha256 "
            f"{info.sha256}, got {digest}. The file is corrupt or a different version; "
            "delete or replace it."
        )
    return path


def _locate(info: DatasetInfo, data_dir: str | os.PathLike[str] | None, download: bool) -> Path:
    dirs = _search_dirs(data_dir)
    tried: list[Path] = []
    for d in dirs:
        for candidate in (d / info.name / info.filename, d / info.filename):
            tried.append(candidate)
            if candidate.is_file():
                return _verified(candidate, info)
    if download:
        return _download(info)
    looked = "\n  ".join(str(p) for p in tried)
    raise DatasetError(
        f"dataset {info.name!r} ({info.filename}) not found and download=False. Looked in:\n"
        f"  {looked}\n"
        f"Download it from {info.url} and either pass data_dir=..., set the environment "
        f"variable {DATA_DIR_ENV}=/path/to/dir (containing {info.name}/{info.filename} or "
        f"{info.filename}), or call with download=True."
    )


def _is_whole(value: Any) -> bool:
    """A whole number (``3``, ``3.0``), not NaN, inf or a non-number (``int(inf)`` raises
    OverflowError, ``int(nan)`` ValueError, ``int("3")`` is 3)."""
    if not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and int(value) == value


def _read_epoch_chinchilla(path: Path, *, drop_highest_loss: int = 0) -> pd.DataFrame:
    if isinstance(drop_highest_loss, bool) or not _is_whole(drop_highest_loss):
        raise ValueError(f"drop_highest_loss must be an integer, got {drop_highest_loss!r}")
    drop = int(drop_highest_loss)
    raw = pd.read_csv(path)
    needed = ["Model Size", "Training FLOP", "loss"]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}; found {list(raw.columns)}")
    N = raw["Model Size"].to_numpy(dtype=float)
    C = raw["Training FLOP"].to_numpy(dtype=float)
    loss = raw["loss"].to_numpy(dtype=float)
    df = pd.DataFrame({"N": N, "D": C / (6.0 * N), "C": C, "loss": loss})
    if not 0 <= drop < len(df):
        raise ValueError(f"drop_highest_loss must be in [0, {len(df)}), got {drop}")
    if drop:
        # Epoch's rule (data_analysis.ipynb): keep losses strictly below the
        # drop-th largest loss (ties at the threshold are dropped too).
        threshold = np.sort(loss)[-drop]
        df = df[df["loss"] < threshold].reset_index(drop=True)
    return df


def load_epoch_chinchilla(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    drop_highest_loss: int = 0,
    as_data: bool = True,
) -> ScalingData | pd.DataFrame:
    """Chinchilla training runs digitised by Epoch AI (Besiroglu et al. 2024).

    245 final losses of the Hoffmann et al. (2022, arXiv:2203.15556) training runs,
    recovered by Besiroglu et al. (2024, arXiv:2404.10102) from the SVG of Figure 4
    (left) of the Chinchilla paper: model size ``N`` and compute ``C`` from the axes,
    loss from the marker colour. Tokens are derived as ``D = C / (6 N)``, as Epoch do.
    The digitisation has known errors (see shape-of-code.com, 2024-04-28) and the
    file carries no licence; treat the points as approximate.

    Parameters
    ----------
    data_dir : path-like, optional
        Directory searched first (see :func:`load` for the lookup order).
    download : bool
        Download into the cache if the file is not found locally.
    drop_highest_loss : int
        Drop the rows with the ``k`` highest losses, following Epoch's rule of keeping
        only losses strictly below the ``k``-th largest. Epoch's analysis uses
        ``drop_highest_loss=5`` (245 -> 240 rows); the default ``0`` keeps all rows.
    as_data : bool
        If True (default) return a ``ScalingData`` via
        :func:`bayescale.data.from_dataframe`, else a :class:`pandas.DataFrame`.

    Returns
    -------
    ScalingData or pandas.DataFrame
        Columns ``N, D, C, loss``; ``df.attrs`` records the source path, checksum and
        citation. A ``ScalingData``'s ``source`` is the verified file path.

    Examples
    --------
    >>> df = load_epoch_chinchilla(drop_highest_loss=5, as_data=False)  # doctest: +SKIP
    >>> len(df)  # doctest: +SKIP
    240
    """
    return load(
        "epoch-chinchilla",
        data_dir=data_dir,
        download=download,
        as_data=as_data,
        drop_highest_loss=drop_highest_loss,
    )


_READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "epoch-chinchilla": _read_epoch_chinchilla,
}


def load(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    as_data: bool = True,
    **options: Any,
) -> ScalingData | pd.DataFrame:
    """Load a registered real data set (see :func:`list_datasets`).

    The file is looked for, in order, in ``data_dir``, in ``$BAYESCALE_DATA_DIR`` and
    in the cache (:func:`get_cache_dir`: ``$XDG_CACHE_HOME/bayescale`` or
    ``~/.cache/bayescale``); in each directory both ``<dir>/<name>/<file>`` and
    ``<dir>/<file>`` are accepted. The first file found is verified against the
    registered SHA-256 (a mismatch raises :class:`DatasetError` naming the path). If
    nothing is found and ``download=True`` the file is downloaded from its pinned URL
    into ``<cache>/<name>/<file>`` (atomically; the checksum is verified before the
    file is kept).

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"epoch-chinchilla"`` (Besiroglu et al. 2024,
        arXiv:2404.10102, digitising Hoffmann et al. 2022, arXiv:2203.15556).
    data_dir : path-like, optional
        Directory searched first.
    download : bool
        Whether to download the file if it is not found locally.
    as_data : bool
        If True (default) return a ``ScalingData`` via
        :func:`bayescale.data.from_dataframe`, else a :class:`pandas.DataFrame`.
    **options
        Data-set specific options, e.g. ``drop_highest_loss`` for
        ``"epoch-chinchilla"`` (see :func:`load_epoch_chinchilla`).

    Returns
    -------
    ScalingData or pandas.DataFrame
        Columns ``N, D, C, loss``.

    Raises
    ------
    UnknownDatasetError
        ``name`` is not registered (also a :class:`ValueError`).
    DatasetError
        Not found with ``download=False``, download failure or checksum mismatch.

    Examples
    --------
    >>> df = load("epoch-chinchilla", drop_highest_loss=5, as_data=False)  # doctest: +SKIP
    >>> df.shape  # doctest: +SKIP
    (240, 4)
    """
    info = _info(name)
    reader = _READERS[info.name]
    allowed = [
        p.name
        for p in inspect.signature(reader).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for dataset {name!r}; allowed: {allowed}")
    path = _locate(info, data_dir, download)
    df = reader(path, **options)
    df.attrs.update(
        {
            "name": info.name,
            "synthetic": False,
            "source": str(path),
            "path": str(path),
            "sha256": info.sha256,
            "url": info.url,
            "citation": info.citation,
            "description": info.description,
        }
    )
    return _to_scaling_data(df) if as_data else df


def _to_scaling_data(df: pd.DataFrame) -> ScalingData:
    from bayescale.data import from_dataframe  # lazy: keeps this module importable alone

    data = from_dataframe(df, N="N", D="D", C="C", loss="loss")
    # Record provenance (file path or synthetic marker) instead of "<DataFrame>".
    source = df.attrs.get("source")
    if source and dataclasses.is_dataclass(data):
        if "source" in {f.name for f in dataclasses.fields(data)}:
            data = dataclasses.replace(data, source=str(source))
    return data
