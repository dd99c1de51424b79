import numpy as np
import pytest
import torch

from metatransformer.datasets import ReadError, read, read_video, video_collate, video_transform
from metatransformer.datasets import video as video_module

av = pytest.importorskip("av")

# (suffix, codec, pixel format, options): lossless or near-lossless settings so frames compare tightly.
FORMATS = {
    "mp4": ("libx264", "yuv444p", {"crf": "0"}),
    "mkv": ("ffv1", "yuv444p", {}),
    "webm": ("libvpx-vp9", "yuv444p", {"lossless": "1"}),
    "avi": ("mjpeg", "yuvj444p", {"q:v": "1"}),
}
TOLERANCE = {"mp4": 2, "mkv": 2, "webm": 2, "avi": 40}  # in 0..255; mjpeg is lossy (8x8 DCT at edges)


def moving_square(num_frames, height=32, width=40):
    """Frame i: background grey level 8·i, a white 8x8 square at column 2·i (wrapping): known content."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frames[i] = (8 * i) % 256
        col = (2 * i) % (width - 8)
        frames[i, 8:16, col:col + 8] = 255
    return frames


def write_video(path, frames, fps=25, gop=None):
    codec, pix_fmt, options = FORMATS[path.suffix[1:]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = dict(options)
        if gop is not None:  # key frames exactly every `gop` frames: no extra ones at scene cuts
            stream.codec_context.gop_size = gop
            stream.options = {**options, "sc_threshold": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def as_uint8(clip):
    return (clip.frames.permute(1, 2, 3, 0) * 255).round().numpy()  # t h w c


BACKENDS = ["pyav", pytest.param("decord", marks=pytest.mark.skipif(
    video_module.default_backend() != "decord", reason="decord not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_decoded_frames_equal_the_encoded_ones(tmp_path, suffix, backend):
    frames = moving_square(20)
    path = write_video(tmp_path / f"clip.{suffix}", frames)
    clip = read_video(path, num_frames=8, backend=backend)
    assert clip.frames.dtype == torch.float32 and clip.frames.shape == (3, 8, 32, 40)
    assert clip.mask.all() and 0 <= clip.frames.min() and clip.frames.max() <= 1
    expected = frames[[int((k + 0.5) * 20 / 8) for k in range(8)]]  # segment centres: 1, 3, 6, 8, 11, ...
    assert np.abs(as_uint8(clip) - expected).max() <= TOLERANCE[suffix]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stride_from_a_start_time(tmp_path, backend):
    frames = moving_square(40)
    path = write_video(tmp_path / "clip.mp4", frames, fps=20)
    clip = read_video(path, num_frames=5, stride=3, start=0.5, backend=backend)  # frame 10, 13, ..., 22
    assert np.abs(as_uint8(clip) - frames[10:23:3]).max() <= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_clip_is_padded_with_a_frame_mask(tmp_path, backend):
    frames = moving_square(5)
    path = write_video(tmp_path / "short.mkv", frames)
    clip = read_video(path, num_frames=8, backend=backend)
    assert clip.mask.tolist() == [True] * 5 + [False] * 3
    out = as_uint8(clip)
    assert np.abs(out[:5] - frames).max() <= 2
    assert (out[5:] == out[4]).all()  # padding repeats the last real frame
    strided = read_video(path, num_frames=4, stride=2, backend=backend)  # frames 0, 2, 4, then past the end
    assert strided.mask.tolist() == [True, True, True, False]


def test_auto_backend_falls_back_to_pyav_when_decord_fails(tmp_path, monkeypatch):
    decord = pytest.importorskip("decord")
    frames = moving_square(6)
    path = write_video(tmp_path / "clip.mp4", frames)

    def broken(*args, **kwargs):  # decord 0.6 fails like this on some frame sizes (e.g. 48 pixels wide)
        raise decord.DECORDError("Check failed: from_size == to_size")

    monkeypatch.setattr(decord, "VideoReader", broken)
    assert np.abs(as_uint8(read_video(path, num_frames=6)) - frames).max() <= 2
    with pytest.raises(ReadError, match=r"clip\.mp4: decord cannot decode"):
        read_video(path, backend="decord")


@pytest.fixture
def decoded_pts(monkeypatch):
    """The pts of every frame PyAV's decoder hands to the reader."""
    seen = []
    original = video_module._decoded_frames

    def counting(*args, **kwargs):
        for frame in original(*args, **kwargs):
            seen.append(frame.pts)
            yield frame

    monkeypatch.setattr(video_module, "_decoded_frames", counting)
    return seen


