"""Input data: validate tables, convert to float64, take logs, build a typed :class:`ScalingData`.

This module imports nothing from the rest of bayescale and never touches JAX. Every bad input
answers with a :class:`DataError` (a ``ValueError``) naming the column, the row and the value, or
with a documented :class:`DataWarning`; rows are never dropped silently.
"""

from __future__ import annotations

import csv
import decimal
import difflib
import numbers
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DataError",
    "DataWarning",
    "ScalingData",
    "as_scaling_data",
    "check_positive_targets",
    "from_arrays",
    "from_dataframe",
    "read_csv",
]

INPUTS = ("N", "D", "C", "U")  # U: unique tokens (repeated data), read by the datablations law
_ROLES = (*INPUTS, "loss")
_ALIASES = {
    "N": ("n", "params", "parameters", "n_params", "num_params", "model_size", "model size"),
    "D": ("d", "tokens", "n_tokens", "num_tokens", "data", "seen examples"),
    "C": ("c", "compute", "flops", "training flop"),
    "U": ("u", "unique_tokens", "unique tokens", "unique"),
    "loss": ("loss", "l"),
}
_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_SUFFIX_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMbBgGtT])\s*$")
_THOUSANDS_RE = re.compile(r"^\s*[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?(?:[eE][+-]?\d+)?\s*$")
_DECIMAL_RE = re.compile(r"^\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*$")
_STEP_RE = re.compile(r"(^|[^a-z])(steps?|checkpoints?|ckpt|iterations?|iters?)([^a-z]|$)")
#: :func:`_parse_str`'s answer for text that is no number and gets no hint.
_NOT_A_NUMBER = "is not a number"
_LOSS_PERPLEXITY = 15.0
_C_RATIO = (0.5, 2.0)
_DEFAULTS = {"N": "N", "D": "D", "C": "C", "U": "U", "loss": "loss", "curve": None, "run": None}

LineOf = Callable[[int], "int | None"] | None


@dataclass(frozen=True)
class TableRows:
    """Where the rows of a sub-table (one curve of a larger table) came from, for messages.

    ``rows[i]`` is the 0-based row of the whole table behind row ``i`` of the sub-table;
    ``line_of`` maps a row of the whole table to its 1-based CSV line (None: not a file).
    """

    rows: np.ndarray
    line_of: LineOf = None

    def locate(self, row: int) -> tuple[int, int | None]:
        table_row = int(self.rows[row]) if 0 <= row < len(self.rows) else row
        return table_row, (self.line_of(table_row) if self.line_of is not None else None)


def _locate(row: int, line_of: LineOf | TableRows) -> tuple[int, int | None]:
    """(row as the user numbers it, CSV line or None) of a row of the table being read."""
    if isinstance(line_of, TableRows):
        return line_of.locate(row)
    return row, (line_of(row) if line_of is not None else None)


class DataError(ValueError):
    """Bad input data.

    The message is one line naming the column, the row (0-based row of the user's table, plus
    the CSV line number when read from a file) and the offending value; the same facts are kept
    as attributes ``column``, ``row``, ``line`` and ``value`` (``None`` where they do not apply).
    """

    def __init__(self, message: str, *, column=None, row=None, value=None, line=None) -> None:
        super().__init__(message)
        self.column, self.row, self.value, self.line = column, row, value, line


class DataWarning(UserWarning):
    """A documented, suspicious-but-usable property of the data (duplicates, perplexity, ...)."""


def _show(value: object) -> str:
    if isinstance(value, str | bytes):
        return repr(value)
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, float) else str(value)


def _where(column: str | None, row: int | None, line_of: LineOf | TableRows = None) -> str:
    return _place(column, *((None, None) if row is None else _locate(row, line_of)))


def _place(column: str | None, shown: int | None, line: int | None) -> str:
    """``column 'loss', row 5 (CSV line 7)`` from a located row (None: no row)."""
    parts = [f"column {column!r}"] if column is not None else []
    if shown is not None:
        parts.append(f"row {shown}" + (f" (CSV line {line})" if line is not None else ""))
    return ", ".join(parts)


def _error(
    column: str | None,
    row: int | None,
    value: object,
    what: str,
    line_of: LineOf | TableRows = None,
) -> DataError:
    shown, line = (None, None) if row is None else _locate(row, line_of)
    message = f"{_place(column, shown, line)}: value {_show(value)} {what}"
    return DataError(message, column=column, row=shown, value=value, line=line)


def _warn(message: str) -> None:
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DataWarning, stacklevel=level)


# ----------------------------------------------------------------------------- conversion
def _parse_str(text: str, parse_suffixes: bool) -> float | str:
    """Float value of ``text``, or a string explaining why it is not a number."""
    try:
        return float(text)
    except ValueError:
        pass
    match = _SUFFIX_RE.match(text)
    if match:
        if parse_suffixes:
            return float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
        return (
            "has a magnitude suffix; pass parse_suffixes=True (CLI: --parse-suffixes) to read "
            "k/M/B/T suffixes"
        )
    thousands = 'pass thousands="," (CLI: --thousands ,)'
    decimal = 'pass decimal="," (CLI: --decimal ,)'
    if _THOUSANDS_RE.match(text):
        if _DECIMAL_RE.match(text):  # "3,050": 3050 or 3.05
            return (
                f'uses "," as a thousands separator or as the decimal mark; {thousands} or '
                f"{decimal} to read_csv, whichever the file uses"
            )
        return f'uses "," as a thousands separator; {thousands} to read_csv'
    if _DECIMAL_RE.match(text):
        return f'uses "," as the decimal mark; {decimal} to read_csv'
    return _NOT_A_NUMBER


