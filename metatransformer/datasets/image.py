"""Reading image files (PNG, JPEG, TIFF, BMP, WebP; 8- and 16-bit, grayscale or colour) into float tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from .registry import ReadError, check_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(ReadError):
    """An image file that cannot be decoded; the message names the file."""


# Pillow modes that 16-bit PNG/TIFF files open as.
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: str | os.PathLike, *, channels: Literal[1, 3] = 3) -> torch.Tensor:
    """Decode an image file into a float tensor in [0, 1].

    EXIF orientation is applied. 8-bit images are divided by 255, 16-bit ones (PNG, TIFF; radiographs)
    by 65535, so their full dynamic range is kept; floating-point TIFFs are returned as stored.
    Colour images are converted to luminance for ``channels=1``; grayscale ones are replicated for
    ``channels=3``; alpha is dropped.

    Args:
        path: the image file.
        channels: 3 (RGB) or 1 (grayscale: infrared, X-ray).

    Returns:
        (channels, h, w) float32.

    Raises:
        ImageReadError: (a :class:`ReadError`) the file is missing, empty, truncated or not an image.
    """
    path = check_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _to_array(image, channels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode the image: {err}") from err
    if not np.isfinite(array).all():
        raise ImageReadError(f"{path}: the image contains NaN or infinite values")
    return torch.from_numpy(array)


def _to_array(image: Image.Image, channels: int) -> np.ndarray:
    mode = image.mode
    if mode == "F":  # float TIFF: keep the stored values
        array = np.asarray(image, dtype=np.float32)[None]
    elif mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image).astype(np.float32)[None] / 65535.0
    else:
        if mode not in ("L", "RGB"):
            image = image.convert("RGB" if mode not in ("1", "LA") else "L")
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if channels == 1 and array.shape[0] == 3:
        array = np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), array, axes=1)[None]  # ITU-R 601 luma
    elif channels == 3 and array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return np.ascontiguousarray(array, dtype=np.float32)


def image_transform(
        img_size: int = 224,
        *,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        train: bool = False,
) -> v2.Compose:
    """Resize / crop / normalise a (c, h, w) float tensor in [0, 1], as CLIP preprocesses.

    Evaluation: resize the short side to ``img_size`` (bicubic, antialiased), centre-crop, normalise.
    Training: random resized crop (scale 0.08–1) and horizontal flip instead.
    For 1-channel inputs pass 1-element ``mean``/``std`` (e.g. ``(sum(CLIP_MEAN)/3,)``).
    """
    geometry = (
        [v2.RandomResizedCrop(img_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
         v2.RandomHorizontalFlip()]
        if train else
        [v2.Resize(img_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(img_size)]
    )
    return v2.Compose([*geometry, v2.Normalize(mean=list(mean), std=list(std))])
