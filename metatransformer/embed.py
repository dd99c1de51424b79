"""Embedding extraction from raw files, robust to bad items."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .data2seq import ImageTokenizer
from .datasets import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .model import MetaTransformer

_logger = logging.getLogger(__name__)
Reader = Callable[[Path], torch.Tensor]


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


def image_reader(tokenizer: ImageTokenizer) -> Reader:
    """File → normalized (c, s, s) tensor that fits an image-like tokenizer (channels and size)."""
    channels = tokenizer.in_chans
    mean, std = (CLIP_MEAN, CLIP_STD) if channels == 3 else ((sum(CLIP_MEAN) / 3,), (sum(CLIP_STD) / 3,))
    transform = image_transform(tokenizer.img_size, mean=mean, std=std)
    return lambda path: transform(read_image(path, channels=channels))


def collect_files(inputs: Iterable[str | os.PathLike], suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files given directly, plus the files with a known suffix under given directories (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes))
        else:
            files.append(item)
    return files


@torch.inference_mode()
def embed_files(
        model: MetaTransformer,
        modality: str,
        files: Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        pool: str | None = None,
        reader: Reader | None = None,
) -> EmbeddingResult:
    """Embed files one batch at a time; a file that cannot be read is recorded in ``errors`` and skipped.

    Args:
        model: the model (its ``modality`` tokenizer is used).
        modality: modality of every file.
        files: the files.
        batch_size: files per forward pass.
        pool: pooling of :meth:`MetaTransformer.embed`.
        reader: file → tensor for the tokenizer; by default the image reader for image-like modalities.
    """
    tokenizer = model.tokenizer(modality)
    if reader is None:
        if not isinstance(tokenizer, ImageTokenizer):
            raise ValueError(f"no default reader for {modality!r} yet; pass reader=")
        reader = image_reader(tokenizer)
    device = next(model.parameters()).device
    chunks: list[torch.Tensor] = []
    paths: list[str] = []
    errors: dict[str, str] = {}
    batch: list[torch.Tensor] = []
    batch_paths: list[str] = []

    def flush() -> None:
        if batch:
            chunks.append(model.embed(modality, torch.stack(batch).to(device), pool=pool).pooled.float().cpu())
            paths.extend(batch_paths)
            batch.clear()
            batch_paths.clear()

    for path in map(Path, files):
        try:
            batch.append(reader(path))
            batch_paths.append(str(path))
        except (ImageReadError, FileNotFoundError, ValueError, OSError) as err:
            errors[str(path)] = str(err)
            _logger.warning("skipped: %s", err)
        if len(batch) == batch_size:
            flush()
    flush()
    embeddings = torch.cat(chunks) if chunks else torch.empty(0, model.encoder.dim)
    return EmbeddingResult(embeddings, paths, errors)
