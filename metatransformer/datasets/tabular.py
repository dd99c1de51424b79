"""Tables: reading CSV/Parquet with pandas, and the schema fitted on a training split that encodes rows as tensors."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from .._optional import require
from .._validation import dataclass_from_dict
from .registry import ReadError, check_file

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
MAX_TABLE_BYTES = 2**31


def read_table(path: str | os.PathLike, *, columns: Sequence[str] | None = None, sep: str | None = None
               ) -> "pd.DataFrame":
    """Read a CSV/TSV (pandas) or Parquet (pyarrow) file into a DataFrame, one row per record.

    Missing cells are NaN / None (the schema masks them); numeric columns are checked for infinities.

    Args:
        path: a ``.csv``, ``.tsv``, ``.parquet`` or ``.pq`` file.
        columns: keep only these columns, in this order (each must exist).
        sep: CSV field separator; ``","`` for ``.csv`` and a tab for ``.tsv`` by default.

    Returns:
        a DataFrame with at least one row, string column names.

    Raises:
        ReadError: naming the file: missing, empty, not parseable, no rows, a requested column that is
            absent, a non-string column name, or an infinite value (naming its column).
    """
    path = check_file(path, max_bytes=MAX_TABLE_BYTES)
    pd = require("pandas")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ReadError(f"{path}: not a table file; expected one of {', '.join(TABLE_SUFFIXES)}")
    try:
        if suffix in (".parquet", ".pq"):
            require("pyarrow")
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, sep=sep or ("\t" if suffix == ".tsv" else ","))
    except (ValueError, OSError) as err:  # pandas' ParserError/EmptyDataError and pyarrow's errors derive from these
        raise ReadError(f"{path}: cannot read the table: {err}") from err
    bad_names = [name for name in frame.columns if not isinstance(name, str)]
    if bad_names:
        raise ReadError(f"{path}: column names must be strings, got {bad_names[:5]}")
    if columns is not None:
        absent = [name for name in columns if name not in frame.columns]
        if absent:
            raise ReadError(f"{path}: no column(s) {absent}; the table has {list(frame.columns)}")
        frame = frame[list(columns)]
    if len(frame) == 0:
        raise ReadError(f"{path}: the table has no rows")
    numeric = frame.select_dtypes("number")
    infinite = [name for name in numeric.columns
                if np.isinf(numeric[name].to_numpy(dtype=float, na_value=np.nan)).any()]
    if infinite:
        raise ReadError(f"{path}: infinite values in column(s) {infinite}")
    return frame


class TableBatch(NamedTuple):
    """Rows encoded by a :class:`TableSchema`: the tabular tokenizer's input.

    Attributes:
        numeric: (b, n_num) float32, standardized with the schema's mean/std; 0 where missing.
        categorical: (b, n_cat) int64 category ids; 0 = the unknown bucket (unseen or missing).
        missing: (b, n_num + n_cat) bool, True = the cell is missing; columns in the schema's token order.
    """

    numeric: torch.Tensor
    categorical: torch.Tensor
    missing: torch.Tensor

    @property
    def num_rows(self) -> int:
        return self.missing.shape[0]

    def select(self, index: Any) -> "TableBatch":
        """The rows ``index`` selects (an int tensor, a slice, a bool mask...)."""
        return TableBatch(*(part[index] for part in self))

    @staticmethod
    def concat(batches: Sequence["TableBatch"]) -> "TableBatch":
        """Rows of several batches (of one schema) one after another."""
        if not batches:
            raise ValueError("no table batches to concatenate")
        return TableBatch(*(torch.cat(parts) for parts in zip(*batches)))


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column, standardized as ``(x - mean) / std`` (std 1 for a constant column)."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column; ``categories[i]`` gets id ``i + 1``, anything else id 0 (the unknown bucket)."""

    name: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class TableSchema:
    """The columns a model reads and how each is encoded, fitted once on the training split.

    Numeric columns keep their training mean and std, categorical columns their training vocabulary
    (values compared as strings, integer-valued floats as integers, so ``3``, ``3.0`` and ``"3"`` are one
    category); at inference the schema is applied unchanged: unseen categories go to the unknown
    bucket and missing cells are masked. Token order: numeric columns, then categorical columns.
    It round-trips through JSON (:meth:`to_dict` / :meth:`from_dict`), which is how a model saves it.

    Example:
        >>> schema = TableSchema.fit(train, exclude=["label"])
        >>> tokenizer = create_tokenizer("tabular", 768, schema=schema.to_dict())
        >>> tokens = tokenizer(schema.encode(test))
    """

    numeric: tuple[NumericColumn, ...] = ()
    categorical: tuple[CategoricalColumn, ...] = ()

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a table schema needs at least one column")
        seen: set[str] = set()
        for name in self.columns:
            if not isinstance(name, str) or not name:
                raise ValueError(f"table schema: column names must be non-empty strings, got {name!r}")
            if name in seen:
                raise ValueError(f"table schema: column {name!r} appears twice")
            seen.add(name)
        for column in self.numeric:
            if not (math.isfinite(column.mean) and math.isfinite(column.std) and column.std > 0):
                raise ValueError(f"table schema: column {column.name!r} needs a finite mean and std > 0, "
                                 f"got {column.mean} and {column.std}")
        for column in self.categorical:
            if len(set(column.categories)) != len(column.categories):
                raise ValueError(f"table schema: column {column.name!r} lists a category twice")

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names in token order: numeric, then categorical."""
        return tuple(c.name for c in self.numeric) + tuple(c.name for c in self.categorical)

    @classmethod
    def fit(cls, frame: "pd.DataFrame", *, categorical: Sequence[str] = (), exclude: Sequence[str] = ()
            ) -> "TableSchema":
        """Fit on a training DataFrame: every column except ``exclude`` (e.g. the target).

        Args:
            frame: the training split.
            categorical: columns to treat as categorical although numeric (codes such as ``1..5``);
                otherwise boolean, string, object and category columns are categorical, the rest numeric.
            exclude: columns the schema leaves out.

        Raises:
            ValueError: a named column is absent, or a numeric column holds infinite values.
        """
        pd = require("pandas")
        absent = [name for name in (*categorical, *exclude) if name not in frame.columns]
        if absent:
            raise ValueError(f"table schema: no column(s) {absent} in the training frame")
        numeric, categories = [], []
        for name in frame.columns:
            if name in exclude:
                continue
            values = frame[name]
            is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if is_numeric and name not in categorical:
                array = _numeric_array(values, str(name))
                present = array[~np.isnan(array)]
                mean = float(present.mean()) if present.size else 0.0
                std = float(present.std()) if present.size else 0.0
                numeric.append(NumericColumn(str(name), mean, std if std > 0 else 1.0))
            else:
                keys = {_category_key(v) for v in values[values.notna()]}
                categories.append(CategoricalColumn(str(name), tuple(sorted(keys))))
        return cls(tuple(numeric), tuple(categories))

    def encode(self, frame: "pd.DataFrame") -> TableBatch:
        """Rows of ``frame`` as tensors; columns outside the schema (a target) are ignored.

        Raises:
            ValueError: a schema column is absent (named), or a numeric column holds a value that is not
                a number, or an infinite one (named).
        """
        absent = [name for name in self.columns if name not in frame.columns]
        if absent:
            raise ValueError(f"table: missing column(s) {absent} that the schema expects")
        rows = len(frame)
        numeric = np.zeros((rows, len(self.numeric)), dtype=np.float32)
        categorical = np.zeros((rows, len(self.categorical)), dtype=np.int64)
        missing = np.zeros((rows, len(self.columns)), dtype=bool)
        for j, column in enumerate(self.numeric):
            array = _numeric_array(frame[column.name], column.name)
            missing[:, j] = np.isnan(array)
            numeric[:, j] = np.where(missing[:, j], 0.0, (array - column.mean) / column.std)
        for j, column in enumerate(self.categorical):
            values = frame[column.name]
            present = values.notna().to_numpy()
            lookup = {key: i for i, key in enumerate(column.categories, start=1)}
            categorical[present, j] = [lookup.get(_category_key(v), 0) for v in values[present]]
            missing[:, len(self.numeric) + j] = ~present
        return TableBatch(torch.from_numpy(numeric), torch.from_numpy(categorical), torch.from_numpy(missing))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; :meth:`from_dict` rebuilds the same schema."""
        return {"numeric": [{"name": c.name, "mean": c.mean, "std": c.std} for c in self.numeric],
                "categorical": [{"name": c.name, "categories": list(c.categories)} for c in self.categorical]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TableSchema":
        """The schema :meth:`to_dict` wrote; unknown or missing fields and wrong types raise, naming the field."""
        if not isinstance(data, Mapping):
            raise TypeError(f"table schema: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"numeric", "categorical"})
        if unknown:
            raise ValueError(f"table schema: unknown field(s) {unknown}; known fields are ['categorical', 'numeric']")
        numeric = tuple(dataclass_from_dict(NumericColumn, c, where=f"schema.numeric[{i}]")
                        for i, c in enumerate(data.get("numeric", ())))
        categorical = tuple(dataclass_from_dict(CategoricalColumn, c, where=f"schema.categorical[{i}]")
                            for i, c in enumerate(data.get("categorical", ())))
        return cls(numeric, categorical)


def _numeric_array(values: "pd.Series", name: str) -> np.ndarray:
    pd = require("pandas")
    if not pd.api.types.is_numeric_dtype(values):
        try:
            values = pd.to_numeric(values)
        except (ValueError, TypeError) as err:
            raise ValueError(f"table: numeric column {name!r} holds a value that is not a number ({err})") from err
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(array).any():
        raise ValueError(f"table: numeric column {name!r} holds infinite values")
    return array


def _category_key(value: Any) -> str:
    """A category as a string, one spelling per value: ``3``, ``3.0``, ``np.int64(3)`` and ``"3"`` -> ``"3"``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)
