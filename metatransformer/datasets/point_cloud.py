"""Reading point clouds and meshes (PLY, OFF, OBJ, STL, XYZ/TXT, PCD, NPY/NPZ) into (n, 3 + c) float tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .._optional import require
from ..geometry import farthest_point_sample
from .arrays import array_headers, load_arrays
from .registry import ReadError, check_file

# Suffixes inferred as point clouds; ``.txt``, ``.npy`` and ``.npz`` are read too, with ``modality="point_cloud"``.
POINT_CLOUD_SUFFIXES = (".ply", ".off", ".obj", ".stl", ".xyz", ".pcd")
MESH_SUFFIXES = (".off", ".obj", ".stl")
MAX_POINTS = 50_000_000
MAX_POINT_CHANNELS = 16  # xyz + normals, colours, intensity...
MAX_FILE_BYTES = 4 << 30
# Text formats are parsed row by row into Python objects (~10x their size in memory): a tighter bound.
MAX_TEXT_BYTES = 256 << 20
DEFAULT_MESH_POINTS = 8192  # surface samples of a mesh when num_points is None (Point-BERT's ModelNet input)
FEATURES = ("normals", "colors", "labels")
PER_POINT_ARRAYS = ("normals", "colors", "labels")  # what an .npz may hold besides its 'points'

Sampling = Literal["auto", "surface", "vertices"]


def read_point_cloud(
        path: str | os.PathLike,
        num_points: int | None = None,
        *,
        features: Sequence[str] = (),
        sample: Sampling = "auto",
        normalize: bool = False,
        seed: int = 0,
) -> torch.Tensor:
    """Read a point cloud, or sample one from a mesh's surface.

    Formats: ``.ply`` (plyfile; point clouds and meshes), ``.off``/``.obj``/``.stl`` meshes (trimesh),
    ``.xyz``/``.txt`` text (whitespace- or comma-separated, ModelNet40's ``x,y,z,nx,ny,nz``), ``.pcd``
    (ASCII and binary; not ``binary_compressed``), ``.npy``/``.npz`` ((n, 3 + c) arrays; an ``.npz``
    holds one array or one named ``points``, optionally with per-point ``normals`` (n, 3), ``colors``
    (n, 3; 0-255 integers or floats in [0, 1]) and ``labels`` (n,) integers: a labelled point file for
    segmentation).

    Args:
        path: the file.
        num_points: resample to this many points: farthest point sampling when the file has more
            (deterministic, from the first point), points repeated in order when it has fewer; for a
            mesh, the number of surface samples. None keeps the file's points (a mesh gives
            ``DEFAULT_MESH_POINTS`` samples).
        features: per-point features appended after xyz, in the order given: ``"normals"`` (3: stored
            normals, a text file's columns 4-6, or the sampled faces' normals), ``"colors"`` (3, in [0, 1])
            and ``"labels"`` (1: a labelled ``.npz``'s class indices as floats, -1 = unlabelled; as columns
            they stay with their points through ``normalize`` and ``num_points`` resampling).
        sample: ``"surface"`` samples a mesh's faces uniformly by area (trimesh, seeded), ``"vertices"``
            returns its vertices, ``"auto"`` samples files that have faces and returns the points of
            those that have none (a ``.off``/``.obj``/``.stl`` without faces is an error).
        normalize: centre xyz on the centroid and scale it into the unit sphere.
        seed: seed of the surface sampling.

    Returns:
        (n, 3 + c) float32: xyz, then the requested features.

    Raises:
        ReadError: the file is missing, empty, corrupt or truncated, has no points (or no faces to
            sample), lacks a requested feature, has per-point arrays of another length than its points,
            or holds NaN or infinite values.
    """
    path = check_file(path, max_bytes=MAX_FILE_BYTES)
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"read_point_cloud: unknown features {unknown}; known: {list(FEATURES)}")
    if num_points is not None and not 1 <= num_points <= MAX_POINTS:
        raise ValueError(f"read_point_cloud: num_points must be in [1, {MAX_POINTS:,}], got {num_points}")
    if sample not in ("auto", "surface", "vertices"):
        raise ValueError(f"read_point_cloud: sample must be 'auto', 'surface' or 'vertices', got {sample!r}")
    suffix = path.suffix.lower()
    count = num_points or DEFAULT_MESH_POINTS
    if suffix == ".ply":
        columns, faces = _read_ply(path)
    elif suffix in MESH_SUFFIXES:
        columns, faces = _read_mesh(path)
        if sample == "auto":
            sample = "surface"
    elif suffix in (".xyz", ".txt", ".pts"):
        columns, faces = _read_text(path), None
    elif suffix == ".pcd":
        columns, faces = _read_pcd(path), None
    elif suffix in (".npy", ".npz"):
        columns, faces = _read_numpy(path), None
    else:
        raise ReadError(f"{path}: unknown point cloud suffix {suffix!r}")
    if sample == "surface" or (sample == "auto" and faces is not None and len(faces)):
        if faces is None or not len(faces):
            raise ReadError(f"{path}: the mesh has no faces to sample a surface from")
        columns = _sample_surface(path, columns, faces, count, seed)
        num_points = None
    if not len(columns["xyz"]):
        raise ReadError(f"{path}: the file holds no points")
    parts = [columns["xyz"]]
    for name in features:
        if name not in columns:
            raise ReadError(f"{path}: the file has no per-point {name}")
        parts.append(columns[name])
    points = torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32))
    if not torch.isfinite(points).all():
        raise ReadError(f"{path}: the points contain NaN or infinite values")
    if normalize:
        points = normalize_point_cloud(points)
    if num_points is not None:
        points = resample_point_cloud(points, num_points)
    return points


def normalize_point_cloud(points: torch.Tensor) -> torch.Tensor:
    """Centre xyz (the first 3 columns of (n, 3 + c)) on its centroid and scale it into the unit sphere."""
    xyz = points[:, :3] - points[:, :3].mean(0)
    radius = xyz.norm(dim=1).max().clamp_min(torch.finfo(points.dtype).tiny)
    return torch.cat([xyz / radius, points[:, 3:]], dim=1)


def resample_point_cloud(points: torch.Tensor, num_points: int) -> torch.Tensor:
    """(n, 3 + c) to (num_points, 3 + c): farthest point sampling on xyz from point 0 when n is larger,
    the points repeated in order (0, 1, ..., n-1, 0, 1, ...) when it is smaller."""
    n = points.shape[0]
    if n == num_points:
        return points
    if n < num_points:
        return points[torch.arange(num_points) % n]

    return points[farthest_point_sample(points[None, :, :3], num_points)[0]]


# --- formats -------------------------------------------------------------------------------------------


def _read_ply(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    plyfile = require("plyfile")
    _check_ply_counts(path)
    try:
        ply = plyfile.PlyData.read(str(path))
    except (plyfile.PlyParseError, plyfile.PlyHeaderParseError, ValueError, OSError, EOFError, IndexError) as err:
        raise ReadError(f"{path}: not a readable PLY file: {err}") from err
    names = [element.name for element in ply.elements]
    if "vertex" not in names:
        raise ReadError(f"{path}: the PLY file has no vertex element")
    vertex = ply["vertex"].data
    props = set(vertex.dtype.names or ())
    if not {"x", "y", "z"} <= props:
        raise ReadError(f"{path}: the PLY vertex element has no x, y, z properties (has {sorted(props)})")
    if not len(vertex):
        raise ReadError(f"{path}: the PLY file has no vertices")
    columns = {"xyz": _stack(vertex, ("x", "y", "z"))}
    if {"nx", "ny", "nz"} <= props:
        columns["normals"] = _stack(vertex, ("nx", "ny", "nz"))
    for rgb in (("red", "green", "blue"), ("r", "g", "b")):
        if set(rgb) <= props:
            scale = 255.0 if np.issubdtype(vertex.dtype[rgb[0]], np.integer) else 1.0
            columns["colors"] = _stack(vertex, rgb) / scale
            break
    faces = None
    if "face" in names and len(ply["face"].data):
        face = ply["face"].data
        key = next((k for k in ("vertex_indices", "vertex_index") if k in (face.dtype.names or ())), None)
        if key is None:
            raise ReadError(f"{path}: the PLY face element has no vertex_indices")
        faces = _triangulate(path, list(face[key]), len(vertex))
    return columns, faces


def _check_ply_counts(path: Path) -> None:
    """Refuse element counts the file cannot hold (every row takes at least a byte) before plyfile
    allocates arrays for them."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        header = stream.read(1 << 16)
    if b"end_header" not in header:
        raise ReadError(f"{path}: not a PLY file (no end_header in the first 64 KiB)")
    for line in header.split(b"end_header")[0].splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == b"element":
            try:
                count = int(words[2])
            except ValueError:
                raise ReadError(f"{path}: malformed PLY element line {line.decode(errors='replace')!r}") from None
            if not 0 <= count <= min(size, MAX_POINTS):
                raise ReadError(f"{path}: the PLY header declares {count:,} {words[1].decode(errors='replace')} "
                                f"rows, more than a {size:,}-byte file holds")


