"""NumPy files are refused by name, before allocation, in every reader that reads them."""
import io
import zipfile

import numpy as np
import pytest

from metatransformer.datasets import ReadError, read

# (modality, a good array for it)
READERS = [("point_cloud", np.zeros((8, 3), np.float32)), ("time_series", np.zeros((8, 3), np.float32)),
           ("imu", np.zeros((8, 6), np.float32)), ("hyperspectral", np.zeros((2, 2, 4), np.float32))]


@pytest.mark.parametrize("modality", [m for m, _ in READERS])
def test_a_corrupt_npz_is_a_read_error(tmp_path, modality):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip archive" * 4)
    with pytest.raises(ReadError, match="bad.npz"):
        read(path, modality=modality)


@pytest.mark.parametrize("modality, good", READERS)
def test_a_member_declaring_a_huge_shape_is_refused_before_allocation(tmp_path, modality, good):
    path = tmp_path / "huge.npz"
    header = io.BytesIO()  # a .npy header declaring 10^12 float64 values, and no data
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("wavelengths.npy" if modality == "hyperspectral" else "series.npy", header.getvalue())
        if modality == "hyperspectral":
            buffer = io.BytesIO()
            np.save(buffer, good)
            archive.writestr("cube.npy", buffer.getvalue())
    with pytest.raises(ReadError, match=r"huge.npz.*(10\^12|1,000,000,000,000 values)"):
        read(path, modality=modality)
