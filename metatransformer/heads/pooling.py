"""Pooling a token sequence into one vector per sample: the one rule heads and ``embed`` share."""
from __future__ import annotations

from typing import Literal, Sequence, Union

import torch

from ..data2seq.base import TokenSequence

PoolKind = Literal["cls", "mean", "max"]
Pool = Union[PoolKind, Sequence[PoolKind]]
POOL_KINDS = ("cls", "mean", "max")


def normalize_pool(pool: Pool) -> tuple[str, ...]:
    kinds = (pool,) if isinstance(pool, str) else tuple(pool)
    bad = [k for k in kinds if k not in POOL_KINDS]
    if not kinds or bad:
        raise ValueError(f"pool must be one or more of {POOL_KINDS}, got {pool!r}")
    return kinds


def pool_tokens(features: TokenSequence, pool: Pool, *, modality: str | None = None) -> torch.Tensor:
    """Pool a (possibly fused) sequence; several kinds are concatenated in the order given.

    ``cls`` takes the first prefix (cls) token — of ``modality`` when given — and raises if there is
    none. ``mean`` and ``max`` cover the content tokens: real and not prefix, of ``modality`` or of every
    modality; a sample with no content token falls back to its real tokens, so it is never empty.

    Args:
        features: tokens (b, n, d) with their mask and prefix/segment records.
        pool: ``"cls"``, ``"mean"``, ``"max"`` or a sequence of them.
        modality: pool only this modality's tokens (fused sequences), or all when None.

    Returns:
        (b, d · number of kinds).
    """
    kinds = normalize_pool(pool)
    tokens = features.tokens
    content = features.content_mask(modality)  # b n
    real = features.mask if modality is None else features.mask & features.modality_mask(modality)
    body = torch.where(content.any(dim=1, keepdim=True), content, real)
    weights = body.unsqueeze(-1).to(tokens.dtype)  # b n 1
    pooled = []
    for kind in kinds:
        if kind == "cls":
            pooled.append(tokens[:, features.cls_index(modality)])
        elif kind == "mean":
            pooled.append((tokens * weights).sum(1) / weights.sum(1).clamp_min(1))
        else:
            pooled.append(tokens.masked_fill(~body.unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(1))
    return torch.cat(pooled, dim=-1)
