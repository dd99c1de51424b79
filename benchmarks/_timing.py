"""Helpers shared by the benchmarks: common arguments, interleaved runs, medians, and a matmul roofline."""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
        candidates: dict[str, Callable[[], object]],
        *,
        repeats: int,
        warmup: int = 1,
        device: torch.device | None = None,
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed round-robin so drift hits all of them alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def matmul_gflops(n: int = 2048, *, repeats: int = 5, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> float:
    """Achieved GFLOP/s of a square matmul: the practical ceiling for the transformer's dense work."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = interleaved_medians({"matmul": lambda: a @ b}, repeats=repeats, device=device)["matmul"]
    return 2 * n ** 3 / seconds / 1e9


def benchmark_parser(doc: str, *, preset: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: model preset, batch x tokens, repeats, device."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=preset)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser
