"""Reading video clips (mp4, mkv, webm, avi, mov) into float tensors with a frame mask.

PyAV decodes by default; decord is used when it is importable (``backend="auto"``) and never required.
Frames are sampled uniformly over the clip or with a fixed stride from a start time; the decoder
seeks to the key frame before each sampled frame when that skips decoding, so a long file costs
the GOPs that hold sampled frames, not its length.
"""
from __future__ import annotations

import bisect
import importlib.util
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import torch
from torchvision.transforms import v2

from .._optional import require
from .image import CLIP_MEAN, CLIP_STD
from .registry import ReadError, check_file

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
MAX_VIDEO_SIDE = 8192
MAX_CLIP_VALUES = 1 << 31  # decoded clip t·h·w·3 (8 GiB of float32); a header declaring more is refused
MAX_FRAMES = 4096  # frames one clip may sample
INDEX_MAX_BYTES = 1 << 28  # files up to this size get a key-frame index (one demux pass) before seeking
SEEK_GAP = 12  # without an index, never seek for a frame fewer than this many frames ahead
Backend = Literal["auto", "pyav", "decord"]


class VideoClip(NamedTuple):
    """Frames and a frame mask; one clip from :func:`read_video`, or a batch from :func:`video_collate`.

    Attributes:
        frames: (3, t, h, w) float32 in [0, 1] (a batch: (b, 3, t, h, w)); from :func:`read_video`, a
            channels-first view of (t, h, w, 3) memory.
        mask: (t,) bool (a batch: (b, t)), True = a decoded frame, False = padding past the clip's end
            (a copy of the last real frame).
    """

    frames: torch.Tensor
    mask: torch.Tensor


class _Probe(NamedTuple):
    num_frames: int  # 0 when the container does not say
    fps: Fraction
    width: int
    height: int


def default_backend() -> str:
    """``"decord"`` when it is importable, else ``"pyav"``."""
    return "decord" if importlib.util.find_spec("decord") is not None else "pyav"


def read_video(
        path: str | os.PathLike,
        num_frames: int = 16,
        *,
        stride: int | None = None,
        start: float = 0.0,
        backend: Backend = "auto",
) -> VideoClip:
    """Decode ``num_frames`` RGB frames of a video.

    Sampling: with ``stride=None``, ``num_frames`` frames spread uniformly over the clip from
    ``start`` (seconds) to its end (the centre of each of ``num_frames`` equal segments); with a
    ``stride``, frames ``start, start + stride, ...`` in frame units. A clip with fewer frames than
    asked is padded by repeating its last frame, and the mask says which frames are real.

    Args:
        path: the video file.
        num_frames: frames T to return.
        stride: frame step from ``start``; None samples uniformly.
        start: start time in seconds.
        backend: ``"pyav"``, ``"decord"`` (optional dependency) or ``"auto"``: decord when importable,
            falling back to PyAV for a file decord fails on.

    Returns:
        a :class:`VideoClip`: frames (3, T, h, w) float32 in [0, 1] and mask (T,) bool.

    Raises:
        ReadError: naming the file: not a video, no video stream, corrupt or truncated so that no frame
            decodes, a declared size above the bounds (``MAX_VIDEO_SIDE``, ``MAX_CLIP_VALUES``).
    """
    path = check_file(path)
    if not 1 <= num_frames <= MAX_FRAMES:
        raise ValueError(f"num_frames must be in [1, {MAX_FRAMES}], got {num_frames}")
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be a non-negative number of seconds, got {start}")
    if backend not in ("auto", "pyav", "decord"):
        raise ValueError(f"backend must be 'auto', 'pyav' or 'decord', got {backend!r}")
    use_decord = backend == "decord" or (backend == "auto" and default_backend() == "decord")
    av = require("av")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            probe = _probe(path, container, num_frames)
            indices = _sample(probe.num_frames, probe.fps, num_frames, stride, start)
            frames = None
            if use_decord:
                try:
                    frames = _decode_decord(path, indices)
                except ReadError:
                    if backend == "decord":
                        raise  # asked for explicitly; "auto" falls back to PyAV (decord fails on some frame sizes)
            if frames is None:
                frames = _decode_pyav(container, probe, indices, path.stat().st_size)
    except ReadError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration) as err:
        raise ReadError(f"{path}: cannot decode the video: {err}") from err
    if not frames:
        raise ReadError(f"{path}: no frame could be decoded (corrupt or truncated)")
    if len({frame.shape for frame in frames}) > 1:
        raise ReadError(f"{path}: the frame size changes within the clip")
    real = len(frames)
    frames += [frames[-1]] * (num_frames - real)
    # numpy converts uint8 to float32 an order of magnitude faster than torch's cast + divide here; the
    # conversion stays in the decoded (t, h, w, c) layout and the clip is a channels-first view of it
    clip = torch.from_numpy(np.divide(np.stack(frames), np.float32(255), dtype=np.float32))
    return VideoClip(clip.permute(3, 0, 1, 2), torch.arange(num_frames) < real)


