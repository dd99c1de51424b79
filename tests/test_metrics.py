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


def test_reid_scores_by_hand():
    from metatransformer.metrics import reid_scores

    distances = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.2],  # id 0: matches at ranks 4 and 5
                              [0.4, 0.6, 0.05, 0.7, 0.8],  # id 2: its only match first
                              [0.3, 0.1, 0.2, 0.4, 0.5]])  # id 7: not in the gallery, left out
    scores = reid_scores(distances, torch.tensor([0, 2, 7]), torch.tensor([1, 0, 2, 0, 1]), ranks=(1, 3, 4, 10))
    assert scores["rank1"] == scores["rank3"] == pytest.approx(1 / 2)
    assert scores["rank4"] == scores["rank10"] == pytest.approx(1.0)
    assert scores["mAP"] == pytest.approx(((1 / 4 + 2 / 5) / 2 + 1) / 2)
    assert scores["mINP"] == pytest.approx((2 / 5 + 1) / 2)
    tie = reid_scores(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([1, 0]))  # ties keep the gallery order
    assert tie["rank1"] == 0 and tie["rank5"] == 1 and tie["mAP"] == tie["mINP"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="gallery"):
        reid_scores(torch.zeros(1, 2), torch.tensor([5]), torch.tensor([1, 0]))


def test_reid_scores_match_torchmetrics_retrieval():
    """Rank-k = hit rate at k and mAP = retrieval MAP of torchmetrics, with the queries as retrieval groups
    (queries without a match in the gallery skipped, as re-ID leaves them out)."""
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP

    from metatransformer.metrics import reid_scores

    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(12, 16, generator=generator)
    query_ids = torch.randint(0, 12, (40,), generator=generator)  # ids 10, 11 never in the gallery
    gallery_ids = torch.randint(0, 10, (60,), generator=generator)
    queries = centres[query_ids] + 1.5 * torch.randn(40, 16, generator=generator)
    gallery = centres[gallery_ids] + 1.5 * torch.randn(60, 16, generator=generator)
    distances = torch.cdist(queries, gallery)
    scores = reid_scores(distances, query_ids, gallery_ids)
    # similarities decreasing with the distance, positive: torchmetrics 1.9's RetrievalMAP scores negative preds 0
    preds, target = 1 / (1 + distances.flatten()), (query_ids[:, None] == gallery_ids[None]).flatten()
    indexes = torch.arange(40)[:, None].expand(40, 60).flatten()
    for k in (1, 5, 10, 20):
        hit_rate = RetrievalHitRate(top_k=k, empty_target_action="skip")(preds, target, indexes=indexes)
        assert scores[f"rank{k}"] == pytest.approx(float(hit_rate), abs=1e-6)
    assert scores["mAP"] == pytest.approx(float(RetrievalMAP(empty_target_action="skip")(preds, target, indexes=indexes)),
                                          abs=1e-6)
    assert 0 < scores["mINP"] <= scores["mAP"] < scores["rank1"] < scores["rank20"] < 1  # a non-trivial case