def _column(
    name: str, values: Any, *, parse_suffixes: bool = False, line_of: LineOf | TableRows = None
) -> np.ndarray:
    """Convert one column to float64 (integers never wrap) and check it is finite and > 0."""
    if isinstance(values, pd.Series):
        kind = values.dtype.kind
        array = values.to_numpy(dtype=np.float64, na_value=np.nan) if kind in "iuf" else None
        items = values.tolist()
    else:
        array = np.asarray(values)
        if array.ndim != 1:
            raise DataError(f"column {name!r}: expected 1-D values, got shape {array.shape}")
        kind, items = array.dtype.kind, array.tolist()
    if kind in "iuf":
        x = np.asarray(array, dtype=np.float64)
    else:
        x = np.empty(len(items), dtype=np.float64)
        for row, value in enumerate(items):
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            why = _NOT_A_NUMBER
            if isinstance(value, str):
                parsed = _parse_str(value, parse_suffixes)
                why, value = (why, parsed) if isinstance(parsed, float) else (parsed, value)
            elif value is None or value is pd.NA or value is pd.NaT:
                value = np.nan
            elif getattr(value, "ndim", None) == 0 and getattr(
                getattr(value, "dtype", None), "kind", None
            ) in ("i", "u", "f"):  # a 0-d NumPy or JAX array, e.g. a loss from a JAX loop
                value = value.item()
            if isinstance(value, decimal.Decimal):  # exact: float() would give inf, or raise
                if value.is_nan():
                    value = np.nan  # also a signalling NaN
                elif value.is_finite() and abs(value) > decimal.Decimal(np.finfo(float).max):
                    raise _error(name, row, items[row], "is too large for float64", line_of)
            real = isinstance(value, numbers.Real | decimal.Decimal)
            if real and not isinstance(value, bool | np.bool_):
                try:
                    x[row] = float(value)
                    continue
                except OverflowError:
                    why = "is too large for float64"
            raise _error(name, row, items[row], why, line_of)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(x) & (x > 0))
    if bad.any():
        row = int(np.argmax(bad))
        value = items[row] if isinstance(items[row], str) else float(x[row])
        what = "is not a finite number" if not np.isfinite(x[row]) else "must be > 0"
        raise _error(name, row, value, what, line_of)
    return x


def _ids(
    name: str, columns: list[tuple[str, Any]], n: int, line_of: LineOf | TableRows
) -> np.ndarray:
    """Object array of string ids, joined with "/" over several columns; NaN ids raise."""
    parts = []
    for column, values in columns:
        if isinstance(values, str):
            values = [values] * n
        items = list(values.tolist() if hasattr(values, "tolist") else values)
        if len(items) != n:
            raise DataError(
                f"column {column!r}: has {len(items)} rows, expected {n}", column=column
            )
        for row, item in enumerate(items):
            if item is None or (not isinstance(item, str) and bool(np.all(pd.isna(item)))):
                raise _error(column, row, item, f"is a missing {name} id", line_of)
        parts.append([str(item) for item in items])
    out = np.empty(n, dtype=object)
    out[:] = ["/".join(p) for p in zip(*parts, strict=True)] if len(parts) > 1 else parts[0]
    return out


