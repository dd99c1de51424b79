"""NumPy ``.npy`` / ``.npz`` files read safely: every array's declared shape is checked from its header
before anything is allocated, object arrays (pickles) are refused, and every failure is a ReadError."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from .registry import ReadError


def npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of a ``.npy`` stream, without reading its data."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    return tuple(shape), dtype


def array_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) of every array in a ``.npy`` (one array, named ``""``) or ``.npz`` file."""
    try:
        if path.suffix.lower() == ".npz":
            headers = {}
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".npy"):
                        with archive.open(member) as stream:
                            headers[member[:-4]] = npy_header(stream)
            return headers
        with open(path, "rb") as stream:
            return {"": npy_header(stream)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ReadError(f"{path}: not a readable NumPy {path.suffix} file ({err})") from err


def check_shape(path: Path, shape: Sequence[int], max_values: int, what: str = "array") -> None:
    """Refuse a declared shape that is empty or holds more than ``max_values`` values."""
    count = math.prod(shape)
    if any(s < 0 for s in shape) or count > max_values:
        raise ReadError(f"{path}: the {what} declares shape {tuple(shape)} ({count:,} values), more than the "
                        f"{max_values:,} accepted")
    if count == 0:
        raise ReadError(f"{path}: the {what} is empty (shape {tuple(shape)})")


def load_arrays(path: Path, names: Sequence[str], *, max_values: int, what: str = "array") -> dict[str, np.ndarray]:
    """Load the named arrays (``""`` for a ``.npy``) after checking their headers: shape within
    ``max_values`` values, numeric or bool dtype, and (``.npy``) a file long enough for what it declares."""
    headers = array_headers(path)
    for name in names:
        if name not in headers:
            raise ReadError(f"{path}: no array {name!r}; the file holds {sorted(headers)}")
        shape, dtype = headers[name]
        check_shape(path, shape, max_values, f"{what} {name!r}" if name else what)
        if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == bool):
            raise ReadError(f"{path}: the {what} {name!r} holds {dtype} values, not numbers")
    try:
        if path.suffix.lower() != ".npz":
            with open(path, "rb") as stream:
                shape, dtype = npy_header(stream)
                expected = stream.tell() + math.prod(shape) * dtype.itemsize
            if path.stat().st_size < expected:
                raise ReadError(f"{path}: truncated: {path.stat().st_size:,} bytes, the header declares {expected:,}")
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as contents:
            return {name: contents[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ReadError(f"{path}: not a readable NumPy {path.suffix} file ({err})") from err
