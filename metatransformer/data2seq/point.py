"""Point clouds: farthest point sampling + kNN grouping, and a mini-PointNet group tokenizer (Point-BERT style)."""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable

import torch
import torch.nn as nn

from .._validation import check_range
from ..batching import Padded, stack_collate
from ..datasets.point_cloud import (
    MAX_POINTS,
    POINT_CLOUD_SUFFIXES,
    normalize_point_cloud,
    read_point_cloud,
    resample_point_cloud,
)
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

# Shape legend: b batch, n points, m query points / centres, k neighbours, c channels, d width.


@functools.cache
def _pytorch3d_ops() -> ModuleType | None:
    """pytorch3d's fused CUDA/C++ kernels when it is installed (it has no PyPI wheel), else None."""
    try:
        from pytorch3d import ops
    except ImportError:
        return None
    return ops


def farthest_point_sample(xyz: torch.Tensor, k: int, start: int = 0, *,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Farthest point sampling: greedily pick the point farthest from those already picked.

    Exact (squared Euclidean distances, ties to the lowest index), batched, in plain torch; pytorch3d's
    kernel is used when it is importable (``start=0``, no mask).

    Args:
        xyz: (b, n, c) coordinates (c = 3 for xyz).
        k: points to pick, ``1 <= k <= n``.
        start: index of the first pick in every cloud.
        mask: (b, n) bool, True = a real point; padding is never picked (a cloud with fewer than ``k``
            real points repeats real points once all are picked).

    Returns:
        (b, k) int64 indices into ``n``.
    """
    b, n, c = xyz.shape
    if not 1 <= k <= n:
        raise ValueError(f"farthest_point_sample: k must be in [1, {n}] for {n} points, got {k}")
    if not 0 <= start < n:
        raise ValueError(f"farthest_point_sample: start must be in [0, {n}), got {start}")
    ops = _pytorch3d_ops()
    if ops is not None and start == 0 and mask is None and c == 3:
        return ops.sample_farthest_points(xyz, K=k)[1]
    return _farthest_point_sample(xyz, k, start, mask)[0]


def _farthest_point_sample(xyz: torch.Tensor, k: int, start: int, mask: torch.Tensor | None,
                           keep_distances: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(b, k) picks and, with ``keep_distances``, the (b, k, n) squared distances from each pick to
    every point, which FPS computes anyway (so a kNN of the picks needs no second distance matrix)."""
    b, n, c = xyz.shape
    # One (b, n) distance update per pick, a coordinate at a time: every op is a contiguous (b, n)
    # elementwise op (no strided reduction, no (b, n, c) temporary, no thread fan-out at ModelNet sizes).
    coords = xyz.detach().permute(2, 0, 1).contiguous()  # c b n
    flat = coords.view(c, b * n)
    offsets = torch.arange(b, device=xyz.device) * n
    nearest = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=xyz.device)
    if mask is not None:
        nearest.masked_fill_(~mask, -1.0)  # below any real distance: never the farthest
    picks = torch.empty(k, b, dtype=torch.long, device=xyz.device)
    picks[0] = start
    flat_pick = torch.empty(b, dtype=torch.long, device=xyz.device)
    diff = torch.empty_like(nearest)
    distances = torch.empty(b, k if keep_distances else 1, n, dtype=xyz.dtype, device=xyz.device)
    for i in range(k if keep_distances else k - 1):
        dist = distances[:, i if keep_distances else 0]
        torch.add(picks[i], offsets, out=flat_pick)
        centre = flat.index_select(1, flat_pick).unsqueeze(-1)  # c b 1
        torch.sub(coords[0], centre[0], out=diff)
        torch.mul(diff, diff, out=dist)
        for j in range(1, c):
            torch.sub(coords[j], centre[j], out=diff)
            dist.addcmul_(diff, diff)
        if i + 1 < k:
            torch.minimum(nearest, dist, out=nearest)
            torch.argmax(nearest, 1, out=picks[i + 1])
    picks = picks.T.contiguous()
    if mask is not None:  # a start on padding: repeat a real pick instead (FPS never picks padding after it)
        picks = torch.where(mask.gather(1, picks), picks, picks[:, -1:])
    return picks, distances if keep_distances else None