@pytest.mark.parametrize("indexed", [True, False], ids=["key-frame index", "heuristic"])
def test_long_clip_seeks_instead_of_decoding_everything(tmp_path, monkeypatch, decoded_pts, indexed):
    if not indexed:
        monkeypatch.setattr(video_module, "INDEX_MAX_BYTES", 0)
    frames = moving_square(300, height=16, width=16)
    path = write_video(tmp_path / "long.mp4", frames, gop=10)
    clip = read_video(path, num_frames=4, backend="pyav")
    expected = frames[[int((k + 0.5) * 300 / 4) for k in range(4)]]  # 37, 112, 187, 262
    assert np.abs(as_uint8(clip) - expected).max() <= 2
    # from the key frame before each target: 30..37, 110..112, 180..187, 260..262
    assert len(decoded_pts) == 22


@pytest.mark.parametrize("indexed", [True, False], ids=["key-frame index", "heuristic"])
def test_one_long_gop_is_decoded_through_not_re_decoded_per_sample(tmp_path, monkeypatch, decoded_pts, indexed):
    if not indexed:
        monkeypatch.setattr(video_module, "INDEX_MAX_BYTES", 0)
    frames = moving_square(200, height=16, width=16)
    path = write_video(tmp_path / "onegop.mp4", frames, gop=250)
    clip = read_video(path, num_frames=16, backend="pyav")
    targets = [int((k + 0.5) * 200 / 16) for k in range(16)]
    assert np.abs(as_uint8(clip) - frames[targets]).max() <= 2
    assert len(decoded_pts) == targets[-1] + 1  # frames 0..193 once: no seek lands behind the decoded ones


@pytest.mark.parametrize("indexed", [True, False], ids=["key-frame index", "heuristic"])
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_seeking_returns_the_sampled_frames_in_every_container(tmp_path, monkeypatch, suffix, indexed):
    if not indexed:
        monkeypatch.setattr(video_module, "INDEX_MAX_BYTES", 0)
    frames = moving_square(120, height=16, width=16)
    path = write_video(tmp_path / f"long.{suffix}", frames, gop=10)
    uniform = read_video(path, num_frames=5, backend="pyav")
    assert np.abs(as_uint8(uniform) - frames[[12, 36, 60, 84, 108]]).max() <= TOLERANCE[suffix]
    strided = read_video(path, num_frames=5, stride=7, start=1.0, backend="pyav")  # 25 fps: from frame 25
    assert np.abs(as_uint8(strided) - frames[25:60:7]).max() <= TOLERANCE[suffix]


def test_unreferenced_b_frames_before_a_target_are_skipped_without_changing_any_frame(tmp_path, decoded_pts):
    """A lossy H.264 clip with B-frames: the sampled frames equal a plain full decode's bit for bit."""
    frames = np.zeros((60, 64, 64, 3), np.uint8)
    frames[..., 0], frames[..., 1] = np.arange(64)[None] * 4, np.arange(64)[:, None] * 4  # smooth: B-frames pay
    for i in range(60):
        frames[i, 20:36, i % 48:i % 48 + 16] = 255
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as container:  # libx264 defaults: lossy, 3 B-frames
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        reference = [(f.to_ndarray(format="rgb24"), str(f.pict_type)) for f in container.decode(video=0)]
    assert sum(kind.endswith("B") or kind == "3" for _, kind in reference) > 10
    clip = read_video(path, num_frames=4, backend="pyav")
    targets = [int((k + 0.5) * 60 / 4) for k in range(4)]  # 7, 22, 37, 52
    assert (as_uint8(clip) == np.stack([reference[t][0] for t in targets])).all()
    assert len(decoded_pts) < targets[-1] + 1  # some frames before the targets were never decoded


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_files_raise_read_error_naming_the_file(tmp_path, backend):
    good = write_video(tmp_path / "good.mp4", moving_square(10)).read_bytes()
    cases = {"empty.mp4": b"", "text.mp4": b"this is not a video\n" * 20, "truncated.mp4": good[:200],
             "corrupt.mkv": b"\x1aE\xdf\xa3" + bytes(range(256)) * 4}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ReadError, match=str(path)):
            read_video(path, backend=backend)
    audio = tmp_path / "audio.mkv"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ReadError, match=rf"{audio}: no video stream"):
        read_video(audio, backend=backend)


