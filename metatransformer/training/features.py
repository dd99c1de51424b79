"""Linear-probe fast path: encode each split once with the frozen tokenizer + encoder, cache the features on
disk (safetensors), and train the heads on the cache.

What is cached is exactly what a head reads: for cls pooling the prefix (cls) tokens only, for mean/max
pooling every token with its mask. The cache key covers the model's frozen weights and config, the
records (paths with size and mtime, or the bytes of in-memory items) and the kept tokens, so a changed
input is never served stale features.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..embed import to_device
from ..model import MetaTransformer
from ..serialization import atomic_write
from .data import ItemDataset, make_loader

_logger = logging.getLogger(__name__)


def _hash_model(model: MetaTransformer, modality: str) -> str:
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    parts = {"tokenizers." + modality, "encoder.", "modality_embed." + modality}
    for key, value in sorted(model.state_dict().items()):
        if any(key.startswith(p) for p in parts):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                          if value.dtype != torch.bool else value.cpu().numpy().tobytes())
    return digest.hexdigest()


def _hash_records(dataset: ItemDataset) -> str:
    digest = hashlib.sha256()
    if getattr(dataset, "rows", None) is not None:  # table rows: the encoded rows are the content
        for part in dataset.rows:
            digest.update(str(tuple(part.shape)).encode())
            digest.update(part.contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
    for record in dataset.records:
        if isinstance(record.source, (str, os.PathLike)):
            stat = os.stat(record.source)
            digest.update(f"{os.path.abspath(record.source)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            tensor = torch.as_tensor(record.source)
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: MetaTransformer, dataset: ItemDataset, keep: str) -> str:
    return hashlib.sha256(f"{_hash_model(model, dataset.modality)}|{_hash_records(dataset)}|{keep}".encode()
                          ).hexdigest()[:20]


def keep_rule(pool: Any) -> str:
    """``"prefix"`` when the head pools the cls token only, ``"all"`` otherwise."""
    kinds = (pool,) if isinstance(pool, str) else tuple(pool)
    return "prefix" if set(kinds) == {"cls"} else "all"


@torch.inference_mode()
def encode_dataset(model: MetaTransformer, dataset: ItemDataset, *, keep: str, batch_size: int,
                   num_workers: int = 0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Tokens (n, t, d) float32, mask (n, t), prefix (t,) and targets of every item, in order."""
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0, num_workers=num_workers)
    tokens, masks, prefix = [], [], None
    try:
        for batch, _ in loader:
            features = model.forward_features({dataset.modality: to_device(batch, torch.device(device))})
            select = features.prefix if keep == "prefix" else torch.ones_like(features.prefix)
            tokens.append(features.tokens[:, select].float().cpu())
            masks.append(features.mask[:, select].cpu())
            prefix = features.prefix[select].cpu()
    finally:
        model.train(was_training)
    return {"tokens": torch.cat(tokens), "mask": torch.cat(masks), "prefix": prefix,
            "targets": torch.stack(dataset.targets)}


def cached_features(model: MetaTransformer, dataset: ItemDataset, cache_dir: str | os.PathLike, *, split: str,
                    pool: Any, batch_size: int, num_workers: int = 0) -> tuple[dict[str, torch.Tensor], bool]:
    """Features of ``dataset`` from the cache, or encoded and written to it. Returns (features, was_cached)."""
    keep = keep_rule(pool)
    path = Path(cache_dir) / f"{dataset.modality}-{split}-{cache_key(model, dataset, keep)}.safetensors"
    if path.is_file():
        return load_file(path), True
    device = next(model.parameters()).device
    features = encode_dataset(model, dataset, keep=keep, batch_size=batch_size, num_workers=num_workers, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in features.items()}, tmp))
    _logger.info("cached %s %s features %s -> %s", dataset.modality, split, tuple(features["tokens"].shape), path)
    return features, False


class FeatureDataset(Dataset):
    """Cached features → ({"tokens", "mask", "prefix"}, target); the default collate stacks them."""

    def __init__(self, features: dict[str, torch.Tensor], modality: str) -> None:
        self.features, self.modality = features, modality
        self.targets = list(features["targets"])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        f = self.features
        return {"tokens": f["tokens"][index], "mask": f["mask"][index], "prefix": f["prefix"]}, self.targets[index]
