"""Tests for bayescale.datasets (synthetic IsoFLOP design and the data-set registry)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale import datasets
from bayescale.datasets import (
    BESIROGLU_2024,
    HOFFMANN_2022,
    DatasetError,
    UnknownDatasetError,
    chinchilla_synthetic,
    compute_optimal_N,
    list_datasets,
    load,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EPOCH_FILE = SHARED / "epoch-chinchilla" / "svg_extracted_data.csv"
EPOCH_SHA256 = "193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30"

needs_shared = pytest.mark.skipif(
    not EPOCH_FILE.is_file(), reason=f"shared data not available at {EPOCH_FILE}"
)


def _law(N, D, p):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Never touch the real cache or the network; no BAYESCALE_DATA_DIR leaking in."""
    monkeypatch.delenv("BAYESCALE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def _no_network(url: str) -> bytes:
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(datasets, "_fetch", _no_network)


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------


def test_synthetic_design_shape():
    budgets = (1e18, 1e19, 1e20)
    df = chinchilla_synthetic(budgets=budgets, points_per_budget=7, as_data=False)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["N", "D", "C", "loss", "budget"]
    assert len(df) == 21
    assert df.groupby("budget").size().to_dict() == dict.fromkeys(budgets, 7)
    np.testing.assert_array_equal(df["C"], df["budget"])
    np.testing.assert_allclose(6 * df["N"] * df["D"], df["C"], rtol=1e-12)
    assert np.all(np.isfinite(df.to_numpy()))
    assert df.attrs["synthetic"] is True
    assert df.attrs["true_params"] == BESIROGLU_2024

    default = chinchilla_synthetic(as_data=False)
    assert default.shape == (7 * 9, 5)
    # rows ordered by budget, then N, whatever the order of the budgets given
    mixed = chinchilla_synthetic(
        budgets=(1e20, 1e18), points_per_budget=3, noise=0.0, as_data=False
    )
    assert mixed["budget"].tolist() == [1e18] * 3 + [1e20] * 3
    assert (np.diff(mixed["N"].to_numpy()[:3]) > 0).all()


def test_synthetic_sweep_spans_factor_8_around_optimum():
    df = chinchilla_synthetic(noise=0.0, as_data=False)
    for C, g in df.groupby("budget"):
        n_star = compute_optimal_N(C, BESIROGLU_2024)
        ratio = g["N"].to_numpy() / n_star
        np.testing.assert_allclose([ratio.min(), ratio.max()], [1 / 8, 8], rtol=1e-12)
        assert np.all(np.diff(np.log(ratio)) > 0)
        np.testing.assert_allclose(np.diff(np.log(ratio)), np.log(64) / 8, rtol=1e-10)


def test_synthetic_seed_reproducibility():
    a = chinchilla_synthetic(seed=123, as_data=False)
    b = chinchilla_synthetic(seed=123, as_data=False)
    c = chinchilla_synthetic(seed=124, as_data=False)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["loss"], c["loss"])
    # Only the loss is random; the design is deterministic.
    pd.testing.assert_frame_equal(a.drop(columns="loss"), c.drop(columns="loss"))


