"""Hyperspectral pixels as band tokens: one token per band (or per group of adjacent bands)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range
from ..batching import Padded, pad_collate
from ..datasets.hyperspectral import HYPERSPECTRAL_SUFFIXES, HyperspectralCube, read_hyperspectral
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

MAX_BANDS = 4096


class HyperspectralTokenizer(Tokenizer):
    """Band tokens: Linear(group · p · p → D) over each band's (group of bands') p×p neighbourhood,
    + cls token + learned position embedding over the band axis.

    At the reference setting (p = 1, group = 1) 200 bands give 201 tokens. Long spectra can be grouped
    (``band_group`` adjacent bands per token; the last group is zero-filled). The position embedding is
    learned for ``num_bands`` and resampled (linear) for other band counts.

    Args:
        dim: token width D.
        num_bands: the band count the position embedding is learned for (200 for Indian Pines).
        patch_size: neighbourhood side p of each pixel (1 in the reference).
        band_group: adjacent bands per token.
        cls_token: prepend a learned cls token.

    Inputs:
        pixels: (b, bands, p, p) float (a labelled pixel's neighbourhood, or a whole scene pooled to p×p
            by the default transform), or a :class:`~metatransformer.batching.Padded` of it with a (b, bands)
            mask when cubes with different band counts share a batch.

    Returns:
        tokens (b, [1 +] ceil(bands / band_group), D) and mask (b, n): a token is real when any of its
        bands is.
    """

    def __init__(
            self,
            *,
            dim: int,
            num_bands: int = 200,
            patch_size: int = 1,
            band_group: int = 1,
            cls_token: bool = True,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.num_bands", num_bands, low=1, high=MAX_BANDS)
        check_range(f"{name}.patch_size", patch_size, low=1, high=63)
        check_range(f"{name}.band_group", band_group, low=1, high=num_bands)
        self.num_bands, self.patch_size, self.band_group = num_bands, patch_size, band_group
        self.proj = nn.Linear(band_group * patch_size * patch_size, dim)
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        self.pos_embed = nn.Parameter(torch.randn(1, math.ceil(num_bands / band_group), dim) * 0.02)

    def forward(self, pixels: torch.Tensor | Padded) -> TokenSequence:
        values, band_mask = (pixels.values, pixels.mask) if isinstance(pixels, Padded) else (pixels, None)
        p = self.patch_size
        if values.dim() != 4 or values.shape[-2:] != (p, p):
            raise ValueError(f"hyperspectral tokenizer expects (batch, bands, {p}, {p}) pixels, "
                             f"got {tuple(values.shape)}")
        if not values.is_floating_point():
            raise TypeError(f"hyperspectral tokenizer expects float pixels, got {values.dtype}")
        batch, bands = values.shape[:2]
        if band_mask is None:
            band_mask = torch.ones(batch, bands, dtype=torch.bool, device=values.device)
        g = self.band_group
        extra = -bands % g
        x = F.pad(values.flatten(2), (0, 0, 0, extra))  # b (n g) (p p), zero-filled last group
        x = self.proj(x.reshape(batch, -1, g * p * p))  # b n d
        mask = F.pad(band_mask.to(values.device), (0, extra)).reshape(batch, -1, g).any(-1)  # b n
        x = x + self._pos_embed_for(x.shape[1]).to(x.dtype)
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)  # a learned cls token needs no position of its own
        return self.sequence(x, mask)

    def _pos_embed_for(self, num_tokens: int) -> torch.Tensor:
        """(1, num_tokens, d): the learned band positions, linearly resampled for another band count."""
        if num_tokens == self.pos_embed.shape[1]:
            return self.pos_embed
        return F.interpolate(self.pos_embed.transpose(1, 2), size=num_tokens, mode="linear",
                             align_corners=False).transpose(1, 2)


def scene_transform(tokenizer: HyperspectralTokenizer) -> Callable[[HyperspectralCube | torch.Tensor], torch.Tensor]:
    """A whole cube (h, w, bands) → (bands, p, p): the scene average-pooled to the tokenizer's p×p,
    so a file embeds as one sample (at p = 1, its mean spectrum). Pixel classification uses
    :class:`~metatransformer.datasets.hyperspectral.HyperspectralPixels` instead."""
    size = tokenizer.patch_size

    def apply(cube: HyperspectralCube | torch.Tensor) -> torch.Tensor:
        data = cube.data if isinstance(cube, HyperspectralCube) else cube
        return F.adaptive_avg_pool2d(data.permute(2, 0, 1).float(), size)

    return apply


def hyperspectral_augment(tokenizer: HyperspectralTokenizer
                          ) -> Callable[[HyperspectralCube | torch.Tensor], torch.Tensor]:
    """Training counterpart of :func:`scene_transform`: the (bands, p, p) patch turned by a random multiple
    of 90° and flipped with probability 1/2, i.e. one of the square's 8 symmetries (an overhead patch has no
    canonical orientation; the flips and rotations of patch-based HSI classifiers). Spectra are unchanged,
    so at p = 1 (the reference) it changes nothing.

    Args:
        tokenizer: the hyperspectral tokenizer the patch is fitted to (as :func:`scene_transform` fits it).

    Returns:
        a callable: a read cube or (h, w, bands) tensor → a randomly turned and flipped (bands, p, p) patch.
    """
    fit = scene_transform(tokenizer)

    def apply(cube: HyperspectralCube | torch.Tensor) -> torch.Tensor:
        patch = torch.rot90(fit(cube), int(torch.randint(4, ())), dims=(-2, -1))
        return patch.flip(-1) if bool(torch.rand(()) < 0.5) else patch

    return apply


register_modality("hyperspectral", tokenizer=HyperspectralTokenizer, reader=read_hyperspectral,
                  suffixes=HYPERSPECTRAL_SUFFIXES, collate=pad_collate, transform=scene_transform,
                  augment=hyperspectral_augment, mixing="mixup", aliases=("hsi", "spectral"))
