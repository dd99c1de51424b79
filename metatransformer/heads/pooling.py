"""Pooling a token sequence into one vector per sample, respecting the padding mask."""
from __future__ import annotations

from typing import Literal, Sequence, Union

import torch

PoolKind = Literal["cls", "mean", "max"]
Pool = Union[PoolKind, Sequence[PoolKind]]
POOL_KINDS = ("cls", "mean", "max")


def normalize_pool(pool: Pool) -> tuple[str, ...]:
    kinds = (pool,) if isinstance(pool, str) else tuple(pool)
    bad = [k for k in kinds if k not in POOL_KINDS]
    if not kinds or bad:
        raise ValueError(f"pool must be one or more of {POOL_KINDS}, got {pool!r}")
    return kinds


def pool_tokens(tokens: torch.Tensor, mask: torch.Tensor, pool: Pool, *, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Pool tokens; several kinds are concatenated in the order given.

    ``cls`` takes the first token; ``mean`` and ``max`` use the real tokens after the
    ``num_prefix_tokens`` prefix (falling back to all real tokens if a sample has only the prefix).

    Args:
        tokens: (b, n, d).
        mask: (b, n) bool, True = real token.
        pool: ``"cls"``, ``"mean"``, ``"max"`` or a sequence of them.
        num_prefix_tokens: leading tokens (cls) left out of mean/max pooling.

    Returns:
        (b, d · number of kinds).
    """
    kinds = normalize_pool(pool)
    body = mask.clone()
    body[:, :num_prefix_tokens] = False
    body = torch.where(body.any(dim=1, keepdim=True), body, mask)  # b n
    weights = body.unsqueeze(-1).to(tokens.dtype)  # b n 1
    pooled = []
    for kind in kinds:
        if kind == "cls":
            if num_prefix_tokens < 1:
                raise ValueError("cls pooling needs a sequence with a leading cls token (num_prefix_tokens >= 1)")
            pooled.append(tokens[:, 0])
        elif kind == "mean":
            pooled.append((tokens * weights).sum(1) / weights.sum(1).clamp_min(1))
        else:
            pooled.append(tokens.masked_fill(~body.unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(1))
    return torch.cat(pooled, dim=-1)