# ----------------------------------------------------------------------------- the container
@dataclass(frozen=True, eq=False)
class ScalingData:
    """Validated scaling observations: float64 inputs ``N``, ``D``, ``C`` and ``loss``.

    Arrays are 1-D, of equal length, finite and > 0, and read-only. Build one with
    :func:`read_csv`, :func:`from_dataframe`, :func:`from_arrays` or :func:`as_scaling_data`.

    Attributes
    ----------
    N, D, C : numpy.ndarray or None
        Parameters, tokens and compute (FLOP). A missing third input is derived from the
        other two with ``C = 6 N D``; ``derived`` names the inputs obtained that way.
    U : numpy.ndarray or None
        Unique tokens, when data were repeated for ``D / U`` epochs (the ``datablations``
        law of Muennighoff et al. 2023).
    loss : numpy.ndarray
        Observed loss (not perplexity).
    curve, run : numpy.ndarray or None
        Object arrays of string ids of curves (fitted separately) and of training runs.
    source : str
        File path, ``"<DataFrame>"`` or ``"<arrays>"``.
    origin : TableRows or None
        Where each row came from: its row in the table that was read (and CSV line), kept
        through :meth:`subset` and :meth:`curves`, so that a later check names the row as the
        user numbers it (:meth:`locate`). ``None``: rows are numbered from 0.

    Examples
    --------
    >>> data = from_arrays(N=[1e8, 1e9, 1e10], D=[2e9, 2e10, 2e11], loss=[3.2, 2.7, 2.3])
    >>> data.inputs, float(data.C[0])
    (('N', 'D', 'C'), 1.2e+18)
    """

    N: np.ndarray | None
    D: np.ndarray | None
    C: np.ndarray | None
    loss: np.ndarray
    curve: np.ndarray | None = None
    run: np.ndarray | None = None
    source: str = "<arrays>"
    derived: tuple[str, ...] = ()
    U: np.ndarray | None = None
    origin: TableRows | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(np.asarray(self.loss))
        if self.origin is not None and len(self.origin.rows) != n:
            # rows replaced (dataclasses.replace with other arrays): their origin is unknown
            object.__setattr__(self, "origin", None)
        for name in (*_ROLES, "curve", "run"):
            value = getattr(self, name)
            if value is None:
                continue
            is_id = name in ("curve", "run")
            array = np.array(value, dtype=object) if is_id else _column(name, value)
            if array.shape != (n,):
                raise DataError(
                    f"column {name!r}: shape {array.shape}, loss has ({n},)", column=name
                )
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.loss)

    def __repr__(self) -> str:
        return (
            f"ScalingData({len(self)} rows, inputs={self.inputs}, "
            f"curves={len(self.curve_ids)}, source={self.source!r})"
        )

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the inputs present, in the order ``N``, ``D``, ``C``, ``U``."""
        return tuple(name for name in INPUTS if getattr(self, name) is not None)

    @property
    def curve_ids(self) -> list[str]:
        """Distinct curve ids in order of first appearance (``["all"]`` without a curve column)."""
        return ["all"] if self.curve is None else list(dict.fromkeys(self.curve.tolist()))

    def log_inputs(self) -> dict[str, np.ndarray]:
        """Natural logs of the present inputs, e.g. ``{"N": log N, "D": log D, "C": log C}``."""
        return {name: np.log(getattr(self, name)) for name in self.inputs}

    @property
    def log_loss(self) -> np.ndarray:
        """Natural log of the loss."""
        return np.log(self.loss)

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with the present columns among N, D, C, loss, curve, run."""
        names = (*_ROLES, "curve", "run")
        return pd.DataFrame({k: getattr(self, k) for k in names if getattr(self, k) is not None})

    def subset(self, mask_or_index: Any) -> ScalingData:
        """Rows selected by a boolean mask, integer indices or a slice."""
        index = mask_or_index if isinstance(mask_or_index, slice) else np.asarray(mask_or_index)
        if isinstance(index, np.ndarray) and index.dtype == bool and index.shape != (len(self),):
            raise DataError(f"boolean mask of shape {index.shape} for {len(self)} rows")
        fields = {k: getattr(self, k) for k in (*_ROLES, "curve", "run")}
        kept = {k: (None if v is None else v[index]) for k, v in fields.items()}
        origin = None
        if self.origin is not None:
            origin = TableRows(np.asarray(self.origin.rows)[index], self.origin.line_of)
        return ScalingData(**kept, source=self.source, derived=self.derived, origin=origin)

    def locate(self, row: int) -> tuple[int, int | None]:
        """Row ``row`` of this data as the user numbers it: (row of the table it was read
        from, 0-based; its 1-based CSV line or None), also after :meth:`subset`.

        >>> import pandas as pd
        >>> table = pd.DataFrame({"N": [1e8, 2e8, 4e8, 8e8], "loss": [3.0, 2.8, 2.7, 2.6]})
        >>> from_dataframe(table).subset([1, 3]).locate(1)
        (3, None)
        """
        return _locate(row, self.origin)

    def curves(self) -> dict[str, ScalingData]:
        """Split by curve id, in order of first appearance; ``{"all": self}`` without curves."""
        if self.curve is None:
            return {"all": self}
        return {cid: self.subset(self.curve == cid) for cid in self.curve_ids}

    def require(self, inputs: tuple[str, ...], *, num_params: int, law: str) -> None:
        """Check that a law with ``num_params`` parameters and these inputs can be fitted.

        Raises
        ------
        DataError
            When an input is missing, when there are not more points than parameters, or when
            an input has fewer than 3 distinct values (its exponent is not identifiable).
        """
        where = ""
        if self.curve is not None and len(self.curve_ids) == 1:
            where = f"curve {self.curve_ids[0]!r}: "
        for name in inputs:
            if getattr(self, name, None) is None:
                raise DataError(
                    f"{where}law {law!r} needs input {name!r}, which the data lacks "
                    f"(present: {', '.join(self.inputs) or 'none'}); pass {name}=<column>",
                    column=name,
                )
        if len(self) <= num_params:
            raise DataError(
                f"{where}too few points: law {law!r} has {num_params} parameters to fit but "
                f"the data has {len(self)} points; it needs at least {num_params + 1}",
                value=len(self),
            )
        for name in inputs:
            distinct = np.unique(getattr(self, name))
            if len(distinct) < 3:
                shown = ", ".join(f"{v:.4g}" for v in distinct)
                raise DataError(
                    f"{where}fewer than 3 distinct scales: input {name!r} has {len(distinct)} "
                    f"distinct value(s) ({shown}); law {law!r} cannot identify its exponent",
                    column=name,
                    value=len(distinct),
                )

    def describe(self) -> str:
        """One paragraph: rows, ranges of each input and of the loss, curves and runs."""
        parts = [f"{len(self)} rows from {self.source}"]
        for name in self.inputs:
            x = getattr(self, name)
            note = " (derived: C = 6ND)" if name in self.derived else ""
            parts.append(
                f"{name} {x.min():.3g} .. {x.max():.3g} ({len(np.unique(x))} distinct){note}"
            )
        parts.append(f"loss {self.loss.min():.4g} .. {self.loss.max():.4g}")
        n_curves = len(self.curve_ids)
        parts.append("1 curve" if self.curve is None else f"{n_curves} curve(s)")
        if self.run is not None:
            parts.append(f"{len(set(self.run.tolist()))} run(s)")
        return "; ".join(parts) + "."


