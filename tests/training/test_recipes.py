"""Every recipe in configs/ runs (nano encoder, 16×16 inputs, one epoch) on a few files generated in its
dataset's published layout and converted to a manifest with tools/convert_datasets.py."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metatransformer.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
_spec = importlib.util.spec_from_file_location("convert_datasets", ROOT / "tools" / "convert_datasets.py")
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)
RNG = np.random.default_rng(0)


def _image(path: Path, level: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (20, 20, 3) if mode == "RGB" else (20, 20)
    Image.fromarray((RNG.random(shape) * 40 + level).astype("uint8"), mode=None).save(path)


def imagenet_layout(root: Path) -> Path:
    rows = []
    for c, wnid in enumerate(("n01440764", "n01443537")):
        for i in range(6):
            _image(root / "train" / wnid / f"{wnid}_{i}.JPEG", 60 + 100 * c)
        for i in range(2):
            _image(root / "val" / f"ILSVRC2012_val_{c}{i}.JPEG", 60 + 100 * c)
            rows.append({"ImageId": f"ILSVRC2012_val_{c}{i}", "PredictionString": f"{wnid} 1 2 3 4"})
    with open(root / "LOC_val_solution.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["ImageId", "PredictionString"])
        writer.writeheader()
        writer.writerows(rows)
    return convert.write_manifest(convert.imagenet_rows(root / "train", root / "val", root / "LOC_val_solution.csv"),
                                  root / "imagenet.csv")


def tb_layout(root: Path) -> Path:
    for c in range(2):
        for i in range(6):
            _image(root / "CXR_png" / f"MCUCXR_{c}{i:03d}_{c}.png", 60 + 100 * c, mode="L")
    return convert.write_manifest(convert.tb_cxr_rows([root / "CXR_png"]), root / "tb.csv")


def regdb_layout(root: Path) -> Path:
    (root / "idx").mkdir(parents=True)
    for split in ("train", "test"):
        lines = []
        for person in range(2):
            for i in range(4 if split == "train" else 2):
                rel = f"Thermal/{person}/{split}_{i}.bmp"
                _image(root / rel, 60 + 100 * person, mode="L")
                lines.append(f"{rel} {person}")
        (root / "idx" / f"{split}_thermal_1.txt").write_text("\n".join(lines) + "\n")
    return convert.write_manifest(convert.regdb_rows(root, 1), root / "regdb.csv")


def folder_layout(root: Path) -> Path:
    for c in range(2):
        for i in range(5):
            _image(root / "images" / f"class{c}" / f"{i}.png", 60 + 100 * c)
    return root / "images"


LAYOUTS = {"imagenet1k": imagenet_layout, "chest_xray_tb": tb_layout, "regdb_infrared": regdb_layout,
           "linear_probe_image": folder_layout}


def test_every_recipe_has_a_generated_layout():
    assert {p.stem for p in RECIPES} == set(LAYOUTS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs(recipe, tmp_path):
    data = LAYOUTS[recipe.stem](tmp_path)
    config = TrainConfig.from_yaml(recipe, data=[str(data)], preset="nano", checkpoint=None, epochs=1,
                                   batch_size=4, accumulate=1, num_workers=0, warmup_steps=0, logger="csv",
                                   run_dir=str(tmp_path / "run"), tokenizer_options={
                                       m: {"img_size": 16, "patch_size": 8} for m in ("image", "xray", "infrared")})
    reference = TrainConfig.from_yaml(recipe)
    assert reference.preset == "base" and reference.checkpoint  # the recipe itself targets the published weights
    result = train(config)
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert result.info["splits"]["train"] > 0 and "train/loss" in result.metrics
    if result.info["splits"]["val"]:
        assert "val/loss" in result.metrics


def test_folder_converter_command_line(tmp_path, capsys):
    folder_layout(tmp_path)
    assert convert.main(["folder", str(tmp_path / "images"), "-o", str(tmp_path / "m.csv")]) == 0
    from metatransformer.training.data import load_records

    records = load_records(tmp_path / "m.csv")
    assert len(records) == 10 and {r.label for r in records} == {"class0", "class1"}
    assert not Path(next(iter(open(tmp_path / "m.csv").read().splitlines()[1:])).split(",")[0]).is_absolute()
