import numpy as np
import pytest
import torch
from PIL import Image

from metatransformer.datasets import ReadError, read, read_infrared


def _thermal(height=12, width=16, low=18.0, high=41.5):
    """A thermal-like scene in °C: background at ``low``, a warm blob peaking at ``high``."""
    y, x = np.mgrid[:height, :width]
    blob = np.exp(-((y - height / 2) ** 2 + (x - width / 3) ** 2) / 8)
    scene = low + (high - low) * blob
    scene[0, 0], scene[-1, -1] = low, high  # exact extremes for min-max
    return scene


@pytest.mark.parametrize("layout", ["hw", "1hw", "hw1"])
def test_radiometric_npy_min_max_by_default(tmp_path, layout):
    scene = _thermal().astype(np.float32)
    stored = {"hw": scene, "1hw": scene[None], "hw1": scene[..., None]}[layout]
    np.save(tmp_path / "t.npy", stored)
    image = read_infrared(tmp_path / "t.npy")
    expected = (scene.astype(np.float64) - 18.0) / (41.5 - 18.0)
    assert image.shape == (1, 12, 16) and image.dtype == torch.float32
    torch.testing.assert_close(image[0].double(), torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_fixed_temperature_range_is_comparable_across_images(tmp_path):
    np.save(tmp_path / "cool.npy", np.array([[-30.0, 0.0], [20.0, 50.0]]))
    np.save(tmp_path / "warm.npy", np.array([[20.0, 70.0], [100.0, 150.0]]))
    cool = read_infrared(tmp_path / "cool.npy", value_range=(-20.0, 120.0))
    warm = read_infrared(tmp_path / "warm.npy", normalize="fixed", value_range=(-20.0, 120.0))
    torch.testing.assert_close(cool[0], torch.tensor([[0.0, 20 / 140], [40 / 140, 70 / 140]]))
    torch.testing.assert_close(warm[0], torch.tensor([[40 / 140, 90 / 140], [120 / 140, 1.0]]))  # 150 °C clipped
    assert cool[0, 1, 0] == warm[0, 0, 0]  # 20 °C reads the same in both
    torch.testing.assert_close(read_infrared(tmp_path / "warm.npy", normalize="minmax")[0],
                               torch.tensor([[0.0, 50 / 130], [80 / 130, 1.0]]))
    with pytest.raises(ValueError, match="value_range"):
        read_infrared(tmp_path / "warm.npy", normalize="fixed")
    with pytest.raises(ValueError, match="low < high"):
        read_infrared(tmp_path / "warm.npy", value_range=(5.0, 5.0))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_and_eight_bit_counts_keep_their_level(tmp_path, suffix):
    counts = (_thermal(low=7000, high=52000)).astype(np.uint16)
    Image.fromarray(counts).save(tmp_path / f"c16{suffix}")
    torch.testing.assert_close(read_infrared(tmp_path / f"c16{suffix}")[0].double(),
                               torch.from_numpy(counts / 65535.0), atol=1e-7, rtol=0)
    minmax = read_infrared(tmp_path / f"c16{suffix}", normalize="minmax")[0].double()
    torch.testing.assert_close(minmax, torch.from_numpy((counts - 7000.0) / (52000 - 7000)), atol=1e-6, rtol=0)
    fixed = read_infrared(tmp_path / f"c16{suffix}", value_range=(0.0, 60000.0))[0].double()  # in counts
    torch.testing.assert_close(fixed, torch.from_numpy(counts / 60000.0), atol=1e-6, rtol=0)
    counts8 = (_thermal(low=10, high=240)).astype(np.uint8)
    Image.fromarray(counts8).save(tmp_path / f"c8{suffix}")
    torch.testing.assert_close(read_infrared(tmp_path / f"c8{suffix}")[0].double(),
                               torch.from_numpy(counts8 / 255.0), atol=1e-7, rtol=0)


def test_float_tiff_temperatures(tmp_path):
    scene = _thermal(low=-5.0, high=35.0).astype(np.float32)
    Image.fromarray(scene).save(tmp_path / "t.tif")
    image = read(tmp_path / "t.tif", modality="thermal")  # alias; .tif alone infers "image"
    torch.testing.assert_close(image[0].double(), torch.from_numpy((scene.astype(np.float64) + 5.0) / 40.0), atol=1e-6, rtol=0)
    assert read(tmp_path / "t.tif").shape == (3, 12, 16)


def test_npy_suffix_infers_infrared(tmp_path):
    np.save(tmp_path / "t.npy", _thermal())
    assert read(tmp_path / "t.npy").shape == (1, 12, 16)


@pytest.mark.parametrize("case", ["empty", "junk", "truncated", "pickle", "nan", "cube", "strings", "huge", "png"])
def test_bad_files_raise_read_error_naming_the_file(tmp_path, case):
    path = tmp_path / "bad.npy"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "junk":
        path.write_bytes(b"\x93NUMPY garbage that is no header at all")
    elif case == "truncated":
        np.save(path, np.zeros((64, 64)))
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "nan":
        np.save(path, np.array([[20.0, np.nan], [np.inf, 30.0]]))
    elif case == "cube":
        np.save(path, np.zeros((4, 5, 6)))
    elif case == "strings":
        np.save(path, np.array([["a", "b"]]))
    elif case == "huge":  # a header claiming 100k x 100k float64 (80 GB) over a few bytes of data
        np.save(path, np.zeros((2, 2)))
        header = path.read_bytes().replace(b"(2, 2)", b"(100000, 100000)")
        path.write_bytes(header)
    elif case == "png":
        path = tmp_path / "bad.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ReadError, match=f"{path.name}"):
        read_infrared(path)
