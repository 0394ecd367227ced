"""Tests of bayescale.data: validation (DESIGN.md §5), conversion, round-trips, real data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale.data import (
    DataError,
    DataWarning,
    ScalingData,
    as_scaling_data,
    check_positive_targets,
    from_arrays,
    from_dataframe,
    read_csv,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHINCHILLA = DATA / "epoch-chinchilla" / "svg_extracted_data.csv"
REVISITING = DATA / "revisiting-nsl" / "benchmark.lang.csv"

N3 = [1e8, 1e9, 1e10, 1e11]
D3 = [2e9, 2e10, 2e11, 2e12]
L3 = [3.2, 2.7, 2.3, 2.1]


def write(tmp_path: Path, text: str, name: str = "runs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def raises(match: str, *, column: str | None = None, row: int | None = None):
    """pytest.raises(DataError) that also checks the error's attributes afterwards."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(DataError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            out = self.ctx.__exit__(*exc)
            err = self.info.value
            assert isinstance(err, ValueError)
            assert "\n" not in str(err)
            if column is not None:
                assert err.column == column
            if row is not None:
                assert err.row == row
            return out

    return _Check()


# ----------------------------------------------------------------------------- bad values
def test_nan_names_column_row_value_and_csv_line(tmp_path):
    path = write(tmp_path, "N,D,loss\n1e8,2e9,3.0\n1e9,2e10,nan\n1e10,2e11,2.5\n")
    with raises(r"column 'loss', row 1 \(CSV line 3\): value nan is not a finite", row=1) as e:
        read_csv(path)
    assert e.value.column == "loss" and e.value.line == 3 and np.isnan(e.value.value)


def test_empty_cell_is_nan_error_not_dropped(tmp_path):
    path = write(tmp_path, "N,loss\n1e8,3.0\n,2.9\n1e10,2.5\n")
    with raises(r"column 'N', row 1 \(CSV line 3\): value nan", column="N", row=1):
        read_csv(path)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_inf_is_an_error(bad):
    with raises(r"column 'D', row 2: value -?inf is not a finite number", column="D", row=2):
        from_dataframe(pd.DataFrame({"N": N3, "D": [1e9, 2e9, bad, 4e9], "loss": L3}))


@pytest.mark.parametrize("column", ["N", "D", "C", "loss"])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_values(column, bad):
    table = {"N": N3, "D": D3, "C": [6 * n * d for n, d in zip(N3, D3, strict=True)], "loss": L3}
    table[column] = [*table[column][:3], bad]
    with raises(rf"column '{column}', row 3: value {bad!r} must be > 0", column=column, row=3):
        from_dataframe(pd.DataFrame(table))


def test_non_numeric_string(tmp_path):
    path = write(tmp_path, "N,loss\n1e8,3.0\n1e9,oops\n")
    with raises(r"column 'loss', row 1 \(CSV line 3\): value 'oops' is not a number", row=1) as e:
        read_csv(path)
    assert e.value.value == "oops"


def test_boolean_is_not_a_number():
    with raises(r"column 'N', row 0: value True is not a number", column="N", row=0):
        from_arrays(N=[True, False, True], loss=[3.0, 2.0, 1.0])


def test_suffix_needs_parse_suffixes(tmp_path):
    path = write(tmp_path, "N,D,loss\n125M,300B,3.1\n7B,1.4T,2.2\n2k,5g,2.0\n")
    with raises(r"column 'N', row 0 \(CSV line 2\): value '125M'.*parse_suffixes=True", row=0):
        read_csv(path)
    data = read_csv(path, parse_suffixes=True)
    np.testing.assert_array_equal(data.N, [125e6, 7e9, 2e3])
    np.testing.assert_array_equal(data.D, [300e9, 1.4e12, 5e9])


def test_thousands_separator_is_an_error_with_hint(tmp_path):
    path = write(tmp_path, 'N,loss\n"1,000,000",3.0\n"2,000,000",2.0\n')
    with raises(r"column 'N', row 0.*'1,000,000'.*thousands=", column="N", row=0):
        read_csv(path)
    assert read_csv(path, thousands=",").N[1] == 2e6