# ----------------------------------------------------------------------------- builders
def _build(
    columns: dict[str, Any],
    *,
    curve: list[tuple[str, Any]] | None,
    run: list[tuple[str, Any]] | None,
    source: str,
    names: dict[str, str],
    parse_suffixes: bool,
    line_of: LineOf | TableRows = None,
) -> ScalingData:
    """Validate resolved columns (role -> values) and assemble a ScalingData."""
    values: dict[str, np.ndarray | None] = dict.fromkeys(_ROLES)
    for role in sorted(columns, key=lambda r: r != "loss"):
        name = names[role]
        values[role] = x = _column(
            name, columns[role], parse_suffixes=parse_suffixes, line_of=line_of
        )
        n = len(values["loss"])  # type: ignore[arg-type]
        if n == 0:
            raise DataError(f"{source} has no data rows")
        if len(x) != n:
            raise DataError(f"column {name!r}: has {len(x)} rows but loss has {n}", column=name)
    derived: tuple[str, ...] = ()
    N, D, C = values["N"], values["D"], values["C"]
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        if C is None and N is not None and D is not None:
            values["C"], derived = 6.0 * N * D, ("C",)
        elif D is None and N is not None and C is not None:
            values["D"], derived = C / (6.0 * N), ("D",)
        elif N is None and D is not None and C is not None:
            values["N"], derived = C / (6.0 * D), ("N",)
        elif N is not None and D is not None and C is not None:
            ratio = C / (6.0 * N * D)
            off = (ratio < _C_RATIO[0]) | (ratio > _C_RATIO[1])
            if off.any():
                worst = int(np.argmax(np.abs(np.log(ratio))))
                _warn(
                    f"{_where(names['C'], worst, line_of)}: C/(6ND) = {ratio[worst]:.3g} is the "
                    f"worst of {int(off.sum())} rows outside [0.5, 2]; C is kept as given, "
                    "check its units (FLOP) or leave C out to use 6ND"
                )
    for role in derived:
        _column(f"{role} (derived from C = 6ND)", values[role], line_of=line_of)
    ids = {
        k: None if v is None else _ids(k, v, n, line_of)
        for k, v in (("curve", curve), ("run", run))
    }
    origin = line_of if isinstance(line_of, TableRows) else TableRows(np.arange(n), line_of)
    data = ScalingData(**values, **ids, source=source, derived=derived, origin=origin)  # type: ignore[arg-type]
    frame = data.to_frame()
    dup = frame.duplicated().to_numpy()
    if dup.any():
        first = int(np.argmax(dup))
        same = (frame == frame.iloc[first]).all(axis=1).to_numpy()
        original = int(np.argmax(same))
        _warn(
            f"{int(dup.sum())} duplicated row{'s' * (int(dup.sum()) > 1)} (identical {', '.join(frame.columns)}); first: "
            f"{_where(None, first, line_of)} repeats row {_locate(original, line_of)[0]}; rows are kept, "
            "drop copies (e.g. DataFrame.drop_duplicates()) unless they are repeated measurements"
        )
    if (data.loss > _LOSS_PERPLEXITY).any():
        worst = int(np.argmax(data.loss))
        _warn(
            f"{_where(names['loss'], worst, line_of)}: loss {data.loss[worst]:.4g} > "
            f"{_LOSS_PERPLEXITY:g}; is this perplexity? bayescale expects a loss, "
            "e.g. log-perplexity"
        )
    return data


#: Aliases generic enough to name other things (a dataset called ``data``, a flag ``unique``,
#: one-letter columns): a column found by one of them that holds no number at all is left out
#: with a DataWarning instead of stopping the read. Specific aliases (``params``, ``tokens``,
#: ``Loss``, ...) stay strict: a bad cell there is a DataError with its hint.
_GENERIC_ALIASES = frozenset({"data", "unique", "n", "d", "c", "u", "l"})


def _explicit_columns(spec: Mapping[str, Any]) -> set[str]:
    """Columns the user named for some role (any value other than the role's default)."""
    return {c for r, v in spec.items() if v is not None and v != _DEFAULTS[r] for c in _as_list(v)}


