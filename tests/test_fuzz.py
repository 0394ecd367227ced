"""Property-based tests of bad input (issue 5, part 3; DESIGN.md §5).

Hypothesis builds malformed tables of runs — NaN, inf, zeros, negatives, ``None``, booleans,
non-numeric strings, "7B" suffixes, numbers too large for float64, empty tables, missing,
duplicated, ambiguous or renamed columns, too few rows, a single or two scales, duplicated
rows, losses that look like perplexities, checkpoint columns, inconsistent compute — and, for
CSV files, wrong delimiters, ragged rows, unterminated quotes, comment lines, byte-order marks,
bytes that are not UTF-8 and empty files. An independent *oracle* (the rules of the README's
bad-input table, written out here) predicts for every case whether bayescale must accept it,
and with which :class:`~bayescale.DataWarning` s, or reject it with :class:`~bayescale.DataError`.
The properties:

* ``bs.from_dataframe`` / ``bs.read_csv`` raise ``DataError`` exactly when the oracle says the
  table is bad, emit exactly the documented warnings otherwise, and never raise anything else;
* an accepted table holds only finite, positive values (no NaN can reach a posterior);
* ``bs.fit(..., law="chinchilla")`` on a table that cannot support the law (missing D, no more
  points than parameters, fewer than 3 distinct N or D) raises ``DataError`` before any
  sampling (the sampler is replaced by a tripwire; tables the law can fit are not fitted);
* ``bayescale fit FILE`` on a bad CSV exits with status 2 and exactly one stderr line;
* ``bayescale fit-many FILE --curve task`` on such a CSV with a column of curve ids (and often
  a valid curve besides) exits 2 with one error line when the file is bad as a whole or no
  curve can be fitted, else 0 with exactly the bad curves reported as ``invalid_input``
  (its sampler replaced by a fake: nothing is sampled).

About 1,350 cases run in total (700 tables, 450 CSV files, 200 command lines); the examples
are derandomised so CI sees the same cases every run.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import call_cli, fake_run_batch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import bayescale as bs
from bayescale import _fit

#: Sampled sites of the Chinchilla law (5 parameters + sigma): require() wants > 6 points.
CHINCHILLA_SITES = 6
COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
_SUFFIXES = {"k": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
FATAL = object()  # oracle verdict of a cell that must be rejected
#: Column aliases the tables below use (README: ``params``, ``tokens``, ... are recognised).
ALIASES = {"N": ("params", "n_params"), "D": ("tokens",)}


# ----------------------------------------------------------------------------- the oracle
def cell_value(value, *, parse_suffixes: bool):
    """The float bayescale must read from one cell, or FATAL."""
    if value is None or isinstance(value, bool | np.bool_):
        return FATAL
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kMBGT])\s*", value)
            if not (m and parse_suffixes):
                return FATAL
            x = float(m.group(1)) * _SUFFIXES[m.group(2)]
    elif isinstance(value, int):
        try:
            x = float(value)
        except OverflowError:
            return FATAL
    else:
        x = float(value)
    return x if math.isfinite(x) and x > 0 else FATAL


@dataclass
class Case:
    """A table (dict of column lists, in order) and what bayescale must answer."""

    columns: list[tuple[str, list]]
    parse_suffixes: bool = False
    structural_error: str = ""  # why the table must be rejected whatever its cells
    applied: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        n = len(self.columns[0][1]) if self.columns else 0
        data = [[col[1][i] for col in self.columns] for i in range(n)]
        frame = pd.DataFrame(data, columns=[name for name, _ in self.columns], dtype=object)
        for j, (_, cells) in enumerate(self.columns):  # numeric columns get numeric dtypes
            if cells and all(type(c) is float for c in cells):
                frame.isetitem(j, frame.iloc[:, j].astype(np.float64))
            elif cells and all(type(c) is int and abs(c) < 2**62 for c in cells):
                frame.isetitem(j, frame.iloc[:, j].astype(np.int64))
        return frame

    def role(self, name: str) -> list | None:
        """Cells of a role: its default column name, else its single alias."""
        hits = [cells for label, cells in self.columns if label == name]
        if not hits:
            hits = [cells for label, cells in self.columns if label in ALIASES.get(name, ())]
        return hits[0] if len(hits) == 1 else None

    def verdict(
        self, inputs: tuple[str, ...] = ("N", "D"), sites: int = CHINCHILLA_SITES
    ) -> tuple[str, set[str], str]:
        """("error" | "ok", expected warning kinds, fit verdict "error" | "ok" | ""); the fit
        verdict is that of a law with these inputs and sampled sites (default: Chinchilla)."""
        if self.structural_error:
            return "error", set(), ""
        values = {}
        for name in ("N", "D", "C", "loss"):
            cells = self.role(name)
            if cells is None:
                continue
            vals = [cell_value(c, parse_suffixes=self.parse_suffixes) for c in cells]
            if any(v is FATAL for v in vals):
                return "error", set(), ""
            values[name] = np.array(vals, dtype=np.float64)
        N, D, C, loss = (values.get(k) for k in ("N", "D", "C", "loss"))
        kinds = set()
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            derived = None  # any two of N, D, C give the third through C = 6ND
            if C is None and N is not None and D is not None:
                C = derived = 6.0 * N * D
            elif D is None and N is not None and C is not None:
                D = derived = C / (6.0 * N)
            elif N is None and D is not None and C is not None:
                N = derived = C / (6.0 * D)
            elif N is not None and D is not None and C is not None:
                ratio = C / (6.0 * N * D)
                if np.any((ratio < 0.5) | (ratio > 2.0)):
                    kinds.add("C/(6ND)")
            if derived is not None and not np.all(np.isfinite(derived) & (derived > 0)):
                return "error", set(), ""
        present = (("N", N), ("D", D), ("C", C), ("loss", loss))
        rows = pd.DataFrame({k: v for k, v in present if v is not None})
        if rows.duplicated().any():
            kinds.add("duplicated")
        if np.any(loss > 15):
            kinds.add("perplexity")
        if any(label == "step" for label, _ in self.columns):
            kinds.add("checkpoints")
        fit = "ok"
        needed = [dict(present)[k] for k in inputs]
        if any(x is None for x in needed) or len(loss) <= sites:
            fit = "error"
        elif any(len(np.unique(x)) < 3 for x in needed):
            fit = "error"
        return "ok", kinds, fit

    def curve_verdicts(self, inputs: tuple[str, ...], sites: int) -> dict[str, bool]:
        """Per curve id (column ``task``, in order of appearance): whether ``fit-many`` can fit
        the curve, i.e. its own rows pass :meth:`verdict`."""
        ids = dict(self.columns)["task"]
        out = {}
        for cid in dict.fromkeys(ids):
            rows = [i for i, t in enumerate(ids) if t == cid]
            sub = Case(
                columns=[(k, [v[i] for i in rows]) for k, v in self.columns if k != "task"],
                parse_suffixes=self.parse_suffixes,
            )
            verdict, _, fit = sub.verdict(inputs, sites)
            out[cid] = verdict == "ok" and fit == "ok"
        return out


_KIND_PATTERNS = {
    "duplicated": "duplicated row",
    "perplexity": "perplexity",
    "checkpoints": "checkpoints",
    "C/(6ND)": "C/(6ND)",
}


def warning_kinds(caught) -> set[str]:
    kinds = set()
    for w in caught:
        assert issubclass(w.category, bs.DataWarning), f"{w.category.__name__}: {w.message}"
        text = str(w.message)
        matched = [k for k, pattern in _KIND_PATTERNS.items() if pattern in text]
        assert matched, f"undocumented DataWarning: {text}"
        kinds.update(matched)
    return kinds


# ----------------------------------------------------------------------------- strategies
BAD_STRINGS = [
    "",
    " ",
    "abc",
    "n/a",
    "NULL",
    "None",
    "nan",
    "-inf",
    "inf",
    "1.2.3",
    "1,000",
    "--",
    "1e9x",
    "e9",
    "0x10",
    "1e10\x00",
    "true",
    "7 B x",
    "—",
    "½",
]
SUFFIX_STRINGS = ["7B", "1.4T", "300M", "2k", "5 G", "70B", "0.5T"]
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
#: Free text of an extra column: letters, digits and spaces (one CSV line per record).
_words = st.text(alphabet=st.characters(whitelist_categories=("L", "Nd", "Zs")), max_size=8)
bad_cells = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, 0.0, 0, -0.0, None, True, False, 10**400, 1e-320 * 0]
    ),
    st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
    st.integers(max_value=0),
    st.sampled_from(BAD_STRINGS),
    _text.filter(lambda s: cell_value(s, parse_suffixes=True) is FATAL),
)


def benign_cell(draw, value: float):
    """A different spelling of a valid value: numeric string, int, huge int, numpy scalar."""
    kind = draw(st.sampled_from(["str", "padded", "int", "huge", "np32", "tiny"]))
    if kind == "str":
        return repr(value)
    if kind == "padded":
        return f"  {value!r} "
    if kind == "int":
        return max(int(value), 1)
    if kind == "huge":
        return 10 ** draw(st.integers(19, 40))
    if kind == "np32":
        return np.float32(value)
    return 5e-324  # the smallest positive float64: valid, its log is finite


@st.composite
def cases(draw, *, csv: bool = False) -> Case:
    n = draw(st.integers(1, 12))
    logs = draw(
        st.lists(
            st.tuples(st.floats(6, 11), st.floats(8, 13), st.floats(0.3, 1.8)),
            min_size=n,
            max_size=n,
        )
    )
    N = [float(f"{10**a:.6g}") for a, _, _ in logs]
    D = [float(f"{10**b:.6g}") for _, b, _ in logs]
    loss = [float(f"{math.exp(c):.6g}") for _, _, c in logs]
    case = Case(columns=[("N", N), ("D", D), ("loss", loss)])
    case.parse_suffixes = draw(st.booleans())
    ops = draw(
        st.lists(
            st.sampled_from(
                [
                    "bad_cell",
                    "bad_cell",
                    "bad_cell",
                    "suffix",
                    "benign_cell",
                    "empty",
                    "drop_loss",
                    "drop_inputs",
                    "drop_D",
                    "dup_column",
                    "ambiguous_alias",
                    "alias",
                    "rename_loss",
                    "extra_column",
                    "step_column",
                    "C_column",
                    "single_scale",
                    "two_scales",
                    "truncate",
                    "dup_rows",
                    "perplexity",
                    "overflow",
                    "underflow",
                ]
            ),
            min_size=1,
            max_size=3,
        )
    )
    for op in ops:
        cols = dict(case.columns)
        size = len(case.columns[0][1]) if case.columns else 0
        roles = [name for name, _ in case.columns if name in ("N", "D", "C", "loss", "params")]
        if op in ("bad_cell", "suffix", "benign_cell") and roles and size:
            name = draw(st.sampled_from(roles))
            row = draw(st.integers(0, size - 1))
            cells = cols[name]
            if op == "bad_cell":
                cells[row] = draw(bad_cells)
            elif op == "suffix":
                cells[row] = draw(st.sampled_from(SUFFIX_STRINGS))
            elif not isinstance(cells[row], float):
                continue
            else:
                cells[row] = benign_cell(draw, cells[row])
        elif op == "empty":
            case.columns = [(k, []) for k, _ in case.columns]
            case.structural_error = "empty"
        elif op == "drop_loss" and "loss" in cols:
            case.columns = [(k, v) for k, v in case.columns if k != "loss"]
            case.structural_error = "no loss column"
        elif op == "drop_inputs":
            inputs = {"N", "D", "C", *ALIASES["N"], *ALIASES["D"]}
            case.columns = [(k, v) for k, v in case.columns if k not in inputs]
            case.structural_error = "no input column"
        elif op == "drop_D":
            case.columns = [(k, v) for k, v in case.columns if k != "D"]
        elif op == "dup_column" and len(roles) >= 2:
            a, b = roles[0], roles[1]
            case.columns = [(a if k == b else k, v) for k, v in case.columns]
            case.structural_error = "duplicated column name"
        elif op == "ambiguous_alias" and "N" in cols:
            case.columns = [(k, v) for k, v in case.columns if k != "N"]
            case.columns += [("params", list(cols["N"])), ("n_params", list(cols["N"]))]
            case.structural_error = "two columns look like N"
        elif op == "alias" and "N" in cols and "params" not in cols and "n_params" not in cols:
            case.columns = [("params" if k == "N" else k, v) for k, v in case.columns]
        elif op == "rename_loss" and "loss" in cols:
            case.columns = [("val_loss_x" if k == "loss" else k, v) for k, v in case.columns]
            case.structural_error = "no loss column"
        elif op == "extra_column" and "note" not in cols:
            case.columns.insert(0, ("note", [draw(_words) for _ in range(size)]))
        elif op == "step_column" and "step" not in cols:
            case.columns.insert(0, ("step", list(range(size))))
        elif op == "C_column" and "N" in cols and "D" in cols and "C" not in cols and size:
            factor = draw(st.sampled_from([1.0, 1.5, 100.0, 1e-3]))
            Cs = []
            for x, y in zip(cols["N"], cols["D"], strict=True):
                try:
                    Cs.append(float(6.0 * float(x) * float(y) * factor))
                except (TypeError, ValueError, OverflowError):
                    Cs.append(1e20)
            case.columns.append(("C", Cs))
        elif op == "single_scale" and "N" in cols and size:
            cols["N"][:] = [cols["N"][0]] * size
        elif op == "two_scales" and "D" in cols and size:
            cols["D"][:] = [cols["D"][i % 2] if size > 1 else cols["D"][0] for i in range(size)]
        elif op == "truncate" and size > 1:
            k = draw(st.integers(1, size - 1))
            case.columns = [(name, v[:k]) for name, v in case.columns]
        elif op == "dup_rows" and size:
            row = draw(st.integers(0, size - 1))
            case.columns = [(name, [*v, v[row]]) for name, v in case.columns]
        elif op == "perplexity" and "loss" in cols:
            cols["loss"][:] = [v * 20.0 if isinstance(v, float) else v for v in cols["loss"]]
        elif op == "overflow" and "N" in cols and "D" in cols and size:
            row = draw(st.integers(0, size - 1))
            cols["N"][row], cols["D"][row] = 1e300, 1e300
        elif op == "underflow" and "N" in cols and "D" in cols and size:
            row = draw(st.integers(0, size - 1))
            cols["N"][row], cols["D"][row] = 1e-200, 1e-200
        case.applied.append(op)
    return case


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def no_sampling():
    """Tripwire: validation must stop every bad table before NUTS starts."""

    def tripwire(*args, **kwargs):
        raise AssertionError("the sampler was reached: input validation let a bad table through")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_fit, "run_nuts", tripwire)
        yield


def check_fit(data, fit_verdict: str) -> None:
    """bs.fit must raise DataError (before sampling) exactly when the law cannot be fitted."""
    if fit_verdict == "error":
        with pytest.raises(bs.DataError):
            bs.fit(data, law="chinchilla")
    else:  # valid enough to fit: check the requirement passes, but do not run NUTS
        data.require(("N", "D"), num_params=CHINCHILLA_SITES, law="chinchilla")


def check_accepted(data: bs.ScalingData) -> None:
    """Everything that reaches a model is finite and > 0, logs included."""
    for name in (*data.inputs, "loss"):
        x = getattr(data, name)
        assert np.all(np.isfinite(x)) and np.all(x > 0), name
    assert all(np.all(np.isfinite(v)) for v in data.log_inputs().values())
    assert np.all(np.isfinite(data.log_loss))


def check(build, case: Case) -> None:
    expected, kinds, fit_verdict = case.verdict()
    # shown by --hypothesis-show-statistics: how many cases are rejected, warned, fit-rejected
    event("DataError" if expected == "error" else f"accepted, fit {fit_verdict}")
    event("DataWarning" if kinds else "no warning")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = build()
        except bs.DataError as exc:
            assert expected == "error", f"rejected a valid table ({case.applied}): {exc}"
            assert str(exc) and "\n" not in str(exc)
            return
    assert expected == "ok", f"accepted a bad table ({case.applied}, {case.structural_error})"
    assert warning_kinds(caught) == kinds, case.applied
    check_accepted(data)
    check_fit(data, fit_verdict)


# ----------------------------------------------------------------------------- properties
@settings(max_examples=700, **COMMON)
@given(case=cases())
def test_malformed_dataframes(case: Case) -> None:
    """from_dataframe: DataError exactly for bad tables, documented warnings otherwise."""
    frame = case.frame()
    check(lambda: bs.from_dataframe(frame, parse_suffixes=case.parse_suffixes), case)
    if case.verdict()[0] == "error":  # bs.fit on the raw table fails in validation too
        with pytest.raises(bs.DataError), warnings.catch_warnings():
            warnings.simplefilter("ignore", bs.DataWarning)
            bs.fit(frame, law="chinchilla")


CSV_OPS = [
    "none",
    "none",
    "semicolon",
    "tab",
    "empty_file",
    "whitespace_file",
    "header_only",
    "ragged_extra",
    "ragged_extra_all",
    "ragged_missing",
    "unterminated_quote",
    "comment_line",
    "bom",
    "crlf",
    "blank_lines",
    "not_utf8",
    "latin1_header",
]


#: Curve ids of the tables of ``fit-many`` (column ``task``; c0 twice as likely).
CURVE_IDS = ["c0", "c0", "c1", "c2"]
#: The comment line of the ``comment_line`` op: for fit-many, a row of a curve of its own.
COMMENT = "# a comment"
#: Rows of the valid curve ``clean`` that fit-many tables may hold besides the others.
CLEAN_ROWS = 6


def _clean_cell(name: str, k: int):
    """Cell of column ``name`` in row ``k`` of the valid curve ``clean``."""
    N, D = 10 ** (7 + 0.5 * k), 10 ** (9 + 0.4 * k)
    values = {"task": "clean", "C": 6.0 * N * D, "step": k, "note": "ok"}
    values.update(dict.fromkeys(("N", *ALIASES["N"]), N))
    values.update(dict.fromkeys(("D", *ALIASES["D"]), D))
    values.update(dict.fromkeys(("loss", "val_loss_x"), 3.0 - 0.1 * k))
    return values[name]


@st.composite
def csv_cases(draw, *, curves: bool = False) -> tuple[Case, bytes, str]:
    """A CSV file of a table of :func:`cases`; with ``curves``, a first column ``task`` of
    curve ids, and the damage of a single row (a missing last field, a comment line) makes
    that row's curve bad, not the file."""
    case = draw(cases(csv=True))
    if curves:
        case.parse_suffixes = False  # the command line reads "7B" as a bad value
        size = len(case.columns[0][1]) if case.columns else 0
        tasks = draw(st.lists(st.sampled_from(CURVE_IDS), min_size=size, max_size=size))
        case.columns.insert(0, ("task", tasks))
        if size and draw(st.sampled_from([True, True, True, False])):  # and a valid curve
            for name, cells in case.columns:
                cells.extend(_clean_cell(name, k) for k in range(CLEAN_ROWS))
    frame = case.frame()
    text = frame.to_csv(index=False, lineterminator="\n") if len(frame.columns) else ""
    op = draw(st.sampled_from(CSV_OPS))
    lines = text.split("\n")[:-1]  # records end in "\n" (cells never hold line breaks)
    data_lines = len(lines) - 1
    # one line per record (no cell holds a line break): data line i is row i - 1
    by_row = curves and data_lines == len(frame)
    raw: bytes
    if op == "semicolon" and len(frame.columns) > 1:
        text = frame.to_csv(index=False, sep=";")
        case.structural_error = case.structural_error or "wrong delimiter"
    elif op == "tab" and len(frame.columns) > 1:
        text = frame.to_csv(index=False, sep="\t")
        case.structural_error = case.structural_error or "wrong delimiter"
    elif op == "empty_file":
        text = ""
        case.structural_error = "empty file"
    elif op == "whitespace_file":
        text = "  \n\n \n"
        case.structural_error = "empty file"
    elif op == "header_only" and lines:
        text = lines[0] + "\n"
        case.structural_error = "no data rows"
    elif op == "ragged_extra" and data_lines >= 2:
        i = draw(st.integers(2, data_lines))
        lines[i] += ",1.5"
        text = "\n".join(lines) + "\n"
        case.structural_error = "a row has more fields than the header"
    elif op == "ragged_extra_all" and data_lines >= 1:
        lines = [lines[0]] + [line + ",2.5" for line in lines[1:]]
        text = "\n".join(lines) + "\n"
        case.structural_error = "every row has more fields than the header"
    elif op == "ragged_missing" and data_lines >= 1 and len(frame.columns) > 1:
        i = draw(st.integers(1, data_lines))
        if "," in lines[i] and not lines[i].endswith('"') and (by_row or not curves):
            lines[i] = lines[i].rsplit(",", 1)[0]
            text = "\n".join(lines) + "\n"
            if by_row:  # pandas reads the missing field as NaN
                case.columns[-1][1][i - 1] = None
            else:
                case.structural_error = "a row misses its last field"
    elif op == "unterminated_quote" and data_lines >= 1 and '"' not in text:
        i = draw(st.integers(1, data_lines))
        lines[i] = '"' + lines[i]
        text = "\n".join(lines) + "\n"
        case.structural_error = "unterminated quote"
    elif op == "comment_line" and data_lines >= 1 and len(frame.columns) > 1:
        if by_row or not curves:
            i = draw(st.integers(1, data_lines))
            lines.insert(i, COMMENT)
            text = "\n".join(lines) + "\n"
            if by_row:  # a row with curve id COMMENT and every other field missing (NaN)
                for name, cells in case.columns:
                    cells.insert(i - 1, COMMENT if name == "task" else None)
            else:
                case.structural_error = "comment line"
    elif op == "crlf":
        text = text.replace("\n", "\r\n")
    elif op == "blank_lines" and data_lines >= 1:
        lines.insert(draw(st.integers(1, data_lines)), "")
        text = "\n".join(lines) + "\n"
    raw = text.encode("utf-8")
    if op == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif op == "not_utf8" and data_lines >= 1:
        raw = raw.replace(b"\n", b"\n\xff\xfe", 1)
        case.structural_error = "not UTF-8"
    elif op == "latin1_header" and lines:
        raw = text.replace("\n", ",caf\xe9\n", 1).encode("latin-1", errors="replace")
        case.structural_error = "not UTF-8"
    # strings pandas reads as NaN (e.g. "NA", "null", "") are bad in the oracle already
    return case, raw, op


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=450, **COMMON)
@given(item=csv_cases())
def test_malformed_csv_files(item, csv_dir: Path) -> None:
    """read_csv: DataError exactly for bad files, documented warnings otherwise."""
    case, raw, _ = item
    path = csv_dir / "runs.csv"
    path.write_bytes(raw)
    check(lambda: bs.read_csv(path, parse_suffixes=case.parse_suffixes), case)


