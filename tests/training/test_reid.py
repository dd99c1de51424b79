"""Re-identification (task reid): identity classification on the training identities, retrieval between the
held-out identities' query and gallery records in validation and in ``evaluate`` (both directions)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metatransformer.cli import main
from metatransformer.training import TrainConfig, train
from metatransformer.training.api import prepare_records
from metatransformer.training.data import load_records, records_from_tensors
from metatransformer.training.reid import RetrievalMetric, retrieval_records, retrieval_scores

from .conftest import TINY


def write_two_camera_people(root: Path, people: int = 8, seed: int = 0) -> Path:
    """Person k: a colour image and a grey "thermal" image around grey level 30 + 25k, in both cameras. Even
    people train (4 images per camera), odd ones are held out: visible images query, thermal ones gallery."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(people):
        held_out = k % 2 == 1
        for camera, split in (("Visible", "query"), ("Thermal", "gallery")):
            for i in range(2 if held_out else 4):
                file = root / camera / str(k) / f"{i}.png"
                file.parent.mkdir(parents=True, exist_ok=True)
                level = 30 + 25 * k
                pixels = rng.random((16, 16, 3)) * 20 + level * np.array([1.0, 0.9, 0.8]) if camera == "Visible" \
                    else rng.random((16, 16)) * 20 + level
                Image.fromarray(pixels.astype("uint8")).save(file)
                rows.append({"path": str(file.relative_to(root)), "label": k,
                             "modality": "image" if camera == "Visible" else "infrared",
                             "split": split if held_out else "train"})
    with open(root / "people.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "modality", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "people.csv"


def test_reid_ranks_held_out_people_above_chance(tmp_path, capsys):
    """Thermal-only features for both cameras (modality: infrared reads the colour images as grey): trained on
    4 people, the 4 held-out ones are found far above chance (Rank-1 1/4) in both directions."""
    manifest = write_two_camera_people(tmp_path)
    result = train({**TINY, "data": [str(manifest)], "modality": "infrared", "task": "reid", "epochs": 2,
                    "batch_size": 8, "run_dir": str(tmp_path / "run")})
    info = result.info
    assert info["splits"] == {"train": 32, "val": 0, "test": 0, "query": 8, "gallery": 8}
    assert info["labels"]["classes"] == ["0", "2", "4", "6"] and info["monitor"] == "val/rank1"
    assert result.model.heads.infrared.num_outputs == 4  # the training identities only
    assert {"val/rank1", "val/map", "val/minp", "val/query_to_gallery/rank1", "val/gallery_to_query/map"} \
        <= set(result.metrics)
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "query_to_gallery (8 queries, 8 gallery)" in capsys.readouterr().out
    out = tmp_path / "run" / "eval-retrieval"
    directions = json.loads((out / "results.json").read_text())["directions"]
    for scores in directions.values():
        assert scores["rank1"] >= 0.75 and scores["mAP"] > 0.7 and scores["rank5"] == 1.0
    both = [directions[d]["rank1"] for d in ("query_to_gallery", "gallery_to_query")]
    assert result.metrics["val/rank1"] == pytest.approx(sum(both) / 2)  # validation ranks as evaluate does
    assert "| rank1 |" in (out / "results.md").read_text()


def test_retrieval_metric_ranks_what_the_epoch_collected_in_both_directions():
    """Batches collected over an epoch rank as one set (the repeats of a distributed sampler never reach the
    metric: the module leaves them out, see test_two_process_validation_ranks_as_one_process)."""
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(10, 8, generator=generator), dim=-1)
    targets = torch.stack([torch.tensor([0, 1, 2, 3, 4] * 2), torch.tensor([0] * 5 + [1] * 5)], 1)
    metric = RetrievalMetric()
    metric.update(embeddings[:6], targets[:6])
    metric.update(embeddings[6:], targets[6:])
    values = metric.compute()
    expected = retrieval_scores(embeddings, targets[:, 0], targets[:, 1])
    assert float(values["query_to_gallery/map"]) == pytest.approx(expected["query_to_gallery"]["mAP"])
    assert float(values["rank1"]) == pytest.approx((expected["query_to_gallery"]["rank1"] +
                                                    expected["gallery_to_query"]["rank1"]) / 2)


@pytest.mark.slow
def test_two_process_validation_ranks_as_one_process(tmp_path):
    """15 query/gallery records over 2 processes: the sampler repeats one, the module leaves it out, so DDP
    validation (batch 2 per process) equals 1 process (batch 4)."""
    manifest = write_two_camera_people(tmp_path)
    rows = [row for row in csv.DictReader(open(manifest)) if row["path"] != "Thermal/1/1.png"]
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    root = Path(__file__).resolve().parents[2]
    metrics = []
    for devices, batch in (("1", 4), ("2", 2)):
        flags = {"data": str(manifest), "modality": "infrared", "task": "reid", "preset": "nano", "batch-size": batch,
                 "epochs": 1, "finetune": "full", "scheduler": "none", "logger": "csv", "accelerator": "cpu",
                 "devices": devices, "strategy": "ddp" if devices == "2" else "auto",
                 "tokenizer-options": json.dumps(TINY["tokenizer_options"]), "run-dir": str(tmp_path / devices)}
        args = [a for key, value in flags.items() for a in (f"--{key}", str(value))]
        proc = subprocess.run([sys.executable, "-m", "metatransformer", "train", *args], cwd=root, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics.append(json.loads((tmp_path / devices / "run.json").read_text())["metrics"])
    assert {k: v for k, v in metrics[0].items() if k.startswith("val/")} == \
        pytest.approx({k: v for k, v in metrics[1].items() if k.startswith("val/")})


def test_roles_are_splits_of_reid_runs_only(tmp_path):
    for split in ("query", "gallery"):
        for c in range(2):
            (tmp_path / "tree" / split / f"id{c}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "tree" / split / f"id{c}" / "0.png")
    assert {r.split for r in load_records(tmp_path / "tree")} == {"query", "gallery"}  # query/ and gallery/ folders
    records = records_from_tensors(torch.rand(4, 3, 16, 16), [0, 1, 0, 1], modality="image", split="query")
    with pytest.raises(ValueError, match="task reid"):
        prepare_records(TrainConfig(), records)
    held_out = records_from_tensors(torch.rand(2, 3, 16, 16), [0, 1], modality="image", split="val")
    with pytest.raises(ValueError, match="no role"):
        retrieval_records(records + held_out)
    with pytest.raises(ValueError, match="0 gallery records"):  # refused before any training
        train({"task": "reid", "preset": "nano", "data": [], "tokenizer_options": {"image": {"img_size": 16}},
               "run_dir": str(tmp_path / "run")}, records=[*records_from_tensors(torch.rand(4, 3, 16, 16), [0, 1] * 2,
                                                                                 modality="image"), *records])
    plain = records_from_tensors(torch.rand(6, 3, 16, 16), [0, 1] * 3, modality="image")
    assert {r.split for r in prepare_records(TrainConfig(task="reid"), [*plain, *records])} == {"train", "query"}
