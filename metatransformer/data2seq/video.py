"""Video clips as space-time tubelet tokens, optionally inflated from a 2-D ViT patch embedding."""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from .._validation import check_range
from ..datasets.image import CLIP_MEAN, CLIP_STD
from ..datasets.video import (
    MAX_FRAMES,
    MAX_VIDEO_SIDE,
    VIDEO_SUFFIXES,
    VideoClip,
    clip_starts,
    read_video,
    spatial_views,
    video_collate,
    video_transform,
)
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer
from .image import ImageTokenizer


class VideoTokenizer(Tokenizer):
    """Tubelet embedding: Conv3d(kernel = stride = (tubelet, patch, patch)) → cls token → separable
    space-time position embedding (temporal[t] + spatial[h, w]) → pre-norm.

    16 frames at 224² give 8 × 14 × 14 = 1568 tokens (+ cls). The temporal embedding (linear) and the
    spatial one (bicubic, as timm) are resampled for other frame counts and sizes. A 2-D ViT stem
    (timm / OpenCLIP, or an :class:`ImageTokenizer`) inflates into this one: its patch kernel is
    repeated over the tubelet and divided by its length, its spatial positions and cls token are kept
    and the temporal positions start at zero, so on a clip of identical frames every time step's
    tokens equal the image tokenizer's tokens, positions included.

    Args:
        dim: token width D.
        patch_size: spatial patch side.
        tubelet_size: frames per token.
        num_frames: the frame count the temporal position embedding is learned for.
        img_size: the frame side the spatial position embedding is learned for.
        in_chans: input channels.
        cls_token: prepend a learned cls token.
        pre_norm: LayerNorm on the tokens (CLIP's ``ln_pre``).
        patch_bias: bias in the tubelet projection.
        norm_eps: eps of the pre-norm.
        mean: per-channel normalisation mean of the default preprocessing (CLIP's by default).
        std: per-channel normalisation std of the default preprocessing.

    Inputs:
        clips: (b, in_chans, t, h, w) float, normalised, or a :class:`~metatransformer.datasets.VideoClip`
            (frames and a (b, t) frame mask, False = padding); t a multiple of ``tubelet_size``, h and w
            multiples of ``patch_size``.

    Returns:
        tokens (b, [1 +] t/tubelet · h/p · w/p, D), ordered time-major; mask (b, n): a tubelet is
        padding when all its frames are.
    """

    def __init__(
            self,
            *,
            dim: int,
            patch_size: int = 16,
            tubelet_size: int = 2,
            num_frames: int = 16,
            img_size: int = 224,
            in_chans: int = 3,
            cls_token: bool = True,
            pre_norm: bool = False,
            patch_bias: bool = True,
            norm_eps: float = 1e-5,
            mean: tuple[float, ...] | None = None,
            std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.patch_size", patch_size, low=1, high=MAX_VIDEO_SIDE)
        check_range(f"{name}.img_size", img_size, low=patch_size, high=MAX_VIDEO_SIDE)
        check_range(f"{name}.tubelet_size", tubelet_size, low=1, high=MAX_FRAMES)
        check_range(f"{name}.num_frames", num_frames, low=tubelet_size, high=MAX_FRAMES)
        check_range(f"{name}.in_chans", in_chans, low=1, high=64)
        check_range(f"{name}.norm_eps", norm_eps, low=0, low_inclusive=False)
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(f"{name}: img_size={img_size} must be a multiple of patch_size={patch_size} and "
                             f"num_frames={num_frames} of tubelet_size={tubelet_size}")
        # CLIP's statistics, averaged over channels for other channel counts
        default_mean, default_std = ((CLIP_MEAN, CLIP_STD) if in_chans == 3 else
                                     ((sum(CLIP_MEAN) / 3,) * in_chans, (sum(CLIP_STD) / 3,) * in_chans))
        self.mean = tuple(mean) if mean is not None else default_mean
        self.std = tuple(std) if std is not None else default_std
        if len(self.mean) != in_chans or len(self.std) != in_chans or min(self.std) <= 0:
            raise ValueError(f"{name}: mean and std need {in_chans} values each (std > 0), "
                             f"got {self.mean} and {self.std}")
        self.patch_size, self.tubelet_size, self.in_chans = patch_size, tubelet_size, in_chans
        self.num_frames, self.img_size = num_frames, img_size
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        kernel = (tubelet_size, patch_size, patch_size)
        self.patch_embed = nn.Conv3d(in_chans, dim, kernel_size=kernel, stride=kernel, bias=patch_bias)
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        gt, gh, gw = self.grid_size
        self.pos_embed_spatial = nn.Parameter(torch.randn(1, gh * gw, dim) * 0.02)
        self.pos_embed_temporal = nn.Parameter(torch.randn(1, gt, dim) * 0.02)
        self.pos_embed_cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if cls_token else None
        self.norm_pre = nn.LayerNorm(dim, eps=norm_eps) if pre_norm else nn.Identity()

    def forward(self, clips: torch.Tensor | VideoClip) -> TokenSequence:
        frames, frame_mask = clips if isinstance(clips, tuple) else (clips, None)
        if frames.dim() != 5 or frames.shape[1] != self.in_chans:
            raise ValueError(f"video tokenizer expects (batch, {self.in_chans}, frames, height, width) clips, "
                             f"got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise TypeError(f"video tokenizer expects float clips (normalised), got {frames.dtype}")
        batch, _, t, h, w = frames.shape
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"clip of {t} frames at {h}x{w}: frames must be a multiple of {self.tubelet_size} "
                             f"and sides of {self.patch_size}")
        x = self.patch_embed(frames)  # b d gt gh gw
        grid = tuple(x.shape[-3:])
        x = x.flatten(2).transpose(1, 2)  # b (gt gh gw) d
        x = x + self._pos_embed_for(grid).to(x.dtype)
        if frame_mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:
            if frame_mask.shape != (batch, t):
                raise ValueError(f"frame mask must be ({batch}, {t}), got {tuple(frame_mask.shape)}")
            tubelets = frame_mask.to(x.device).reshape(batch, grid[0], self.tubelet_size).any(-1)  # b gt
            mask = tubelets[:, :, None].expand(-1, -1, grid[1] * grid[2]).flatten(1)  # b (gt gh gw)
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
            x = torch.cat([x[:, :1] + self.pos_embed_cls.to(x.dtype), x[:, 1:]], dim=1)
        return self.sequence(self.norm_pre(x), mask)

    def _pos_embed_for(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """(1, gt·gh·gw, d): temporal[t] + spatial[h, w], each resampled to ``grid`` when it differs."""
        gt, gh, gw = grid
        temporal = self.pos_embed_temporal
        if gt != temporal.shape[1]:
            temporal = F.interpolate(temporal.transpose(1, 2), size=gt, mode="linear",
                                     align_corners=False).transpose(1, 2)
        spatial = self.pos_embed_spatial
        if (gh, gw) != self.grid_size[1:]:
            spatial = resample_abs_pos_embed(spatial, new_size=[gh, gw], old_size=list(self.grid_size[1:]),
                                             num_prefix_tokens=0)
        return (temporal[:, :, None] + spatial[:, None]).flatten(1, 2)  # 1 (gt gh gw) d

    @classmethod
    def stem_from_checkpoint(cls, weights: Mapping[str, torch.Tensor], source_format: str
                             ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """A 2-D ViT stem (timm / OpenCLIP) to inflate: the image tokenizer's options and weights
        (its ``patch_embed.weight`` stays 2-D; :meth:`load_stem` inflates it to this tubelet)."""
        return ImageTokenizer.stem_from_checkpoint(weights, source_format)

    def load_stem(self, state: Mapping[str, torch.Tensor]) -> None:
        """Inflate an image stem (keys of :class:`ImageTokenizer`: ``patch_embed.weight`` (d, c, p, p),
        ``pos_embed`` (1, [1 +] g², d), ``cls_token.token``, ``norm_pre.*``) into this tokenizer.

        The kernel is repeated over the tubelet and divided by its length (so a still clip gives the
        image's patch tokens), its channels adapted to ``in_chans``, and the spatial positions resampled
        to this grid; the temporal positions are set to zero.
        """
        state = dict(state)
        patch = state.pop("patch_embed.weight")
        if patch.dim() != 4 or patch.shape[-1] != self.patch_size or patch.shape[-2] != self.patch_size:
            raise ValueError(f"video tokenizer: a 2-D stem with {self.patch_size}x{self.patch_size} patches is "
                             f"needed to inflate, got a patch weight of shape {tuple(patch.shape)}")
        if patch.shape[1] != self.in_chans:
            patch = adapt_input_conv(self.in_chans, patch, base_chans=patch.shape[1])
        ours = {"patch_embed.weight": patch.unsqueeze(2).repeat(1, 1, self.tubelet_size, 1, 1) / self.tubelet_size}
        if "patch_embed.bias" in state:
            ours["patch_embed.bias"] = state.pop("patch_embed.bias")
        pos = state.pop("pos_embed")
        num_prefix = int("cls_token.token" in state)
        old = math.isqrt(pos.shape[1] - num_prefix)
        spatial = pos[:, num_prefix:]
        if (old, old) != self.grid_size[1:]:
            spatial = resample_abs_pos_embed(spatial, new_size=list(self.grid_size[1:]), old_size=[old, old],
                                             num_prefix_tokens=0)
        ours["pos_embed_spatial"] = spatial
        ours["pos_embed_temporal"] = torch.zeros_like(self.pos_embed_temporal)
        if num_prefix:
            ours["cls_token.token"] = state.pop("cls_token.token")
            ours["pos_embed_cls"] = pos[:, :1]
        ours.update({k: state.pop(k) for k in ("norm_pre.weight", "norm_pre.bias") if k in state})
        if state:
            raise ValueError(f"video tokenizer: unused stem weights {sorted(state)}")
        missing, unexpected = self.load_state_dict(ours, strict=False)
        if missing or unexpected:
            raise ValueError(f"video tokenizer: the image stem does not fit; missing {missing}, "
                             f"unexpected {unexpected}")

    @classmethod
    def from_image_tokenizer(cls, image: ImageTokenizer, *, num_frames: int = 16, tubelet_size: int = 2
                             ) -> "VideoTokenizer":
        """A video tokenizer inflated from ``image`` (same width, patch, size, channels, cls, pre-norm, mean/std)."""
        video = cls(dim=image.dim, patch_size=image.patch_size, tubelet_size=tubelet_size, num_frames=num_frames,
                    img_size=image.img_size, in_chans=image.in_chans, cls_token=image.cls_token is not None,
                    pre_norm=isinstance(image.norm_pre, nn.LayerNorm), patch_bias=image.patch_embed.bias is not None,
                    norm_eps=getattr(image.norm_pre, "eps", 1e-5), mean=image.mean, std=image.std)
        video.load_stem({k: v.detach().clone() for k, v in image.state_dict().items()})
        return video


def video_eval_transform(tokenizer: VideoTokenizer) -> Callable[[VideoClip], VideoClip]:
    """A read clip → resized, centre-cropped, normalised to the tokenizer's size and statistics, its frame
    count fitted to ``tokenizer.num_frames`` (a longer clip's centre window: the single-clip test; padding
    masked); RGB is averaged for a 1-channel tokenizer."""
    transform = video_transform(tokenizer.img_size, num_frames=tokenizer.num_frames, mean=tokenizer.mean,
                                std=tokenizer.std)
    return lambda clip: transform(_channels(tokenizer, clip))


def video_augment(tokenizer: VideoTokenizer, *, scale: tuple[float, float] = (0.25, 1.0)
                  ) -> Callable[[VideoClip], VideoClip]:
    """Training counterpart of :func:`video_eval_transform`: one random resized crop (area ``scale``: 0.25–1,
    this library's video default, milder than VideoMAE's 0.08–1 on Kinetics) and flip for every frame of a
    clip (VideoMAE's / SlowFast's clip-consistent spatial augmentation), and a random window of
    ``num_frames`` consecutive frames when the reader gives more (temporal jitter: read more frames than the
    tokenizer takes, e.g. ``reader_options {"video": {"num_frames": 32, "stride": 2}}``)."""
    transform = video_transform(tokenizer.img_size, num_frames=tokenizer.num_frames, mean=tokenizer.mean,
                                std=tokenizer.std, train=True, scale=scale)
    return lambda clip: transform(_channels(tokenizer, clip))


def video_views(tokenizer: VideoTokenizer, temporal: int, spatial: int, **reader_options: Any
                ) -> Callable[[str | os.PathLike], list[VideoClip]]:
    """Test-time views of a video file (the Kinetics / UCF101 protocol): ``temporal`` clips of the tokenizer's
    frame count, their starts spaced uniformly over the video
    (:func:`~metatransformer.datasets.video.clip_starts`), each read with ``read_video(path, **reader_options,
    num_frames=tokenizer.num_frames, start=...)``, × ``spatial`` crops (1: centre; 3: start, centre, end of
    the long side), fitted as in evaluation. One temporal view is the default read (``reader_options`` as
    given, e.g. more frames than the tokenizer takes for training's temporal jitter) and its centre window,
    so one temporal and one spatial view is :func:`video_eval_transform` of the default read.

    Temporal views need clips shorter than the video: a ``stride`` in ``reader_options`` (without one, a
    clip spreads its frames over the whole video).

    Args:
        tokenizer: the video tokenizer the views are fitted to.
        temporal: clips per file (>= 1).
        spatial: crops per clip (1 or 3).
        reader_options: keyword arguments of :func:`~metatransformer.datasets.read_video`.

    Returns:
        ``path -> [VideoClip, ...]``: ``temporal × spatial`` clips, clip-major.
    """
    if temporal < 1:
        raise ValueError(f"temporal views must be >= 1, got {temporal}")
    if temporal > 1 and reader_options.get("stride") is None:
        raise ValueError("temporal views are clips spaced over the video: give the video reader a stride "
                         "(reader_options {\"video\": {\"stride\": 4}}); without one a clip samples the whole video")
    crops = spatial_views(tokenizer.img_size, spatial, num_frames=tokenizer.num_frames, mean=tokenizer.mean,
                          std=tokenizer.std)
    # several clips are spaced for the tokenizer's frame count: each is read at that length, not the reader's
    options = reader_options if temporal == 1 else {**reader_options, "num_frames": tokenizer.num_frames}

    def apply(path: str | os.PathLike) -> list[VideoClip]:
        stride = reader_options.get("stride") or 1  # unused for one clip
        starts = clip_starts(path, temporal, num_frames=tokenizer.num_frames, stride=stride,
                             start=reader_options.get("start", 0.0))
        clips = [read_video(path, **{**options, "start": start}) for start in starts]
        return [view for clip in clips for view in crops(_channels(tokenizer, clip))]

    return apply


def _channels(tokenizer: VideoTokenizer, clip: VideoClip) -> VideoClip:
    """RGB averaged to one channel for a 1-channel tokenizer."""
    frames, mask = clip
    if tokenizer.in_chans == 1 and frames.shape[0] != 1:
        frames = frames.mean(0, keepdim=True)
    return VideoClip(frames, mask)


register_modality("video", tokenizer=VideoTokenizer, reader=read_video, suffixes=VIDEO_SUFFIXES,
                  collate=video_collate, transform=video_eval_transform, augment=video_augment, mixing="cutmix",
                  views=video_views, aliases=("clip", "movie"))
