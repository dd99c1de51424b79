"""Classification scores as remote-sensing papers report them: overall accuracy (OA), average accuracy
(AA) and Cohen's kappa, computed with torchmetrics; re-identification scores (CMC Rank-k, mAP, mINP)
of a query × gallery distance matrix."""
from __future__ import annotations

from typing import Sequence

import torch

from ._optional import require

_classification = require("torchmetrics.functional.classification")
multiclass_accuracy = _classification.multiclass_accuracy
multiclass_cohen_kappa = _classification.multiclass_cohen_kappa
multiclass_recall = _classification.multiclass_recall


def _labels(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices from ``preds`` given as indices (n,) or scores (n, num_classes)."""
    if preds.dim() == 2:
        if preds.shape[1] != num_classes:
            raise ValueError(f"scores have {preds.shape[1]} columns for {num_classes} classes")
        preds = preds.argmax(1)
    if preds.shape != target.shape or target.dim() != 1:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must be (n,) class indices")
    return preds.long(), target.long()


def overall_accuracy(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """OA: the fraction of samples classified correctly.

    Args:
        preds: (n,) class indices or (n, num_classes) scores.
        target: (n,) class indices.
        num_classes: number of classes.
    """
    preds, target = _labels(preds, target, num_classes)
    return multiclass_accuracy(preds, target, num_classes=num_classes, average="micro")


def per_class_accuracy(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) recall of each class; NaN for a class absent from ``target``."""
    preds, target = _labels(preds, target, num_classes)
    recall = multiclass_recall(preds, target, num_classes=num_classes, average=None)
    support = torch.bincount(target, minlength=num_classes)
    return torch.where(support > 0, recall, torch.full_like(recall, float("nan")))


def average_accuracy(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """AA: the mean of the per-class accuracies over the classes present in ``target``.

    torchmetrics' ``average="macro"`` also averages in classes that are predicted but absent from the
    target (as 0), which is not the AA that hyperspectral papers report (nor sklearn's balanced accuracy).
    """
    return per_class_accuracy(preds, target, num_classes).nanmean()


def cohen_kappa(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cohen's κ: agreement between predictions and target beyond chance."""
    preds, target = _labels(preds, target, num_classes)
    return multiclass_cohen_kappa(preds, target, num_classes=num_classes)


def classification_scores(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``{"oa", "aa", "kappa"}`` as floats in [0, 1] (κ in [-1, 1]), e.g. for Indian Pines test pixels."""
    return {"oa": float(overall_accuracy(preds, target, num_classes)),
            "aa": float(average_accuracy(preds, target, num_classes)),
            "kappa": float(cohen_kappa(preds, target, num_classes))}


def reid_scores(distances: torch.Tensor, query_ids: torch.Tensor, gallery_ids: torch.Tensor, *,
                ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float]:
    """Re-identification scores of a query × gallery distance matrix, as the cross-modality re-ID codebases
    compute them (RegDB's ``eval_regdb`` of AGW / DDAG): every gallery item is ranked (no same-camera filtering),
    queries whose identity is absent from the gallery are left out, and ties keep the gallery order.

    - Rank-k (the CMC curve at k): the share of queries with a correct match among their k nearest gallery
      items; k beyond the gallery size counts the whole gallery.
    - mAP: the mean over queries of the average precision, the mean of the precisions at the ranks of the
      query's correct matches.
    - mINP (Ye et al., 2021): the mean over queries of matches / rank of the last (hardest) correct match,
      the share of the inspected list that is correct when every match has been found.

    Args:
        distances: (q, g) query-to-gallery distances, smaller = more alike.
        query_ids: (q,) identities of the queries.
        gallery_ids: (g,) identities of the gallery items.
        ranks: the k of the reported CMC values.

    Returns:
        ``{"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}`` (one ``rank{k}`` per k) as floats in [0, 1].
    """
    if distances.dim() != 2 or tuple(distances.shape) != (len(query_ids), len(gallery_ids)):
        raise ValueError(f"distances {tuple(distances.shape)} must be (queries, gallery) = "
                         f"({len(query_ids)}, {len(gallery_ids)})")
    if not ranks or min(ranks) < 1:
        raise ValueError(f"ranks must be positive, got {list(ranks)}")
    order = distances.float().argsort(dim=1, stable=True)  # q g, nearest first
    matches = gallery_ids.to(order.device)[order] == query_ids.to(order.device)[:, None]  # q g in rank order
    matches = matches[matches.any(1)]
    if not len(matches):
        raise ValueError("no query identity appears in the gallery")
    hits = matches.cumsum(1)  # correct matches among the first k
    count = hits[:, -1]
    first = matches.int().argmax(1)  # 0-based rank of the first correct match
    last = matches.shape[1] - 1 - matches.flip(1).int().argmax(1)  # and of the last one
    positions = torch.arange(1, matches.shape[1] + 1, device=matches.device)
    precision = hits / positions  # q g: precision at every rank
    scores = {f"rank{k}": float((first < k).float().mean()) for k in ranks}
    scores["mAP"] = float(((precision * matches).sum(1) / count).mean())
    scores["mINP"] = float((count / (last + 1)).mean())
    return scores
