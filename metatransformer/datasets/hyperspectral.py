"""Hyperspectral cubes (MATLAB ``.mat`` v5/v7.3, NumPy ``.npy``/``.npz``, ENVI ``.hdr`` + data) and
labelled-pixel datasets (the Indian Pines layout: a cube plus train/test label maps, 0 = unlabelled).

Every size a file declares is checked against ``max_values`` before its data are read, so a header
that claims an absurd cube is refused instead of allocated.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .._optional import require
from .arrays import array_headers, check_shape, load_arrays
from .registry import ReadError, check_file

HYPERSPECTRAL_SUFFIXES = (".mat", ".npy", ".npz", ".hdr")
MAX_CUBE_VALUES = 1 << 30  # 4 GiB of float32: far above any airborne scene (Indian Pines: 4.2 M values)
MAX_BANDS = 1 << 16  # values of a wavelength vector
_ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")
_CUBE_KEYS = ("cube", "data", "image", "img", "x", "hsi")  # preferred variable names, before "the largest 3-D"
_WAVELENGTH_KEYS = ("wavelengths", "wavelength", "wl", "centers", "band_centers")
_LABEL_KEYS = ("labels", "label", "gt", "y", "mask")
Scaling = Literal["minmax", "standard", "none"]


@dataclass
class HyperspectralCube:
    """A cube and its band metadata.

    Attributes:
        data: (h, w, bands) float32, finite.
        wavelengths: (bands,) band centres when the file has them, else None.
        wavelength_units: their unit as the file states it (``"nm"``, ``"Micrometers"``...), or None.
    """

    data: torch.Tensor
    wavelengths: torch.Tensor | None = None
    wavelength_units: str | None = None

    @property
    def num_bands(self) -> int:
        return self.data.shape[-1]


def read_hyperspectral(
        path: str | os.PathLike,
        *,
        key: str | None = None,
        scale: Scaling = "minmax",
        max_values: int = MAX_CUBE_VALUES,
) -> HyperspectralCube:
    """Read a hyperspectral cube as (h, w, bands) float32, scaled per band.

    Formats: ``.mat`` (MATLAB v5 through scipy, v7.3 through h5py; MATLAB's column-major layout is
    undone), ``.npy``, ``.npz``, ENVI (the ``.hdr`` file, or the data file next to it, through
    ``spectral``). In ``.mat``/``.npz`` files the cube is ``key``, else the first of ``cube``,
    ``data``..., else the only 3-D numeric array; wavelengths come from a ``wavelength(s)`` variable of
    matching length, or from the ENVI header.

    Args:
        path: the file.
        key: the variable holding the cube in a ``.mat``/``.npz`` file.
        scale: ``"minmax"`` (each band to [0, 1], the Meta-Transformer recipe; a constant band becomes 0),
            ``"standard"`` (zero mean, unit variance per band) or ``"none"``.
        max_values: the largest cube (h·w·bands) accepted; checked against the declared shape before
            any data are read.

    Returns:
        a :class:`HyperspectralCube`.

    Raises:
        ReadError: naming the file: not a cube (no 3-D numeric array, several candidates, wrong key),
            truncated or corrupt data, a declared size above ``max_values``, NaN or infinite values.
    """
    path = check_file(path)
    suffix = path.suffix.lower()
    if scale not in ("minmax", "standard", "none"):
        raise ValueError(f"scale must be 'minmax', 'standard' or 'none', got {scale!r}")
    try:
        if suffix == ".mat":
            array, wavelengths, units = _read_mat(path, key, max_values)
        elif suffix == ".npy":
            array, wavelengths, units = load_arrays(path, [""], max_values=max_values, what="cube")[""], None, None
        elif suffix == ".npz":
            array, wavelengths, units = _read_npz(path, key, max_values)
        else:
            array, wavelengths, units = _read_envi(path, max_values)
    except ReadError:
        raise
    except (OSError, ValueError, TypeError, KeyError, EOFError, NotImplementedError, zipfile.BadZipFile) as err:
        raise ReadError(f"{path}: cannot read a hyperspectral cube: {err}") from err
    array = np.asarray(array)
    if array.ndim != 3 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ReadError(f"{path}: expected a (height, width, bands) numeric cube, got {array.dtype} {array.shape}")
    if np.iscomplexobj(array):
        raise ReadError(f"{path}: the cube holds complex values")
    data = array.astype(np.float32)
    bad = int(data.size - np.isfinite(data).sum())
    if bad:
        raise ReadError(f"{path}: the cube contains {bad} NaN or infinite values")
    if wavelengths is not None and wavelengths.shape != (data.shape[-1],):
        wavelengths = None  # a band list that does not describe this cube is not its metadata
    return HyperspectralCube(torch.from_numpy(scale_bands(data, scale)),
                             None if wavelengths is None else torch.from_numpy(np.asarray(wavelengths, np.float64)),
                             units)


def scale_bands(cube: np.ndarray, scale: Scaling) -> np.ndarray:
    """Per-band scaling of an (h, w, bands) float array (bands last); constant bands become 0."""
    if scale == "none":
        return np.ascontiguousarray(cube)
    flat = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    if scale == "minmax":
        low, span = flat.min(0), np.ptp(flat, axis=0)
    else:
        low, span = flat.mean(0), flat.std(0)
    span = np.where(span > 0, span, np.inf)  # constant band -> 0, not NaN
    return ((cube - low) / span).astype(np.float32)


def _pick(path: Path, shapes: dict[str, tuple[tuple[int, ...], bool]], key: str | None, preferred: tuple[str, ...],
          ndim: int) -> str:
    """The variable holding the cube (or label map): ``key``, a preferred name, or the only numeric ``ndim``-D one."""
    if key is not None:
        if key not in shapes:
            raise ReadError(f"{path}: no variable {key!r}; the file has {sorted(shapes)}")
        return key
    candidates = [name for name, (shape, numeric) in shapes.items() if numeric and len(shape) == ndim]
    by_lower = {name.lower(): name for name in candidates}
    for name in preferred:
        if name in by_lower:
            return by_lower[name]
    if len(candidates) == 1:
        return candidates[0]
    what = "3-D numeric array" if ndim == 3 else "2-D numeric array"
    if not candidates:
        raise ReadError(f"{path}: no {what} found; the file has {sorted(shapes)}")
    raise ReadError(f"{path}: several {what}s {sorted(candidates)}; pass key= to choose one")


def _wavelengths(path: Path, loader: Any, names: list[str]) -> np.ndarray | None:
    by_lower = {name.lower(): name for name in names}
    for name in _WAVELENGTH_KEYS:
        if name in by_lower:
            values = np.asarray(loader(by_lower[name]), dtype=np.float64).reshape(-1)
            if np.isfinite(values).all():
                return values
    return None


def _mat_arrays(path: Path, max_values: int, ndim: int, key: str | None, preferred: tuple[str, ...]):
    """(chosen array, loader for other variables) from a MATLAB file, after checking declared shapes."""
    scipy_io = require("scipy.io")
    try:
        listing = scipy_io.whosmat(str(path))  # names, shapes and classes from the headers only
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        return _mat_v73_arrays(path, max_values, ndim, key, preferred)
    except scipy_io.matlab.MatReadError as err:
        raise ReadError(f"{path}: not a readable MATLAB file: {err}") from err
    numeric = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "logical"}
    shapes = {name: (tuple(shape), cls in numeric) for name, shape, cls in listing}
    name = _pick(path, shapes, key, preferred, ndim)
    check_shape(path, shapes[name][0], max_values, "cube" if ndim == 3 else "label map")
    small = [n for n, (shape, ok) in shapes.items() if ok and math.prod(shape) <= 1 << 20]
    try:
        contents = scipy_io.loadmat(str(path), variable_names=[name, *small])
    except scipy_io.matlab.MatReadError as err:
        raise ReadError(f"{path}: corrupt or truncated MATLAB file: {err}") from err
    return contents[name], lambda other: contents[other], list(shapes)


def _mat_v73_arrays(path: Path, max_values: int, ndim: int, key: str | None, preferred: tuple[str, ...]):
    h5py = require("h5py")
    with h5py.File(path, "r") as file:
        shapes = {name: (tuple(reversed(item.shape)), np.issubdtype(item.dtype, np.number))
                  for name, item in file.items() if isinstance(item, h5py.Dataset)}
        name = _pick(path, shapes, key, preferred, ndim)
        check_shape(path, shapes[name][0], max_values, "cube" if ndim == 3 else "label map")
        # HDF5 stores MATLAB's column-major arrays with their axes reversed.
        array = file[name][()].transpose()
        small = {n: file[n][()].transpose() for n, (shape, ok) in shapes.items()
                 if ok and n != name and math.prod(shape) <= 1 << 20}
    return array, lambda other: small[other], list(small)


def _read_mat(path: Path, key: str | None, max_values: int):
    array, loader, names = _mat_arrays(path, max_values, 3, key, _CUBE_KEYS)
    return array, _wavelengths(path, loader, names), None


def _npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, numeric) of each array in an ``.npz``, from the member headers only."""
    return {name: (shape, np.issubdtype(dtype, np.number) or dtype == bool)
            for name, (shape, dtype) in array_headers(path).items()}


