"""Embedding extraction from raw files of any registered modality, robust to bad items."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from .datasets import ReadError
from .model import MetaTransformer
from .registry import get_modality, list_modalities

_logger = logging.getLogger(__name__)


@dataclass
class EmbeddingResult:
    """Embeddings of the files that could be read, and why the others could not.

    Attributes:
        embeddings: (n_ok, d) float32, row i belongs to ``paths[i]``.
        paths: the files embedded, in input order.
        errors: {file: message} for the files skipped.
    """

    embeddings: torch.Tensor
    paths: list[str]
    errors: dict[str, str] = field(default_factory=dict)


def known_suffixes(modality: str | None = None) -> tuple[str, ...]:
    """File suffixes read by ``modality``, or by any registered modality."""
    names = [modality] if modality else list_modalities()
    return tuple(sorted({s for name in names for s in get_modality(name).suffixes}))


def collect_files(inputs: Iterable[str | os.PathLike], suffixes: Sequence[str]) -> list[Path]:
    """Files given directly, plus the files with one of ``suffixes`` under given directories (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes))
        else:
            files.append(item)
    return files


def item_loader(model: MetaTransformer, modality: str) -> Callable[[Path], Any]:
    """File → item that fits the model's tokenizer: the modality's reader, then its default transform
    built from the tokenizer's options (size, channels, normalisation...)."""
    spec = get_modality(modality)
    if spec.reader is None:
        raise ValueError(f"modality {spec.name!r} has no file reader")
    transform = spec.transform(model.tokenizer(spec.name)) if spec.transform is not None else None
    return (lambda path: transform(spec.reader(path))) if transform is not None else spec.reader


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a collated batch (tensors, named tuples, lists, dicts, or objects with ``.to``) to ``device``."""
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(x, device) for x in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(x, device) for x in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if hasattr(batch, "to") and not isinstance(batch, str) else batch


@torch.inference_mode()
def embed_files(
        model: MetaTransformer,
        modality: str,
        files: Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        pool: str | None = None,
) -> EmbeddingResult:
    """Embed files one batch at a time: reader → transform → collate → :meth:`MetaTransformer.embed`.

    A file that cannot be read is recorded in ``errors`` and skipped; a batch that fails as a whole
    is retried one item at a time, so one bad item never costs the others their results. A file of
    several samples (the modality's ``split``: a table's rows) gives one embedding per sample,
    named ``path#i``.

    Args:
        model: the model (its ``modality`` tokenizer is used).
        modality: modality of every file.
        files: the files.
        batch_size: files per forward pass.
        pool: pooling of :meth:`MetaTransformer.embed`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = get_modality(modality)
    load = item_loader(model, spec.name)
    device = next(model.parameters()).device
    chunks: list[torch.Tensor] = []
    paths: list[str] = []
    errors: dict[str, str] = {}

    def encode(items: list[Any]) -> torch.Tensor:
        batch = to_device(spec.collate(items), device)
        return model.embed(spec.name, batch, pool=pool).pooled.float().cpu()

    def flush(items: list[Any], names: list[str]) -> None:
        if not items:
            return
        try:
            chunks.append(encode(items))
            paths.extend(names)
        except Exception as err:  # noqa: BLE001 - any failure is one item's; it never costs the others
            if len(items) == 1:
                errors[names[0]] = _describe(names[0], err)
                _logger.warning("skipped: %s", errors[names[0]])
                return
            for item, name in zip(items, names):
                flush([item], [name])

    items: list[Any] = []
    names: list[str] = []
    for path in map(Path, files):
        try:
            item = load(path)
            samples = spec.split(item) if spec.split is not None else [item]
        except Exception as err:  # noqa: BLE001 - a reader or transform failure is this file's alone
            errors[str(path)] = _describe(str(path), err)
            _logger.warning("skipped: %s", errors[str(path)])
            continue
        for index, sample in enumerate(samples):
            items.append(sample)
            names.append(f"{path}#{index}" if spec.split is not None else str(path))
            if len(items) == batch_size:
                flush(items, names)
                items, names = [], []
    flush(items, names)
    embeddings = torch.cat(chunks) if chunks else torch.empty(0, model.encoder.dim)
    return EmbeddingResult(embeddings, paths, errors)


def _describe(name: str, err: Exception) -> str:
    """The reason a file was skipped: the library's errors name it already; others get its name and type."""
    message = str(err)
    return message if name in message else f"{name}: {type(err).__name__}: {message}"
