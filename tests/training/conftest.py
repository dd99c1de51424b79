"""Tiny generated data sets for the training tests (nano encoder, 16×16 images, a few files per class)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = {"preset": "nano", "batch_size": 4, "lr": 1e-2, "log_every_n_steps": 1, "logger": "csv",
        "tokenizer_options": {"image": {"img_size": 16, "patch_size": 8}, "infrared": {"img_size": 16, "patch_size": 8},
                              "xray": {"img_size": 16, "patch_size": 8}}}


def write_images(root: Path, classes: int = 3, per_class: int = 8, seed: int = 0, splits: bool = False) -> Path:
    """Class c: noise around grey level 40 + 80c (easy to learn)."""
    rng = np.random.default_rng(seed)
    for split in (("train", "val", "test") if splits else (None,)):
        for c in range(classes):
            folder = root / split / f"c{c}" if split else root / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray((rng.random((16, 16, 3)) * 40 + 40 + 80 * c).astype("uint8")).save(folder / f"{i}.png")
    return root


def write_thermal(root: Path, classes: int = 3, per_class: int = 8, seed: int = 1) -> Path:
    """Radiometric .npy arrays (kelvin), class c warmer by 10 K."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"c{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            np.save(folder / f"{i}.npy", (290 + 10 * c + rng.random((16, 16)) * 3).astype("float32"))
    return root


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def thermal_dir(tmp_path_factory) -> Path:
    return write_thermal(tmp_path_factory.mktemp("thermal"))
