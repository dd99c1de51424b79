"""Image-like modalities: RGB images, infrared (thermal) and X-ray, as ViT patch tokens."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal, Mapping

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from .._validation import check_range
from ..datasets.image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, LUMA_WEIGHTS, image_transform, read_image
from ..datasets.infrared import INFRARED_SUFFIXES, read_infrared
from ..datasets.xray import XRAY_SUFFIXES, read_xray
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer, full_mask, grid_pos_embed

# Source key (relative to a timm / OpenCLIP visual tower) -> our image tokenizer's key.
_STEM_KEYS = {
    "timm": {"patch_embed.proj.weight": "patch_embed.weight", "patch_embed.proj.bias": "patch_embed.bias",
             "cls_token": "cls_token.token", "pos_embed": "pos_embed",
             "norm_pre.weight": "norm_pre.weight", "norm_pre.bias": "norm_pre.bias"},
    "open_clip": {"conv1.weight": "patch_embed.weight", "class_embedding": "cls_token.token",
                  "positional_embedding": "pos_embed", "ln_pre.weight": "norm_pre.weight", "ln_pre.bias": "norm_pre.bias"},
}
MAX_IMAGE_SIDE = 8192


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
        mean: per-channel normalisation mean of the default preprocessing (CLIP's by default,
            averaged over channels for 1-channel inputs); saved with the model.
        std: per-channel normalisation std, likewise.
        interpolation: resize interpolation of the default preprocessing.
        crop_pct: the default preprocessing resizes the short side to ``img_size / crop_pct`` and
            centre-crops ``img_size`` (timm's ``crop_pct``). Pretrained weights set mean, std, size,
            interpolation and crop to what they were trained with.

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
            mean: tuple[float, ...] | None = None,
            std: tuple[float, ...] | None = None,
            interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic",
            crop_pct: float = 1.0,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.patch_size", patch_size, low=1, high=MAX_IMAGE_SIDE)
        check_range(f"{name}.img_size", img_size, low=patch_size, high=MAX_IMAGE_SIDE)
        check_range(f"{name}.norm_eps", norm_eps, low=0, low_inclusive=False)
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
        self.patch_size, self.img_size = patch_size, img_size
        self.in_chans = in_chans or self.default_in_chans
        check_range(f"{name}.in_chans", self.in_chans, low=1, high=64)
        self.mean = tuple(mean) if mean is not None else _default_stat(CLIP_MEAN, self.in_chans)
        self.std = tuple(std) if std is not None else _default_stat(CLIP_STD, self.in_chans)
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans or min(self.std) <= 0:
            raise ValueError(f"{name}: mean and std need {self.in_chans} values each (std > 0), "
                             f"got {self.mean} and {self.std}")
        check_range(f"{name}.crop_pct", crop_pct, low=0, high=1, low_inclusive=False)
        self.interpolation, self.crop_pct = interpolation, crop_pct
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
        x = x + grid_pos_embed(self.pos_embed, grid, self.grid_size, self.num_prefix_tokens)
        return self.sequence(self.norm_pre(x), mask)

    @classmethod
    def stem_from_checkpoint(cls, weights: Mapping[str, torch.Tensor], source_format: str
                             ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """Options and weights of the image stem in a full timm or OpenCLIP ViT checkpoint.

        Args:
            weights: the checkpoint's keys outside the transformer blocks, relative to the tower's prefix.
            source_format: ``"timm"``, ``"open_clip"`` or ``"metatransformer"`` (which has no stem).

        Returns:
            (tokenizer options that fit the stem, its weights in this tokenizer's key layout), or None
            when the checkpoint has no image stem.
        """
        keys = _STEM_KEYS.get(source_format, {})
        state = {ours: weights[theirs] for theirs, ours in keys.items() if theirs in weights}
        if "patch_embed.weight" not in state or state["patch_embed.weight"].dim() != 4 or "pos_embed" not in state:
            return None  # no stem, or a video (Conv3d) one
        if "cls_token.token" in state:
            state["cls_token.token"] = state["cls_token.token"].reshape(1, 1, -1)  # OpenCLIP stores (d,)
        if state["pos_embed"].dim() == 2:
            state["pos_embed"] = state["pos_embed"].unsqueeze(0)  # OpenCLIP stores (n, d)
        patch = state["patch_embed.weight"]  # (d, c, p, p)
        num_prefix = int("cls_token.token" in state)
        grid = math.isqrt(state["pos_embed"].shape[1] - num_prefix)
        options = {"patch_size": patch.shape[-1], "img_size": grid * patch.shape[-1], "cls_token": bool(num_prefix),
                   "pre_norm": "norm_pre.weight" in state, "patch_bias": "patch_embed.bias" in state}
        return options, state

    def load_stem(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a stem from :meth:`stem_from_checkpoint`: RGB patch weights are adapted to ``in_chans``
        (summed for 1 channel, as timm does) and the position embedding is resampled to this grid."""
        state = dict(state)
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


class InfraredTokenizer(ImageTokenizer):
    """Thermal images: the image tokenizer on 1 channel by default (pass ``in_chans=3`` for replicated RGB)."""

    default_in_chans = 1


class XRayTokenizer(ImageTokenizer):
    """Radiographs: the image tokenizer on 1 channel by default; 12–16-bit inputs are scaled to [0, 1] by the reader."""

    default_in_chans = 1


def _default_stat(rgb: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return rgb if channels == 3 else (sum(rgb) / 3,) * channels


def image_eval_transform(tokenizer: ImageTokenizer) -> Callable[[torch.Tensor], torch.Tensor]:
    """(c, h, w) in [0, 1] → resized, centre-cropped, normalised to fit ``tokenizer`` (its size, channels,
    mean and std); grayscale and RGB items are converted to the tokenizer's channel count."""
    return _fitted(tokenizer, image_transform(tokenizer.img_size, mean=tokenizer.mean, std=tokenizer.std,
                                              interpolation=tokenizer.interpolation, crop_pct=tokenizer.crop_pct))


def image_augment(tokenizer: ImageTokenizer, *, scale: tuple[float, float] = (0.08, 1.0)
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training counterpart of :func:`image_eval_transform`: random resized crop (area ``scale``; the
    Inception / timm / DeiT default 0.08–1) and horizontal flip instead of resize + centre crop."""
    return _fitted(tokenizer, image_transform(tokenizer.img_size, mean=tokenizer.mean, std=tokenizer.std,
                                              interpolation=tokenizer.interpolation, train=True, scale=scale))


def _fitted(tokenizer: ImageTokenizer, transform: Callable[[torch.Tensor], torch.Tensor]
            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``transform`` after converting the item to the tokenizer's channels (luma for 1, replicated grey for 3)."""

    def apply(image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] != tokenizer.in_chans:
            if tokenizer.in_chans == 1 and image.shape[0] == 3:
                image = torch.einsum("c,chw->hw", image.new_tensor(LUMA_WEIGHTS), image)[None]
            elif image.shape[0] == 1:
                image = image.expand(tokenizer.in_chans, -1, -1)
            else:
                raise ValueError(f"a {image.shape[0]}-channel image does not fit a {tokenizer.in_chans}-channel "
                                 "tokenizer")
        return transform(image)

    return apply


_IMAGE_LIKE = {"transform": image_eval_transform, "augment": image_augment, "mixing": "cutmix"}
register_modality("image", tokenizer=ImageTokenizer, reader=read_image, suffixes=IMAGE_SUFFIXES, **_IMAGE_LIKE,
                  aliases=("rgb", "vision"))
# Infrared claims .npy and X-ray .dcm; their .png/.tif files infer "image" (registered first): pass modality=.
register_modality("infrared", tokenizer=InfraredTokenizer, reader=read_infrared, suffixes=INFRARED_SUFFIXES,
                  **_IMAGE_LIKE, aliases=("thermal", "ir"))
register_modality("xray", tokenizer=XRayTokenizer, reader=read_xray, suffixes=XRAY_SUFFIXES, **_IMAGE_LIKE,
                  aliases=("x_ray", "radiograph"))
