import numpy as np
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


def _eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    """A numpy re-implementation of ``eval_regdb`` (mangye16/Cross-Modal-Re-ID-baseline ``eval_metrics.py``,
    the AGW / DDAG evaluation): per query, the gallery sorted by distance; queries without a match skipped;
    CMC clipped at 1 and cut at ``max_rank`` (the gallery size when smaller); AP the mean precision at the
    matches; INP matches / rank of the last match. Its same-camera removal removes nothing here (queries are
    camera 1, the gallery camera 2), so it is left out. Returns (CMC (max_rank,), mAP, mINP)."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(num_q):
        raw_cmc = matches[q_idx]
        if not raw_cmc.any():
            continue
        cmc = raw_cmc.cumsum()
        last = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / np.arange(1.0, num_g + 1)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    assert all_cmc, "no query identity appears in the gallery"
    return np.asarray(all_cmc, np.float32).mean(0), np.mean(all_ap), np.mean(all_inp)


@pytest.mark.parametrize("seed, queries, gallery, identities", [
    (0, 30, 60, 12), (1, 25, 7, 5), (2, 10, 15, 8), (3, 40, 19, 30), (4, 1, 3, 2), (5, 50, 120, 40),
])
def test_reid_scores_match_eval_regdb(seed, queries, gallery, identities):
    """Rank-k, mAP and mINP equal the cross-modality re-ID codebases' ``eval_regdb`` on random embeddings,
    galleries smaller than 20 included (Rank-k for k past the gallery: the whole gallery, the last CMC value),
    and queries whose identity is not in the gallery (skipped by both)."""
    from metatransformer.metrics import reid_scores

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 8))
    query_ids, gallery_ids = rng.integers(0, identities, queries), rng.integers(0, identities, gallery)
    gallery_ids[0] = query_ids[0]  # at least one query has a match
    query = centres[query_ids] + rng.normal(scale=1.2, size=(queries, 8))
    items = centres[gallery_ids] + rng.normal(scale=1.2, size=(gallery, 8))
    distances = np.linalg.norm(query[:, None] - items[None], axis=-1)  # continuous: no ties
    ranks = (1, 2, 5, 10, 20, 50)
    cmc, mean_ap, mean_inp = _eval_regdb(distances, query_ids, gallery_ids, max_rank=max(ranks))
    scores = reid_scores(torch.from_numpy(distances), torch.from_numpy(query_ids), torch.from_numpy(gallery_ids),
                         ranks=ranks)
    for k in ranks:
        assert scores[f"rank{k}"] == pytest.approx(float(cmc[min(k, len(cmc)) - 1]), abs=1e-6)
    assert scores["mAP"] == pytest.approx(mean_ap, abs=1e-5)  # float32 precisions against float64
    assert scores["mINP"] == pytest.approx(mean_inp, abs=1e-5)