def test_comma_decimal_mark_gets_the_decimal_hint_not_the_thousands_one(tmp_path):
    """'3,05' is a decimal comma (the thousands hint would read it as 305); '1,000' could be
    either, and the message offers both."""
    path = write(tmp_path, "N;loss\n100000000;3,05\n1000000000;2,91\n")
    with raises(r"column 'loss', row 0.*'3,05'.*decimal mark; pass decimal=\",\"", row=0):
        read_csv(path, sep=";")
    np.testing.assert_array_equal(read_csv(path, sep=";", decimal=",").loss, [3.05, 2.91])
    path = write(tmp_path, 'N,loss\n"1,000",3.0\n"2,000",2.0\n')
    with raises(r"'1,000' uses \",\" as a thousands separator or as the decimal mark", row=0):
        read_csv(path)


def test_decimal_values_are_numbers():
    from decimal import Decimal

    data = from_arrays(N=[Decimal("1e8"), Decimal("2e8")], loss=[Decimal("3.5"), 2.5])
    np.testing.assert_array_equal(data.N, [1e8, 2e8])
    np.testing.assert_array_equal(data.loss, [3.5, 2.5])
    assert check_positive_targets("N", Decimal("7e10")) == 7e10
    with raises(r"column 'N', row 1: value nan is not a finite number", column="N", row=1):
        from_arrays(N=[Decimal("1e8"), Decimal("NaN")], loss=[3.0, 2.0])


def test_alias_column_without_numbers_is_left_out_with_a_warning(tmp_path):
    """A text or boolean column whose name is only an alias (``data``, ``unique``) does not
    stop the read; one named by the user, or with the input's own name, still must hold
    numbers."""
    path = write(tmp_path, "N,loss,data,unique\n1e8,3.0,c4,True\n1e9,2.5,c4,False\n")
    with pytest.warns(DataWarning) as record:
        data = read_csv(path)
    messages = [str(w.message) for w in record]
    assert any("column 'data' is named like D but holds no numbers (row 0: 'c4')" in m
               for m in messages), messages  # fmt: skip
    assert any("column 'unique' is named like U" in m for m in messages), messages
    assert data.inputs == ("N",) and data.D is None and data.U is None
    with raises(r"column 'data', row 0.*'c4' is not a number", column="data", row=0):
        read_csv(path, D="data")
    path = write(tmp_path, "N,loss,D\n1e8,3.0,c4\n1e9,2.5,c4\n")
    with raises(r"column 'D', row 0.*'c4' is not a number", column="D", row=0):
        read_csv(path)
    # specific aliases stay strict, and a generic one whose values get a hint is read
    with raises(r"column 'params', row 0: value 'abc' is not a number", column="params"):
        from_dataframe(pd.DataFrame({"params": ["abc"], "D": [1e10], "loss": [2.0]}))
    with raises(r"column 'data', row 0: value '3,05' uses \",\" as the decimal mark"):
        from_dataframe(pd.DataFrame({"N": [1e8], "data": ["3,05"], "loss": [2.0]}))