def test_synthetic_noise_is_lognormal_with_given_scale():
    noise = 0.05
    budgets = tuple(np.geomspace(1e18, 1e22, 40))
    noisy = chinchilla_synthetic(budgets=budgets, noise=noise, seed=1, as_data=False)
    clean = chinchilla_synthetic(budgets=budgets, noise=0.0, as_data=False)
    z = np.log(noisy["loss"] / clean["loss"]) / noise
    expected = np.random.default_rng(1).standard_normal(len(noisy))
    np.testing.assert_allclose(z, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("params", [BESIROGLU_2024, HOFFMANN_2022])
def test_synthetic_noise_free_equals_law(params):
    df = chinchilla_synthetic(params=params, noise=0.0, as_data=False)
    np.testing.assert_allclose(df["loss"], _law(df["N"], df["D"], params), rtol=1e-14)
    assert df.attrs["true_params"] == params


@pytest.mark.parametrize("points", [9, 8, 5])
@pytest.mark.parametrize("params", [BESIROGLU_2024, HOFFMANN_2022])
def test_synthetic_minimum_near_compute_optimum(params, points):
    df = chinchilla_synthetic(params=params, points_per_budget=points, noise=0.0, as_data=False)
    log_step = np.log(64.0) / (points - 1)
    for C, g in df.groupby("budget"):
        n_best = g["N"].to_numpy()[np.argmin(g["loss"].to_numpy())]
        n_star = compute_optimal_N(C, params)
        assert abs(np.log(n_best / n_star)) <= log_step / 2 + 1e-9
        # And N* really is the minimiser of the law along the IsoFLOP curve.
        N = n_star * np.exp(np.linspace(-0.01, 0.01, 201))
        L = _law(N, C / (6 * N), params)
        assert np.argmin(L) == 100


def test_compute_optimal_N_closed_form():
    p = HOFFMANN_2022
    a, b = p["alpha"], p["beta"]
    G = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
    C = np.array([1e18, 1e21, 1e24])
    np.testing.assert_allclose(compute_optimal_N(C, p), G * (C / 6) ** (b / (a + b)))
    assert isinstance(compute_optimal_N(1e21, p), float)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budgets": ()},
        {"budgets": (1e18, -1.0)},
        {"points_per_budget": 0},
        {"points_per_budget": float("inf")},  # was an OverflowError from int(inf)
        {"points_per_budget": float("nan")},
        {"points_per_budget": "9"},
        {"noise": -0.1},
        {"span": 1.0},
        {"params": {"E": 1.0, "A": 1.0}},
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        chinchilla_synthetic(as_data=False, **kwargs)


def test_synthetic_as_data_converts():
    from bayescale.data import ScalingData

    data = chinchilla_synthetic(noise=0.0)
    assert isinstance(data, ScalingData)
    df = chinchilla_synthetic(noise=0.0, as_data=False)
    assert len(data) == len(df)
    np.testing.assert_allclose(data.N, df["N"])
    np.testing.assert_allclose(data.D, df["D"])
    np.testing.assert_allclose(data.C, df["C"])
    np.testing.assert_allclose(data.loss, df["loss"])
    assert "SYNTHETIC" in data.source


# ---------------------------------------------------------------------------
# registry / load
# ---------------------------------------------------------------------------


def test_list_datasets():
    info = list_datasets()
    assert "epoch-chinchilla" in info
    entry = info["epoch-chinchilla"]
    assert "arXiv:2404.10102" in entry.citation
    assert "arXiv:2203.15556" in entry.citation
    assert entry.sha256 == EPOCH_SHA256
    assert "92258837425e1b5f2851d624287f0120583a3d0e" in entry.url
    assert "\n" not in entry.description
    assert str(entry).startswith("epoch-chinchilla: ")
    # Returned mapping is a copy.
    info.clear()
    assert "epoch-chinchilla" in list_datasets()


@needs_shared
def test_load_epoch_from_data_dir():
    df = load("epoch-chinchilla", data_dir=SHARED, as_data=False)
    assert list(df.columns) == ["N", "D", "C", "loss"]
    assert len(df) == 245
    raw = pd.read_csv(EPOCH_FILE)
    np.testing.assert_array_equal(df["N"], raw["Model Size"])
    np.testing.assert_array_equal(df["C"], raw["Training FLOP"])
    np.testing.assert_array_equal(df["loss"], raw["loss"])
    np.testing.assert_allclose(df["D"], df["C"] / (6 * df["N"]))
    assert df.attrs["path"] == str(EPOCH_FILE)
    assert df.attrs["synthetic"] is False


@needs_shared
def test_load_epoch_drop_highest_loss():
    df = load("epoch-chinchilla", data_dir=SHARED, drop_highest_loss=5, as_data=False)
    assert len(df) == 240
    assert df["loss"].max() < 5.0
    full = load("epoch-chinchilla", data_dir=SHARED, as_data=False)
    assert set(full["loss"].nlargest(5)).isdisjoint(df["loss"])
    assert df.index.equals(pd.RangeIndex(240))


@needs_shared
@pytest.mark.parametrize("bad", [-1, 245, 1.5, float("inf"), float("nan"), "3"])
def test_load_epoch_drop_highest_loss_validated(bad):
    with pytest.raises(ValueError):
        load("epoch-chinchilla", data_dir=SHARED, drop_highest_loss=bad, as_data=False)


@needs_shared
def test_load_epoch_wrapper_and_unknown_option():
    df = datasets.load_epoch_chinchilla(data_dir=SHARED, drop_highest_loss=5, as_data=False)
    assert len(df) == 240
    with pytest.raises(TypeError, match="drop_higest"):
        load("epoch-chinchilla", data_dir=SHARED, drop_higest=5, as_data=False)


@needs_shared
def test_load_epoch_as_data_converts():
    from bayescale.data import ScalingData

    data = load("epoch-chinchilla", data_dir=SHARED, drop_highest_loss=5)
    assert isinstance(data, ScalingData)
    assert len(data) == 240
    assert data.inputs == ("N", "D", "C")
    assert data.source == str(EPOCH_FILE)
    assert float(data.loss.max()) < 5.0


@needs_shared
def test_env_var_data_dir_honoured(monkeypatch):
    monkeypatch.setenv("BAYESCALE_DATA_DIR", str(SHARED))
    df = load("epoch-chinchilla", download=False, as_data=False)
    assert len(df) == 245
    assert df.attrs["path"] == str(EPOCH_FILE)


@needs_shared
def test_flat_layout_accepted(tmp_path):
    (tmp_path / "svg_extracted_data.csv").write_bytes(EPOCH_FILE.read_bytes())
    df = load("epoch-chinchilla", data_dir=tmp_path, download=False, as_data=False)
    assert df.attrs["path"] == str(tmp_path / "svg_extracted_data.csv")


@needs_shared
def test_data_dir_takes_precedence_over_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESCALE_DATA_DIR", str(SHARED))
    (tmp_path / "svg_extracted_data.csv").write_bytes(EPOCH_FILE.read_bytes())
    df = load("epoch-chinchilla", data_dir=tmp_path, download=False, as_data=False)
    assert df.attrs["path"] == str(tmp_path / "svg_extracted_data.csv")


@needs_shared
def test_download_to_cache_then_reuse(monkeypatch, tmp_path):
    cache_home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    payload = EPOCH_FILE.read_bytes()
    calls: list[str] = []

    def fake_fetch(url: str) -> bytes:
        calls.append(url)
        return payload

    monkeypatch.setattr(datasets, "_fetch", fake_fetch)
    df = load("epoch-chinchilla", as_data=False)
    assert len(df) == 245
    assert calls == [list_datasets()["epoch-chinchilla"].url]
    cached = cache_home / "bayescale" / "epoch-chinchilla" / "svg_extracted_data.csv"
    assert datasets.get_cache_dir() == cache_home / "bayescale"
    assert cached.is_file()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == EPOCH_SHA256
    assert sorted(p.name for p in cached.parent.iterdir()) == ["svg_extracted_data.csv"]

    again = load("epoch-chinchilla", as_data=False, download=True)
    assert calls == [list_datasets()["epoch-chinchilla"].url]  # no second fetch
    pd.testing.assert_frame_equal(df, again)
    # Also found with download=False now.
    load("epoch-chinchilla", as_data=False, download=False)


def test_download_checksum_mismatch_discards_file(monkeypatch, tmp_path):
    cache_home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setattr(datasets, "_fetch", lambda url: b"N,C,loss\n1,2,3\n")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load("epoch-chinchilla", as_data=False)
    target_dir = cache_home / "bayescale" / "epoch-chinchilla"
    assert not (target_dir / "svg_extracted_data.csv").exists()
    assert not target_dir.exists() or list(target_dir.iterdir()) == []


def test_download_network_error_is_dataset_error(monkeypatch):
    def offline(url: str) -> bytes:
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "_fetch", offline)
    with pytest.raises(DatasetError, match="BAYESCALE_DATA_DIR"):
        load("epoch-chinchilla", as_data=False)