def _holds_no_number(values: pd.Series) -> bool:
    """Some cell is text or a boolean, and none is a number or a string that reads as one or
    gets a hint (a suffix, a thousands separator, a decimal comma); missing cells count as
    neither."""
    if values.dtype.kind in "iufc":
        return False
    text = False
    for value in values.tolist():
        if value is None or (not isinstance(value, str) and bool(np.all(pd.isna(value)))):
            continue
        if isinstance(value, bool | np.bool_):
            text = True
        elif isinstance(value, numbers.Real | decimal.Decimal):
            return False
        elif isinstance(value, str | bytes):
            if _parse_str(str(value), False) != _NOT_A_NUMBER:
                return False
            text = True
        else:
            text = True
    return text


def _by_label(df: pd.DataFrame, label: str) -> pd.Series:
    """The column whose ``str()`` is ``label`` (column names may be numbers)."""
    return df.loc[:, [str(c) == label for c in df.columns]].iloc[:, 0]


def text_alias_columns(df: pd.DataFrame, spec: Mapping[str, Any]) -> dict[str, str]:
    """Columns (label -> role) that only a generic alias would claim for a role left at its
    default name, and that hold no number: :func:`from_dataframe` leaves them out. Decided
    on the whole table, so that every curve cut from it is read alike."""
    labels = [str(c) for c in df.columns]
    explicit = _explicit_columns(spec)
    out = {}
    for role, wanted in spec.items():
        if role not in _ALIASES or wanted != _DEFAULTS[role] or wanted in labels:
            continue
        for label in labels:
            key = label.strip().lower()
            if key in _ALIASES[role] and key in _GENERIC_ALIASES and label not in explicit:
                if labels.count(label) == 1 and _holds_no_number(_by_label(df, label)):
                    out[label] = role
    return out


def warn_text_aliases(df: pd.DataFrame, skipped: Mapping[str, str]) -> None:
    """One DataWarning per column of :func:`text_alias_columns`."""
    for label, role in skipped.items():
        first = _by_label(df, label).iloc[0] if len(df) else None
        _warn(
            f"column {label!r} is named like {role} but holds no numbers (row 0: "
            f"{_show(first)}); it is not used: pass {role}={label!r} (CLI: --{role} {label}) "
            f"to read it as {role}"
        )


