"""Shared test helpers: reference models built independently of the library."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import Block


def reference_blocks(dim: int, num_heads: int, depth: int, *, seed: int = 0) -> nn.Sequential:
    """Meta-Transformer's README encoder: an nn.Sequential of timm Blocks (eps 1e-5, exact GELU)."""
    torch.manual_seed(seed)
    blocks = nn.Sequential(*[
        Block(dim=dim, num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm, act_layer=nn.GELU)
        for _ in range(depth)
    ])
    # timm initialises biases and LayerNorm affine to constants; randomise them so every key is tested.
    with torch.no_grad():
        for name, param in blocks.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return blocks.eval()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
