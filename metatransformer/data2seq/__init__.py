"""Data2Seq: one tokenizer per modality, all returning a :class:`TokenSequence` for the shared encoder."""
from .base import ClsToken, TokenSequence, Tokenizer, full_mask
from .registry import Data2Seq, canonical_modality, create_tokenizer, get_tokenizer_class, list_modalities, register_tokenizer

# Built-in modalities register themselves on import.
from . import image  # noqa: E402,F401  isort: skip
from .image import ImageTokenizer, InfraredTokenizer, XRayTokenizer  # noqa: E402

__all__ = [
    "ClsToken", "Data2Seq", "ImageTokenizer", "InfraredTokenizer", "TokenSequence", "Tokenizer", "XRayTokenizer",
    "canonical_modality", "create_tokenizer", "full_mask", "get_tokenizer_class", "list_modalities",
    "register_tokenizer",
]
