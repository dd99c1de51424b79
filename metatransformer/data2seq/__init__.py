"""Data2Seq: one tokenizer per modality, all returning a :class:`TokenSequence` for the shared encoder."""
from ..batching import Padded, pad_collate, stack_collate
from .base import ClsToken, TokenSequence, Tokenizer, full_mask
from .registry import (
    Data2Seq,
    canonical_modality,
    create_tokenizer,
    get_modality,
    get_tokenizer_class,
    list_modalities,
    register_modality,
)

# Built-in modalities register themselves on import, in this order (a shared suffix infers the first).
from .image import ImageTokenizer, InfraredTokenizer, XRayTokenizer  # noqa: E402  isort: skip
from .video import VideoTokenizer  # noqa: E402  isort: skip
from .hyperspectral import HyperspectralTokenizer  # noqa: E402  isort: skip
from .text import TextTokenizer  # noqa: E402  isort: skip
from .tabular import TabularTokenizer  # noqa: E402  isort: skip
from .audio import AudioTokenizer  # noqa: E402  isort: skip
from .time_series import TimeSeriesTokenizer  # noqa: E402  isort: skip
from .imu import IMUTokenizer  # noqa: E402  isort: skip
from .graph import GraphTokenizer  # noqa: E402  isort: skip
from .point import PointCloudTokenizer  # noqa: E402  isort: skip

__all__ = [
    "AudioTokenizer", "ClsToken", "Data2Seq", "GraphTokenizer", "HyperspectralTokenizer", "IMUTokenizer",
    "ImageTokenizer", "InfraredTokenizer", "Padded", "PointCloudTokenizer", "TabularTokenizer", "TextTokenizer",
    "TimeSeriesTokenizer", "TokenSequence", "Tokenizer", "VideoTokenizer", "XRayTokenizer", "canonical_modality",
    "create_tokenizer", "full_mask", "get_modality", "get_tokenizer_class", "list_modalities", "pad_collate",
    "register_modality", "stack_collate",
]
