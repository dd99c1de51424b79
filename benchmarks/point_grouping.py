"""Point grouping throughput: farthest point sampling + kNN, clouds per second, ours against native baselines.

The point tokenizer's grouping step at the reference configuration: a batch of 32 clouds x 1024
points, 256 FPS centres, k = 32 neighbours. Ours is batched plain torch (``farthest_point_sample`` +
``knn``); the baselines, timed in the same process and interleaved with ours:

- ``fpsample`` (native, one cloud per call): vanilla FPS (same picks as ours) and bucket FPS
  (QuickFPS, kd-tree; its picks differ from textbook FPS), followed by a kNN of the centres with
  scipy's ``cKDTree`` (C++; as many query workers as torch has threads);
- ``torch.cdist + topk`` as a plain kNN;
- pytorch3d's ``sample_farthest_points`` + ``knn_points`` when it is installed (it has no PyPI wheel).

Every method's FPS indices are checked against ours before timing (same start point 0).

    python benchmarks/point_grouping.py [--device cpu|cuda] [--threads 1] [--batch 32] [--points 1024]

"ours" is :func:`group_points`, what the tokenizer runs: FPS whose distance rows are kept for the
kNN; "fps then separate knn" calls the public ``farthest_point_sample`` and ``knn``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians  # noqa: E402

from metatransformer.geometry import (  # noqa: E402
    _pytorch3d_ops,
    farthest_point_sample,
    gather_points,
    group_points,
    knn,
)


def ours_separate(points: torch.Tensor, centres: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = farthest_point_sample(points, centres)
    return idx, knn(gather_points(points, idx), points, k)


def native(fps: Callable[[np.ndarray, int], np.ndarray], clouds: np.ndarray, centres: int, k: int, workers: int
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    from scipy.spatial import cKDTree

    out = []
    for cloud in clouds:
        idx = fps(cloud, centres)
        out.append((idx, cKDTree(cloud).query(cloud[idx], k, workers=workers)[1]))
    return out


def cdist_topk(points: torch.Tensor, centre_points: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cdist(centre_points, points).topk(k, dim=-1, largest=False).indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--centres", type=int, default=256)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads and cKDTree workers (default: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = torch.get_num_threads()
    fpsample = __import__("fpsample")
    device = torch.device(args.device)
    torch.manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(args.batch, args.points, 3), dim=-1)
    points = points * torch.rand(args.batch, args.points, 1) ** (1 / 3)  # uniform in the unit ball
    clouds = points.numpy()
    points = points.to(device)

    idx, groups = group_points(points, args.centres, args.k)
    assert torch.equal(groups, ours_separate(points, args.centres, args.k)[1])
    fps_methods = {
        "fpsample.fps_sampling": lambda c, m: fpsample.fps_sampling(c, m, start_idx=0),
        "fpsample.bucket_fps_kdline (h=3)": lambda c, m: fpsample.bucket_fps_kdline_sampling(c, m, h=3, start_idx=0),
    }
    for name, fps in fps_methods.items():  # same picks as ours (start 0, exact FPS)
        theirs = np.stack([fps(c, args.centres) for c in clouds]).astype(np.int64)
        agree = (theirs == idx.cpu().numpy()).mean()
        print(f"{name}: {agree:.1%} of FPS indices equal ours")

    centre_points = gather_points(points, idx)
    candidates: dict[str, Callable[[], object]] = {
        "ours (torch fps + knn)": lambda: group_points(points, args.centres, args.k),
        "ours, fps then separate knn": lambda: ours_separate(points, args.centres, args.k),
    }
    candidates["ours: fps only"] = lambda: farthest_point_sample(points, args.centres)
    candidates["ours: knn only"] = lambda: knn(centre_points, points, args.k)
    candidates["torch.cdist + topk (knn only)"] = lambda: cdist_topk(points, centre_points, args.k)
    if device.type == "cpu":
        from scipy.spatial import cKDTree

        for name, fps in fps_methods.items():
            candidates[f"{name} + cKDTree"] = lambda fps=fps: native(fps, clouds, args.centres, args.k, workers)
        exact = fps_methods["fpsample.fps_sampling"]
        candidates["fpsample.fps_sampling (fps only)"] = lambda: [exact(c, args.centres) for c in clouds]
        queries = centre_points.cpu().numpy()
        candidates["cKDTree build + query (knn only)"] = lambda: [
            cKDTree(c).query(q, args.k, workers=workers) for c, q in zip(clouds, queries)]
    ops = _pytorch3d_ops()
    if ops is not None:
        def pytorch3d_grouping():
            _, p3_idx = ops.sample_farthest_points(points, K=args.centres)
            return ops.knn_points(gather_points(points, p3_idx), points, K=args.k).idx
        candidates["pytorch3d fps + knn_points"] = pytorch3d_grouping
    seconds = interleaved_medians(candidates, repeats=args.repeats, warmup=2, device=device)

    print(f"\nFPS {args.points} -> {args.centres} centres + kNN k={args.k}, batch {args.batch}, {device} "
          f"({torch.get_num_threads()} torch threads); pytorch3d: {'yes' if ops is not None else 'not installed'}")
    for name, s in seconds.items():
        print(f"  {name:<48} {args.batch / s:10.1f} clouds/s   {s * 1e3:8.2f} ms/batch")
    print("ratios (their time / our time, > 1: ours is faster):")
    for name, s in seconds.items():
        if not name.startswith("ours"):  # a kNN-only (FPS-only) baseline is compared with our kNN (FPS) only
            part = ("ours: knn only" if "knn only" in name else "ours: fps only" if "fps only" in name
                    else "ours (torch fps + knn)")
            print(f"  ours vs {name:<44} {s / seconds[part]:5.2f}x")


if __name__ == "__main__":
    main()