@settings(max_examples=100, **COMMON)
@given(item=csv_cases())
def test_cli_bad_csv_one_line_exit_2(item, csv_dir: Path) -> None:
    """`bayescale fit FILE` on a bad CSV: exit status 2, one line on stderr, no traceback."""
    case, raw, op = item
    expected, kinds, fit_verdict = case.verdict()
    assume(not case.parse_suffixes)  # the CLI reads suffixes as bad values
    assume(expected == "error" or (fit_verdict == "error" and not kinds))
    path = csv_dir / "cli.csv"
    path.write_bytes(raw)
    rc, _, err = call_cli(["fit", path, "--predict", "N=70B,D=1.4T"])
    lines = err.splitlines()
    assert rc == 2, (case.applied, op, err)
    assert len(lines) == 1, (case.applied, op, lines)
    assert lines[0].startswith("bayescale: error: "), lines[0]
    assert "Traceback" not in err


#: Sampled sites of the power_n law fit-many fits below (E, A, alpha + sigma): > 4 points.
POWER_N_SITES = 4


@pytest.fixture(scope="module")
def batches():
    """fit_many with a fake sampler; the list gets each BatchFit the command line made."""
    import bayescale.infer.batch as engine
    from bayescale.batch import fit_many

    made: list = []

    def spy(*args, **kwargs):
        made.append(fit_many(*args, **kwargs))
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "run_batch", fake_run_batch)
        patch.setattr(bs, "fit_many", spy)
        yield made


