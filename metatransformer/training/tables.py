"""Row-level training data from table files (CSV/TSV/Parquet): one record per row.

The trainer's records are one sample each; a table file holds many. ``--data table.csv --label-column income``
reads the table once and makes one :class:`Record` per row, whose source is a :class:`TableRow` (the shared
frame and the row's position). The label column (and a ``split`` column, if any) is taken out of the
features; a :class:`~metatransformer.datasets.tabular.TableSchema` is fitted on the training rows only
(:func:`fit_table_schema`) and becomes the tabular tokenizer's ``schema`` option, so the saved model carries
it and evaluation applies it unchanged. Items are the rows encoded with the tokenizer's schema (a
``TableBatch`` of one row each, collated with ``TableBatch.concat``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..datasets.tabular import TABLE_SUFFIXES, TableBatch, TableSchema, read_table
from ..registry import canonical_modality
from .records import Record, normalize_split

SPLIT_COLUMN = "split"


@dataclass(eq=False)
class TableRow:
    """A record's source: row ``position`` of ``frame`` (one frame shared by every row of a file)."""

    frame: Any  # pandas.DataFrame of the feature columns
    position: int
    file: str = ""

    def __repr__(self) -> str:
        return f"TableRow({self.file!r}, row {self.position})"


def is_table_file(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in TABLE_SUFFIXES \
        and Path(source).is_file()


def records_from_table(path: str | os.PathLike, *, label_column: str, modality: str | None = None) -> list:
    """One record per row of a table file: the label is ``label_column``, the split the optional ``split``
    column (train / val / test; empty = assigned by ``val_fraction``), the features every other column.

    Raises:
        ValueError: the label column is absent, or a row has no label.
    """
    frame = read_table(path)
    if label_column not in frame.columns:
        raise ValueError(f"{path}: no label column {label_column!r}; the table has {list(frame.columns)}")
    labels = frame[label_column]
    if labels.isna().any():
        raise ValueError(f"{path}: {int(labels.isna().sum())} row(s) have no {label_column!r} label")
    splits = frame[SPLIT_COLUMN].tolist() if SPLIT_COLUMN in frame.columns else [None] * len(frame)
    features = frame.drop(columns=[c for c in (label_column, SPLIT_COLUMN) if c in frame.columns])
    if features.shape[1] == 0:
        raise ValueError(f"{path}: no feature columns besides {label_column!r}")
    features = features.reset_index(drop=True)
    name = canonical_modality(modality or "tabular")
    return [Record(TableRow(features, i, str(path)), _label(label), name, normalize_split(split))
            for i, (label, split) in enumerate(zip(labels.tolist(), splits))]


def _label(value: Any) -> Any:
    """Labels as the LabelEncoder sees them: integer-valued floats as integers (``1.0`` → ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _frames(records: Sequence[Any]) -> list[tuple[Any, list[int]]]:
    """(shared frame, positions) groups of table-row records, in first-seen order."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for record in records:
        row = record.source
        groups.setdefault(id(row.frame), (row.frame, []))[1].append(row.position)
    return list(groups.values())


def rows_frame(records: Sequence[Any]) -> Any:
    """The feature rows of table-row records as one DataFrame, in record order."""
    import pandas as pd

    parts = [frame.iloc[positions] for frame, positions in _frames(records)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def fit_table_schema(records: Sequence[Any], *, categorical: Sequence[str] = ()) -> dict[str, Any]:
    """The tabular tokenizer's ``schema`` option, fitted on ``records`` (the training rows only)."""
    frame = rows_frame(records)
    return TableSchema.fit(frame, categorical=[c for c in categorical if c in frame.columns]).to_dict()


def has_table_rows(records: Sequence[Any]) -> bool:
    return any(isinstance(r.source, TableRow) for r in records)


def encode_table_rows(records: Sequence[Any], tokenizer: torch.nn.Module) -> TableBatch:
    """Every record's row encoded with the tokenizer's schema (one vectorised encode per file), in record order."""
    schema: TableSchema = tokenizer.schema
    groups = _frames(records)
    parts = [schema.encode(frame.iloc[positions]) for frame, positions in groups]
    encoded = TableBatch.concat(parts)
    if len(parts) > 1:  # records of several files: put the rows back in record order
        slots, start = {}, 0
        for (frame, _), part in zip(groups, parts):
            slots[id(frame)] = iter(range(start, start + part.num_rows))
            start += part.num_rows
        encoded = encoded.select(torch.tensor([next(slots[id(r.source.frame)]) for r in records]))
    return encoded
