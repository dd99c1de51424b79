"""Reading radiographs: 8/12/16-bit PNG and TIFF, and DICOM through pydicom (the ``medical`` extra)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._optional import require
from .image import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, check_image_size, decode_image
from .registry import ReadError, check_file

XRAY_SUFFIXES = (".dcm", ".dicom", ".png", ".tif", ".tiff")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601

Window = Literal["auto", "full", "percentile", "minmax"]


def read_xray(
        path: str | os.PathLike,
        *,
        window: Window = "auto",
        percentiles: tuple[float, float] = (0.5, 99.5),
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> torch.Tensor:
    """Read a radiograph into [0, 1], bright = dense (bone), as displayed.

    DICOM files (``.dcm``, or any file with the ``DICM`` preamble) are read with pydicom: the modality
    LUT (RescaleSlope / RescaleIntercept, or a Modality LUT Sequence) is applied, then the VOI window
    of the file (WindowCenter / WindowWidth with its VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID,
    as DICOM PS3.3 C.11.2.1.2 defines them, or a VOI LUT Sequence) when ``window="auto"``, and
    MONOCHROME1 images are inverted. Compressed transfer syntaxes are decoded by whichever pydicom
    plugin is installed (Pillow handles JPEG baseline and JPEG 2000; RLE is built in); without one
    the file is refused with the plugins to install. PNG and TIFF are read with Pillow.

    Args:
        path: the file.
        window: how stored values become [0, 1]:
            ``"auto"``: DICOM: the file's VOI window if it has one, else the percentile window;
            PNG/TIFF: the full range of the stored type (a 16-bit radiograph keeps its range: divided
            by 65535); float TIFF: min–max.
            ``"full"``: the full range of the stored integers (2^BitsStored − 1 for DICOM), ignoring
            any window (float data: min–max).
            ``"percentile"``: ``percentiles`` of the image's values mapped to 0 and 1, clipped (for
            12-bit data in 16-bit files, or DICOMs without a window).
            ``"minmax"``: the image's own minimum and maximum.
        percentiles: (low, high) percentiles of the percentile window, 0 <= low < high <= 100.
        max_pixels: largest rows × columns accepted, checked against the header before decoding.
        max_aspect_ratio: largest long side / short side accepted.

    Returns:
        (1, h, w) float32 in [0, 1].

    Raises:
        ReadError: the file is missing, empty, truncated, corrupt, not an image, multi-frame, compressed
            with a syntax no installed plugin decodes, too large, or its values or window are not finite.
        ImportError: a DICOM file without pydicom installed (``pip install "metatransformer[medical]"``).
    """
    if window not in ("auto", "full", "percentile", "minmax"):
        raise ValueError(f"window must be 'auto', 'full', 'percentile' or 'minmax', got {window!r}")
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    path = check_file(path)
    dicom = _is_dicom(path)
    if dicom:
        values, voi, invert = _read_dicom(path, window, max_pixels, max_aspect_ratio)
    else:
        values, full_scale = decode_image(path, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
        if values.shape[0] == 3:
            values = np.tensordot(_LUMA, values, axes=1)[None]
        voi = (lambda x: np.clip(x / full_scale, 0.0, 1.0)) if full_scale and window in ("auto", "full") else None
        invert = False
    if voi is not None:
        out = voi(values)
    elif window == "percentile" or (window == "auto" and dicom):
        out = _rescale(values, *np.percentile(values, percentiles))
    else:  # minmax, and float files under auto / full
        out = _rescale(values, values.min(), values.max())
    if invert:
        out = 1.0 - out
    if not np.isfinite(out).all():
        raise ReadError(f"{path}: the rescale or window of this file gives NaN or infinite values")
    return torch.from_numpy(out.astype(np.float32))


def _rescale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError as err:
        raise ReadError(f"{path}: cannot be opened ({err.strerror or err})") from None


def _read_dicom(path: Path, window: str, max_pixels: int, max_aspect_ratio: float):
    """(1, h, w) float64 values after the modality LUT, the VOI function to apply (or None), and
    whether to invert (MONOCHROME1)."""
    pydicom = require("pydicom")
    from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder

    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types (struct.error, KeyError...) for bad files
        raise ReadError(f"{path}: not a readable DICOM file: {err}") from None
    if "PixelData" not in ds:
        raise ReadError(f"{path}: the DICOM file holds no (integer) pixel data")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames, samples = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
        bits_stored, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError) as err:
        raise ReadError(f"{path}: the DICOM image attributes are missing or malformed: {err}") from None
    check_image_size(path, (columns, rows), max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    if frames != 1:
        raise ReadError(f"{path}: a multi-frame DICOM ({frames} frames); the X-ray reader reads single images")
    if not 1 <= bits_stored <= 32:
        raise ReadError(f"{path}: BitsStored={bits_stored} is not a valid integer sample depth")
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is not None:
        try:
            decoder = get_decoder(syntax) if syntax.is_compressed else None
        except (ValueError, NotImplementedError):  # not a transfer syntax, or one pydicom has no decoder for
            raise ReadError(f"{path}: transfer syntax {syntax.name or syntax} is not one pydicom decodes") from None
        if decoder is not None and not decoder.is_available:
            raise ReadError(f"{path}: pixel data compressed as {syntax.name}, which no installed plugin decodes; "
                            f"install one of: {'; '.join(decoder.missing_dependencies)}")
    try:
        stored = ds.pixel_array.astype(np.float64)
    except Exception as err:  # noqa: BLE001 - decoders raise many types for corrupt or truncated pixel data
        raise ReadError(f"{path}: cannot decode the DICOM pixel data: {err}") from None
    if samples == 3:  # secondary-capture colour: pixel_array is RGB; no LUTs apply
        values = np.tensordot(_LUMA, stored.transpose(2, 0, 1), axes=1)[None]
        scale = 2 ** bits_stored - 1
        return values, (lambda x: np.clip(x / scale, 0.0, 1.0)) if window in ("auto", "full") else None, False
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ReadError(f"{path}: photometric interpretation {photometric}; a radiograph is MONOCHROME1/2")
    invert = photometric == "MONOCHROME1"
    if window == "full":
        offset = 2 ** (bits_stored - 1) if signed else 0
        return (stored[None] + offset), (lambda x: np.clip(x / (2 ** bits_stored - 1), 0.0, 1.0)), invert
    values = apply_modality_lut(stored, ds)
    if not np.isfinite(values).all():
        raise ReadError(f"{path}: the modality LUT (RescaleSlope/RescaleIntercept) gives non-finite values")
    voi = _file_voi(path, ds, apply_voi) if window == "auto" else None
    return values[None], voi, invert


def _file_voi(path: Path, ds: Any, apply_voi: Any):
    """The file's VOI transform into [0, 1], or None when it has none."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = (float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth)))
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        if not (np.isfinite(center) and np.isfinite(width)) or width <= 0 or (function == "LINEAR" and width < 1):
            raise ReadError(f"{path}: invalid VOI window (center {center}, width {width}); pass window='percentile'")
        if function == "SIGMOID":  # PS3.3 C.11.2.1.3.1
            return lambda x: 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        if function == "LINEAR_EXACT":  # PS3.3 C.11.2.1.3.2
            return lambda x: np.clip((x - center) / width + 0.5, 0.0, 1.0)
        if function != "LINEAR":
            raise ReadError(f"{path}: unknown VOILUTFunction {function!r}")
        if width == 1:  # PS3.3 C.11.2.1.2.1: a threshold
            return lambda x: (x > center - 0.5).astype(np.float64)
        return lambda x: np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)  # PS3.3 C.11.2.1.2.1
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return lambda x: np.clip(apply_voi(x, ds, index=0) / (2 ** bits - 1), 0.0, 1.0)
    return None


def _first(value: Any) -> Any:
    """The first of a multi-valued DICOM attribute (several windows may be stored; the first is the default)."""
    return value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value