def _resolve(
    df: pd.DataFrame,
    spec: dict[str, str | list[str] | None],
    source: str,
    skip_text_aliases: bool = True,
) -> dict[str, list[str]]:
    """Map each role to its column names; raise on missing, ambiguous or duplicated columns.
    With ``skip_text_aliases``, the columns of :func:`text_alias_columns` are left out (with a
    warning); a caller that cut ``df`` from a larger table decides that on the table."""
    skipped = text_alias_columns(df, spec) if skip_text_aliases else {}
    warn_text_aliases(df, skipped)
    labels = [str(c) for c in df.columns]
    listing = ", ".join(repr(c) for c in labels)
    counts = pd.Series(labels).value_counts()
    duplicated = set(counts[counts > 1].index)
    explicit = _explicit_columns(spec)
    out: dict[str, list[str]] = {}
    for role, wanted in spec.items():
        if wanted is None:
            continue
        found: list[str] = []
        for name in _as_list(wanted):
            if name in labels:
                found.append(name)
            elif role in _ALIASES and wanted == _DEFAULTS[role]:
                hits = [c for c in labels if c.strip().lower() in _ALIASES[role]]
                hits = [c for c in hits if c not in explicit and c not in skipped]
                if len(hits) > 1:
                    raise DataError(
                        f"{source}: columns {', '.join(map(repr, hits))} all look like {role}; "
                        f"pass {role}=<column> to choose one",
                        column=hits[0],
                    )
                found.extend(hits)
            else:
                close = difflib.get_close_matches(name, labels, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise DataError(
                    f"{source}: no column {name!r} for {role} (columns: {listing}){hint}",
                    column=name,
                )
        for name in found:
            if name in duplicated:
                raise DataError(
                    f"{source}: column name {name!r} appears {counts[name]} times; "
                    "rename the duplicates",
                    column=name,
                )
        if found:
            out[role] = found
    if "loss" not in out or not any(r in out for r in ("N", "D", "C")):
        missing = "loss" if "loss" not in out else "N, D or C"
        raise DataError(f"{source}: no {missing} column found (columns: {listing})")
    owner: dict[str, str] = {}
    for role, found in out.items():
        for name in found:
            other = owner.get(name)
            if other is not None and {other, role} != {"curve", "run"}:
                raise DataError(
                    f"{source}: column {name!r} is used for both {other} and {role}", column=name
                )
            owner[name] = role
    return out


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _from_frame(
    df: pd.DataFrame,
    spec: dict[str, Any],
    *,
    parse_suffixes: bool,
    source: str,
    line_of: LineOf | TableRows = None,
    skip_text_aliases: bool = True,
) -> ScalingData:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 1:
        header = str(df.columns[0])
        for sep, label in ((";", "';'"), ("\t", "'\\t' (tab)"), ("|", "'|'"), (",", "','")):
            if sep in header:
                raise DataError(
                    f"{source}: the table has one column {header!r}; the delimiter is "
                    f"probably {label}: pass sep={sep!r}",
                    column=header,
                )
    if len(df) == 0:
        raise DataError(f"{source} has no data rows (columns: {', '.join(map(str, df.columns))})")
    roles = _resolve(df, spec, source, skip_text_aliases)
    by_label = {str(c): c for c in df.columns}

    def col(name: str) -> pd.Series:
        return df[by_label[name]]

    columns = {r: col(roles[r][0]) for r in _ROLES if r in roles}
    names = {r: roles[r][0] for r in roles}
    names.update({r: r for r in _ROLES if r not in names})
    data = _build(
        columns,
        curve=[(c, col(c)) for c in roles["curve"]] if "curve" in roles else None,
        run=[(c, col(c)) for c in roles["run"]] if "run" in roles else None,
        source=source,
        names=names,
        parse_suffixes=parse_suffixes,
        line_of=line_of,
    )
    if "run" not in roles:
        steps = [str(c) for c in df.columns if _STEP_RE.search(str(c).lower())]
        if steps:
            _warn(
                f"{source}: column {steps[0]!r} looks like checkpoints of training runs but no "
                "run= column was given; errors of checkpoints of one run are correlated, "
                "pass run=<column> to identify runs"
            )
    return data


def from_dataframe(
    df: pd.DataFrame,
    *,
    N: str | None = "N",
    D: str | None = "D",
    C: str | None = "C",
    loss: str = "loss",
    curve: str | list[str] | None = None,
    run: str | list[str] | None = None,
    parse_suffixes: bool = False,
    U: str | None = "U",
) -> ScalingData:
    """Validate a DataFrame and build a :class:`ScalingData`.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observation.
    N, D, C, loss : str or None
        Column names. With the default name, case-insensitive aliases are accepted
        (``params``, ``tokens``, ``flops``, ``Model Size``, ...); ``None`` ignores that input.
        Of ``N, D, C`` any two determine the third through ``C = 6 N D``.
    curve, run : str or list of str, optional
        Column(s) of curve ids (fitted separately) and run ids; several columns are joined
        with ``"/"``.
    parse_suffixes : bool
        Read ``"7B"``, ``"1.4T"``, ``"300M"``, ``"2k"`` (k, M, B/G, T; case-insensitive).
    U : str or None
        Column of unique tokens (aliases ``unique_tokens``, ``unique``), optional.

    Raises
    ------
    DataError
        On a missing, ambiguous or duplicated column, NaN/inf, values <= 0, non-numbers,
        no rows; the message names column, row and value.

    Examples
    --------
    >>> df = pd.DataFrame({"params": [1e8, 1e9, 1e10], "tokens": [2e9, 2e10, 2e11],
    ...                    "loss": [3.2, 2.7, 2.3]})
    >>> from_dataframe(df).inputs
    ('N', 'D', 'C')
    """
    spec = {"N": N, "D": D, "C": C, "U": U, "loss": loss, "curve": curve, "run": run}
    return _from_frame(df, spec, parse_suffixes=parse_suffixes, source="<DataFrame>")


def curve_from_table(
    df: pd.DataFrame,
    rows: TableRows,
    *,
    source: str = "<DataFrame>",
    parse_suffixes: bool = False,
    **columns: Any,
) -> ScalingData:
    """:func:`from_dataframe` (same column keywords) for the rows of one curve cut out of a
    larger table: messages name the row of the whole table (and its CSV line) that ``rows``
    gives for each row. Columns of :func:`text_alias_columns` are the caller's to drop, decided
    on the whole table."""
    unknown = sorted(set(columns) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown column keyword(s) {unknown}; expected some of {list(_DEFAULTS)}")
    spec = {**_DEFAULTS, **columns}
    return _from_frame(
        df,
        spec,
        parse_suffixes=parse_suffixes,
        source=source,
        line_of=rows,
        skip_text_aliases=False,
    )


_LINE_UNSAFE = {"header", "names", "skiprows", "skipfooter", "comment", "nrows", "quotechar"}
_LINE_UNSAFE |= {"skip_blank_lines", "lineterminator", "escapechar", "compression", "doublequote"}


class _LineIndex:
    """0-based data row -> 1-based line of a CSV file (None where the layout hides it).

    The file is scanned at the first call (most reads never need a line number) or at
    :meth:`resolve`; the result is kept, so the object pickles without the file and keeps
    naming the lines of the file as it was read.
    """

    def __init__(self, path: Path, sep: str, encoding: str | None, n: int) -> None:
        self.path, self.sep, self.encoding, self.n = path, sep, encoding, n
        self._lines: list[int] | None = None
        self._scanned = False

    def resolve(self) -> _LineIndex:
        if not self._scanned:
            self._lines, self._scanned = self._scan(), True
        return self

    def _scan(self) -> list[int] | None:
        try:
            starts, previous = [], 0
            with open(self.path, newline="", encoding=self.encoding or "utf-8") as f:
                reader = csv.reader(f, delimiter=self.sep)
                for record in reader:
                    # pandas skips empty and whitespace-only lines, not ",": a row of NaN
                    if record and (len(record) > 1 or record[0].strip()):
                        starts.append(previous + 1)
                    previous = reader.line_num
        except (OSError, UnicodeError, csv.Error):
            return None
        return starts[1:] if len(starts) == self.n + 1 else None

    def __call__(self, row: int) -> int | None:
        found = self.resolve()._lines
        return found[row] if found is not None and 0 <= row < len(found) else None


def _line_numbers(path: Path, sep: str, kwargs: dict[str, Any], n: int) -> LineOf:
    """Map 0-based data rows to 1-based file lines, when the file layout is simple enough."""
    if len(sep) != 1 or _LINE_UNSAFE & kwargs.keys():
        return None
    return _LineIndex(path, sep, kwargs.get("encoding"), n)


def read_csv(
    path: str | Path,
    *,
    sep: str = ",",
    N: str | None = "N",
    D: str | None = "D",
    C: str | None = "C",
    loss: str = "loss",
    curve: str | list[str] | None = None,
    run: str | list[str] | None = None,
    parse_suffixes: bool = False,
    U: str | None = "U",
    **read_csv_kwargs: Any,
) -> ScalingData:
    """Read a CSV file into a validated :class:`ScalingData`.

    Same column options as :func:`from_dataframe`; other keywords go to ``pandas.read_csv``.
    Errors name the 0-based data row and the file line (``row 17 (CSV line 19)``).

    Examples
    --------
    >>> data = read_csv("runs.csv", N="Model Size", C="Training FLOP")  # doctest: +SKIP
    >>> print(data.describe())  # doctest: +SKIP
    """
    is_file = isinstance(path, str | Path)
    source = str(path) if is_file else "<buffer>"
    options = {"index_col": False, **read_csv_kwargs}  # never shift columns into an index
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", "Length of header", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=sep, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source} has no data rows (the file is empty)") from None
    except pd.errors.ParserError as exc:
        message = str(exc).strip().replace("\n", " ")
        raise DataError(f"{source}: cannot parse as CSV with sep={sep!r}: {message}") from None
    except pd.errors.ParserWarning:
        raise DataError(
            f"{source}: the data rows have more fields than the header: a missing column "
            "name? name every column in the header line"
        ) from None
    except UnicodeDecodeError as exc:
        encoding = read_csv_kwargs.get("encoding") or "utf-8"
        bad = exc.object[exc.start : exc.start + 1]
        raise DataError(
            f"{source}: not {encoding} text (byte {bad!r}: {exc.reason}); "
            "pass encoding=..., e.g. encoding='latin-1' (CLI: --encoding latin-1)"
        ) from None
    mangled = [c for c in map(str, df.columns) if re.fullmatch(r".+\.\d+", c)]
    if mangled and is_file and read_csv_kwargs.get("header", "infer") in ("infer", 0):
        passthrough = {k: v for k, v in read_csv_kwargs.items() if k in ("encoding", "skiprows")}
        raw = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, **passthrough)
        header = [str(c) for c in raw.iloc[0].tolist()]
        if len(header) == df.shape[1] and len(set(header)) < len(header):
            df.columns = header
    spec = {"N": N, "D": D, "C": C, "U": U, "loss": loss, "curve": curve, "run": run}
    line_of = _line_numbers(Path(path), sep, read_csv_kwargs, len(df)) if is_file else None
    data = _from_frame(df, spec, parse_suffixes=parse_suffixes, source=source, line_of=line_of)
    if isinstance(line_of, _LineIndex):
        line_of.resolve()  # the lines of the file as read, kept with the data (data.origin)
    return data


