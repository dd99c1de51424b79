"""Reading thermal (infrared) images: 8/16-bit PNG and TIFF counts, float TIFF and radiometric ``.npy`` arrays."""
from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch

from .image import LUMA_WEIGHTS, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, check_image_size, decode_image
from .registry import ReadError, check_file

INFRARED_SUFFIXES = (".npy", ".tif", ".tiff", ".png")


def read_infrared(
        path: str | os.PathLike,
        *,
        normalize: Literal["auto", "minmax", "fixed"] = "auto",
        value_range: tuple[float, float] | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> torch.Tensor:
    """Read a single-channel thermal image into [0, 1].

    Formats: PNG and TIFF holding 8- or 16-bit sensor counts (colour files are converted to luminance),
    float TIFF, and radiometric ``.npy`` arrays of temperatures, shaped (h, w), (1, h, w) or (h, w, 1).

    Normalisation, chosen by ``normalize``:

    - ``"auto"`` (default): integer images (PNG/TIFF) are divided by their type's full scale (counts keep
      their absolute level, as :func:`read_image`); float images and every ``.npy`` array (radiometric
      temperatures or counts, whose scale the file does not state) are min–max scaled per image. With
      ``value_range`` given, ``"auto"`` means ``"fixed"``.
    - ``"minmax"``: per image, ``(x - min) / (max - min)``: every image uses the whole range, which
      suits appearance (re-identification) but makes levels incomparable between images. A constant
      image reads as zeros.
    - ``"fixed"``: ``(x - low) / (high - low)`` with ``value_range=(low, high)`` in the file's units
      (e.g. ``(-20.0, 120.0)`` °C for temperatures, or counts), clipped to [0, 1]: the same temperature
      gives the same value in every image.

    Args:
        path: the file.
        normalize: ``"auto"``, ``"minmax"`` or ``"fixed"`` (see above).
        value_range: (low, high) for ``"fixed"``, low < high.
        max_pixels: largest h × w accepted, checked against the header before reading.
        max_aspect_ratio: largest long side / short side accepted.

    Returns:
        (1, h, w) float32 in [0, 1].

    Raises:
        ReadError: the file is missing, empty, truncated, not an image or array, not single-channel,
            too large, or holds NaN or infinite values.
        ValueError: inconsistent options (``"fixed"`` without ``value_range``, low >= high).
    """
    if value_range is not None and normalize == "auto":
        normalize = "fixed"
    if normalize not in ("auto", "minmax", "fixed"):
        raise ValueError(f"normalize must be 'auto', 'minmax' or 'fixed', got {normalize!r}")
    if normalize == "fixed":
        if value_range is None or len(value_range) != 2 or not np.isfinite(value_range).all() \
                or value_range[0] >= value_range[1]:
            raise ValueError(f"normalize='fixed' needs value_range=(low, high) with low < high, got {value_range!r}")
    path = check_file(path)
    if path.suffix.lower() == ".npy":
        values, full_scale = _read_npy(path, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio), None
    else:
        values, full_scale = decode_image(path, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
        if values.shape[0] == 3:
            values = np.tensordot(np.array(LUMA_WEIGHTS), values, axes=1)[None]
    if normalize == "fixed":
        low, high = value_range
        values = np.clip((values - low) / (high - low), 0.0, 1.0)
    elif normalize == "minmax" or full_scale is None:
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        values = np.clip(values / full_scale, 0.0, 1.0)
    return torch.from_numpy(values.astype(np.float32))


def _read_npy(path: os.PathLike, *, max_pixels: int, max_aspect_ratio: float) -> np.ndarray:
    """A (1, h, w) float64 array from a ``.npy`` file; memory-mapped, so its declared shape is checked
    (and a truncated file refused) before anything is read into memory."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ReadError(f"{path}: not a readable NumPy .npy array: {err}") from None
    if not isinstance(mapped, np.ndarray):
        raise ReadError(f"{path}: holds {type(mapped).__name__}, not one .npy array")
    if mapped.dtype.kind not in "biuf":
        raise ReadError(f"{path}: holds {mapped.dtype} values; a thermal array must be integer or float")
    shape = mapped.shape
    if not (len(shape) == 2 or (len(shape) == 3 and 1 in (shape[0], shape[2]))):
        raise ReadError(f"{path}: array of shape {shape}; a thermal array must be (h, w), (1, h, w) or (h, w, 1)")
    height, width = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape[:2]
    check_image_size(path, (width, height), max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    array = np.asarray(mapped, dtype=np.float64).reshape(1, height, width)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ReadError(f"{path}: {bad} NaN or infinite values (dead pixels?); fill them before reading")
    return array
