"""Per-point segmentation in the trainer: labelled point files → padded batches → point_segmentation head →
OA / mIoU in validation and in evaluate; bad label files refused."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metatransformer import create_model
from metatransformer.batching import Padded
from metatransformer.datasets import ReadError
from metatransformer.training import TrainConfig, evaluate_run, train
from metatransformer.training.api import fit_labels, make_dataset, prepare_records
from metatransformer.training.data import ModalityCollate

POINT_OPTIONS = {"point_cloud": {"num_points": 64, "num_groups": 8, "group_size": 8}}


def write_shapes(root: Path, clouds: int, seed: int = 0) -> Path:
    """Each cloud: a sphere (class 0) and a flat square (class 1) at random places, 40-80 points, 5 % unlabelled.
    Which shape a point is on shows in its neighbourhood, not in its position."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(clouds):
        n = int(rng.integers(40, 81))
        k = n // 2
        direction = rng.normal(size=(k, 3))
        sphere = direction / np.linalg.norm(direction, axis=1, keepdims=True) * 0.5 + rng.uniform(-1, 1, 3)
        plane = np.c_[rng.uniform(-0.6, 0.6, (n - k, 2)), np.zeros(n - k)] + rng.uniform(-1, 1, 3)
        labels = np.r_[np.zeros(k), np.ones(n - k)].astype(np.int64)
        labels[rng.random(n) < 0.05] = -1
        np.savez(root / f"cloud{i}.npz", points=np.r_[sphere, plane].astype(np.float32), labels=labels)
        rows.append({"path": f"cloud{i}.npz", "label": "", "modality": "point_cloud",
                     "split": "train" if i < clouds * 3 // 4 else "val"})
    with open(root / "shapes.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "modality", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "shapes.csv"


def test_segmentation_learns_which_shape_each_point_is_on(tmp_path):
    config = TrainConfig(data=[str(write_shapes(tmp_path, 64))], task="segmentation", classes=["sphere", "plane"],
                         preset="nano", epochs=8, batch_size=8, lr=3e-3, logger="csv", run_dir=str(tmp_path / "run"),
                         tokenizer_options=POINT_OPTIONS)
    result = train(config)
    assert result.info["monitor"] == "val/miou" and result.info["labels"]["classes"] == ["sphere", "plane"]
    assert result.metrics["val/miou"] > 0.6  # chance: about 1/3 (all one class: 1/4)
    report = evaluate_run(tmp_path / "run")
    res = report["modalities"]["point_cloud"]
    assert report["split"] == "val" and res["count"] == 16
    assert res["mIoU"] == pytest.approx(result.metrics["val/miou"], abs=1e-5)  # the same points, the same rule
    assert res["OA"] == pytest.approx(result.metrics["val/oa"], abs=1e-5)
    matrix = np.array(res["confusion_matrix"])
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    np.testing.assert_allclose([row["IoU"] for row in res["per_class"]], iou, rtol=1e-5)
    assert res["mIoU"] == pytest.approx(iou.mean(), rel=1e-5) and matrix.sum() == res["points"]
    labelled = sum(int((np.load(tmp_path / f"cloud{i}.npz")["labels"] >= 0).sum()) for i in range(48, 64))
    assert res["points"] <= labelled  # clouds above num_points = 64 are scored on their 64 sampled points
    out = Path(report["output"])
    assert "| mIoU |" in (out / "results.md").read_text() and (out / "confusion_point_cloud.png").stat().st_size
    assert json.loads((out / "results.json").read_text())["modalities"]["point_cloud"]["per_class"][1]["class"] == "plane"


def test_items_keep_each_points_label_and_batches_pad_with_ignore_index(tmp_path):
    from scipy.spatial import cKDTree

    config = TrainConfig(data=[str(write_shapes(tmp_path, 6, seed=1))], task="segmentation",
                         tokenizer_options=POINT_OPTIONS)
    records = prepare_records(config)
    labels = fit_labels(config, records)
    assert labels.classes == ["0", "1"]  # from the files' largest label
    model = create_model("nano", modalities=POINT_OPTIONS)
    dataset = make_dataset(config, records, model.tokenizer("point_cloud"), labels)
    items = [dataset[i] for i in range(len(dataset))]
    for (points, target), record in zip(items, records):
        raw = np.load(record.source)
        assert len(points) == min(64, len(raw["points"]))
        centred = raw["points"] - raw["points"].mean(0)
        scaled = centred / np.linalg.norm(centred, axis=1).max()  # the tokenizer's normalize
        distance, index = cKDTree(scaled).query(points.numpy())  # each item point is a file point...
        assert distance.max() < 1e-5 and len(set(index)) == len(index)
        assert raw["labels"][index].tolist() == target.tolist()  # ...with that point's label
    batch, targets = ModalityCollate("point_cloud")(items)
    assert isinstance(batch, Padded) and targets.shape == batch.mask.shape
    assert (targets[~batch.mask] == -1).all() and torch.equal(batch.mask.sum(1), torch.tensor([len(t) for _, t in items]))


def test_bad_label_files_are_refused_naming_the_file(tmp_path):
    manifest = write_shapes(tmp_path, 4, seed=2)
    np.savez(tmp_path / "cloud0.npz", points=np.zeros((50, 3), np.float32), labels=np.zeros(48, np.int64))
    np.savez(tmp_path / "cloud1.npz", points=np.random.rand(50, 3).astype(np.float32), labels=np.full(50, 7))
    config = TrainConfig(data=[str(manifest)], task="segmentation", classes=["sphere", "plane"],
                         tokenizer_options=POINT_OPTIONS)
    records = prepare_records(config)
    dataset = make_dataset(config, records, create_model("nano", modalities=POINT_OPTIONS).tokenizer("point_cloud"),
                           fit_labels(config, records))
    with pytest.raises(ReadError, match="48 labels for 50 points") as info:
        dataset[0]
    assert str(tmp_path / "cloud0.npz") in str(info.value)
    with pytest.raises(ValueError, match=r"cloud1.npz: label 7 is not one of the 2 classes"):
        dataset[1]
    colours = TrainConfig(data=[str(manifest)], task="segmentation", classes=["a", "b"],
                          tokenizer_options={"point_cloud": {**POINT_OPTIONS["point_cloud"], "in_chans": 6}})
    tokenizer = create_model("nano", modalities=colours.tokenizer_options).tokenizer("point_cloud")
    with pytest.raises(ValueError, match="cloud2.npz.*3 channels per point, the tokenizer takes 6"):
        make_dataset(colours, records, tokenizer, fit_labels(colours, records))[2]
    with pytest.raises(ValueError, match="segmentation"):
        TrainConfig(task="segmentation", linear_probe=True)


def test_augmentation_moves_the_points_and_keeps_their_labels(tmp_path):
    """--augment on segmentation: each training cloud's xyz is scaled and translated per axis (Point-MAE bounds),
    the points keep their order and labels; validation items are never perturbed."""
    config = TrainConfig(data=[str(write_shapes(tmp_path, 4))], task="segmentation", classes=["sphere", "plane"],
                         augment=True, augment_options={"points": {"translate": 0.1}}, tokenizer_options=POINT_OPTIONS)
    model = create_model("nano", modalities=POINT_OPTIONS)
    records = [r for r in prepare_records(config) if r.split == "train"]
    labels = fit_labels(config, records)
    plain = make_dataset(config, records, model.tokenizer("point_cloud"), labels)
    augmented = make_dataset(config, records, model.tokenizer("point_cloud"), labels, augment=True)
    for i in range(len(records)):
        (xyz, target), (moved, moved_target) = plain[i], augmented[i]
        assert torch.equal(target, moved_target) and not torch.equal(xyz, moved)
        design = torch.stack([xyz[:, :3], torch.ones_like(xyz[:, :3])], dim=-1).double()  # n 3 2
        for axis in range(3):  # the same scale and shift for every point of an axis
            solution = torch.linalg.lstsq(design[:, axis], moved[:, axis, None].double()).solution.flatten()
            scale, shift = solution.tolist()
            assert 2 / 3 - 1e-6 <= scale <= 3 / 2 + 1e-6 and abs(shift) <= 0.1 + 1e-6
            torch.testing.assert_close(xyz[:, axis].double() * scale + shift, moved[:, axis].double(), atol=1e-5,
                                       rtol=0)
    torch.manual_seed(0)
    first = plain[0][0]
    assert torch.equal(first, plain[0][0])  # no augmentation without augment=True
    with pytest.raises(ValueError, match="no option"):
        TrainConfig(task="segmentation", augment=True, augment_options={"point_cloud": {"scal": 2}})
