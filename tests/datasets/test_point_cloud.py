import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from metatransformer.datasets import ReadError, read, read_point_cloud

plyfile = pytest.importorskip("plyfile")
pytest.importorskip("trimesh")

CUBE_OFF = """OFF
8 6 0
-1 -1 -1
1 -1 -1
1 1 -1
-1 1 -1
-1 -1 1
1 -1 1
1 1 1
-1 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""


def _write_ply(path: Path, xyz: np.ndarray, *, normals=None, colors=None, faces=None, text=False) -> Path:
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")] if normals is not None else []
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")] if colors is not None else []
    vertex = np.zeros(len(xyz), dtype=fields)
    for j, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, j]
    if normals is not None:
        for j, name in enumerate(("nx", "ny", "nz")):
            vertex[name] = normals[:, j]
    if colors is not None:
        for j, name in enumerate(("red", "green", "blue")):
            vertex[name] = colors[:, j]
    elements = [plyfile.PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(plyfile.PlyElement.describe(face, "face"))
    plyfile.PlyData(elements, text=text).write(str(path))
    return path


def test_ply_written_with_plyfile_loads_to_its_points(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    normals = rng.normal(size=(50, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    for text in (False, True):
        path = _write_ply(tmp_path / f"cloud{text}.ply", xyz, normals=normals, colors=colors, text=text)
        points = read_point_cloud(path, features=("colors", "normals"))
        assert points.dtype == torch.float32 and points.shape == (50, 9)
        np.testing.assert_array_equal(points[:, :3].numpy(), xyz)
        np.testing.assert_allclose(points[:, 3:6].numpy(), colors / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(points[:, 6:].numpy(), normals)
    assert torch.equal(read(path), torch.from_numpy(xyz))  # .ply infers the point_cloud reader


def test_off_mesh_loads_vertices_and_samples_its_surface(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(CUBE_OFF)
    vertices = read_point_cloud(path, sample="vertices")
    expected = np.array([[x, y, z] for z in (-1, 1) for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))], np.float32)
    np.testing.assert_array_equal(vertices.numpy(), expected)
    surface = read_point_cloud(path, 500, features=("normals",))
    assert surface.shape == (500, 6)
    xyz, normals = surface[:, :3], surface[:, 3:]
    # every sample lies on a face of the cube, and its normal is that face's axis
    assert torch.allclose(xyz.abs().amax(1), torch.ones(500), atol=1e-6)
    axis = xyz.abs().argmax(1)
    assert torch.allclose(normals.abs()[torch.arange(500), axis], torch.ones(500), atol=1e-6)
    assert torch.equal(read_point_cloud(path, 500), read_point_cloud(path, 500))  # seeded


def test_ply_mesh_is_sampled_on_its_triangles(tmp_path):
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    path = _write_ply(tmp_path / "tetra.ply", xyz, faces=np.array([[0, 1, 2], [0, 1, 3]]))
    points = read_point_cloud(path, 300)
    assert points.shape == (300, 3)
    on_face = (points[:, 2].abs() < 1e-6) | (points[:, 1].abs() < 1e-6)  # z = 0 or y = 0 planes
    assert on_face.all() and (points >= -1e-6).all() and (points.sum(1) <= 1 + 1e-6).all()
    np.testing.assert_array_equal(read_point_cloud(path, sample="vertices").numpy(), xyz)


def test_modelnet_text_xyz_and_normals(tmp_path):
    rows = np.random.default_rng(1).normal(size=(20, 6)).round(6)
    path = tmp_path / "chair_0001.txt"
    path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in rows))
    points = read(path, modality="point_cloud", features=("normals",))
    np.testing.assert_allclose(points.numpy(), rows, rtol=1e-6, atol=1e-6)
    xyz_path = tmp_path / "scan.xyz"
    xyz_path.write_text("# comment\n" + "\n".join(" ".join(map(str, row[:3])) for row in rows))
    np.testing.assert_allclose(read(xyz_path).numpy(), rows[:, :3], rtol=1e-6)
    with pytest.raises(ReadError, match=f"{xyz_path}.*no per-point normals"):
        read_point_cloud(xyz_path, features=("normals",))


def _pcd_header(fields, sizes, types, n, data):
    return (f"# .PCD v0.7\nVERSION 0.7\nFIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\n"
            f"TYPE {' '.join(types)}\nCOUNT {' '.join('1' * len(fields))}\nWIDTH {n}\nHEIGHT 1\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")


def test_pcd_ascii_and_binary_with_packed_rgb(tmp_path):
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(10, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(10, 3))
    packed = (rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]).astype(np.uint32)
    header = _pcd_header(["x", "y", "z", "rgb"], [4, 4, 4, 4], ["F", "F", "F", "U"], 10, "binary")
    record = np.zeros(10, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    for j, axis in enumerate("xyz"):
        record[axis] = xyz[:, j]
    record["rgb"] = packed
    binary = tmp_path / "cloud.pcd"
    binary.write_bytes(header.encode() + record.tobytes())
    points = read_point_cloud(binary, features=("colors",))
    np.testing.assert_array_equal(points[:, :3].numpy(), xyz)
    np.testing.assert_allclose(points[:, 3:].numpy(), rgb / 255.0, rtol=1e-6)

    ascii_path = tmp_path / "ascii.pcd"
    body = "\n".join(f"{x!r} {y!r} {z!r} {c}" for (x, y, z), c in zip(xyz.tolist(), packed.tolist()))
    ascii_path.write_text(_pcd_header(["x", "y", "z", "rgb"], [4, 4, 4, 4], ["F", "F", "F", "U"], 10, "ascii") + body)
    torch.testing.assert_close(read_point_cloud(ascii_path, features=("colors",)), points)

    truncated = tmp_path / "truncated.pcd"
    truncated.write_bytes(header.encode() + record.tobytes()[:-7])
    with pytest.raises(ReadError, match=f"{truncated}.*truncated"):
        read_point_cloud(truncated)
    huge = tmp_path / "huge.pcd"
    huge.write_bytes(_pcd_header(["x", "y", "z"], [4, 4, 4], ["F", "F", "F"], 10 ** 12, "binary").encode() + b"\0" * 12)
    with pytest.raises(ReadError, match=f"{huge}.*declares"):
        read_point_cloud(huge)


def test_numpy_files(tmp_path):
    array = np.random.default_rng(3).normal(size=(30, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "b.npz", points=array, label=np.array(3))
    for name in ("a.npy", "b.npz"):
        points = read(tmp_path / name, modality="points", features=("normals",))
        np.testing.assert_array_equal(points.numpy(), array)
    np.save(tmp_path / "flat.npy", array[:, 0])
    with pytest.raises(ReadError, match="flat.npy.*n, 3 \\+ c"):
        read_point_cloud(tmp_path / "flat.npy")



def test_labelled_npz_gives_colors_and_labels_that_follow_their_points(tmp_path):
    rng = np.random.default_rng(5)
    xyz = rng.normal(size=(40, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (40, 3)).astype(np.uint8)
    labels = rng.integers(-1, 4, 40)
    np.savez(tmp_path / "room.npz", points=xyz, colors=colors, labels=labels)
    cloud = read_point_cloud(tmp_path / "room.npz", features=("colors", "labels"))
    assert cloud.shape == (40, 7)
    np.testing.assert_array_equal(cloud[:, :3].numpy(), xyz)
    np.testing.assert_allclose(cloud[:, 3:6].numpy(), colors / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(cloud[:, 6].numpy(), labels)
    down = read_point_cloud(tmp_path / "room.npz", 16, features=("labels",))  # FPS keeps each point's label
    row = {tuple(p): lab for p, lab in zip(xyz.tolist(), labels.tolist())}
    assert all(row[tuple(p[:3])] == p[3] for p in down.tolist())
    with pytest.raises(ReadError, match="no per-point labels"):
        read_point_cloud(_write_ply(tmp_path / "plain.ply", xyz), features=("labels",))


def test_labels_of_another_length_are_refused_before_loading(tmp_path, monkeypatch):
    xyz = np.zeros((50, 3), np.float32)
    np.savez(tmp_path / "short.npz", points=xyz, labels=np.zeros(49, np.int64))
    np.savez(tmp_path / "float.npz", points=xyz, labels=np.zeros(50, np.float32))
    np.savez(tmp_path / "colors.npz", points=xyz, colors=np.zeros((51, 3), np.uint8))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("loaded before the header check"))
    for name, reason in (("short.npz", "49 labels for 50 points"), ("float.npz", "integers"),
                         ("colors.npz", "51 colors for 50 points")):
        with pytest.raises(ReadError, match=reason) as info:
            read_point_cloud(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_normalize_and_resample(tmp_path):
    xyz = np.random.default_rng(4).normal(size=(200, 3)).astype(np.float32) * 7 + 3
    path = _write_ply(tmp_path / "c.ply", xyz)
    points = read_point_cloud(path, normalize=True)
    assert points.mean(0).abs().max() < 1e-5 and points.norm(dim=1).max() == pytest.approx(1.0)
    down, up = read_point_cloud(path, 64), read_point_cloud(path, 450)
    assert down.shape == (64, 3) and len({tuple(p) for p in down.tolist()}) == 64
    assert set(map(tuple, down.tolist())) <= set(map(tuple, xyz.tolist()))
    assert up.shape == (450, 3) and torch.equal(up[200:400], up[:200])


def test_malformed_files_raise_read_error_naming_the_file(tmp_path):
    empty_ply = _write_ply(tmp_path / "empty.ply", np.zeros((0, 3), np.float32))
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n\x00\x01")
    no_faces = tmp_path / "nofaces.off"
    no_faces.write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    nan = tmp_path / "nan.xyz"
    nan.write_text("0 0 0\nnan 1 2\n")
    ragged = tmp_path / "ragged.xyz"
    ragged.write_text("0 0 0\n1 2\n")
    huge = tmp_path / "huge.ply"
    huge.write_text("ply\nformat ascii 1.0\nelement vertex 1000000000000\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n0 0 0\n")
    missing = tmp_path / "missing.ply"
    for path, reason in [(empty_ply, "no vertices"), (garbage, "PLY"), (no_faces, "no faces"), (nan, "NaN"),
                         (ragged, "same number"), (huge, "declares 1,000,000,000,000 vertex"),
                         (missing, "no such file")]:
        with pytest.raises(ReadError, match=reason) as info:
            read_point_cloud(path)
        assert str(path) in str(info.value)


def _pyvista_examples() -> list[Path]:
    spec = importlib.util.find_spec("pyvista")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "examples"
    return sorted(folder.glob("*.ply"))


@pytest.mark.skipif(not _pyvista_examples(), reason="pyvista is not installed (pip install --no-deps pyvista)")
@pytest.mark.parametrize("path", _pyvista_examples(), ids=lambda p: p.name)
def test_pyvista_shipped_meshes_load(path):
    points = read_point_cloud(path, 1024, features=("normals",), normalize=True)
    assert points.shape == (1024, 6) and torch.isfinite(points).all()
    assert points[:, :3].norm(dim=1).max() == pytest.approx(1.0)
    torch.testing.assert_close(points[:, 3:].norm(dim=1), torch.ones(1024))  # unit face normals
    vertices = read_point_cloud(path, sample="vertices")
    header = path.read_bytes()[:400].decode("ascii", errors="replace")
    count = int(header.split("element vertex")[1].split()[0])
    assert vertices.shape == (count, 3)


