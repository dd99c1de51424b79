"""Reading image files (PNG, JPEG, TIFF, BMP, WebP; 8-, 16- and 32-bit, grayscale or colour) into float tensors."""
from __future__ import annotations

import math

import os
import warnings
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from .registry import ReadError, check_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601: RGB to one channel, everywhere in the library
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

# Bounds checked against the header before any pixel is decoded, and before a resize allocates:
# 2**26 pixels is an 8192² image (768 MiB as 3-channel float32); no sensor or scanner this library
# targets has a longer side than 32 times the shorter one.
MAX_IMAGE_PIXELS = 2 ** 26
MAX_ASPECT_RATIO = 32.0


class ImageReadError(ReadError):
    """An image file that cannot be decoded; the message names the file."""


def read_image(
        path: str | os.PathLike,
        *,
        channels: Literal[1, 3] = 3,
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> torch.Tensor:
    """Decode an image file into a float tensor in [0, 1].

    EXIF orientation is applied. Integer images are divided by the largest value of their stored type
    (255 for 8 bit; 65535 for 16-bit PNG and TIFF, e.g. radiographs, so their dynamic range is kept;
    2³¹−1 or 2³²−1 for 32-bit TIFF), with negative values of signed types clipped to 0; floating-point
    TIFFs are returned as stored. Colour images are converted to luminance (ITU-R 601) for
    ``channels=1``; grayscale ones are replicated for ``channels=3``; alpha is dropped.

    Args:
        path: the image file.
        channels: 3 (RGB) or 1 (grayscale: infrared, X-ray).
        max_pixels: largest width × height accepted, checked against the header before decoding.
        max_aspect_ratio: largest long side / short side accepted.

    Returns:
        (channels, h, w) float32.

    Raises:
        ImageReadError: (a :class:`ReadError`) the file is missing, empty, not a regular file, truncated,
            not an image, too large, too elongated, or holds NaN or infinite values.
    """
    array, full_scale = decode_image(path, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    if full_scale is not None:
        array = np.clip(array / full_scale, 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(_to_channels(array, channels), dtype=np.float32))


def decode_image(
        path: str | os.PathLike,
        *,
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> tuple[np.ndarray, float | None]:
    """Decode an image file to its stored values, for readers that normalise them themselves.

    Returns:
        the (c, h, w) float64 values as stored (c = 1 or 3; EXIF orientation applied, alpha and palette
        resolved), and the full scale of the stored integer type (255, 65535...), None for float images.

    Raises:
        ImageReadError: as :func:`read_image`.
    """
    try:
        path = check_file(path)
    except ReadError as err:
        raise ImageReadError(str(err)) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own bound is tighter
            image = Image.open(path)
        with image:
            check_image_size(path, image.size, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
            image.load()
            sample_type = _tiff_sample_type(image)  # before exif_transpose, whose copy has no TIFF tags
            array, full_scale = _stored_values(ImageOps.exif_transpose(image), sample_type)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode the image: {err}") from err
    if not np.isfinite(array).all():
        raise ImageReadError(f"{path}: the image contains {int((~np.isfinite(array)).sum())} NaN or infinite values")
    return array, full_scale


def check_image_size(path: object, size: tuple[int, int], *, max_pixels: int = MAX_IMAGE_PIXELS,
                     max_aspect_ratio: float = MAX_ASPECT_RATIO) -> None:
    """Refuse a (width, height) that is empty, larger than ``max_pixels`` or more elongated than
    ``max_aspect_ratio``, before anything of that size is allocated.

    Raises:
        ImageReadError: naming ``path``.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ImageReadError(f"{path}: the image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(f"{path}: {width}x{height} pixels is more than the {max_pixels:,} accepted "
                             "(max_pixels=)")
    if max(width, height) / min(width, height) > max_aspect_ratio:
        raise ImageReadError(f"{path}: aspect ratio {width}x{height} is beyond the {max_aspect_ratio:g}:1 accepted "
                             "(max_aspect_ratio=)")


def _stored_values(image: Image.Image, sample_type: tuple[int, bool]) -> tuple[np.ndarray, float | None]:
    mode = image.mode
    if mode == "F":  # float TIFF: keep the stored values
        return np.asarray(image, dtype=np.float64)[None], None
    if mode.startswith("I;16"):
        scale = 32767.0 if mode.endswith("S") else 65535.0
        return np.asarray(image).astype(np.float64)[None], scale
    if mode == "I":  # 32-bit storage of 16-bit PNG/PGM or 16/32-bit, signed or unsigned TIFF samples
        array = np.asarray(image)
        bits, signed = sample_type
        if bits == 32 and not signed:
            array = array.view(np.uint32)  # Pillow stores uint32 samples in int32: reinterpret, not wrap
        return array.astype(np.float64)[None], float(2 ** (bits - signed) - 1)
    if mode == "L" and sample_type == (8, True):
        return np.asarray(image).view(np.int8).astype(np.float64)[None], 127.0  # Pillow reads int8 as uint8
    if mode not in ("L", "RGB"):
        image = image.convert("L" if mode in ("1", "LA") else "RGB")
    array = np.asarray(image).astype(np.float64)
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)), 255.0


def _tiff_sample_type(image: Image.Image) -> tuple[int, bool]:
    """(bits per sample, signed) of a TIFF's samples; (16, False) for other formats, whose integer
    samples are at most 16-bit unsigned."""
    tags = getattr(image, "tag_v2", None)
    if tags is None:
        return 16, False
    bits = tags.get(258, (16,))
    sample_format = tags.get(339, (1,))
    bits = bits[0] if isinstance(bits, tuple) else bits
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    return int(bits), sample_format == 2


def _to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1 and array.shape[0] == 3:
        return np.tensordot(np.array(LUMA_WEIGHTS), array, axes=1)[None]
    if channels == 3 and array.shape[0] == 1:
        return np.repeat(array, 3, axis=0)
    return array


def image_transform(
        img_size: int = 224,
        *,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        train: bool = False,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
        interpolation: str = "bicubic",
        crop_pct: float = 1.0,
        scale: tuple[float, float] = (0.08, 1.0),
) -> v2.Compose:
    """Resize / crop / normalise a (c, h, w) float tensor in [0, 1], as CLIP preprocesses.

    Evaluation: resize the short side to ``img_size / crop_pct`` (``interpolation``, antialiased),
    centre-crop ``img_size``, normalise (timm's ``crop_pct``; 1.0 is CLIP's resize-then-crop).
    Training: random resized crop (area ``scale``: 0.08–1, the Inception / timm default) and horizontal
    flip instead.
    For 1-channel inputs pass 1-element ``mean``/``std`` (e.g. ``(sum(CLIP_MEAN)/3,)``).

    The resized image is at most ``img_size`` × ``img_size · max_aspect_ratio``: an image more elongated
    than ``max_aspect_ratio`` is refused with a ValueError before the resize allocates (a 1×20000
    image would otherwise resize to 224×4,480,000).
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    mode = _INTERPOLATIONS[interpolation]
    geometry = (
        [v2.RandomResizedCrop(img_size, scale=scale, interpolation=mode, antialias=True),
         v2.RandomHorizontalFlip()]
        if train else
        [v2.Resize(int(math.floor(img_size / crop_pct)), interpolation=mode, antialias=True), v2.CenterCrop(img_size)]
    )
    return v2.Compose([_AspectGuard(max_aspect_ratio), *geometry, v2.Normalize(mean=list(mean), std=list(std))])


_INTERPOLATIONS = {"bicubic": v2.InterpolationMode.BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR,
                   "nearest": v2.InterpolationMode.NEAREST}


class _AspectGuard(torch.nn.Module):
    """Refuses an image whose long side is more than ``max_aspect_ratio`` times its short side."""

    def __init__(self, max_aspect_ratio: float) -> None:
        super().__init__()
        self.max_aspect_ratio = max_aspect_ratio

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() < 2:
            raise ValueError(f"expected a (c, h, w) image, got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        if min(height, width) < 1 or max(height, width) / min(height, width) > self.max_aspect_ratio:
            raise ValueError(f"a {height}x{width} image is beyond the {self.max_aspect_ratio:g}:1 aspect ratio "
                             "the resize accepts")
        return image
