"""Metric definitions (against hand computations) and regression / multi-label runs from in-memory tensors."""
from __future__ import annotations

import pytest
import torch

from metatransformer.training import train
from metatransformer.training.data import records_from_tensors
from metatransformer.training.evaluate import compute_metrics

from .conftest import TINY


def test_classification_metrics_by_hand():
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0])
    m = compute_metrics("classification", torch.nn.functional.one_hot(preds, 3).float(), target, ["a", "b", "c"])
    assert m["accuracy"] == m["OA"] == pytest.approx(6 / 8)
    assert m["AA"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    po, pe = 6 / 8, (4 * 4 + 2 * 3 + 2 * 1) / 64  # Cohen's kappa
    assert m["kappa"] == pytest.approx((po - pe) / (1 - pe), abs=1e-6)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    f1 = [2 * 3 / (2 * 3 + 1 + 1), 2 * 2 / (2 * 2 + 1), 2 * 1 / (2 * 1 + 1)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3, abs=1e-6)
    assert [row["support"] for row in m["per_class"]] == [4, 2, 2]


def test_multilabel_and_regression_metrics():
    target = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    logits = torch.tensor([[3.0, -1], [-2, 2], [1, 0.5], [-1, -3]])
    assert compute_metrics("multilabel", logits, target, ["x", "y"])["mAP"] == pytest.approx(1.0)
    reg = compute_metrics("regression", torch.tensor([[1.0], [2.0]]), torch.tensor([1.5, 2.0]), [])
    assert reg["MAE"] == pytest.approx(0.25) and reg["MSE"] == pytest.approx(0.125)


def test_regression_from_in_memory_tensors(tmp_path):
    images = torch.rand(12, 3, 16, 16)
    records = records_from_tensors(images, images.mean((1, 2, 3)).tolist(), modality="image")
    result = train({**TINY, "task": "regression", "epochs": 1, "run_dir": str(tmp_path)}, records=records)
    assert {"val/mae", "val/mse"} <= set(result.metrics) and result.info["labels"]["num_outputs"] == 1


def test_multilabel_from_in_memory_tensors(tmp_path):
    labels = ["a|b", "a", "b", "b|c"] * 3
    records = records_from_tensors(torch.rand(12, 3, 16, 16), labels, modality="image")
    result = train({**TINY, "task": "multilabel", "epochs": 1, "run_dir": str(tmp_path)}, records=records)
    assert "val/map" in result.metrics and result.info["labels"]["classes"] == ["a", "b", "c"]
