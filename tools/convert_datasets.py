#!/usr/bin/env python
"""Convert published dataset layouts into training manifests (CSV: path, label, [modality], split).

    imagenet  ILSVRC CLS-LOC: train/<wnid>/*.JPEG, val/*.JPEG + LOC_val_solution.csv (ImageId, "wnid x y x y ...")
    tb-cxr    Montgomery / Shenzhen chest X-rays: *_0.png normal, *_1.png tuberculosis (the file name's last digit)
    regdb     RegDB: idx/{train,test}_{visible,thermal}_<trial>.txt ("relative/path label" lines) -> re-ID manifest:
              training identities train, test identities query (visible) / gallery (thermal), each labelled
              by its person folder (Visible/<id>/..., unique over the dataset)
    folder    any folder-per-class tree (optionally train/val/test at the top)
    speech-commands  Speech Commands V2: <word>/<speaker>_nohash_<n>.wav + validation_list.txt, testing_list.txt
    modelnet40       modelnet40_normal_resampled/<class>/<class>_0001.txt (x,y,z,nx,ny,nz rows) +
                     modelnet40_train.txt / modelnet40_test.txt
    ucr              UCR/UEA .ts archives <Name>_TRAIN.ts / <Name>_TEST.ts -> one .npy per case (length, channels)
    indian-pines     Indian_pines_corrected.mat + Indian_pines_gt.mat (0 = unlabelled) [+ train/test maps]
                     -> one (p, p, bands) .npy per labelled pixel, bands min-max scaled over the whole scene
    ucf101           UCF-101/<Class>/v_<Class>_gXX_cXX.avi + trainlist0N.txt / testlist0N.txt
    s3dis            Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/<class>_<k>.txt (x y z r g b)
                     -> one labelled .npz (points, colors, labels) per 1 m x 1 m block of a room; Area 5 = test,
                     a seeded 10 % of the other rooms = val (task segmentation; the label column stays empty)
    mrpc             MRPC (msr_paraphrase_{train,test}.txt or GLUE MRPC {train,dev,test}.tsv) -> one .txt per pair
                     ("sentence 1 [SEP] sentence 2": the WordPiece tokenizer reads [SEP] as the pair separator)
    graph-targets    one graph file per molecule (.graphml / .gml / .edgelist / .edges) + a CSV of targets
                     (id, target[, split]) -> regression manifest
    adult            UCI Adult adult.data [+ adult.test] (no header, ", "-separated, '?' = missing, test labels
                     with a trailing '.') -> one CSV table with a header, label column 'income', split column
    bank-marketing   UCI Bank Marketing bank-full.csv / bank-additional-full.csv (';'-separated, quoted header)
                     -> one CSV table, label column 'y' [+ a seeded test split with --test-fraction]

Tables are written as tables (train with --label-column; one sample per row), not as manifests.

Paths are written relative to the manifest's folder when possible, so a data folder can move with its manifest.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path
from typing import Iterable

Row = dict


def write_manifest(rows: Iterable[Row], output: str | os.PathLike) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if not rows:
        raise ValueError("no rows: is the layout right?")
    fields = ["path", "label", *(k for k in ("modality", "split") if any(k in r for r in rows))]
    base = output.parent.resolve()
    with output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            path = Path(row["path"]).resolve()
            try:
                row = {**row, "path": str(path.relative_to(base))}
            except ValueError:
                row = {**row, "path": str(path)}
            writer.writerow({k: row.get(k, "") for k in fields})
    return output


def imagenet_rows(train: str | None, val: str | None, val_solution: str | None) -> list[Row]:
    rows = []
    if train:
        for class_dir in sorted(p for p in Path(train).iterdir() if p.is_dir()):
            rows += [{"path": f, "label": class_dir.name, "split": "train"} for f in sorted(class_dir.glob("*.JPEG"))]
    if val:
        if not val_solution:
            raise ValueError("--val needs --val-solution (LOC_val_solution.csv)")
        with open(val_solution, newline="") as handle:
            labels = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(handle)}
        for file in sorted(Path(val).glob("*.JPEG")):
            rows.append({"path": file, "label": labels[file.stem], "split": "val"})
    return rows


def tb_cxr_rows(image_dirs: Iterable[str]) -> list[Row]:
    rows = []
    for folder in image_dirs:
        for file in sorted(Path(folder).glob("*.png")):
            match = re.search(r"_([01])$", file.stem)
            if match:
                rows.append({"path": file, "label": "tb" if match.group(1) == "1" else "normal", "modality": "xray"})
    return rows


REGDB_LISTS = (("train_visible", "image", "train"), ("train_thermal", "infrared", "train"),
               ("test_visible", "image", "query"), ("test_thermal", "infrared", "gallery"))


def regdb_rows(root: str, trial: int = 1) -> list[Row]:
    """RegDB (412 people, 10 visible + 10 thermal images each) for the cross-modality re-ID protocol: trial N's
    ``idx/{train,test}_{visible,thermal}_N.txt`` ("Visible/<id>/<file>.bmp label" lines) split the people into
    206 training and 206 test identities. Training images of both cameras are ``train`` records (identity
    classification); the test identities' visible images are ``query`` and their thermal images ``gallery``
    records, ranked both ways (visible → thermal and thermal → visible). The label is the person's folder
    (``<id>`` of ``Visible/<id>/…`` and ``Thermal/<id>/…``), unique over the dataset: the published labels
    number each list's identities from 0, so training and test identities would share label values. Visible
    images are modality image, thermal ones infrared (a recipe's ``modality`` may read both with one tokenizer).

    Raises:
        ValueError: a trial outside 1–10, a listed path not of the ``<camera>/<id>/<file>`` form, or a published
            label given to two person folders of one list.
        FileNotFoundError: a listed image is missing.
    """
    root = Path(root)
    if not 1 <= trial <= 10:
        raise ValueError(f"RegDB has trials 1 to 10, got {trial}")
    rows = []
    for name, modality, split in REGDB_LISTS:
        listed = root / "idx" / f"{name}_{trial}.txt"
        folders: dict[str, str] = {}  # published label -> person folder, which must agree
        for line in listed.read_text().splitlines():
            if line.strip():
                rel, label = line.rsplit(maxsplit=1)
                if not (root / rel).is_file():
                    raise FileNotFoundError(f"{root / rel}: listed in {listed.name} but missing")
                parts = Path(rel).parts
                if len(parts) < 3:
                    raise ValueError(f"{listed}: {rel!r} is not a <camera>/<person id>/<file> path")
                person = parts[-2]
                if folders.setdefault(label, person) != person:
                    raise ValueError(f"{listed}: label {label} is given to person folders {folders[label]} and "
                                     f"{person}")
                rows.append({"path": root / rel, "label": person, "modality": modality, "split": split})
    return rows


def folder_rows(root: str, modality: str | None = None) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metatransformer.training.data import records_from_folder

    return [{"path": r.source, "label": r.label, "modality": r.modality, **({"split": r.split} if r.split else {})}
            for r in records_from_folder(root, modality=modality)]


# ------------------------------------------------------------------------------- speech commands
def speech_commands_rows(root: str) -> list[Row]:
    """Speech Commands V2: every ``<word>/*.wav`` (``_background_noise_`` left out); the files named in
    ``validation_list.txt`` / ``testing_list.txt`` (``word/file.wav`` lines) are val / test, the others train."""
    root = Path(root)
    lists = {}
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        listed = root / name
        if not listed.is_file():
            raise FileNotFoundError(f"{listed}: Speech Commands ships {name} at the top of the archive")
        lists.update({line.strip(): split for line in listed.read_text().splitlines() if line.strip()})
    rows = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for file in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{file.name}"
            rows.append({"path": file, "label": word_dir.name, "modality": "audio", "split": lists.get(rel, "train")})
    return rows


# ------------------------------------------------------------------------------- ModelNet40
def modelnet40_rows(root: str) -> list[Row]:
    """``modelnet40_normal_resampled``: the ids of modelnet40_train.txt / modelnet40_test.txt (``airplane_0001``)
    name ``<class>/<id>.txt``; the class is the id without its ``_NNNN`` suffix (``night_stand_0001``)."""
    root = Path(root)
    rows = []
    for split in ("train", "test"):
        listed = root / f"modelnet40_{split}.txt"
        for shape_id in (line.strip() for line in listed.read_text().splitlines()):
            if not shape_id:
                continue
            label = shape_id.rsplit("_", 1)[0]
            file = root / label / f"{shape_id}.txt"
            if not file.is_file():
                raise FileNotFoundError(f"{file}: listed in {listed.name} but missing")
            rows.append({"path": file, "label": label, "modality": "point_cloud", "split": split})
    return rows


# ------------------------------------------------------------------------------- UCR / UEA
def ucr_rows(train_ts: str, test_ts: str | None, output_dir: str, modality: str = "time_series") -> list[Row]:
    """A UCR/UEA archive (``<Name>_TRAIN.ts`` [+ ``<Name>_TEST.ts``]) → one ``.npy`` per case, (length, channels)
    float32, under ``output_dir/<split>/<class>/``. Missing values (``?``) are interpolated linearly along time
    (edges take the nearest value): the readers refuse NaN."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metatransformer.datasets.time_series import read_ts

    output_dir = Path(output_dir)
    rows = []
    for split, file in (("train", train_ts), ("test", test_ts)):
        if not file:
            continue
        data = read_ts(file)
        if data.labels is None or not isinstance(data.labels, list):
            raise ValueError(f"{file}: not a classification archive (no @classLabel)")
        for i, (series, label) in enumerate(zip(data.series, data.labels)):
            array = _fill_nan(series.numpy().astype(np.float32))
            target = output_dir / split / _safe(label) / f"{Path(file).stem}_{i:05d}.npy"
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, array)
            rows.append({"path": target, "label": label, "modality": modality, "split": split})
    return rows


def _fill_nan(array):
    import numpy as np

    if not np.isnan(array).any():
        return array
    steps = np.arange(len(array))
    for c in range(array.shape[1]):
        column, good = array[:, c], ~np.isnan(array[:, c])
        array[:, c] = np.interp(steps, steps[good], column[good]) if good.any() else 0.0
    return array


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "_"


# ------------------------------------------------------------------------------- Indian Pines
def indian_pines_rows(cube: str, labels: str, output_dir: str, *, patch_size: int = 1,
                      train_map: str | None = None, test_map: str | None = None, train_key: str | None = None,
                      test_key: str | None = None, train_fraction: float | None = None, seed: int = 0) -> list[Row]:
    """A scene cube + ground-truth map (0 = unlabelled, skipped) → one ``(p, p, bands)`` ``.npy`` per labelled
    pixel (its edge-padded p×p neighbourhood), bands min-max scaled over the whole scene (train with
    ``reader_options: {hyperspectral: {scale: none}}`` so the per-file reader does not rescale a patch).
    Labels are the map's class numbers (1..16). Splits: from ``train_map``/``test_map`` (the maps of the
    SpectralFormer-style fixed split, same shape, 0 elsewhere; ``train_key``/``test_key`` pick the variable when
    one .mat holds both, e.g. SpectralFormer's IndianPine.mat with ``TR`` and ``TE``), else a seeded stratified ``train_fraction``
    per class (the rest test), else none (the trainer's val_fraction applies)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metatransformer.datasets.hyperspectral import HyperspectralPixels, read_hyperspectral, read_label_map

    scene = read_hyperspectral(cube)  # per-band min-max over the scene: the reference scaling
    gt = read_label_map(labels)
    pixels = HyperspectralPixels(scene, gt, patch_size=patch_size)
    split_of: dict[tuple[int, int], str] = {}
    for split, path, key in (("train", train_map, train_key), ("test", test_map, test_key)):
        if path:
            chosen = read_label_map(path, key=key)
            if chosen.shape != gt.shape:
                raise ValueError(f"{path}: map shape {tuple(chosen.shape)} differs from the ground truth's "
                                 f"{tuple(gt.shape)}")
            split_of.update({tuple(rc): split for rc in chosen.nonzero().tolist()})
    if not split_of and train_fraction is not None:
        if not 0 < train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        rng = np.random.default_rng(seed)
        positions = pixels.positions.tolist()
        for c in sorted(set(pixels.targets.tolist())):
            members = [i for i, t in enumerate(pixels.targets.tolist()) if t == c]
            rng.shuffle(members)
            n_train = max(1, int(round(len(members) * train_fraction))) if len(members) > 1 else len(members)
            for k, i in enumerate(members):
                split_of[tuple(positions[i])] = "train" if k < n_train else "test"
    output_dir = Path(output_dir)
    rows = []
    for i in range(len(pixels)):
        patch, target = pixels[i]
        row, col = pixels.positions[i].tolist()
        label = str(int(target) + 1)
        split = split_of.get((row, col)) if split_of else None
        if split_of and split is None:
            continue  # labelled but in neither map
        file = output_dir / label / f"r{row:04d}_c{col:04d}.npy"
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, patch.permute(1, 2, 0).contiguous().numpy())  # (p, p, bands), as the reader reads cubes
        rows.append({"path": file, "label": label, "modality": "hyperspectral", **({"split": split} if split else {})})
    return rows


# ------------------------------------------------------------------------------- UCF101
def ucf101_rows(videos: str, splits_dir: str, split: int = 1) -> list[Row]:
    """UCF101: ``trainlist0N.txt`` (``Class/v_Class_gXX_cXX.avi index``) and ``testlist0N.txt`` (``Class/...avi``)
    relative to the ``UCF-101`` folder; the class is the folder name."""
    videos, splits_dir = Path(videos), Path(splits_dir)
    rows = []
    for name, part in ((f"trainlist0{split}.txt", "train"), (f"testlist0{split}.txt", "test")):
        for line in (splits_dir / name).read_text().splitlines():
            if not line.strip():
                continue
            rel = line.split()[0]
            file = videos / rel
            if not file.is_file():
                raise FileNotFoundError(f"{file}: listed in {name} but missing")
            rows.append({"path": file, "label": rel.split("/")[0], "modality": "video", "split": part})
    return rows


# ------------------------------------------------------------------------------- S3DIS
S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase",
                 "board", "clutter")


def _s3dis_points(file: Path):
    """(n, 6) ``x y z r g b`` rows of one annotation file. A few published files hold a stray byte inside a
    number (Area_5/hallway_6): such files are re-read with every character that cannot be part of a number
    removed, as the PointNet preparation code fixes them by hand."""
    import io

    import numpy as np

    try:
        rows = np.loadtxt(file, dtype=np.float64, ndmin=2)
    except ValueError:
        text = re.sub(r"[^0-9eE+\-.\s]", "", file.read_text(encoding="latin-1"))
        rows = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    if rows.shape[1] != 6:
        raise ValueError(f"{file}: expected 'x y z r g b' rows, found {rows.shape[1]} values per row")
    return rows


def s3dis_rows(root: str, output_dir: str, *, block_size: float = 1.0, voxel_size: float = 0.04,
               val_fraction: float = 0.1, test_area: int = 5, seed: int = 0) -> list[Row]:
    """S3DIS ``Stanford3dDataset_v1.2_Aligned_Version``: ``Area_N/<room>/Annotations/<class>_<k>.txt`` (one
    ``x y z r g b`` line per point) → labelled point files for ``task: segmentation``, one ``.npz`` per
    ``block_size`` × ``block_size`` m column of a room (PointNet's 1 m blocks, all heights, without overlap, so
    every point of a room is in one block; 0 = one file per room), holding ``points`` (n, 3) float32 relative
    to the block's xy centre and the room's floor, ``colors`` (n, 3) uint8 and ``labels`` (n,) in
    :data:`S3DIS_CLASSES` order (``stairs``, the one other name, → clutter, as in the PointNet preparation).
    ``voxel_size`` > 0 keeps one point per voxel (a seeded random one; 4 cm as in PointNeXt), 0 every point.
    Splits: ``Area_<test_area>`` → test (the Area 5 protocol), the other areas train, except a seeded
    ``val_fraction`` of their rooms (whole rooms, so no block of a validation room is trained on) → val."""
    import numpy as np

    root, output_dir = Path(root), Path(output_dir)
    rooms = sorted(d for d in root.glob("Area_*/*") if (d / "Annotations").is_dir())
    if not rooms:
        raise FileNotFoundError(f"{root}: no Area_N/<room>/Annotations folders")
    rng = np.random.default_rng(seed)
    training = [room for room in rooms if room.parent.name != f"Area_{test_area}"]
    held_out = rng.permutation(len(training))[:int(round(len(training) * val_fraction))] if len(training) > 1 else []
    val_rooms = {training[i] for i in held_out}
    rows = []
    for room in rooms:
        parts = []
        for file in sorted((room / "Annotations").glob("*.txt")):
            name = file.stem.rsplit("_", 1)[0]
            label = S3DIS_CLASSES.index(name) if name in S3DIS_CLASSES else S3DIS_CLASSES.index("clutter")
            points = _s3dis_points(file)
            parts.append(np.c_[points, np.full(len(points), label)])
        if not parts:
            continue
        cloud = np.concatenate(parts)
        xyz = cloud[:, :3]
        if voxel_size > 0:  # one random point per occupied voxel
            order = rng.permutation(len(cloud))
            voxels = np.floor((xyz[order] - xyz.min(0)) / voxel_size).astype(np.int64)
            keys = np.ravel_multi_index(voxels.T, voxels.max(0) + 1)
            cloud = cloud[np.sort(order[np.unique(keys, return_index=True)[1]])]
            xyz = cloud[:, :3]
        low, high = xyz.min(0), xyz.max(0)
        if block_size > 0:
            cells = np.floor((xyz[:, :2] - low[:2]) / block_size).astype(np.int64)
        else:
            cells = np.zeros((len(cloud), 2), np.int64)
        keys = np.ravel_multi_index(cells.T, cells.max(0) + 1)
        split = "test" if room.parent.name == f"Area_{test_area}" else "val" if room in val_rooms else "train"
        for key in np.unique(keys):
            members = cloud[keys == key]
            cell = cells[keys == key][0]
            centre = low[:2] + (cell + 0.5) * block_size if block_size > 0 else (low[:2] + high[:2]) / 2
            points = np.c_[members[:, :2] - centre, members[:, 2] - low[2]].astype(np.float32)
            name = f"{room.name}_{cell[0]}_{cell[1]}.npz" if block_size > 0 else f"{room.name}.npz"
            target = output_dir / room.parent.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez(target, points=points, colors=np.clip(members[:, 3:6], 0, 255).astype(np.uint8),
                     labels=members[:, 6].astype(np.int16))
            rows.append({"path": target, "label": "", "modality": "point_cloud", "split": split})
    return rows


# ------------------------------------------------------------------------------- MRPC
def mrpc_rows(files: Iterable[str], output_dir: str) -> list[Row]:
    """MRPC TSVs (``Quality  #1 ID  #2 ID  #1 String  #2 String``; msr_paraphrase_*.txt or GLUE's *.tsv):
    one ``.txt`` per pair holding ``sentence 1 [SEP] sentence 2``; label 1 = paraphrase. The split comes from
    the file name (train / dev → val / test); GLUE's unlabelled test.tsv (``index`` column) is refused."""
    output_dir = Path(output_dir)
    rows = []
    for file in files:
        file = Path(file)
        stem = file.stem.lower()
        split = "train" if "train" in stem else "val" if "dev" in stem or "val" in stem else \
            "test" if "test" in stem else None
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            if header[:1] != ["Quality"]:
                raise ValueError(f"{file}: expected the MRPC columns Quality, #1 ID, #2 ID, #1 String, #2 String "
                                 f"(got {header}); GLUE's test.tsv has no labels")
            for row in reader:
                if len(row) < 5:
                    continue
                quality, id1, id2, s1, s2 = row[:5]
                target = output_dir / (split or "all") / f"{id1}_{id2}.txt"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{s1.strip()} [SEP] {s2.strip()}\n", encoding="utf-8")
                rows.append({"path": target, "label": quality.strip(), "modality": "text",
                             **({"split": split} if split else {})})
    return rows


# ------------------------------------------------------------------------------- graph regression
def graph_target_rows(graphs: str, targets: str, *, id_column: str = "id", target_column: str | None = None) -> list[Row]:
    """Per-molecule graph files (``<id>.graphml`` / ``.gml`` / ``.edgelist`` / ``.edges``, e.g. exported from PyG
    with ``torch_geometric.utils.to_networkx`` + ``networkx.write_graphml``) and a CSV of targets
    (``id``, the target column — default: the first column other than id and split —, optional ``split``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metatransformer.datasets.graph import GRAPH_SUFFIXES

    graphs = Path(graphs)
    files = {}
    for file in sorted(graphs.iterdir()):
        if file.suffix.lower() in GRAPH_SUFFIXES:
            files.setdefault(file.stem, file)
    rows = []
    with open(targets, newline="") as handle:
        reader = csv.DictReader(handle)
        column = target_column or next(c for c in reader.fieldnames if c not in (id_column, "split"))
        for row in reader:
            key = row[id_column].strip()
            if key not in files:
                raise FileNotFoundError(f"{graphs}: no graph file for id {key!r}")
            rows.append({"path": files[key], "label": float(row[column]), "modality": "graph",
                         **({"split": row["split"]} if row.get("split") else {})})
    return rows


# ------------------------------------------------------------------------------- tables (one sample per row)
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                 "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
                 "income"]


def adult_table(data: str, test: str | None = None):
    """UCI Adult: ``adult.data`` (train) and ``adult.test`` (test; its first line is ``|1x3 Cross validator``
    and its labels end in '.') as one DataFrame with a header; '?' cells become missing."""
    import pandas as pd

    frames = []
    for file, split in ((data, "train"), (test, "test")):
        if file:
            frame = pd.read_csv(file, header=None, names=ADULT_COLUMNS, sep=r"\s*,\s*", engine="python",
                                comment="|", na_values=["?"], skip_blank_lines=True)
            frame = frame.dropna(subset=["income"])
            frame["income"] = frame["income"].astype(str).str.strip().str.rstrip(".")
            frames.append(frame.assign(split=split))
    return pd.concat(frames, ignore_index=True)


def bank_marketing_table(file: str, *, test_fraction: float = 0.0, seed: int = 0):
    """UCI Bank Marketing (``bank-full.csv``, ``bank-additional-full.csv``: ';'-separated, label ``y``);
    with ``test_fraction`` a seeded test split per label (the archive has none; 'unknown' cells are kept as a
    category, as the dataset's documentation describes them)."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(file, sep=";")
    if "y" not in frame.columns:
        raise ValueError(f"{file}: no 'y' column; is it bank-full.csv (';'-separated)?")
    if test_fraction:
        rng = np.random.default_rng(seed)
        split = np.array(["train"] * len(frame), dtype=object)
        for _, index in frame.groupby("y").indices.items():
            chosen = rng.permutation(index)[:int(round(len(index) * test_fraction))]
            split[chosen] = "test"
        frame["split"] = split
    return frame


def write_table(frame, output: str | os.PathLike) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not len(frame):
        raise ValueError("no rows: is the layout right?")
    frame.to_csv(output, index=False)
    return output


TABLES = {"adult": lambda a: adult_table(a.data, a.test),
          "bank-marketing": lambda a: bank_marketing_table(a.file, test_fraction=a.test_fraction, seed=a.seed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="layout", required=True)
    p = sub.add_parser("imagenet")
    p.add_argument("--train"), p.add_argument("--val"), p.add_argument("--val-solution")
    p = sub.add_parser("tb-cxr")
    p.add_argument("--images", nargs="+", required=True)
    p = sub.add_parser("regdb")
    p.add_argument("--root", required=True), p.add_argument("--trial", type=int, default=1, choices=range(1, 11),
                                                            metavar="N", help="the published split 1..10 (default 1)")
    p = sub.add_parser("folder")
    p.add_argument("root"), p.add_argument("--modality")
    p = sub.add_parser("speech-commands")
    p.add_argument("root", help="the extracted speech_commands_v0.02 folder")
    p = sub.add_parser("modelnet40")
    p.add_argument("root", help="modelnet40_normal_resampled")
    p = sub.add_parser("ucr")
    p.add_argument("--train", required=True, help="<Name>_TRAIN.ts"), p.add_argument("--test", help="<Name>_TEST.ts")
    p.add_argument("--out-dir", required=True, help="folder for the per-case .npy files")
    p.add_argument("--modality", default="time_series", help="time_series, or imu for 6-channel IMU sets")
    p = sub.add_parser("indian-pines")
    p.add_argument("--cube", required=True), p.add_argument("--labels", required=True)
    p.add_argument("--train-map"), p.add_argument("--test-map"), p.add_argument("--train-key"), p.add_argument("--test-key")
    p.add_argument("--train-fraction", type=float), p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, default=1)
    p.add_argument("--out-dir", required=True, help="folder for the per-pixel .npy patches")
    p = sub.add_parser("ucf101")
    p.add_argument("--videos", required=True, help="UCF-101"), p.add_argument("--splits", required=True,
                                                                             help="ucfTrainTestlist")
    p.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    p = sub.add_parser("s3dis")
    p.add_argument("root", help="Stanford3dDataset_v1.2_Aligned_Version")
    p.add_argument("--out-dir", required=True, help="folder for the per-block .npz files")
    p.add_argument("--block-size", type=float, default=1.0, help="block edge in metres (0: whole rooms)")
    p.add_argument("--voxel-size", type=float, default=0.04, help="voxel subsampling in metres (0: every point)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="training rooms held out for validation")
    p.add_argument("--test-area", type=int, default=5), p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("mrpc")
    p.add_argument("files", nargs="+"), p.add_argument("--out-dir", required=True)
    p = sub.add_parser("graph-targets")
    p.add_argument("--graphs", required=True), p.add_argument("--targets", required=True)
    p.add_argument("--id-column", default="id"), p.add_argument("--target-column")
    p = sub.add_parser("adult")
    p.add_argument("--data", required=True, help="adult.data"), p.add_argument("--test", help="adult.test")
    p = sub.add_parser("bank-marketing")
    p.add_argument("file", help="bank-full.csv or bank-additional-full.csv")
    p.add_argument("--test-fraction", type=float, default=0.0), p.add_argument("--seed", type=int, default=0)
    for p in sub.choices.values():
        p.add_argument("-o", "--output", required=True, help="manifest .csv (a table .csv for adult, bank-marketing)")
    args = parser.parse_args(argv)
    if args.layout in TABLES:
        frame = TABLES[args.layout](args)
        out = write_table(frame, args.output)
        counts = frame["split"].value_counts().to_dict() if "split" in frame.columns else {}
        print(f"wrote {out}: {len(frame)} rows {counts}")
        return 0
    rows = {"imagenet": lambda: imagenet_rows(args.train, args.val, args.val_solution),
            "tb-cxr": lambda: tb_cxr_rows(args.images),
            "regdb": lambda: regdb_rows(args.root, args.trial),
            "folder": lambda: folder_rows(args.root, args.modality),
            "speech-commands": lambda: speech_commands_rows(args.root),
            "modelnet40": lambda: modelnet40_rows(args.root),
            "ucr": lambda: ucr_rows(args.train, args.test, args.out_dir, args.modality),
            "indian-pines": lambda: indian_pines_rows(args.cube, args.labels, args.out_dir, patch_size=args.patch_size,
                                                      train_map=args.train_map, test_map=args.test_map,
                                                      train_key=args.train_key, test_key=args.test_key,
                                                      train_fraction=args.train_fraction, seed=args.seed),
            "ucf101": lambda: ucf101_rows(args.videos, args.splits, args.split),
            "s3dis": lambda: s3dis_rows(args.root, args.out_dir, block_size=args.block_size,
                                        voxel_size=args.voxel_size, val_fraction=args.val_fraction,
                                        test_area=args.test_area, seed=args.seed),
            "mrpc": lambda: mrpc_rows(args.files, args.out_dir),
            "graph-targets": lambda: graph_target_rows(args.graphs, args.targets, id_column=args.id_column,
                                                       target_column=args.target_column)}[args.layout]()
    out = write_manifest(rows, args.output)
    print(f"wrote {out}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
