"""Building tokenizers by modality name: ``create_tokenizer`` and Meta-Transformer's ``Data2Seq``."""
from __future__ import annotations

from typing import Any

from .._validation import resolve_options
from ..registry import MODALITIES, canonical_modality, get_modality, list_modalities, register_modality
from .base import Tokenizer

__all__ = ["Data2Seq", "canonical_modality", "create_tokenizer", "get_modality", "get_tokenizer_class",
           "list_modalities", "register_modality"]


def get_tokenizer_class(modality: str) -> type[Tokenizer]:
    """The tokenizer class registered for a modality name or alias."""
    return MODALITIES.get(modality).tokenizer


def create_tokenizer(modality: str, dim: int, **options: Any) -> Tokenizer:
    """Build the tokenizer of ``modality`` at width ``dim``.

    Args:
        modality: a registered name or alias (see :func:`list_modalities`).
        dim: token width, the shared encoder's width.
        **options: the tokenizer's own keyword arguments (``patch_size``, ``in_chans``...), type-checked
            against its signature before anything is built.

    Returns:
        the tokenizer, with every option (given or default) recorded in its ``options``.
    """
    cls = get_tokenizer_class(modality)
    resolved = resolve_options(cls, options, where=f"{cls.__name__} ({cls.modality})")
    tokenizer = cls(dim=dim, **resolved)
    tokenizer.options = resolved  # what rebuilds it: the model config reads it back
    return tokenizer


def Data2Seq(modality: str, dim: int, **options: Any) -> Tokenizer:  # noqa: N802 - the original's name
    """Meta-Transformer's spelling: ``Data2Seq(modality='image', dim=768)`` returns the tokenizer module."""
    return create_tokenizer(modality, dim, **options)