def from_arrays(
    *,
    N: Any = None,
    D: Any = None,
    C: Any = None,
    loss: Any,
    curve: Any = None,
    run: Any = None,
    U: Any = None,
) -> ScalingData:
    """Build a :class:`ScalingData` from 1-D arrays (lists, NumPy arrays, Series).

    Any numeric type is accepted, including integers beyond int64; missing third input of
    ``N, D, C`` is derived through ``C = 6 N D``. A single string ``curve`` or ``run`` id
    applies to every row.

    Examples
    --------
    >>> data = from_arrays(N=[1e8, 1e9], C=[1e19, 1e20], loss=[3.0, 2.6])
    >>> data.derived
    ('D',)
    """
    given = {
        k: v for k, v in {"N": N, "D": D, "C": C, "U": U, "loss": loss}.items() if v is not None
    }
    if "loss" not in given or len(given) == 1:
        raise DataError("from_arrays needs loss and at least one of N, D, C")
    return _build(
        given,
        curve=None if curve is None else [("curve", curve)],
        run=None if run is None else [("run", run)],
        source="<arrays>",
        names={r: r for r in _ROLES},
        parse_suffixes=False,
    )


def as_scaling_data(obj: Any, **kwargs: Any) -> ScalingData:
    """Coerce ``obj`` to :class:`ScalingData`.

    Accepts a ScalingData (returned as is; column keywords must then be left at their
    defaults), a DataFrame, a CSV path (str or Path), or a mapping of arrays (keys ``N``,
    ``D``, ``C``, ``loss``, ``curve``, ``run``, or any column names with keywords as in
    :func:`from_dataframe`).

    Examples
    --------
    >>> as_scaling_data({"N": [1e8, 1e9, 1e10], "loss": [3.1, 2.8, 2.6]}).inputs
    ('N',)
    """
    if isinstance(obj, ScalingData):
        changed = [k for k, v in kwargs.items() if _DEFAULTS.get(k, False) != v]
        if changed:
            raise TypeError(f"options {changed} cannot apply to an existing ScalingData")
        return obj
    if isinstance(obj, pd.DataFrame):
        return from_dataframe(obj, **kwargs)
    if isinstance(obj, str | Path):
        return read_csv(obj, **kwargs)
    if isinstance(obj, Mapping):
        if not kwargs and set(obj) <= {*_ROLES, "curve", "run"}:
            return from_arrays(**obj)
        # rows pair by position, as from_arrays pairs them: a Series' index is not aligned
        cols = {k: v.to_numpy() if isinstance(v, pd.Series) else v for k, v in obj.items()}
        lengths = {k: len(v) for k, v in cols.items() if np.ndim(v) > 0}
        if len(set(lengths.values())) > 1:
            raise DataError(
                "columns of different lengths: "
                + ", ".join(f"{k!r} has {n}" for k, n in lengths.items())
            )
        if not lengths:
            raise DataError(f"expected columns of values, got only scalars for {list(cols)}")
        return from_dataframe(pd.DataFrame(cols), **kwargs)
    raise TypeError(
        f"cannot read scaling data from {type(obj).__name__}; "
        "pass a ScalingData, DataFrame, CSV path or dict of arrays"
    )


