"""Point-cloud kernels in batched plain torch: farthest point sampling, k nearest neighbours, grouping.

pytorch3d's kernels are used when it is importable. They live below both the readers (resampling a
cloud) and the point tokenizer (grouping), so neither imports the other.
"""
from __future__ import annotations

import functools
from types import ModuleType

import torch

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


def interpolate_points(values: torch.Tensor, points: torch.Tensor, query: torch.Tensor, k: int = 3, *,
                       mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """PointNet++ feature propagation: the value at each query point is the inverse-distance weighted mean
    of the values of its ``k`` nearest points, weights ``1 / (d² + eps)`` on squared distances (as in
    PointNet++'s and Point-MAE's PyTorch code), normalised to sum to 1.

    The neighbours are found in (at least) float32 with autocast off (bf16 distances would pick the wrong
    ones); the distances of the chosen ones are then computed exactly, coordinate by coordinate.

    Args:
        values: (b, m, c) the values at ``points``.
        points: (b, m, 3) where the values are known (e.g. group centres).
        query: (b, n, 3) where to interpolate them (e.g. every input point).
        k: neighbours per query point (fewer when there are fewer points).
        mask: (b, m) bool, True = a real point; padding never contributes (a cloud with fewer than ``k``
            real points uses those it has).
        eps: keeps the weight of a query point on top of a point finite.

    Returns:
        (b, n, c) in the dtype of ``values``.
    """
    b, m, _ = points.shape
    k = min(k, m)
    with torch.autocast(points.device.type, enabled=False):
        dtype = torch.promote_types(points.dtype, torch.float32)
        coords, query = points.detach().to(dtype), query.detach().to(dtype)
        # |q - p|^2 = |q|^2 - 2 q.p + |p|^2: one batched matmul, no (b, n, m, 3) difference tensor
        dist = torch.baddbmm(coords.square().sum(-1).unsqueeze(1), query, coords.transpose(1, 2), alpha=-2)  # b n m
        if mask is not None:
            dist = dist.masked_fill(~mask.unsqueeze(1), float("inf"))
        nearest = dist.topk(k, dim=-1, largest=False)
        exact = (gather_points(coords, nearest.indices) - query.unsqueeze(2)).square().sum(-1)  # b n k
        weights = torch.where(nearest.values.isinf(), 0.0, 1.0 / (exact + eps))
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    neighbours = gather_points(values, nearest.indices)  # b n k c
    return (neighbours * weights.unsqueeze(-1).to(values.dtype)).sum(2)
