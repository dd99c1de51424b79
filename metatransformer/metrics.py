"""Classification scores as remote-sensing papers report them: overall accuracy (OA), average accuracy
(AA) and Cohen's kappa, computed with torchmetrics."""
from __future__ import annotations

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