def test_generic_alias_decision_is_taken_on_the_whole_table():
    """fit_many's curves cut from one table read a generic-alias column alike: kept when some
    cell is a number (a text cell is then its curve's error), dropped for all when none is."""
    from bayescale.batch import _split_curves

    frame = pd.DataFrame(
        {"task": ["a"] * 3 + ["b"] * 3, "N": [1e8, 1e9, 1e10] * 2, "loss": [3.0, 2.5, 2.2] * 2}
    )
    mixed = frame.assign(data=[2e9, 2e10, 2e11, "x", "y", "z"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        (id_a, data_a, _), (id_b, data_b, why_b) = _split_curves(mixed, "task", {})
    assert (id_a, id_b) == ("a", "b") and data_a.D is not None
    assert data_b is None and "column 'data', row 3" in why_b
    with pytest.warns(DataWarning, match="column 'data' is named like D but holds no numbers"):
        curves = _split_curves(frame.assign(data=list("xyzuvw")), "task", {})
    assert [d.D for _, d, _ in curves] == [None, None]


# ----------------------------------------------------------------------------- big integers
def test_int64_tokens_above_2_31_arrive_exactly():
    tokens = np.array([3_000_000_000_000, 2**40, 2**31 + 1], dtype=np.int64)
    for data in (
        from_arrays(D=tokens, loss=[3.0, 2.5, 2.0]),
        from_dataframe(pd.DataFrame({"D": tokens, "loss": [3.0, 2.5, 2.0]})),
    ):
        assert data.D.dtype == np.float64
        assert data.D[0] == 3e12
        assert data.D[1] == float(2**40) and int(data.D[1]) == 2**40
        assert data.D[2] == 2**31 + 1


def test_integers_beyond_int64_do_not_wrap(tmp_path):
    big = [2**70, 2**64 - 1, 5]
    expected = np.array([float(v) for v in big])
    np.testing.assert_array_equal(from_arrays(D=big, loss=[3.0, 2.0, 1.0]).D, expected)
    frame = pd.DataFrame({"D": big, "loss": [3.0, 2.0, 1.0]})
    np.testing.assert_array_equal(from_dataframe(frame).D, expected)
    path = write(tmp_path, "D,loss\n" + "".join(f"{v},{i + 1}\n" for i, v in enumerate(big)))
    np.testing.assert_array_equal(read_csv(path).D, expected)
    huge = from_dataframe(pd.DataFrame({"D": [2**64 - 1, 2**63], "loss": [1.0, 2.0]}))
    assert huge.D.min() > 0


def test_integer_too_large_for_float64():
    with raises(r"column 'D', row 1: value 1000.* too large for float64", column="D", row=1):
        from_arrays(D=[1, 10**400], loss=[1.0, 2.0])


# ----------------------------------------------------------------------------- table shape
def test_empty_file(tmp_path):
    with raises("has no data rows"):
        read_csv(write(tmp_path, ""))


def test_header_only(tmp_path):
    with raises("has no data rows"):
        read_csv(write(tmp_path, "N,D,loss\n"))


def test_zero_rows_dataframe_and_arrays():
    with raises("<DataFrame> has no data rows"):
        from_dataframe(pd.DataFrame({"N": [], "loss": []}))
    with raises("<arrays> has no data rows"):
        from_arrays(N=[], loss=[])


@pytest.mark.parametrize(("sep", "shown"), [(";", "';'"), ("\t", r"'\\t' \(tab\)"), ("|", r"'\|'")])
def test_wrong_delimiter(tmp_path, sep, shown):
    path = write(tmp_path, sep.join(["N", "D", "loss"]) + "\n" + sep.join(["1", "2", "3"]) + "\n")
    with raises(rf"delimiter is probably {shown}.*pass sep="):
        read_csv(path)
    assert len(read_csv(path, sep=sep)) == 1


def test_unparseable_csv_is_a_data_error(tmp_path):
    with raises("cannot parse as CSV"):
        read_csv(write(tmp_path, "N,loss\n1,2\n1,2,3,4\n"))


def test_missing_loss_column_lists_columns():
    with raises(r"no loss column found \(columns: 'N', 'D', 'score'\)"):
        from_dataframe(pd.DataFrame({"N": N3, "D": D3, "score": L3}))


def test_missing_all_inputs():
    with raises(r"no N, D or C column found \(columns: 'size', 'loss'\)"):
        from_dataframe(pd.DataFrame({"size": N3, "loss": L3}))


def test_explicit_missing_column_suggests_close_name():
    frame = pd.DataFrame({"Model Size": N3, "loss": L3})
    with raises(r"no column 'Model size' for N .*did you mean 'Model Size'", column="Model size"):
        from_dataframe(frame, N="Model size")


@pytest.mark.parametrize("role", ["curve", "run"])
def test_explicit_missing_curve_or_run(role):
    with raises(rf"no column 'family' for {role}", column="family"):
        from_dataframe(pd.DataFrame({"N": N3, "loss": L3}), **{role: "family"})


def test_two_columns_for_one_role():
    with raises("columns 'params', 'n_params' all look like N"):
        from_dataframe(pd.DataFrame({"params": N3, "n_params": N3, "loss": L3}))


def test_one_column_for_two_roles():
    with raises("column 'x' is used for both N and D", column="x"):
        from_dataframe(pd.DataFrame({"x": N3, "loss": L3}), N="x", D="x")


def test_duplicate_column_names_in_file(tmp_path):
    path = write(tmp_path, "N,N,loss\n1e8,1e9,3.0\n1e9,1e10,2.0\n")
    with raises("column name 'N' appears 2 times", column="N"):
        read_csv(path)


def test_duplicate_column_names_in_dataframe():
    frame = pd.DataFrame([[1e8, 2e8, 3.0], [1e9, 2e9, 2.0]], columns=["N", "N", "loss"])
    with raises("column name 'N' appears 2 times", column="N"):
        from_dataframe(frame)


def test_aliases_case_insensitive_and_only_for_default_names():
    frame = pd.DataFrame({"Params": N3, "TOKENS": D3, "Loss": L3})
    data = from_dataframe(frame)
    np.testing.assert_array_equal(data.N, N3)
    np.testing.assert_array_equal(data.D, D3)
    with raises("no column 'size' for N"):
        from_dataframe(frame, N="size")
    only_n = from_dataframe(frame, D=None)
    assert only_n.inputs == ("N",)


def test_alias_does_not_steal_an_explicit_column():
    frame = pd.DataFrame({"tokens": D3, "loss": L3})
    data = from_dataframe(frame, N="tokens")
    assert data.inputs == ("N",)


def test_curve_with_nan_ids():
    frame = pd.DataFrame({"N": N3, "loss": L3, "family": ["a", "a", None, "b"]})
    with raises(r"column 'family', row 2: value (None|nan) is a missing curve id", column="family"):
        from_dataframe(frame, curve="family")


def test_lengths_must_match():
    with raises("column 'D': has 3 rows but loss has 4", column="D"):
        from_arrays(N=N3, D=D3[:3], loss=L3)
    with raises(r"expected 1-D values, got shape \(2, 2\)"):
        from_arrays(N=[[1, 2], [3, 4]], loss=[1.0, 2.0])


# ----------------------------------------------------------------------------- warnings
def test_compute_far_from_6nd_warns_and_is_kept():
    C = [6 * n * d for n, d in zip(N3, D3, strict=True)]
    C[2] *= 10.0
    with pytest.warns(DataWarning, match=r"column 'C', row 2: C/\(6ND\) = 10 is the worst of 1"):
        data = from_dataframe(pd.DataFrame({"N": N3, "D": D3, "C": C, "loss": L3}))
    np.testing.assert_array_equal(data.C, C)
    assert data.derived == ()


def test_compute_close_to_6nd_does_not_warn():
    C = [6 * n * d * 1.3 for n, d in zip(N3, D3, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_arrays(N=N3, D=D3, C=C, loss=L3)


def test_duplicated_rows_warn_and_are_kept(tmp_path):
    path = write(tmp_path, "N,loss\n1e8,3.0\n1e9,2.5\n1e8,3.0\n1e10,2.0\n1e9,2.5\n")
    with pytest.warns(DataWarning, match=r"2 duplicated rows.*row 2 \(CSV line 4\) repeats row 0"):
        data = read_csv(path)
    assert len(data) == 5


def test_same_point_on_two_curves_is_not_a_duplicate():
    frame = pd.DataFrame({"N": [1e8, 1e8, 1e9], "loss": [3.0, 3.0, 2.0], "c": ["a", "b", "a"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_dataframe(frame, curve="c")


@pytest.mark.parametrize(
    "name", ["step", "Steps", "global_step", "checkpoint", "iter", "train_iteration"]
)
def test_checkpoints_without_run_id_warn(name):
    frame = pd.DataFrame({"N": N3, "loss": L3, name: [1, 2, 3, 4], "r": ["a", "a", "b", "b"]})
    with pytest.warns(DataWarning, match=rf"column '{name}'.*correlated.*pass run="):
        from_dataframe(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = from_dataframe(frame, run="r")
    assert data.run.tolist() == ["a", "a", "b", "b"]


def test_loss_above_15_warns_perplexity():
    with pytest.warns(DataWarning, match=r"row 1: loss 24.1 > 15; is this perplexity\?"):
        data = from_arrays(N=[1e8, 1e9, 1e10], loss=[20.0, 24.1, 12.0])
    assert data.loss[1] == 24.1


# ----------------------------------------------------------------------------- derived inputs
def test_compute_derived_from_n_and_d():
    data = from_arrays(N=N3, D=D3, loss=L3)
    np.testing.assert_array_equal(data.C, 6.0 * np.array(N3) * np.array(D3))
    assert data.derived == ("C",)
    assert data.inputs == ("N", "D", "C")


def test_tokens_and_params_derived_from_compute():
    C = 6.0 * np.array(N3) * np.array(D3)
    np.testing.assert_allclose(from_arrays(N=N3, C=C, loss=L3).D, D3, rtol=1e-15)
    np.testing.assert_allclose(from_arrays(D=D3, C=C, loss=L3).N, N3, rtol=1e-15)
    assert from_arrays(N=N3, loss=L3).inputs == ("N",)


def test_derived_overflow_is_an_error_not_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with raises(r"column 'C \(derived from C = 6ND\)', row 0: value inf"):
            from_arrays(N=[1e200, 1e2], D=[1e200, 1e2], loss=[1.0, 2.0])


# ----------------------------------------------------------------------------- round trips
def test_dataframe_csv_arrays_round_trip(tmp_path):
    frame = pd.DataFrame({"N": N3, "D": D3, "loss": L3, "curve": ["a", "a", "b", "b"]})
    path = tmp_path / "rt.csv"
    frame.to_csv(path, index=False)
    a = from_dataframe(frame, curve="curve")
    b = read_csv(path, curve="curve")
    c = from_arrays(N=N3, D=D3, loss=L3, curve=["a", "a", "b", "b"])
    d = as_scaling_data(frame, curve="curve")
    e = as_scaling_data(str(path), curve="curve")
    for other in (b, c, d, e):
        for name in ("N", "D", "C", "loss"):
            x, y = getattr(a, name), getattr(other, name)
            assert x.dtype == y.dtype == np.float64
            np.testing.assert_array_equal(x, y)
        assert other.curve.tolist() == ["a", "a", "b", "b"]
    assert b.source == str(path) and a.source == "<DataFrame>" and c.source == "<arrays>"
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())
    assert list(a.to_frame().columns) == ["N", "D", "C", "loss", "curve"]
    assert from_dataframe(a.to_frame(), curve="curve").to_frame().equals(a.to_frame())


def test_logs():
    data = from_arrays(N=N3, D=D3, loss=L3)
    logs = data.log_inputs()
    assert list(logs) == ["N", "D", "C"]
    np.testing.assert_allclose(logs["N"], np.log(N3))
    np.testing.assert_allclose(logs["C"], np.log(6.0) + np.log(N3) + np.log(D3))
    np.testing.assert_allclose(data.log_loss, np.log(L3))
    assert data.log_loss.dtype == np.float64


def test_curves_split_in_insertion_order_and_subset():
    ids = ["b", "a", "b", "a"]
    data = from_arrays(N=N3, loss=L3, curve=ids, run=["r1", "r2", "r3", "r4"])
    parts = data.curves()
    assert list(parts) == ["b", "a"]
    np.testing.assert_array_equal(parts["b"].N, [1e8, 1e10])
    assert parts["a"].run.tolist() == ["r2", "r4"]
    assert list(from_arrays(N=N3, loss=L3).curves()) == ["all"]
    assert len(data.subset([0, 3])) == 2
    np.testing.assert_array_equal(data.subset(data.loss < 2.5).N, [1e10, 1e11])
    np.testing.assert_array_equal(data.subset(slice(1, 3)).loss, L3[1:3])
    with raises("boolean mask"):
        data.subset([True, False])


def test_curve_from_several_columns_joined():
    frame = pd.DataFrame({"N": N3, "loss": L3, "dom": ["x", "x", "y", "y"], "model": [1, 2, 1, 2]})
    data = from_dataframe(frame, curve=["dom", "model"])
    assert data.curve.tolist() == ["x/1", "x/2", "y/1", "y/2"]


def test_scaling_data_is_read_only_and_validates():
    data = from_arrays(N=N3, loss=L3)
    with pytest.raises(ValueError, match="read-only"):
        data.N[0] = 5.0
    with raises(r"column 'loss', row 0: value -1.0 must be > 0"):
        ScalingData(N=None, D=None, C=None, loss=np.array([-1.0]))
    assert "4 rows" in repr(data)


def test_as_scaling_data_variants():
    data = from_arrays(N=N3, loss=L3)
    assert as_scaling_data(data) is data
    assert as_scaling_data(data, N="N", curve=None) is data
    with pytest.raises(TypeError):
        as_scaling_data(data, N="params")
    assert as_scaling_data({"N": N3, "loss": L3}).source == "<arrays>"
    assert as_scaling_data({"size": N3, "L": L3}, N="size").inputs == ("N",)
    with pytest.raises(TypeError):
        as_scaling_data([1, 2, 3])


def test_describe():
    text = from_arrays(N=N3, D=D3, loss=L3, curve=["a", "a", "b", "b"]).describe()
    assert "4 rows" in text and "N 1e+08 .. 1e+11" in text and "2 curve(s)" in text
    assert "C" in text and "derived" in text and "\n" not in text


# ----------------------------------------------------------------------------- require
def test_require_missing_input():
    data = from_arrays(N=N3, loss=L3)
    with raises("law 'chinchilla' needs input 'D'.*present: N", column="D"):
        data.require(("N", "D"), num_params=5, law="chinchilla")


def test_require_fewer_points_than_parameters():
    data = from_arrays(N=N3, D=D3, loss=L3)
    with raises("too few points: law 'chinchilla' has 5 parameters to fit .* has 4 points"):
        data.require(("N", "D"), num_params=5, law="chinchilla")
    with raises("too few points"):
        data.require(("N",), num_params=4, law="power")
    data.require(("N",), num_params=3, law="power")


def test_require_fewer_than_3_distinct_scales():
    data = from_arrays(N=[1e8, 1e8, 1e9, 1e9, 1e9], loss=[3.0, 2.9, 2.5, 2.4, 2.45])
    with raises(r"fewer than 3 distinct scales: input 'N' has 2 distinct", column="N"):
        data.require(("N",), num_params=3, law="power")


# ----------------------------------------------------------------------------- prediction targets
def test_check_positive_targets_converts():
    assert check_positive_targets("N", 7).shape == ()
    assert check_positive_targets("N", 7).dtype == np.float64
    np.testing.assert_array_equal(check_positive_targets("C", [1e21, 10**24]), [1e21, 1e24])
    np.testing.assert_array_equal(check_positive_targets("D", np.array([2**40])), [2.0**40])
    np.testing.assert_array_equal(check_positive_targets("N", ["70B", "1e9"]), [7e10, 1e9])
    assert check_positive_targets("N", np.ones((2, 3))).shape == (2, 3)


def test_prediction_targets_with_disagreeing_c_are_refused():
    """N, D and C all given must agree with C = 6ND within [0.5, 2] (the data's check): the
    third is otherwise shown beside a forecast it did not produce."""
    from bayescale.data import prediction_inputs

    vals = prediction_inputs("chinchilla", ("N", "D"), N=7e10, D=1.4e12, C=6.5e23)
    assert vals["C"][0] == 6.5e23  # 6ND = 5.88e23: within [0.5, 2], kept as given
    with raises(r"N, D and C disagree: C/\(6ND\) = 0.00017 at element 1", column="C", row=1):
        prediction_inputs("chinchilla", ("N", "D"), N=7e10, D=1.4e12, C=[5.88e23, 1e20])


@pytest.mark.parametrize(
    ("values", "match", "element"),
    [
        ([1.0, 0.0], r"value 0.0 must be > 0", 1),
        (-3, r"value -3.0 must be > 0", 0),
        ([1.0, 2.0, np.nan], r"value nan is not a finite number", 2),
        (np.inf, r"value inf is not a finite number", 0),
        (["big"], r"value 'big' is not a number", 0),
        ([None], r"value nan is not a finite number", 0),
    ],
)
def test_check_positive_targets_rejects(values, match, element):
    with raises(rf"prediction target 'C', element {element}: {match}", column="C", row=element):
        check_positive_targets("C", values)


# ----------------------------------------------------------------------------- line numbers
def test_csv_line_numbers_skip_blank_lines_and_quoted_newlines(tmp_path):
    text = 'N,loss,note\n1e8,3.0,"two\nlines"\n\n1e9,2.5,x\n1e10,-2,y\n'
    with raises(r"column 'loss', row 2 \(CSV line 6\): value -2.0 must be > 0", row=2) as e:
        read_csv(write(tmp_path, text))
    assert e.value.line == 6
    # pandas skips whitespace-only lines too, but reads "," as a row (of NaN)
    text = "N,loss\n1e8,3.0\n   \n\t\n1e9,2.5\n1e10,-2\n"
    with raises(r"column 'loss', row 2 \(CSV line 6\): value -2.0 must be > 0", row=2):
        read_csv(write(tmp_path, text))
    with raises(r"column 'loss', row 1 \(CSV line 3\): value nan is not a finite", row=1):
        read_csv(write(tmp_path, "N,loss\n1e8,3.0\n,\n1e10,2.0\n"))


# ----------------------------------------------------------------------------- real data
@pytest.mark.skipif(not CHINCHILLA.exists(), reason="shared data not present")
def test_real_epoch_chinchilla():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_csv(CHINCHILLA, N="Model Size", C="Training FLOP", loss="loss")
    assert len(data) == 245
    assert data.inputs == ("N", "D", "C") and data.derived == ("D",)
    assert f"{data.N.min() / 1e6:.1f}M" == "57.3M"
    assert f"{data.N.max() / 1e9:.1f}B" == "16.2B"
    assert f"{data.C.min():.2e}" == "1.40e+18" and f"{data.C.max():.2e}" == "1.30e+22"
    assert f"{data.loss.min():.3f}" == "2.077" and f"{data.loss.max():.3f}" == "5.006"
    np.testing.assert_allclose(data.D, data.C / (6.0 * data.N), rtol=1e-15)
    frame = pd.read_csv(CHINCHILLA)
    np.testing.assert_array_equal(data.N, frame["Model Size"].to_numpy(np.float64))


@pytest.mark.skipif(not REVISITING.exists(), reason="shared data not present")
def test_real_revisiting_nsl_lang():
    with pytest.warns(DataWarning, match="687 duplicated rows"):
        data = read_csv(
            REVISITING, D="Seen Examples", loss="Loss", curve=["Domain", "Task", "Model"]
        )
    assert len(data) == 1399 and data.inputs == ("D",)
    curves = data.curves()
    assert len(curves) == 20
    assert next(iter(curves)) == "NMT/log_perplexity/6 Enc, 6 Dec"
    assert sum(len(c) for c in curves.values()) == 1399