def check_positive_targets(name: str, values: Any) -> np.ndarray:
    """Convert prediction targets to a float64 array (shape kept; a scalar gives a 0-d array).

    Any numeric type is accepted, including Python ints beyond int64 and strings such as
    ``"1e21"`` or ``"70B"``.

    Raises
    ------
    DataError
        Naming the input and the first value that is <= 0, NaN, infinite or not a number.

    Examples
    --------
    >>> check_positive_targets("C", [1e21, 10**24]).tolist()
    [1e+21, 1e+24]
    """
    array = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values)
    try:
        return _column(name, array.reshape(-1), parse_suffixes=True).reshape(array.shape)
    except DataError as exc:
        what = str(exc).split(": ", 1)[-1]
        message = f"prediction target {name!r}, element {exc.row}: {what}"
        raise DataError(message, column=name, row=exc.row, value=exc.value) from None


def prediction_inputs(
    law: str, inputs: Sequence[str], *, N: Any = None, D: Any = None, C: Any = None, U: Any = None
) -> dict[str, np.ndarray]:
    """Validate forecast targets and fill the missing one of N, D, C from C = 6ND.

    Shared by every result type's ``predict`` (single fits, batch fits, point fits).

    Parameters
    ----------
    law, inputs
        The law's name (for messages) and inputs (e.g. ``("N", "D")``).
    N, D, C, U
        Targets, scalars or array-likes broadcast against each other.

    Returns
    -------
    dict
        Flat float64 arrays by input name. ``C`` is added beside given ``N`` and ``D``.

    Raises
    ------
    DataError
        When a value is not a positive finite number, or an input the law needs is missing.

    Examples
    --------
    >>> prediction_inputs("chinchilla", ("N", "D"), N=70e9, C=5.88e23)["D"].round(-9).tolist()
    [1400000000000.0]
    """
    given = {k: v for k, v in (("N", N), ("D", D), ("C", C), ("U", U)) if v is not None}
    vals = {k: check_positive_targets(k, v) for k, v in given.items()}
    if vals:
        vals = dict(zip(vals, np.broadcast_arrays(*vals.values()), strict=True))
    if {"N", "D", "C"} <= vals.keys():
        with np.errstate(over="ignore", under="ignore"):
            ratio = np.atleast_1d(vals["C"] / (6.0 * vals["N"] * vals["D"])).reshape(-1)
        off = (ratio < _C_RATIO[0]) | (ratio > _C_RATIO[1])
        if off.any():
            worst = int(np.argmax(off))
            raise DataError(
                f"prediction targets N, D and C disagree: C/(6ND) = {ratio[worst]:.3g} at "
                f"element {worst} (outside [0.5, 2]); give two of N, D, C and C = 6ND fills "
                "the third",
                column="C",
                row=worst,
            )
    need = set(inputs)
    if "D" in need and "D" not in vals and {"N", "C"} <= vals.keys():
        vals["D"] = vals["C"] / (6.0 * vals["N"])
    if "N" in need and "N" not in vals and {"D", "C"} <= vals.keys():
        vals["N"] = vals["C"] / (6.0 * vals["D"])
    if "C" not in vals and {"N", "D"} <= vals.keys():  # shown beside N and D
        vals["C"] = 6.0 * vals["N"] * vals["D"]
    missing = [k for k in inputs if k not in vals]
    if missing:
        raise DataError(
            f"law {law!r} needs {', '.join(inputs)} to predict; missing {', '.join(missing)} "
            "(C = 6ND fills one of N, D, C from the other two)",
            column=missing[0],
        )
    return {k: np.atleast_1d(v).reshape(-1).astype(np.float64) for k, v in vals.items()}