def _read_mesh(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    trimesh = require("trimesh")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as err:  # trimesh raises many exception types for malformed files
        raise ReadError(f"{path}: not a readable mesh: {err}") from err
    vertices = np.asarray(getattr(mesh, "vertices", np.empty((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.empty((0, 3))), dtype=np.int64)
    if not len(vertices):
        raise ReadError(f"{path}: the mesh has no vertices")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ReadError(f"{path}: a face refers to a vertex the mesh does not have")
    return {"xyz": vertices.reshape(-1, 3)}, faces.reshape(-1, 3)


def _read_text(path: Path) -> dict[str, np.ndarray]:
    check_file(path, max_bytes=MAX_TEXT_BYTES)
    try:
        with open(path, encoding="utf-8") as stream:
            rows = [line.replace(",", " ").split() for line in stream
                    if line.strip() and not line.lstrip().startswith(("#", "//"))]
    except UnicodeDecodeError as err:
        raise ReadError(f"{path}: not a text point cloud: {err}") from err
    widths = {len(row) for row in rows}
    if not rows:
        raise ReadError(f"{path}: the file holds no points")
    if len(widths) > 1 or min(widths) < 3:
        raise ReadError(f"{path}: rows must all have the same number (>= 3) of values, found {sorted(widths)}")
    try:
        array = np.asarray(rows, dtype=np.float64)
    except ValueError as err:
        raise ReadError(f"{path}: a value is not a number: {err}") from err
    columns = {"xyz": array[:, :3]}
    if array.shape[1] >= 6:
        columns["normals"] = array[:, 3:6]  # ModelNet40 layout: x, y, z, nx, ny, nz
    return columns


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _read_pcd(path: Path) -> dict[str, np.ndarray]:
    """PCL's PCD v0.7: a text header, then ASCII rows or packed binary records."""
    header: dict[str, list[str]] = {}
    with open(path, "rb") as stream:
        for _ in range(64):
            line = stream.readline()
            if not line:
                raise ReadError(f"{path}: the PCD header ends before its DATA line")
            text = line.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            key, *values = text.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                break
        else:
            raise ReadError(f"{path}: no DATA line in the first 64 header lines; not a PCD file")
        body = stream.read()
    try:
        fields = header["FIELDS"]
        sizes = [int(v) for v in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(v) for v in header.get("COUNT", ["1"] * len(fields))]
        points = int(header["POINTS"][0]) if "POINTS" in header else \
            int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
        data = header["DATA"][0].lower()
        dtype = np.dtype([(name, _PCD_TYPES[(kind.upper(), size)], (count,))
                          for name, size, kind, count in zip(fields, sizes, types, counts)])
    except (KeyError, IndexError, ValueError) as err:
        raise ReadError(f"{path}: malformed PCD header ({err!r}); needs FIELDS, SIZE, TYPE and POINTS") from None
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise ReadError(f"{path}: PCD FIELDS, SIZE, TYPE and COUNT have different lengths")
    if not 0 <= points <= MAX_POINTS:
        raise ReadError(f"{path}: PCD header declares {points:,} points (at most {MAX_POINTS:,} are read)")
    if data == "binary":
        if len(body) < points * dtype.itemsize:
            raise ReadError(f"{path}: truncated: {points:,} points need {points * dtype.itemsize:,} bytes of "
                            f"data, the file has {len(body):,}")
        record = np.frombuffer(body, dtype=dtype, count=points)
    elif data == "ascii":
        if len(body) > MAX_TEXT_BYTES:
            raise ReadError(f"{path}: {len(body):,} bytes of ASCII PCD data is more than the {MAX_TEXT_BYTES:,} "
                            "read as text; save it as binary PCD")
        rows = body.decode("ascii", errors="replace").split()
        width = sum(counts)
        if len(rows) < points * width:
            raise ReadError(f"{path}: truncated: {points:,} points of {width} values, found {len(rows):,} values")
        try:
            flat = np.asarray(rows[:points * width], dtype=np.float64).reshape(points, width)
        except ValueError as err:
            raise ReadError(f"{path}: a PCD value is not a number: {err}") from err
        record = np.empty(points, dtype=dtype)
        offsets = np.cumsum([0, *counts])
        for name, start, stop in zip(fields, offsets[:-1], offsets[1:]):
            record[name] = flat[:, start:stop]
    else:
        raise ReadError(f"{path}: PCD DATA {data!r} is not supported (ascii and binary are)")
    if not {"x", "y", "z"} <= set(fields):
        raise ReadError(f"{path}: the PCD file has no x, y, z fields (has {fields})")
    columns = {"xyz": np.concatenate([record[c] for c in "xyz"], axis=1).astype(np.float64)}
    if {"normal_x", "normal_y", "normal_z"} <= set(fields):
        columns["normals"] = np.concatenate([record[f"normal_{c}"] for c in "xyz"], axis=1).astype(np.float64)
    for name in ("rgb", "rgba"):
        if name in fields:  # PCL packs 8-bit r, g, b into the bytes of one float32 or uint32
            packed = np.ascontiguousarray(record[name][:, 0]).view(np.uint32)
            columns["colors"] = np.stack([(packed >> s) & 255 for s in (16, 8, 0)], axis=1) / 255.0
    return columns


def _read_numpy(path: Path) -> dict[str, np.ndarray]:
    headers = array_headers(path)
    names = list(headers)
    key = "points" if "points" in names else names[0] if len(names) == 1 else None
    if key is None:
        raise ReadError(f"{path}: the .npz holds {names}; name the point array 'points'")
    # an .npz's per-point arrays must have a row per point: checked on the headers, before anything is loaded
    per_point = [name for name in PER_POINT_ARRAYS if name in headers and name != key]
    count = headers[key][0][0] if headers[key][0] else 0
    for name in per_point:
        shape, dtype = headers[name]
        rows = shape[0] if shape else 0
        if rows != count:
            raise ReadError(f"{path}: {rows:,} {name} for {count:,} points (one row per point)")
        if name == "labels" and (len(shape) != 1 or not np.issubdtype(dtype, np.integer)):
            raise ReadError(f"{path}: labels must be (n,) integers (-1 = unlabelled), got {dtype} {shape}")
        if name != "labels" and tuple(shape) != (count, 3):
            raise ReadError(f"{path}: {name} must be (n, 3), got {shape}")
    arrays = load_arrays(path, [key, *per_point], max_values=MAX_POINTS * MAX_POINT_CHANNELS)
    array = arrays[key]
    if array.ndim != 2 or array.shape[1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise ReadError(f"{path}: expected a numeric (n, 3 + c) array, got {array.dtype} {array.shape}")
    columns = {"xyz": array[:, :3].astype(np.float64)}
    if array.shape[1] >= 6:
        columns["normals"] = array[:, 3:6].astype(np.float64)
    for name in per_point:
        values = arrays[name]
        scale = 255.0 if name == "colors" and np.issubdtype(values.dtype, np.integer) else 1.0
        columns[name] = values.reshape(count, -1).astype(np.float64) / scale
    return columns


# --- helpers -------------------------------------------------------------------------------------------


def _stack(record: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return np.stack([np.asarray(record[name], dtype=np.float64) for name in names], axis=1)


def _triangulate(path: Path, polygons: list[np.ndarray], num_vertices: int) -> np.ndarray:
    """Polygon index lists to triangles (fans), checked against the vertex count."""
    triangles = [(poly[0], poly[i], poly[i + 1]) for poly in polygons for i in range(1, len(poly) - 1)]
    faces = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ReadError(f"{path}: a face refers to a vertex the file does not have")
    return faces


def _sample_surface(path: Path, columns: dict[str, np.ndarray], faces: np.ndarray, count: int,
                    seed: int) -> dict[str, np.ndarray]:
    trimesh = require("trimesh")
    mesh = trimesh.Trimesh(vertices=columns["xyz"], faces=faces, process=False)
    if not mesh.area > 0:
        raise ReadError(f"{path}: the mesh's faces have no area to sample")
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return {"xyz": np.asarray(points), "normals": np.asarray(mesh.face_normals[face_index])}

