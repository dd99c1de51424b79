import numpy as np
import pytest
import torch
from PIL import Image

from metatransformer.datasets import ReadError, CLIP_MEAN, CLIP_STD, ImageReadError, image_transform, read_image


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


def test_exif_orientation_is_applied(tmp_path, rgb_array):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(rgb_array).save(path, exif=exif)
    assert read_image(path).shape == (3, 20, 12)


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
    with pytest.raises(ReadError, match="/nonexistent/image.png: no such file"):
        read_image("/nonexistent/image.png")


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