def test_absurd_frame_size_is_refused_before_decoding(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", moving_square(4))
    monkeypatch.setattr(video_module, "MAX_CLIP_VALUES", 16 * 32 * 40 * 3 - 1)
    with pytest.raises(ReadError, match=r"clip\.mp4: 16 frames of 40x32 exceed"):
        read_video(path, num_frames=16)


def test_transform_and_collate_keep_the_mask(tmp_path):
    long = read(write_video(tmp_path / "long.mp4", moving_square(30)), num_frames=8)
    short = read(write_video(tmp_path / "short.webm", moving_square(3, height=48, width=32)), num_frames=8)
    transform = video_transform(16, num_frames=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    batch = video_collate([transform(long), transform(short)])
    assert batch.frames.shape == (2, 3, 8, 16, 16)
    assert batch.mask.tolist() == [[True] * 8, [True] * 3 + [False] * 5]
    # normalisation (x - 0.5) / 0.5 of the frame's grey background: grey level 8·i / 255 at frame i
    background = batch.frames[1, :, 1, -1, -1]  # far from the square after the resize and centre crop
    assert torch.allclose(background, torch.full((3,), (8 / 255 - 0.5) / 0.5), atol=0.02)


@pytest.mark.parametrize("height, width", [(32, 40), (48, 32), (24, 24)])
def test_spatial_views_are_the_centre_crop_and_the_two_ends_of_the_long_side(height, width):
    clip = video_module.VideoClip(torch.rand(3, 6, height, width), torch.ones(6, dtype=torch.bool))
    stats = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
    (centre,) = video_module.spatial_views(16, 1, num_frames=4, **stats)(clip)
    single = video_transform(16, num_frames=4, **stats)(clip)
    assert torch.equal(centre.frames, single.frames) and torch.equal(centre.mask, single.mask)
    views = video_module.spatial_views(16, 3, num_frames=4, **stats)(clip)
    assert torch.equal(views[1].frames, single.frames)
    from torchvision.transforms import v2

    centre = clip.frames[:, 1:5]  # the centre 4 of 6 frames
    resized = (v2.Resize(16, antialias=True)(centre.transpose(0, 1)).transpose(0, 1) - 0.5) / 0.25
    torch.testing.assert_close(views[0].frames, resized[..., :16, :16])  # top / left end
    torch.testing.assert_close(views[2].frames, resized[..., -16:, -16:])  # bottom / right end
    assert height == width or not torch.equal(views[0].frames, views[2].frames)
    with pytest.raises(ValueError, match="1 \\(centre\\) or 3"):
        video_module.spatial_views(16, 2)


def test_evaluation_keeps_the_centre_window_of_a_longer_clip(tmp_path):
    """A clip read longer than the tokenizer takes is evaluated on its centre frames: the clip read at the centre
    window's start (an independent read) gives the same frames and mask."""
    path = write_video(tmp_path / "clip.mp4", moving_square(40), fps=25)
    stats = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
    transform = video_transform(16, num_frames=4, **stats)
    long = read_video(path, num_frames=10, stride=2, backend="pyav")  # frames 0, 2, ..., 18
    centre = read_video(path, num_frames=4, stride=2, start=6 / 25, backend="pyav")  # window 3..6: frames 6 ... 12
    expected = transform(centre)
    for fitted in (transform(long), video_module.spatial_views(16, 1, num_frames=4, **stats)(long)[0]):
        torch.testing.assert_close(fitted.frames, expected.frames)
        assert torch.equal(fitted.mask, expected.mask) and fitted.mask.all()
    padded = read_video(path, num_frames=10, stride=7, backend="pyav")  # 6 real frames (0 ... 35), 4 of padding
    assert padded.mask.tolist() == [True] * 6 + [False] * 4
    fitted = transform(padded)  # the centre of the real frames: 7 ... 28
    torch.testing.assert_close(fitted.frames, transform(read_video(path, num_frames=4, stride=7, start=7 / 25,
                                                                   backend="pyav")).frames)
    assert fitted.mask.all()


def test_clip_starts_space_strided_clips_over_the_video(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square(50), fps=25)
    assert video_module.clip_starts(path, 1, num_frames=8, stride=2, start=0.4) == [0.4]
    starts = video_module.clip_starts(path, 3, num_frames=8, stride=2)  # clips of 15 frames in 50
    assert [round(s * 25) for s in starts] == [0, 18, 35]
    last = read_video(path, num_frames=8, stride=2, start=starts[-1], backend="pyav")
    assert last.mask.all()  # the last clip ends inside the video
    assert video_module.clip_starts(path, 2, num_frames=40, stride=2) == [0.0, 0.0]  # longer than the video
