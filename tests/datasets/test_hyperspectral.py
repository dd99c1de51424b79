import numpy as np
import pytest
import torch

from metatransformer.datasets import HyperspectralPixels, ReadError, read, read_hyperspectral, read_label_map

scipy_io = pytest.importorskip("scipy.io")
h5py = pytest.importorskip("h5py")
envi = pytest.importorskip("spectral.io.envi")


def _cube(h=7, w=5, bands=12, seed=0):
    """A synthetic scene: endmember spectra mixed with random abundances (integers, like raw DN)."""
    rng = np.random.default_rng(seed)
    endmembers = rng.uniform(100, 4000, size=(3, bands))
    abundances = rng.dirichlet(np.ones(3), size=(h, w))
    return np.round(abundances @ endmembers).astype(np.uint16)


def _minmax(cube):
    cube = cube.astype(np.float64)
    low, high = cube.min(axis=(0, 1)), cube.max(axis=(0, 1))
    return (cube - low) / (high - low)


def test_mat_v5_cube_is_scaled_per_band_and_keeps_wavelengths(tmp_path):
    cube = _cube()
    wavelengths = np.linspace(400, 2500, cube.shape[-1])
    path = tmp_path / "scene.mat"
    scipy_io.savemat(path, {"indian_pines": cube, "wavelength": wavelengths[None]})
    out = read_hyperspectral(path)
    assert out.data.dtype == torch.float32 and out.data.shape == (7, 5, 12)
    np.testing.assert_allclose(out.data.numpy(), _minmax(cube), atol=1e-6)
    np.testing.assert_allclose(out.wavelengths.numpy(), wavelengths)
    raw = read_hyperspectral(path, scale="none").data.numpy()
    assert (raw == cube).all()
    standard = read_hyperspectral(path, scale="standard").data.numpy()
    np.testing.assert_allclose(standard.mean((0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(standard.std((0, 1)), 1, atol=1e-4)


def test_mat_v73_hdf5_cube_undoes_matlab_column_major_layout(tmp_path):
    cube = _cube(h=6, w=4, bands=9)
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as file:  # MATLAB v7.3 = HDF5 with a 512-byte header block
        file["cube"] = cube.transpose()  # MATLAB writes (h, w, b) column-major: HDF5 sees (b, w, h)
    with open(path, "r+b") as file:
        file.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    out = read_hyperspectral(path, scale="none")
    assert out.data.shape == (6, 4, 9)
    assert (out.data.numpy() == cube).all()


def test_envi_cube_through_spectral(tmp_path):
    cube = _cube(h=8, w=6, bands=10).astype(np.int16)
    wavelengths = [float(w) for w in np.linspace(0.4, 2.5, 10)]
    header = tmp_path / "scene.hdr"
    envi.save_image(str(header), cube, metadata={"wavelength": wavelengths, "wavelength units": "Micrometers"},
                    interleave="bil")
    for path in (header, tmp_path / "scene.img"):
        out = read(path, modality="hyperspectral", scale="none")
        assert (out.data.numpy() == cube).all()
        np.testing.assert_allclose(out.wavelengths.numpy(), wavelengths)
        assert out.wavelength_units == "Micrometers"
    assert read(header).data.shape == (8, 6, 10)  # .hdr infers the modality


def test_npy_and_npz_cubes(tmp_path):
    cube = _cube().astype(np.float32)
    np.save(tmp_path / "a.npy", cube)
    np.savez(tmp_path / "b.npz", data=cube, wavelengths=np.arange(12.0))
    np.testing.assert_allclose(read_hyperspectral(tmp_path / "a.npy").data.numpy(), _minmax(cube), atol=1e-6)
    out = read_hyperspectral(tmp_path / "b.npz", scale="none")
    assert (out.data.numpy() == cube).all() and out.wavelengths.tolist() == list(range(12))


def test_constant_band_scales_to_zero_not_nan(tmp_path):
    cube = _cube().astype(np.float32)
    cube[..., 3] = 7.0
    np.save(tmp_path / "c.npy", cube)
    data = read_hyperspectral(tmp_path / "c.npy").data
    assert torch.isfinite(data).all() and (data[..., 3] == 0).all()


@pytest.mark.parametrize("content", [b"", b"not a matlab file at all" * 10, b"\x93NUMPY\x01\x00garbage"])
@pytest.mark.parametrize("suffix", [".mat", ".npy", ".npz"])
def test_corrupt_empty_and_wrong_format_files_raise(tmp_path, content, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ReadError, match=str(path)):
        read_hyperspectral(path)


def test_truncated_files_raise(tmp_path):
    np.save(tmp_path / "t.npy", _cube().astype(np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(ReadError, match=r"t\.npy: truncated"):
        read_hyperspectral(tmp_path / "t.npy")
    envi.save_image(str(tmp_path / "e.hdr"), _cube().astype(np.int16))
    img = (tmp_path / "e.img").read_bytes()
    (tmp_path / "e.img").write_bytes(img[:100])
    with pytest.raises(ReadError, match=r"e\.img: truncated"):
        read_hyperspectral(tmp_path / "e.hdr")
    scipy_io.savemat(tmp_path / "m.mat", {"cube": _cube()})
    mat = (tmp_path / "m.mat").read_bytes()
    (tmp_path / "m.mat").write_bytes(mat[:300])
    with pytest.raises(ReadError, match=r"m\.mat"):
        read_hyperspectral(tmp_path / "m.mat")


def test_absurd_declared_sizes_are_refused_before_reading(tmp_path):
    header = tmp_path / "huge.hdr"
    header.write_text("ENVI\nsamples = 100000\nlines = 100000\nbands = 1000\nheader offset = 0\n"
                      "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n")
    (tmp_path / "huge.img").write_bytes(b"\x00" * 64)
    with pytest.raises(ReadError, match=r"huge\.hdr: the cube declares shape \(100000, 100000, 1000\)"):
        read_hyperspectral(header)
    with open(tmp_path / "huge.npy", "wb") as stream:  # a header claiming 10^13 values over 64 bytes
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100000, 100000, 1000)})
        stream.write(b"\x00" * 64)
    with pytest.raises(ReadError, match=r"huge\.npy: the cube declares"):
        read_hyperspectral(tmp_path / "huge.npy")
    scipy_io.savemat(tmp_path / "big.mat", {"cube": np.zeros((20, 20, 20), np.uint8)})
    with pytest.raises(ReadError, match=r"big\.mat: the cube declares shape \(20, 20, 20\)"):
        read_hyperspectral(tmp_path / "big.mat", max_values=1000)


def test_nan_and_non_cubes_are_refused(tmp_path):
    cube = _cube().astype(np.float32)
    cube[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", cube)
    with pytest.raises(ReadError, match=r"nan\.npy: the cube contains 1 NaN"):
        read_hyperspectral(tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(ReadError, match=r"flat\.npy: expected a \(height, width, bands\)"):
        read_hyperspectral(tmp_path / "flat.npy")
    scipy_io.savemat(tmp_path / "two.mat", {"a": _cube(), "b": _cube()})
    with pytest.raises(ReadError, match=r"two\.mat: several 3-D numeric arrays \['a', 'b'\]; pass key="):
        read_hyperspectral(tmp_path / "two.mat")
    assert read_hyperspectral(tmp_path / "two.mat", key="b").data.shape == (7, 5, 12)
    (tmp_path / "lonely.hdr").write_text("ENVI\nsamples = 2\nlines = 2\nbands = 2\ndata type = 4\n")
    with pytest.raises(ReadError, match=r"lonely\.hdr: ENVI header without its data file"):
        read_hyperspectral(tmp_path / "lonely.hdr")


def test_neighbourhoods_are_edge_padded_at_the_corner():
    bands, h, w = 3, 4, 5
    cube = torch.arange(h * w * bands, dtype=torch.float32).reshape(h, w, bands)
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[0, 0], labels[2, 3] = 4, 1
    data = HyperspectralPixels(cube, labels, patch_size=3)
    assert len(data) == 2 and data.num_classes == 4
    patch, target = data[0]  # pixel (0, 0): rows/cols -1 repeat row/col 0 (edge padding)
    assert target == 3 and patch.shape == (bands, 3, 3)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            expected = cube[min(max(dr, 0), h - 1), min(max(dc, 0), w - 1)]
            assert torch.equal(patch[:, dr + 1, dc + 1], expected)
    patch, target = data[1]  # an interior pixel is a plain slice
    assert target == 0 and torch.equal(patch, cube[1:4, 2:5].permute(2, 0, 1))


def test_indian_pines_layout_from_files(tmp_path):
    cube = _cube(h=6, w=6, bands=8)
    train, test = np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)
    train[0, :3], test[5, 2:] = [1, 2, 3], [3, 3, 1, 2]
    scipy_io.savemat(tmp_path / "cube.mat", {"indian_pines_corrected": cube})
    scipy_io.savemat(tmp_path / "train.mat", {"TR": train})
    np.save(tmp_path / "test.npy", test)
    tr = HyperspectralPixels.from_files(tmp_path / "cube.mat", tmp_path / "train.mat")
    te = HyperspectralPixels.from_files(tmp_path / "cube.mat", tmp_path / "test.npy", patch_size=1)
    assert [int(tr[i][1]) for i in range(len(tr))] == [0, 1, 2]
    assert [int(te[i][1]) for i in range(len(te))] == [2, 2, 0, 1]
    np.testing.assert_allclose(te[0][0][:, 0, 0].numpy(), _minmax(cube)[5, 2], atol=1e-6)
    np.savez(tmp_path / "maps.npz", train=train, test=test)
    assert torch.equal(read_label_map(tmp_path / "maps.npz", key="test"), torch.from_numpy(test.astype(np.int64)))
    with pytest.raises(ReadError, match=r"maps\.npz: several 2-D numeric arrays"):
        read_label_map(tmp_path / "maps.npz")


def test_label_map_shape_mismatch_names_both_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"label map shape \(4, 4\) does not match the cube's \(7, 5\)"):
        HyperspectralPixels(torch.zeros(7, 5, 3), torch.ones(4, 4, dtype=torch.long))
    scipy_io.savemat(tmp_path / "cube.mat", {"cube": _cube()})
    np.save(tmp_path / "labels.npy", np.ones((4, 4), np.int64))
    with pytest.raises(ReadError, match=r"labels\.npy: label map shape \(4, 4\) does not match .* \(7, 5, 12\)"):
        HyperspectralPixels.from_files(tmp_path / "cube.mat", tmp_path / "labels.npy")
    np.save(tmp_path / "neg.npy", -np.ones((7, 5), np.int64))
    with pytest.raises(ReadError, match=r"neg\.npy: labels must be non-negative integers"):
        read_label_map(tmp_path / "neg.npy")
