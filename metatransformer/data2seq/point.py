"""Point clouds: a mini-PointNet group tokenizer (Point-BERT style) over farthest-point-sampled centres
and their k nearest neighbours (the kernels, re-exported here, live in :mod:`metatransformer.geometry`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range
from ..batching import Padded, stack_or_pad_collate
from ..datasets.point_cloud import (
    MAX_POINTS,
    POINT_CLOUD_SUFFIXES,
    normalize_point_cloud,
    read_point_cloud,
    resample_point_cloud,
)
from ..geometry import farthest_point_sample, gather_points, group_points, knn
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

__all__ = ["MiniPointNet", "PointCloudTokenizer", "PointGroups", "farthest_point_sample", "gather_points",
           "group_points", "knn", "perturb_points", "point_cloud_augment", "point_cloud_transform"]

# Shape legend: b batch, n points, m query points / centres, k neighbours, c channels, d width.


@dataclass
class PointGroups:
    """What the point-cloud tokenizer records in its :class:`TokenSequence` (``context``) for per-point
    heads, which map its tokens back onto the points (e.g. by interpolating from the centres).

    Attributes:
        points: (b, n, in_chans) the tokenizer's input points, xyz first (padding rows included).
        centres: (b, m, 3) the xyz of each group's centre, in the order of the content tokens.
    """

    points: torch.Tensor
    centres: torch.Tensor


class MiniPointNet(nn.Module):
    """Point-BERT's group encoder: shared per-point MLP, max-pool, concat, second MLP, max-pool.

    Inputs:
        groups: (bg, k, c) points of each group (xyz relative to its centre, then features).

    Returns:
        (bg, dim) one feature per group.
    """

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Conv1d(in_chans, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                   nn.Conv1d(128, 256, 1))
        self.second = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                    nn.Conv1d(512, dim, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        x = self.first(groups.transpose(1, 2))  # bg 256 k
        pooled = x.amax(-1, keepdim=True)  # bg 256 1
        x = self.second(torch.cat([pooled.expand_as(x), x], dim=1))  # bg d k
        return x.amax(-1)


class PointCloudTokenizer(Tokenizer):
    """Point groups as tokens: FPS centres, kNN groups, a mini-PointNet per group, MLP position of the centre.

    ``num_groups`` centres are picked by farthest point sampling (from point 0); each takes its
    ``group_size`` nearest points, expressed relative to the centre and followed by their extra
    features (normals, colours); a mini-PointNet (1x1 conv 3→128→256, concat with the max-pool,
    512→512→D, max over the group) embeds each group, and ``MLP(3→128→D)`` of the centre's xyz is
    added as its position. With ModelNet40's 1024 points: 256 tokens + cls at k = 32.

    Args:
        dim: token width D.
        num_points: points per cloud of the default preprocessing (resampled from the file).
        num_groups: centres (tokens) per cloud.
        group_size: neighbours per centre (k).
        in_chans: channels per point: 3 (xyz) plus extra features (6 with normals, 9 with colours too).
        cls_token: prepend a learned cls token.
        normalize: the default preprocessing centres each cloud and scales it into the unit sphere.

    Inputs:
        points: (b, n, in_chans) float, xyz first; or a :class:`~metatransformer.batching.Padded` of
            them with a (b, n) mask of real points. Clouds of fewer points than ``num_groups`` (or
            ``group_size``) are padded to that many masked points.

    Returns:
        tokens (b, [1 +] num_groups, D) and mask (b, n): centres beyond a padded cloud's real points
        are masked; its ``context`` is a :class:`PointGroups` (the input points and the centres).
    """

    def __init__(
            self,
            *,
            dim: int,
            num_points: int = 1024,
            num_groups: int = 256,
            group_size: int = 32,
            in_chans: int = 3,
            cls_token: bool = True,
            normalize: bool = True,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.num_points", num_points, low=1, high=MAX_POINTS)
        check_range(f"{name}.num_groups", num_groups, low=1, high=num_points)
        check_range(f"{name}.group_size", group_size, low=1, high=num_points)
        check_range(f"{name}.in_chans", in_chans, low=3, high=64)
        self.num_points, self.num_groups, self.group_size = num_points, num_groups, group_size
        self.in_chans, self.normalize = in_chans, normalize
        self.group_embed = MiniPointNet(in_chans, dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)

    def forward(self, points: torch.Tensor | Padded) -> TokenSequence:
        points, mask = (points.values, points.mask) if isinstance(points, Padded) else (points, None)
        if points.dim() != 3 or points.shape[-1] != self.in_chans:
            raise ValueError(f"point_cloud tokenizer expects (batch, points, {self.in_chans}) points, "
                             f"got {tuple(points.shape)}")
        if not points.is_floating_point():
            raise TypeError(f"point_cloud tokenizer expects float points, got {points.dtype}")
        b, n, _ = points.shape
        inputs, short = points, max(self.num_groups, self.group_size) - n
        if short > 0:  # FPS and kNN need that many points: pad with masked ones (the centres repeat real points)
            mask = torch.ones(b, n, dtype=torch.bool, device=points.device) if mask is None else mask
            points, mask = F.pad(points, (0, 0, 0, short)), F.pad(mask, (0, short), value=False)
        xyz = points[..., :3]
        centre_idx, neighbour_idx = group_points(xyz, self.num_groups, self.group_size, mask=mask)  # b m, b m k
        centres = gather_points(xyz, centre_idx)  # b m 3
        groups = gather_points(points, neighbour_idx)  # b m k c
        groups = torch.cat([groups[..., :3] - centres.unsqueeze(2), groups[..., 3:]], dim=-1)
        tokens = self.group_embed(groups.flatten(0, 1)).view(b, self.num_groups, -1)  # b m d
        tokens = tokens + self.pos_embed(centres)
        if mask is None:
            token_mask = torch.ones(b, self.num_groups, dtype=torch.bool, device=points.device)
        else:  # FPS picks every real point before it repeats one
            token_mask = torch.arange(self.num_groups, device=points.device) < mask.sum(1, keepdim=True)
        if self.cls_token is not None:
            tokens, token_mask = self.cls_token(tokens, token_mask)
        return self.sequence(tokens, token_mask, PointGroups(inputs, centres))


def point_cloud_transform(tokenizer: PointCloudTokenizer) -> Callable[[torch.Tensor], torch.Tensor]:
    """(n, 3 + c) as read → centred and unit-sphere scaled (if ``tokenizer.normalize``) and resampled to
    ``tokenizer.num_points``, so clouds of any size stack into one batch."""

    def apply(points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 2 or points.shape[1] != tokenizer.in_chans:
            raise ValueError(f"the point_cloud tokenizer takes {tokenizer.in_chans} channels per point, the cloud "
                             f"has shape {tuple(points.shape)}; read it with the matching features=")
        if tokenizer.normalize:
            points = normalize_point_cloud(points)
        return resample_point_cloud(points, tokenizer.num_points)

    return apply


def perturb_points(
        points: torch.Tensor,
        *,
        scale: tuple[float, float] = (2 / 3, 3 / 2),
        translate: float = 0.2,
        jitter: float = 0.0,
        jitter_clip: float = 0.05,
        rotate: bool = False,
        up_axis: int = 1,
) -> torch.Tensor:
    """A random perturbation of a cloud's xyz (the first 3 columns of (n, 3 + c)); the other columns (colours,
    per-point labels) and the point order are kept, so per-point targets stay aligned. Normals read as extra
    columns are not rotated or rescaled with the points: keep ``rotate`` off and the scale range narrow for them.

    Defaults: Point-MAE's ModelNet40 fine-tuning (``PointcloudScaleAndTranslate``: scale U(2/3, 3/2) and
    translation U(-0.2, 0.2) per axis). PointNet's ``provider.py`` gives the optional ones: rotation by
    U(0, 2π) about y (ModelNet's up axis) and jitter N(0, 0.01²) clipped to ±0.05 (``jitter=0.01``).

    Args:
        points: (n, 3 + c).
        scale: per-axis scale range.
        translate: per-axis translation range ±``translate``.
        jitter: standard deviation of per-point Gaussian noise (0: none).
        jitter_clip: the noise is clipped to ±``jitter_clip``.
        rotate: rotate about ``up_axis`` by a uniform angle.
        up_axis: 0, 1 or 2 (x, y, z).

    Returns:
        (n, 3 + c), a new tensor.
    """
    if up_axis not in (0, 1, 2):
        raise ValueError(f"up_axis must be 0, 1 or 2, got {up_axis}")
    points = points.clone()
    xyz = points[:, :3]
    if rotate:
        angle = torch.rand(()) * 2 * torch.pi
        cos, sin = torch.cos(angle), torch.sin(angle)
        a, b = [axis for axis in range(3) if axis != up_axis]
        plane = xyz[:, [a, b]].clone()
        xyz[:, a], xyz[:, b] = plane[:, 0] * cos - plane[:, 1] * sin, plane[:, 0] * sin + plane[:, 1] * cos
    low, high = scale
    xyz.mul_(torch.empty(3).uniform_(low, high)).add_(torch.empty(3).uniform_(-translate, translate))
    if jitter:
        xyz.add_((torch.randn_like(xyz) * jitter).clamp_(-jitter_clip, jitter_clip))
    return points


def point_cloud_augment(
        tokenizer: PointCloudTokenizer,
        *,
        scale: tuple[float, float] = (2 / 3, 3 / 2),
        translate: float = 0.2,
        jitter: float = 0.0,
        jitter_clip: float = 0.05,
        rotate: bool = False,
        up_axis: int = 1,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training counterpart of :func:`point_cloud_transform`: the fitted cloud perturbed by
    :func:`perturb_points` (its options and defaults: Point-MAE's scale and translate)."""
    if up_axis not in (0, 1, 2):
        raise ValueError(f"up_axis must be 0, 1 or 2, got {up_axis}")
    fit = point_cloud_transform(tokenizer)
    options = dict(scale=scale, translate=translate, jitter=jitter, jitter_clip=jitter_clip, rotate=rotate,
                   up_axis=up_axis)
    return lambda points: perturb_points(fit(points), **options)


register_modality("point_cloud", tokenizer=PointCloudTokenizer, reader=read_point_cloud,
                  suffixes=POINT_CLOUD_SUFFIXES, collate=stack_or_pad_collate, transform=point_cloud_transform,
                  augment=point_cloud_augment, aliases=("point", "points", "pointcloud"))
