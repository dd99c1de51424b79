"""Image-like modalities: RGB images, infrared (thermal) and X-ray, as ViT patch tokens."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from .base import ClsToken, TokenSequence, Tokenizer, full_mask
from .registry import register_tokenizer


@register_tokenizer("image", aliases=("rgb", "vision"))
class ImageTokenizer(Tokenizer):
    """ViT patch embedding: Conv2d(kernel = stride = patch) → cls token → learned position embedding → pre-norm.

    The position embedding is learned for ``img_size`` and resampled (bicubic) for any other input size
    whose sides are multiples of the patch size. With ``pre_norm`` (CLIP's ``ln_pre``) and no patch
    bias, it reproduces the stem of a CLIP ViT, whose blocks are the shared encoder.

    Args:
        dim: token width D.
        patch_size: patch side (16 for B/16, 14 for L/14).
        img_size: the image side the position embedding is learned for.
        in_chans: input channels (3 for RGB; 1 for infrared and X-ray).
        cls_token: prepend a learned cls token.
        pre_norm: LayerNorm on the tokens (timm ``norm_pre`` / OpenCLIP ``ln_pre``).
        patch_bias: bias in the patch projection (CLIP towers have none).
        norm_eps: eps of the pre-norm.

    Inputs:
        images: (b, in_chans, h, w) float, normalized (CLIP mean/std by default, see
            :func:`metatransformer.datasets.image_transform`); h and w multiples of ``patch_size``.

    Returns:
        tokens (b, [1 +] h/p · w/p, D) and an all-True mask (b, n).
    """

    default_in_chans = 3

    def __init__(
            self,
            *,
            dim: int,
            patch_size: int = 16,
            img_size: int = 224,
            in_chans: int | None = None,
            cls_token: bool = True,
            pre_norm: bool = False,
            patch_bias: bool = True,
            norm_eps: float = 1e-5,
    ) -> None:
        super().__init__(dim=dim)
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
        self.patch_size, self.img_size = patch_size, img_size
        self.in_chans = in_chans or self.default_in_chans
        self.grid_size = (img_size // patch_size,) * 2
        self.patch_embed = nn.Conv2d(self.in_chans, dim, kernel_size=patch_size, stride=patch_size, bias=patch_bias)
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_prefix_tokens + math.prod(self.grid_size), dim) * 0.02)
        self.norm_pre = nn.LayerNorm(dim, eps=norm_eps) if pre_norm else nn.Identity()

    def forward(self, images: torch.Tensor) -> TokenSequence:
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ValueError(f"{self.modality} tokenizer expects (batch, {self.in_chans}, height, width) images, "
                             f"got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"{self.modality} tokenizer expects float images (normalized), got {images.dtype}")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        x = self.patch_embed(images)  # b d gh gw
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # b (gh gw) d
        mask = full_mask(x)
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
        x = x + self._pos_embed_for(grid)
        return TokenSequence(self.norm_pre(x), mask)

    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == self.grid_size:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=list(grid), old_size=list(self.grid_size),
                                      num_prefix_tokens=self.num_prefix_tokens)

    @staticmethod
    def options_from_checkpoint(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Tokenizer options that fit a converted ViT stem (see ``ConvertedCheckpoint.image_tokenizer``)."""
        patch = weights["patch_embed.weight"]  # (d, c, p, p)
        num_prefix = int("cls_token" in weights)
        grid = math.isqrt(weights["pos_embed"].shape[1] - num_prefix)
        return {"patch_size": patch.shape[-1], "img_size": grid * patch.shape[-1], "cls_token": bool(num_prefix),
                "pre_norm": "norm_pre.weight" in weights, "patch_bias": "patch_embed.bias" in weights}

    def load_vit_stem(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load a ViT's patch embedding, cls token, position embedding and pre-norm (canonical keys).

        RGB patch weights are adapted to ``in_chans`` (summed for 1 channel, as timm does), and the
        position embedding is resampled to this tokenizer's grid.
        """
        state = dict(weights)
        if "cls_token" in state:
            state["cls_token.token"] = state.pop("cls_token")
        patch = state["patch_embed.weight"]
        if patch.shape[1] != self.in_chans:
            state["patch_embed.weight"] = adapt_input_conv(self.in_chans, patch, base_chans=patch.shape[1])
        num_prefix = int("cls_token.token" in state)
        old_grid = math.isqrt(state["pos_embed"].shape[1] - num_prefix)
        if (old_grid, old_grid) != self.grid_size:
            state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(self.grid_size),
                                                        old_size=[old_grid, old_grid], num_prefix_tokens=num_prefix)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{self.modality} tokenizer: ViT stem does not fit; missing {missing}, "
                             f"unexpected {unexpected}")


@register_tokenizer("infrared", aliases=("thermal", "ir"))
class InfraredTokenizer(ImageTokenizer):
    """Thermal images: the image tokenizer on 1 channel by default (pass ``in_chans=3`` for replicated RGB)."""

    default_in_chans = 1


@register_tokenizer("xray", aliases=("x_ray", "radiograph"))
class XRayTokenizer(ImageTokenizer):
    """Radiographs: the image tokenizer on 1 channel by default; 12–16-bit inputs are scaled to [0, 1] by the reader."""

    default_in_chans = 1
