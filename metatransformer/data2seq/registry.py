"""Registry of tokenizers by modality name, and the ``Data2Seq`` factory."""
from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

from .base import Tokenizer

T = TypeVar("T", bound=type[Tokenizer])

_TOKENIZERS: dict[str, type[Tokenizer]] = {}
_ALIASES: dict[str, str] = {}


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def register_tokenizer(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
    """Class decorator: register a :class:`Tokenizer` subclass under a modality name and its aliases.

    Names are matched case-insensitively with ``-``, spaces and ``_`` treated alike.
    """
    canonical = _normalize(name)

    def decorator(cls: T) -> T:
        if canonical in _TOKENIZERS and _TOKENIZERS[canonical] is not cls:
            raise ValueError(f"modality {canonical!r} is already registered to {_TOKENIZERS[canonical].__name__}")
        cls.modality = canonical
        _TOKENIZERS[canonical] = cls
        for alias in aliases:
            _ALIASES[_normalize(alias)] = canonical
        return cls

    return decorator


def canonical_modality(name: str) -> str:
    """The registered name for ``name`` (``"X-ray"`` -> ``"xray"``, ``"thermal"`` -> ``"infrared"``...)."""
    key = _normalize(name)
    key = _ALIASES.get(key, key)
    if key not in _TOKENIZERS:
        raise ValueError(f"unknown modality {name!r}; known modalities: {', '.join(list_modalities())}")
    return key


def list_modalities() -> list[str]:
    """Registered modality names."""
    return sorted(_TOKENIZERS)


def get_tokenizer_class(modality: str) -> type[Tokenizer]:
    return _TOKENIZERS[canonical_modality(modality)]


def create_tokenizer(modality: str, dim: int, **options: Any) -> Tokenizer:
    """Build the tokenizer of ``modality`` at width ``dim``.

    Args:
        modality: a registered name or alias (see :func:`list_modalities`).
        dim: token width, the shared encoder's width.
        **options: the tokenizer's own keyword arguments (``patch_size``, ``in_chans``...).
    """
    cls = get_tokenizer_class(modality)
    try:
        return cls(dim=dim, **options)
    except TypeError as err:
        raise TypeError(f"{cls.__name__} ({cls.modality}): {err}") from err


# Meta-Transformer's spelling: ``Data2Seq(modality='image', dim=768)`` returns the tokenizer module.
Data2Seq = create_tokenizer