def _read_npz(path: Path, key: str | None, max_values: int):
    shapes = _npz_shapes(path)
    name = _pick(path, shapes, key, _CUBE_KEYS, 3)
    cube = load_arrays(path, [name], max_values=max_values, what="cube")[name]
    wavelengths = _wavelengths(path, lambda n: load_arrays(path, [n], max_values=MAX_BANDS)[n], list(shapes))
    return cube, wavelengths, None


def _envi_files(path: Path) -> tuple[Path, Path]:
    """(header, data file) of an ENVI cube given either of them."""
    if path.suffix.lower() == ".hdr":
        for suffix in _ENVI_DATA_SUFFIXES:
            for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
                if candidate.is_file() and candidate != path:
                    return path, candidate
        raise ReadError(f"{path}: ENVI header without its data file (looked for "
                        f"{', '.join(path.stem + s for s in _ENVI_DATA_SUFFIXES)})")
    for header in (path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")):
        if header.is_file():
            return header, path
    raise ReadError(f"{path}: not a .mat/.npy/.npz cube and no ENVI .hdr header next to it")


def _read_envi(path: Path, max_values: int):
    envi = require("spectral.io.envi")
    header_path, data_path = _envi_files(path)
    check_file(data_path)
    try:
        header = envi.read_envi_header(str(header_path))
    except Exception as err:  # spectral raises its own FileNotAnEnviHeader / generic errors
        raise ReadError(f"{header_path}: not an ENVI header: {err}") from err
    try:
        shape = (int(header["lines"]), int(header["samples"]), int(header["bands"]))
        offset = int(header.get("header offset", 0))
    except (KeyError, ValueError) as err:
        raise ReadError(f"{header_path}: ENVI header lacks a valid lines/samples/bands: {err}") from err
    check_shape(header_path, shape, max_values, "cube")
    try:
        image = envi.open(str(header_path), str(data_path))
    except Exception as err:
        raise ReadError(f"{header_path}: cannot open the ENVI cube: {err}") from err
    expected = offset + math.prod(shape) * image.sample_size
    if data_path.stat().st_size < expected:
        raise ReadError(f"{data_path}: truncated: {data_path.stat().st_size:,} bytes, the header {header_path.name} "
                        f"declares {expected:,}")
    centers = image.bands.centers
    wavelengths = np.asarray(centers, dtype=np.float64) if centers else None
    return np.asarray(image.load()), wavelengths, image.bands.band_unit or None


def read_label_map(path: str | os.PathLike, *, key: str | None = None,
                   max_values: int = MAX_CUBE_VALUES) -> torch.Tensor:
    """Read a (h, w) class map (``.mat``, ``.npy``, ``.npz``): non-negative integers, 0 = unlabelled.

    Returns:
        (h, w) int64.

    Raises:
        ReadError: naming the file: not a 2-D array, non-integer or negative values, or unreadable.
    """
    path = check_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":
            array = _mat_arrays(path, max_values, 2, key, _LABEL_KEYS)[0]
        elif suffix in (".npy", ".npz"):
            name = "" if suffix == ".npy" else _pick(path, _npz_shapes(path), key, _LABEL_KEYS, 2)
            array = load_arrays(path, [name], max_values=max_values, what="label map")[name]
        else:
            raise ReadError(f"{path}: label maps are read from .mat, .npy or .npz files")
    except ReadError:
        raise
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ReadError(f"{path}: cannot read a label map: {err}") from err
    array = np.asarray(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ReadError(f"{path}: expected a (height, width) numeric label map, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all() or (array != np.round(array)).any() or (array < 0).any():
        raise ReadError(f"{path}: labels must be non-negative integers (0 = unlabelled)")
    return torch.from_numpy(array.astype(np.int64))


class HyperspectralPixels(Dataset):
    """Labelled pixels of a cube, each with its p×p neighbourhood (edge padding at the borders).

    The Indian Pines layout: one cube and a label map per split (train, test), 0 = unlabelled; each
    labelled pixel is one sample, its label shifted to a 0-based class index (label - 1).

    Args:
        cube: (h, w, bands) tensor, or a :class:`HyperspectralCube`.
        labels: (h, w) integer map, 0 = unlabelled.
        patch_size: neighbourhood side p (odd; 1 = the pixel's spectrum only, the reference setting).

    Items:
        (patch (bands, p, p) float32, class index int64); ``patch[:, p//2, p//2]`` is the pixel itself.

    Raises:
        ValueError: the label map's shape differs from the cube's (both shapes named), labels are
            negative, or ``patch_size`` is even.
    """

    def __init__(self, cube: torch.Tensor | HyperspectralCube, labels: torch.Tensor, *, patch_size: int = 1) -> None:
        data = cube.data if isinstance(cube, HyperspectralCube) else torch.as_tensor(cube)
        labels = torch.as_tensor(labels)
        if data.dim() != 3:
            raise ValueError(f"cube must be (height, width, bands), got {tuple(data.shape)}")
        if labels.shape != data.shape[:2]:
            raise ValueError(f"label map shape {tuple(labels.shape)} does not match the cube's "
                             f"{tuple(data.shape[:2])} (cube shape {tuple(data.shape)})")
        if labels.is_floating_point() or (labels < 0).any():
            raise ValueError("labels must be non-negative integers (0 = unlabelled)")
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
        self.patch_size = patch_size
        radius = patch_size // 2
        # bands h w, edge-padded once so every neighbourhood is a plain slice.
        self.padded = F.pad(data.permute(2, 0, 1).float()[None], (radius,) * 4, mode="replicate")[0]
        self.positions = labels.nonzero()  # (n, 2) row, col of labelled pixels, row-major order
        self.targets = labels[labels > 0].long() - 1
        self.num_classes = int(labels.max()) if labels.numel() else 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row, col = self.positions[index].tolist()
        p = self.patch_size
        return self.padded[:, row:row + p, col:col + p], self.targets[index]

    @classmethod
    def from_files(cls, cube_path: str | os.PathLike, labels_path: str | os.PathLike, *, patch_size: int = 1,
                   scale: Scaling = "minmax", cube_key: str | None = None,
                   labels_key: str | None = None) -> "HyperspectralPixels":
        """Read a cube and a label map (see :func:`read_hyperspectral`, :func:`read_label_map`)."""
        cube = read_hyperspectral(cube_path, key=cube_key, scale=scale)
        labels = read_label_map(labels_path, key=labels_key)
        if labels.shape != cube.data.shape[:2]:
            raise ReadError(f"{labels_path}: label map shape {tuple(labels.shape)} does not match the cube "
                            f"{cube_path} of shape {tuple(cube.data.shape)}")
        return cls(cube, labels, patch_size=patch_size)
