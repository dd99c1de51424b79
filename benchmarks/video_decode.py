"""Clips decoded per second: our reader (``read_video``, PyAV backend) against decord on the same mp4s.

Each clip is a 10 s H.264 mp4 (written here with PyAV: a panning smooth scene with a moving square,
yuv420p, libx264 defaults, so with B-frames);
both decode the same 16 uniformly sampled frames per clip (the segment centres ``read_video`` picks)
to RGB. Ours returns float32 (3, 16, h, w) in [0, 1] with a frame mask; decord returns uint8 — the
conversion is counted against ours. Timings are medians of interleaved runs in one process, for
each GOP length (x264's default key-frame interval of 250 frames = one key frame per clip, and a
2 s one, where seeking pays).

    python benchmarks/video_decode.py --clips 8 --size 320x240 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from _timing import interleaved_medians

from metatransformer.datasets.video import read_video


def write_clip(path: Path, *, seconds: float, fps: int, width: int, height: int, gop: int, seed: int) -> Path:
    """Camera-like content: a smooth random scene panning slowly, with a bright square moving across it
    (x264 then uses B-frames, as on natural video)."""
    import av
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(1, 3, height // 16, width // 16)).astype(np.float32))
    scene = F.interpolate(coarse, size=(2 * height, 2 * width), mode="bicubic").clamp(0, 255)
    scene = scene[0].permute(1, 2, 0).to(torch.uint8).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(int(seconds * fps)):
            y, x = i % height, (2 * i) % width
            frame = scene[y:y + height, x:x + width].copy()
            col = (4 * i) % (width - 32)
            frame[height // 3:height // 3 + 32, col:col + 32] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def uniform_indices(count: int, num_frames: int) -> list[int]:
    return [int((k + 0.5) * count / num_frames) for k in range(num_frames)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--gops", default="250,50", help="key-frame intervals to test, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        import decord
    except ImportError:
        sys.exit("decord is not installed (pip install decord): it is the baseline of this benchmark")
    width, height = (int(v) for v in args.size.split("x"))
    count = int(args.seconds * args.fps)
    indices = uniform_indices(count, args.frames)

    print(f"{args.clips} clips of {args.seconds:g} s, {width}x{height} @ {args.fps} fps ({count} frames), "
          f"{args.frames} frames sampled per clip, median of {args.repeats} interleaved runs; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        for gop in (int(g) for g in args.gops.split(",")):
            paths = [write_clip(Path(folder) / f"gop{gop}_{i}.mp4", seconds=args.seconds, fps=args.fps,
                                width=width, height=height, gop=gop, seed=i) for i in range(args.clips)]

            def ours() -> None:
                for path in paths:
                    read_video(path, args.frames, backend="pyav")

            def baseline() -> None:
                for path in paths:
                    decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()

            # the same frames, to within codec rounding: both decoders read the same file
            clip = read_video(paths[0], args.frames, backend="pyav")
            reference = decord.VideoReader(str(paths[0])).get_batch(indices).asnumpy()
            diff = np.abs((clip.frames.permute(1, 2, 3, 0).numpy() * 255).round() - reference).max()
            seconds = interleaved_medians({"ours": ours, "decord": baseline}, repeats=args.repeats)
            ours_rate, decord_rate = args.clips / seconds["ours"], args.clips / seconds["decord"]
            print(f"GOP {gop:4d}: ours (PyAV) {ours_rate:7.1f} clips/s | decord {decord_rate:7.1f} clips/s | "
                  f"ratio {ours_rate / decord_rate:.2f}x (goal >= 0.8x) | max frame difference {diff:.0f}/255")


if __name__ == "__main__":
    main()