@settings(max_examples=100, **COMMON)
@given(item=csv_cases(curves=True))
def test_cli_fit_many_bad_csv(item, csv_dir: Path, batches: list) -> None:
    """`bayescale fit-many FILE --curve task`: a file bad as a whole, or one in which no curve
    can be fitted, exits 2 with one error line (after any data warnings); otherwise exit 0,
    the bad curves reported as invalid_input and only the others sampled."""
    case, raw, op = item
    expected = "error" if case.structural_error else "ok"
    fittable = {} if expected == "error" else case.curve_verdicts(("N",), POWER_N_SITES)
    if not any(fittable.values()):
        expected = "error"
    event(f"fit-many {expected}, {sum(fittable.values())} of {len(fittable)} curves fittable")
    event(f"op {op} {expected}")
    path = csv_dir / "many.csv"
    path.write_bytes(raw)
    batches.clear()
    argv = ["fit-many", path, "--curve", "task", "--law", "power_n", "--quiet"]
    rc, out, err = call_cli([*argv, "--num-chains", "2", "--num-samples", "20"])
    lines = err.splitlines()
    why = (case.applied, op, case.structural_error, fittable, err)
    assert "Traceback" not in err, why
    errors = [line for line in lines if line.startswith("bayescale: error: ")]
    assert all(line.startswith("bayescale: warning: ") for line in lines if line not in errors)
    if expected == "error":
        assert rc == 2, why
        assert len(errors) == 1 and lines[-1] == errors[0], why
        return
    assert rc == 0 and not errors, why
    (batch,) = batches
    assert list(batch.curve_ids) == list(fittable), why
    assert [s != "invalid_input" for s in batch.status] == list(fittable.values()), why
    bad = sum(not ok for ok in fittable.values())
    assert (f"invalid_input {bad}" in out) == (bad > 0), why
