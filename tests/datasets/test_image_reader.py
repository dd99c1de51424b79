import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from metatransformer.datasets import CLIP_MEAN, CLIP_STD, ImageReadError, ReadError, image_transform, read_image


@pytest.fixture
def rgb_array():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_rgb_formats_round_trip(tmp_path, rgb_array, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(rgb_array).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    image = read_image(path)
    assert image.shape == (3, 12, 20) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.from_numpy(rgb_array).permute(2, 0, 1).float() / 255)


def test_jpeg_is_close(tmp_path, rgb_array):
    path = tmp_path / "photo.jpg"
    smooth = np.repeat(np.linspace(0, 255, 20, dtype=np.uint8)[None, :, None], 12, 0).repeat(3, 2)
    Image.fromarray(smooth).save(path, quality=95)
    assert (read_image(path) - torch.from_numpy(smooth).permute(2, 0, 1) / 255).abs().max() < 0.03


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    values = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)
    path = tmp_path / "radiograph.png"
    Image.fromarray(values).save(path)
    image = read_image(path, channels=1)
    torch.testing.assert_close(image, torch.from_numpy(values.astype(np.float32) / 65535)[None])
    assert read_image(path).shape == (3, 1, 4)  # replicated for RGB


def test_grayscale_and_luma(tmp_path, rgb_array):
    gray = tmp_path / "gray.png"
    Image.fromarray(rgb_array[..., 0]).save(gray)
    image = read_image(gray)
    assert image.shape == (3, 12, 20) and torch.equal(image[0], image[2])
    color = tmp_path / "color.png"
    Image.fromarray(rgb_array).save(color)
    luma = read_image(color, channels=1)
    expected = (0.299 * rgb_array[..., 0] + 0.587 * rgb_array[..., 1] + 0.114 * rgb_array[..., 2]) / 255
    torch.testing.assert_close(luma[0], torch.from_numpy(expected.astype(np.float32)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("orientation, rotate", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, rgb_array, orientation, rotate):
    path = tmp_path / "rotated.png"  # lossless, so the pixels can be compared exactly
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: rotate 90° clockwise on display, 8: counter-clockwise, 3: 180°
    Image.fromarray(rgb_array).save(path, exif=exif)
    expected = np.rot90(rgb_array, k=rotate).transpose(2, 0, 1) / 255  # np.rot90 k=-1 is clockwise
    torch.testing.assert_close(read_image(path), torch.from_numpy(expected.astype(np.float32)))


def test_rgba_and_palette(tmp_path, rgb_array):
    rgba = np.concatenate([rgb_array, np.full((12, 20, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    torch.testing.assert_close(read_image(tmp_path / "a.png"), torch.from_numpy(rgb_array).permute(2, 0, 1) / 255)
    Image.fromarray(rgb_array).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 12, 20)


@pytest.mark.parametrize("content", [b"", b"this is not an image", "truncated"])
def test_unreadable_files_name_the_file(tmp_path, rgb_array, content):
    path = tmp_path / "broken.png"
    if content == "truncated":
        Image.fromarray(rgb_array).save(path)
        content = path.read_bytes()[:60]
    path.write_bytes(content)
    with pytest.raises(ReadError, match="broken.png"):
        read_image(path)
    assert issubclass(ImageReadError, ReadError)


def test_missing_file():
    with pytest.raises(ImageReadError, match="/nonexistent/image.png: no such file"):
        read_image("/nonexistent/image.png")


def test_a_name_too_long_is_a_read_error_not_an_os_error(tmp_path):
    path = tmp_path / ("x" * 300 + ".png")  # stat() raises OSError(ENAMETOOLONG)
    with pytest.raises(ReadError, match="x.png: cannot be accessed"):
        read_image(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "x.png"
    os.mkfifo(path)
    with pytest.raises(ImageReadError, match="x.png: not a regular file"):
        read_image(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR claiming width x height 8-bit grayscale, an empty IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10_000, 10_000))  # 100 M pixels: past our bound, under Pillow's own
    with pytest.raises(ImageReadError, match=r"bomb.png: 10000x10000 pixels is more than the 67,108,864"):
        read_image(path)
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageReadError, match="bomb.png"):
        read_image(path)


def test_an_absurd_aspect_ratio_is_refused_by_reader_and_transform(tmp_path):
    path = tmp_path / "line.png"
    Image.fromarray(np.zeros((1, 20000), np.uint8)).save(path, optimize=True)
    assert path.stat().st_size < 200  # the 157-byte file that resized to ~12 GB
    with pytest.raises(ImageReadError, match=r"line.png: aspect ratio 20000x1"):
        read_image(path)
    with pytest.raises(ValueError, match="1x20000 image is beyond the 32:1 aspect ratio"):
        image_transform(224)(torch.zeros(3, 1, 20000))  # refused before Resize allocates 224 x 4,480,000
    assert read_image(path, max_aspect_ratio=20000).shape == (3, 1, 20000)  # the bound is an option


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_and_eight_bit_grayscale_png_and_tiff(tmp_path, suffix):
    values16 = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(values16).save(tmp_path / f"a{suffix}")
    torch.testing.assert_close(read_image(tmp_path / f"a{suffix}", channels=1)[0],
                               torch.from_numpy(values16.astype(np.float32) / 65535))
    values8 = np.array([[0, 7, 128, 255]], dtype=np.uint8)
    Image.fromarray(values8).save(tmp_path / f"b{suffix}")
    torch.testing.assert_close(read_image(tmp_path / f"b{suffix}", channels=1)[0],
                               torch.from_numpy(values8.astype(np.float32) / 255))


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int16])
def test_wide_integer_tiffs_stay_in_the_unit_range(tmp_path, dtype):
    tifffile = pytest.importorskip("tifffile")  # an independent TIFF writer (SampleFormat, BitsPerSample)
    info = np.iinfo(dtype)
    values = np.array([[info.min, 0, 5, info.max // 3, info.max]], dtype=dtype)
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, values)
    image = read_image(path, channels=1)[0].double()
    expected = np.clip(values.astype(np.float64) / info.max, 0, 1)  # negative values clip to 0
    assert 0 <= image.min() and image.max() <= 1
    torch.testing.assert_close(image, torch.from_numpy(expected), atol=1e-7, rtol=1e-6)


def test_float_tiff_keeps_values_and_refuses_nan(tmp_path):
    values = np.array([[0.25, -3.5, 1e3]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    torch.testing.assert_close(read_image(tmp_path / "f.tif", channels=1)[0], torch.from_numpy(values))
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match="nan.tif: the image contains 1 NaN"):
        read_image(tmp_path / "nan.tif")


def test_transform_matches_manual_clip_preprocessing():
    image = torch.rand(3, 300, 400)
    out = image_transform(224)(image)
    assert out.shape == (3, 224, 224)
    # short side 300 -> 224, long side int(224 * 400 / 300) = 298; centre crop starts at round(74 / 2) = 37
    resized = torch.nn.functional.interpolate(image[None], size=(224, 298), mode="bicubic", antialias=True,
                                              align_corners=False)[0]
    crop = resized[:, :, 37:37 + 224]
    expected = (crop - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    assert (out - expected).abs().max() < 1e-4
    assert image_transform(32, train=True)(image).shape == (3, 32, 32)