@needs_shared
def test_local_checksum_mismatch_names_path(tmp_path):
    bad = tmp_path / "epoch-chinchilla" / "svg_extracted_data.csv"
    bad.parent.mkdir()
    bad.write_bytes(EPOCH_FILE.read_bytes() + b"\n")
    with pytest.raises(DatasetError, match="checksum mismatch") as exc:
        load("epoch-chinchilla", data_dir=tmp_path, as_data=False)
    assert str(bad) in str(exc.value)
    assert bad.exists()  # a user's own file is never deleted


def test_not_found_without_download(tmp_path):
    with pytest.raises(DatasetError) as exc:
        load("epoch-chinchilla", data_dir=tmp_path, download=False, as_data=False)
    msg = str(exc.value)
    assert "BAYESCALE_DATA_DIR" in msg
    assert str(tmp_path / "epoch-chinchilla" / "svg_extracted_data.csv") in msg
    assert str(datasets.get_cache_dir()) in msg


def test_unknown_name_lists_known():
    with pytest.raises(UnknownDatasetError, match="epoch-chinchilla") as exc:
        load("chinchila", as_data=False)
    assert isinstance(exc.value, ValueError)
    assert isinstance(exc.value, DatasetError)


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.get_cache_dir() == tmp_path / ".cache" / "bayescale"