def group_points(xyz: torch.Tensor, num_groups: int, group_size: int, *,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FPS centres and their kNN groups in one pass: ``farthest_point_sample`` then ``knn`` of the
    centres, reusing the distances FPS computed (pytorch3d's kernels when importable, no mask).

    Args:
        xyz: (b, n, c) coordinates.
        num_groups: centres m.
        group_size: neighbours k per centre.
        mask: (b, n) bool, True = a real point.

    Returns:
        centre indices (b, m) and neighbour indices (b, m, k), nearest first, into ``n``.
    """
    b, n, c = xyz.shape
    if not 1 <= num_groups <= n or not 1 <= group_size <= n:
        raise ValueError(f"group_points: num_groups and group_size must be in [1, {n}], got {num_groups} "
                         f"and {group_size}")
    if _pytorch3d_ops() is not None and mask is None and c == 3:
        centres = farthest_point_sample(xyz, num_groups)
        return centres, knn(gather_points(xyz, centres), xyz, group_size)
    centres, distances = _farthest_point_sample(xyz, num_groups, 0, mask, keep_distances=True)
    return centres, _nearest(distances, group_size, mask)  # distances: b m n


def _nearest(dist: torch.Tensor, k: int, mask: torch.Tensor | None) -> torch.Tensor:
    """(b, m, n) squared distances → (b, m, k) indices of the k smallest, padding (mask False) excluded."""
    if mask is not None:
        dist = dist.masked_fill(~mask.unsqueeze(1), float("inf"))
    nearest = dist.topk(k, dim=-1, largest=False, sorted=True)
    if mask is None:
        return nearest.indices
    return torch.where(nearest.values.isinf(), nearest.indices[..., :1], nearest.indices)


def knn(query: torch.Tensor, points: torch.Tensor, k: int, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The ``k`` nearest points of every query point, nearest first (squared Euclidean distance).

    Batched plain torch (one distance matrix and ``topk``); pytorch3d's kernel when importable (no mask).

    Args:
        query: (b, m, c) query coordinates.
        points: (b, n, c) candidate coordinates.
        k: neighbours per query, ``1 <= k <= n``.
        mask: (b, n) bool, True = a real candidate; padding is never returned (a cloud with fewer than
            ``k`` real points repeats each query's nearest neighbour).

    Returns:
        (b, m, k) int64 indices into ``n``.
    """
    n = points.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"knn: k must be in [1, {n}] for {n} points, got {k}")
    if query.shape[0] != points.shape[0] or query.shape[2] != points.shape[2]:
        raise ValueError(f"knn: query {tuple(query.shape)} and points {tuple(points.shape)} differ in batch "
                         "or channels")
    ops = _pytorch3d_ops()
    if ops is not None and mask is None:
        return ops.knn_points(query, points, K=k, return_sorted=True).idx
    query, points = query.detach(), points.detach()
    # |q - p|^2 = |q|^2 - 2 q.p + |p|^2: one batched matmul, no (b, m, n, c) difference tensor.
    dist = torch.baddbmm(points.square().sum(-1).unsqueeze(1), query, points.transpose(1, 2), alpha=-2)  # b m n
    return _nearest(dist, k, mask)


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of (b, n, c) ``values`` at (b, ...) ``index`` → (b, ..., c)."""
    b, _, c = values.shape
    flat = index.reshape(b, -1, 1).expand(-1, -1, c)
    return values.gather(1, flat).reshape(*index.shape, c)


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
            them with a (b, n) mask of real points.

    Returns:
        tokens (b, [1 +] num_groups, D) and mask (b, n): centres beyond a padded cloud's real points
        are masked.
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
        if n < max(self.num_groups, self.group_size):
            raise ValueError(f"{n} points are fewer than num_groups={self.num_groups} or "
                             f"group_size={self.group_size}")
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
        return self.sequence(tokens, token_mask)


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


register_modality("point_cloud", tokenizer=PointCloudTokenizer, reader=read_point_cloud,
                  suffixes=POINT_CLOUD_SUFFIXES, collate=stack_collate, transform=point_cloud_transform,
                  aliases=("point", "points", "pointcloud"))
