import pytest
import torch

pytest.importorskip("torchmetrics")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

from metatransformer.metrics import (  # noqa: E402
    average_accuracy,
    classification_scores,
    cohen_kappa,
    overall_accuracy,
    per_class_accuracy,
)


def test_scores_match_sklearn_on_random_predictions():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 16, (500,), generator=generator)
    preds = torch.where(torch.rand(500, generator=generator) < 0.6, target,
                        torch.randint(0, 16, (500,), generator=generator))
    scores = classification_scores(preds, target, 16)
    assert scores["oa"] == pytest.approx(sklearn_metrics.accuracy_score(target, preds), abs=1e-6)
    assert scores["aa"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(target, preds), abs=1e-6)
    assert scores["kappa"] == pytest.approx(sklearn_metrics.cohen_kappa_score(target, preds), abs=1e-5)


def test_hand_computed_case_and_absent_classes():
    target = torch.tensor([0, 0, 0, 0, 1, 1])
    preds = torch.tensor([0, 0, 0, 1, 1, 2])  # class 2 is predicted but absent from the target
    assert float(overall_accuracy(preds, target, 3)) == pytest.approx(4 / 6)
    assert float(average_accuracy(preds, target, 3)) == pytest.approx((3 / 4 + 1 / 2) / 2)  # not /3
    per_class = per_class_accuracy(preds, target, 3)
    assert per_class[:2].tolist() == pytest.approx([0.75, 0.5]) and per_class[2].isnan()
    # kappa = (p_o - p_e) / (1 - p_e); p_e = (4·3 + 2·2 + 0·1) / 36
    p_o, p_e = 4 / 6, (4 * 3 + 2 * 2) / 36
    assert float(cohen_kappa(preds, target, 3)) == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-6)


def test_scores_accept_logits():
    logits = torch.tensor([[2.0, 0.1], [0.3, 0.9], [0.8, 0.1]])
    assert float(overall_accuracy(logits, torch.tensor([0, 1, 1]), 2)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="3 columns for 2 classes"):
        overall_accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2)
