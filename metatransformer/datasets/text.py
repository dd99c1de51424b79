"""Reading text files (plain text, CSV/TSV and JSON Lines with a text column) into Python strings."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Literal

from .registry import ReadError, check_file

TEXT_SUFFIXES = (".txt",)
MAX_TEXT_BYTES = 256 * 2**20  # a text file is read whole; larger corpora belong in a streaming dataset


def read_text(
        path: str | os.PathLike,
        *,
        unit: Literal["file", "line"] = "file",
        column: str = "text",
        encoding: str = "utf-8",
) -> list[str]:
    """Read the texts a file holds, as strings.

    Plain-text files give the whole file as one text (``unit="file"``) or one text per non-blank line
    (``unit="line"``). CSV/TSV (``.csv``, ``.tsv``) and JSON Lines (``.jsonl``, ``.ndjson``) files give one
    text per row, from the field ``column``. Strings are returned as stored (no stripping or lower-casing;
    that is the tokenizer's job).

    Args:
        path: the file.
        unit: for plain-text files, ``"file"`` (one text) or ``"line"`` (one per non-blank line).
        column: the text field of CSV/TSV/JSONL rows.
        encoding: the file's encoding.

    Returns:
        a non-empty list of non-blank strings.

    Raises:
        ReadError: naming the file: missing, empty, larger than ``MAX_TEXT_BYTES``, not decodable with
            ``encoding``, a malformed row, a row without ``column``, or a blank text (with its row or line).
    """
    path = check_file(path, max_bytes=MAX_TEXT_BYTES)
    if unit not in ("file", "line"):
        raise ValueError(f"unit must be 'file' or 'line', got {unit!r}")
    try:
        content = path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise ReadError(f"{path}: not {encoding} text ({err.reason} at byte {err.start})") from err
    except LookupError as err:
        raise ValueError(f"unknown encoding {encoding!r}") from err
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        texts = _csv_texts(path, content, column, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".ndjson"):
        texts = _jsonl_texts(path, content, column)
    elif unit == "line":
        texts = [line for line in content.splitlines() if line.strip()]
        if not texts:
            raise ReadError(f"{path}: the file has no non-blank line")
    else:
        if not content.strip():
            raise ReadError(f"{path}: the text is empty (only whitespace)")
        texts = [content]
    return texts


def read_document(path: str | os.PathLike, *, encoding: str = "utf-8") -> str:
    """One plain-text file as one string: the text modality's reader (one file, one item).

    Raises:
        ReadError: as :func:`read_text`; a blank file included, and a CSV/TSV/JSONL file (several texts:
            read them with :func:`read_text`, or as a table).
    """
    if Path(path).suffix.lower() not in TEXT_SUFFIXES:
        raise ReadError(f"{path}: one document is read from {', '.join(TEXT_SUFFIXES)} files; a file of several "
                        "texts (CSV/TSV/JSONL rows) is read with read_text(path, column=...)")
    return read_text(path, unit="file", encoding=encoding)[0]


def _csv_texts(path: Path, content: str, column: str, *, delimiter: str) -> list[str]:
    rows = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    try:
        if rows.fieldnames is None or column not in rows.fieldnames:
            raise ReadError(f"{path}: no {column!r} column (columns: {rows.fieldnames or []}); pass column=")
        texts = [row[column] for row in rows]
    except csv.Error as err:
        raise ReadError(f"{path}: malformed CSV at line {rows.line_num}: {err}") from err
    return _check_rows(path, texts, column)


def _jsonl_texts(path: Path, content: str, column: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReadError(f"{path}: line {number} is not JSON ({err.msg})") from err
        if not isinstance(record, dict) or not isinstance(record.get(column), str):
            raise ReadError(f"{path}: line {number} has no string field {column!r}; pass column=")
        texts.append(record[column])
    return _check_rows(path, texts, column)


def _check_rows(path: Path, texts: list[str | None], column: str) -> list[str]:
    if not texts:
        raise ReadError(f"{path}: the file has no rows")
    for row, text in enumerate(texts):
        if text is None or not text.strip():
            raise ReadError(f"{path}: row {row} has an empty {column!r}")
    return texts
