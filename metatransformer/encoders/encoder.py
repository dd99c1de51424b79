"""The shared encoder: a stack of timm ``Block``s that every modality's tokens go through."""
from __future__ import annotations

from functools import partial
import torch
import torch.nn as nn
from timm.layers import QuickGELU
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from ..pathway.layer import PathwayLinear, scale_groups
from .config import EncoderConfig, PathwayConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


def padding_attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """Turn a token mask into a boolean attention mask for ``scaled_dot_product_attention``.

    Every query attends to the real keys of its own sequence. A sequence with no real token attends
    to all of its keys instead, so it yields finite (meaningless) values rather than NaN.

    Args:
        mask: (b, n) bool, True = real token.

    Returns:
        (b, 1, 1, n) bool, broadcast over heads and queries.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a (batch, tokens) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask[:, None, None, :]


class SharedEncoder(nn.Module):
    """Pre-norm transformer blocks shared by all modalities (Meta-Transformer's frozen encoder).

    The module holds ``blocks.{i}.*`` (timm ``Block`` keys) and, when the config asks for it, a final
    ``norm``. Tokenizers supply the position information; the encoder adds none.

    Args:
        config: the architecture (see :class:`EncoderConfig` and ``ENCODER_PRESETS``).

    Inputs:
        tokens: (b, n, d) float.
        mask: (b, n) bool, True = real token, or None when no sequence is padded. Padded tokens do
            not change the output at real positions.

    Returns:
        (b, n, d) token features.
    """

    def __init__(self, *, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        norm_layer = partial(nn.LayerNorm, eps=config.norm_eps)
        drop_path = torch.linspace(0, config.drop_path_rate, config.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                dim=config.dim,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                qkv_bias=config.qkv_bias,
                drop_path=drop_path[i],
                norm_layer=norm_layer,
                act_layer=_ACTIVATIONS[config.act],
            )
            for i in range(config.depth)
        )
        self.norm = norm_layer(config.dim) if config.final_norm else nn.Identity()
        self.grad_checkpointing = False
        if config.pathway is not None:
            self._build_pathway(config.pathway)

    def _build_pathway(self, pathway: PathwayConfig) -> None:
        """Re-create the structure of an un-merged pathway (placeholders that its state dict fills)."""
        aux_dtype = getattr(torch, pathway.aux_dtype) if pathway.aux_dtype else None
        for block, name, num_aux in pathway.layers:
            linear = self.blocks[block].get_submodule(name)
            placeholders = [torch.zeros_like(linear.weight)] * num_aux
            self.blocks[block].set_submodule(name, PathwayLinear(
                linear, placeholders, scale_groups=scale_groups(pathway.scale_granularity, name, linear.out_features),
                learnable_scale=pathway.learnable_scale, trainable_aux=pathway.trainable_aux, aux_dtype=aux_dtype))

    @property
    def dim(self) -> int:
        return self.config.dim

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory (training only)."""
        self.grad_checkpointing = enable

    def freeze(self) -> "SharedEncoder":
        """Stop gradients to every encoder weight (Meta-Transformer's frozen-encoder recipe). An un-merged
        pathway's λ and auxiliary weights keep the trainability its config records: they are what trains."""
        self.requires_grad_(False)
        if self.config.pathway is not None:
            for layer in self.modules():
                if isinstance(layer, PathwayLinear):
                    layer.scales.requires_grad_(self.config.pathway.learnable_scale)
                    layer.aux_weights.requires_grad_(self.config.pathway.trainable_aux)
        return self

    def unfreeze(self, last_n_blocks: int | None = None) -> "SharedEncoder":
        """Let gradients reach all parameters, or only the last ``last_n_blocks`` blocks and the final norm."""
        if last_n_blocks is None:
            self.requires_grad_(True)
            return self
        if not 0 <= last_n_blocks <= len(self.blocks):
            raise ValueError(f"last_n_blocks must be in [0, {len(self.blocks)}], got {last_n_blocks}")
        self.requires_grad_(False)
        for block in self.blocks[len(self.blocks) - last_n_blocks:]:
            block.requires_grad_(True)
        self.norm.requires_grad_(True)
        return self

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[-1] != self.config.dim:
            raise ValueError(f"tokens must be (batch, tokens, {self.config.dim}), got {tuple(tokens.shape)}")
        if mask is not None and mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens {tuple(tokens.shape[:2])}")
        attn_mask = padding_attention_mask(mask) if mask is not None else None
        x = tokens
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask=attn_mask)
        return self.norm(x)