def _probe(path: Path, container: Any, num_frames: int) -> _Probe:
    """Stream facts from the headers, checked before anything is decoded."""
    if not container.streams.video:
        raise ReadError(f"{path}: no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not (0 < width <= MAX_VIDEO_SIDE and 0 < height <= MAX_VIDEO_SIDE):
        raise ReadError(f"{path}: frame size {width}x{height} is outside 1..{MAX_VIDEO_SIDE}")
    if num_frames * width * height * 3 > MAX_CLIP_VALUES:
        raise ReadError(f"{path}: {num_frames} frames of {width}x{height} exceed the {MAX_CLIP_VALUES:,} values "
                        "a clip may hold")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise ReadError(f"{path}: the video stream has no frame rate")
    count = stream.frames
    if count <= 0:  # mkv/webm headers rarely count frames: estimate from the duration
        if stream.duration is not None and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000
        else:
            seconds = 0.0
        count = round(seconds * float(rate))
    return _Probe(max(count, 0), Fraction(rate), width, height)


def _sample(count: int, fps: Fraction, num_frames: int, stride: int | None, start: float) -> list[int]:
    """Frame indices to decode; fewer than ``num_frames`` when the clip is short (the caller pads)."""
    first = round(start * fps)
    if count and first >= count:
        raise ValueError(f"start={start}s is past the end of the clip ({count / fps:.2f} s)")
    if stride is not None:
        indices = [first + k * stride for k in range(num_frames)]
        return [i for i in indices if not count or i < count]
    if not count:  # unknown length: take the first frames
        return list(range(first, first + num_frames))
    span = count - first
    if span <= num_frames:
        return list(range(first, count))
    return [first + int((k + 0.5) * span / num_frames) for k in range(num_frames)]


def _decode_pyav(container: Any, probe: _Probe, indices: Sequence[int], file_size: int) -> list[np.ndarray]:
    """RGB frames at ``indices`` (increasing), seeking to the key frame before a target whenever that
    skips frames, so only the GOPs that hold sampled frames are decoded."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: the largest single speed-up of libavcodec
    time_base = stream.time_base
    origin = stream.start_time or 0

    frames_per_tick = float(time_base * probe.fps)  # a float: Fraction arithmetic per frame adds up

    def index_of(pts: int | None) -> int:
        return -1 if pts is None else round((pts - origin) * frames_per_tick)

    # The key-frame index costs one pass of demuxing (no decoding), as decord's does; past
    # INDEX_MAX_BYTES a heuristic stands in for it.
    keys = _key_frames(container, stream, index_of) if file_size <= INDEX_MAX_BYTES else None
    target = 0

    def before_target(pts: int | None) -> bool:  # reads the loop's current `target`
        return pts is not None and index_of(pts) < target

    frames: list[np.ndarray] = []
    decoder = None
    current = -1  # index of the last decoded frame
    last_key = 0  # index of the last key frame decoded
    for target in indices:
        if decoder is None:
            seek = True
        elif keys is not None:  # a key frame after the current frame and at or before the target
            position = bisect.bisect_right(keys, target)
            seek = position > 0 and keys[position - 1] > current
        else:
            # Without an index, a seek may land on the key frame already behind us and re-decode the
            # (current - last_key) frames since it; seek only when the frames it may skip outnumber them.
            seek = target - current > max(SEEK_GAP, current - last_key)
        if seek:
            container.seek(origin + int(target / probe.fps / time_base), stream=stream, backward=True)
            decoder = _decoded_frames(container, stream, before_target)
        frame = None
        for candidate in decoder:
            current = index_of(candidate.pts)
            if candidate.key_frame:
                last_key = current
            if current >= target:
                frame = candidate
                break
        if frame is None:  # past the end (a frame count estimated from the duration, or a truncated file)
            break
        frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _decoded_frames(container: Any, stream: Any, skippable: Callable[[int | None], bool]) -> Iterator[Any]:
    """Frames from the current position. Packets for which ``skippable(pts)`` is true (frames before the
    target, never returned) are decoded with ``skip_frame=NONREF``: frames that no other frame
    references (most B-frames) are dropped unparsed; the reference frames are still decoded."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "NONREF" if skippable(packet.pts) else "DEFAULT"
        yield from packet.decode()


def _key_frames(container: Any, stream: Any, index_of: Any) -> list[int]:
    """Sorted frame indices of the stream's key frames, from its packets (demuxed, not decoded)."""
    return sorted(index_of(packet.pts) for packet in container.demux(stream)
                  if packet.is_keyframe and packet.pts is not None)


def _decode_decord(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    decord = require("decord")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        indices = [i for i in indices if i < len(reader)]
        batch = reader.get_batch(indices).asnumpy() if indices else np.empty((0,))
    except decord.DECORDError as err:
        raise ReadError(f"{path}: decord cannot decode the video: {err}") from err
    return list(batch)


def video_transform(
        img_size: int = 224,
        *,
        num_frames: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        train: bool = False,
        scale: tuple[float, float] = (0.25, 1.0),
) -> Any:
    """Per-clip preprocessing of a :class:`VideoClip` (torchvision v2, the same crop for every frame).

    Evaluation: resize the short side to ``img_size`` (bilinear, antialiased), centre-crop, normalise;
    training: random resized crop (area ``scale``) and horizontal flip. With ``num_frames``, the clip is
    fitted to that many frames by :func:`frame_window`: when it holds more real frames, evaluation keeps
    the centre window of ``num_frames`` consecutive ones (the single-clip test) and training a random one
    (temporal jitter: read more frames than the tokenizer takes to get it); a shorter clip is padded
    (masked, last frame repeated).

    Returns:
        a callable ``VideoClip -> VideoClip``.
    """
    geometry = (
        [v2.RandomResizedCrop(img_size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]
        if train else [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
    )
    pipeline = v2.Compose([*geometry, v2.Normalize(mean=list(mean), std=list(std))])

    def apply(clip: VideoClip | torch.Tensor) -> VideoClip:
        frames, mask = clip if isinstance(clip, tuple) else (clip, torch.ones(clip.shape[1], dtype=torch.bool))
        if num_frames is not None:
            frames, mask = frame_window(frames, mask, num_frames, random=train)
        # v2 transforms treat a (t, c, h, w) tensor as t images with one shared random draw.
        out = pipeline(frames.transpose(0, 1)).transpose(0, 1)
        return VideoClip(out.contiguous(), mask)

    return apply


def spatial_views(
        img_size: int = 224,
        count: int = 1,
        *,
        num_frames: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
) -> Callable[[VideoClip], list[VideoClip]]:
    """Test-time crops of a clip: the short side resized to ``img_size`` (as :func:`video_transform`
    evaluates), then ``count`` square crops along the long side: 1: the centre (= :func:`video_transform`);
    3: start, centre and end (left / centre / right, or top / centre / bottom; the Kinetics / UCF101
    three-crop test), each normalised; frames fitted to ``num_frames`` as in evaluation (the centre window).

    Args:
        img_size: side of the square crops.
        count: crops per clip: 1 or 3.
        num_frames: frames T of every view (None: the clip's).
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.

    Returns:
        a callable ``VideoClip -> [VideoClip, ...]``: ``count`` clips of frames (c, T, img_size, img_size).
    """
    if count not in (1, 3):
        raise ValueError(f"spatial views are 1 (centre) or 3 (start, centre, end) crops, got {count}")
    resize, normalize = v2.Resize(img_size, antialias=True), v2.Normalize(mean=list(mean), std=list(std))

    def apply(clip: VideoClip) -> list[VideoClip]:
        frames, mask = clip
        if num_frames is not None:
            frames, mask = frame_window(frames, mask, num_frames)
        frames = resize(frames.transpose(0, 1))  # t c h w
        height, width = frames.shape[-2:]  # the short side is img_size
        extra = max(height, width) - img_size
        centre = int(round(extra / 2.0))  # v2.CenterCrop's offset
        views = []
        for offset in [centre] if count == 1 else [0, centre, extra]:
            top, left = (offset, 0) if height > width else (0, offset)
            crop = v2.functional.crop(frames, top, left, img_size, img_size)
            views.append(VideoClip(normalize(crop).transpose(0, 1).contiguous(), mask))
        return views

    return apply


def clip_starts(path: str | os.PathLike, num_clips: int, *, num_frames: int = 16, stride: int,
                start: float = 0.0) -> list[float]:
    """Start times (seconds) of ``num_clips`` clips of ``num_frames`` frames every ``stride`` frames, spaced
    uniformly from ``start`` to the last start whose clip ends inside the video (the Kinetics / UCF101
    multi-clip test); one clip starts at ``start``. Read each with ``read_video(path, num_frames,
    stride=stride, start=s)``.

    Args:
        path: the video file.
        num_clips: clips to space over it (>= 1).
        num_frames: frames of each clip.
        stride: frame step within a clip.
        start: start time (seconds) of the first clip.

    Raises:
        ReadError: not a video, or one whose headers do not give its length.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_clips == 1:
        return [start]
    path = check_file(path)
    av = require("av")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            probe = _probe(path, container, num_frames)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise ReadError(f"{path}: cannot read the video: {err}") from err
    if not probe.num_frames:
        raise ReadError(f"{path}: the headers do not give the video's length, so clips cannot be spaced over it")
    first = round(start * probe.fps)
    last = max(first, probe.num_frames - ((num_frames - 1) * stride + 1))
    return [float((first + round(k * (last - first) / (num_clips - 1))) / probe.fps) for k in range(num_clips)]


def frame_window(frames: torch.Tensor, mask: torch.Tensor, num_frames: int, *, random: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_frames`` consecutive frames of a clip: when its real frames (a prefix of the mask) outnumber
    ``num_frames``, the centre window of them, or a uniformly random one with ``random`` (temporal jitter);
    otherwise the clip cut or padded by :func:`fit_frames`.

    Args:
        frames: (c, t, h, w).
        mask: (t,) bool, True = a real frame.
        num_frames: frames T to keep.
        random: draw the window's start (``torch.randint``) instead of centring it.

    Returns:
        frames (c, T, h, w) and mask (T,).
    """
    real = int(mask.sum())
    if real > num_frames:
        start = int(torch.randint(real - num_frames + 1, ())) if random else (real - num_frames) // 2
        return frames[:, start:start + num_frames], mask[start:start + num_frames]
    return fit_frames(frames, mask, num_frames)


def fit_frames(frames: torch.Tensor, mask: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut (c, t, h, w) frames and their (t,) mask to ``num_frames``, or pad them by repeating the last frame."""
    t = frames.shape[1]
    if t >= num_frames:
        return frames[:, :num_frames], mask[:num_frames]
    pad = num_frames - t
    return (torch.cat([frames, frames[:, -1:].expand(-1, pad, -1, -1)], dim=1),
            torch.cat([mask, mask.new_zeros(pad)]))


def video_collate(clips: Sequence[VideoClip | torch.Tensor]) -> VideoClip:
    """Clips of one shape (after :func:`video_transform`) to a batch: frames (b, 3, t, h, w), mask (b, t)."""
    pairs = [c if isinstance(c, tuple) else (c, torch.ones(c.shape[1], dtype=torch.bool)) for c in clips]
    shapes = {tuple(f.shape) for f, _ in pairs}
    if len(shapes) > 1:
        raise ValueError(f"clips of different shapes cannot be batched: {sorted(shapes)}; resize and fit their "
                         "frame count first (video_transform)")
    return VideoClip(torch.stack([f for f, _ in pairs]), torch.stack([m for _, m in pairs]))
