"""Per-point segmentation data (``task: segmentation``): labelled point files → (points, per-point labels).

A sample is a point file whose reader gives per-point labels: a labelled ``.npz`` with ``points`` (n, 3),
optional ``colors`` / ``normals`` (n, 3) and ``labels`` (n,) integers, -1 = unlabelled (see
:func:`~metatransformer.datasets.point_cloud.read_point_cloud`), listed in a manifest (path, label, modality,
split) whose label column is not read. The reader is asked for the recipe's ``features`` plus ``"labels"``,
so the labels come as a last column that stays with its points; the cloud is centred and scaled as the
tokenizer's default preprocessing does (``normalize``) and capped at its ``num_points`` by farthest point
sampling. Smaller clouds keep their size: the point collate pads them with a mask and
:class:`~.data.ModalityCollate` pads their targets with ``IGNORE_INDEX`` (-1), so every real point is scored
once. Metrics are over the points of the samples (e.g. a converter's blocks), not of a full-resolution scene.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from ..data2seq.point import perturb_points
from ..datasets.point_cloud import normalize_point_cloud, resample_point_cloud
from ..registry import get_modality
from .data import LabelEncoder
from .records import Record


class PointLabelDataset(Dataset):
    """Records of labelled point files → ((n, in_chans) points, (n,) int64 labels), -1 = unlabelled.

    Args:
        records: the samples (files of one modality, read with its registered reader).
        tokenizer: the model's point-cloud tokenizer (its ``in_chans``, ``normalize`` and ``num_points``).
        labels: the label encoder; labels must be below its ``num_outputs``.
        reader_options: keyword arguments of the reader (``{"features": ["colors"]}`` for xyz + rgb).
        augment: perturb each training cloud's xyz (:func:`~metatransformer.data2seq.point.perturb_points`,
            which keeps the point order, so labels stay aligned).
        augment_options: its keyword options (scale, translate, jitter, rotate, ...).
    """

    modality_collate = True  # make_loader collates items with the modality's collate

    def __init__(self, records: Sequence[Record], tokenizer: torch.nn.Module, labels: LabelEncoder, *,
                 reader_options: dict[str, Any] | None = None, augment: bool = False,
                 augment_options: dict[str, Any] | None = None) -> None:
        modalities = {r.modality for r in records}
        if len(modalities) > 1:
            raise ValueError(f"a PointLabelDataset holds one modality, got {sorted(modalities)}")
        if not all(isinstance(r.source, (str, os.PathLike)) for r in records):
            raise ValueError("segmentation samples are labelled point files (paths)")
        self.records = list(records)
        self.modality = modalities.pop() if modalities else None
        # the tokenizer's default preprocessing, applied here to points and labels alike
        self.in_chans, self.normalize, self.num_points = tokenizer.in_chans, tokenizer.normalize, tokenizer.num_points
        self.num_classes = labels.num_outputs
        self.reader_options = dict(reader_options or {})
        self.augment_options = dict(augment_options or {}) if augment else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = Path(self.records[index].source)
        cloud = read_labelled(path, self.modality, self.reader_options)
        if cloud.shape[1] - 1 != self.in_chans:
            raise ValueError(f"{path}: read with {self.reader_options or 'no options'} it has {cloud.shape[1] - 1} "
                             f"channels per point, the tokenizer takes {self.in_chans}; set reader_options "
                             "features (e.g. [colors])")
        labels = cloud[:, -1]
        bad = labels[(labels < -1) | (labels >= self.num_classes)]
        if len(bad):
            raise ValueError(f"{path}: label {int(bad[0])} is not one of the {self.num_classes} classes "
                             f"(0 … {self.num_classes - 1}; -1 = unlabelled)")
        if self.normalize:
            cloud = normalize_point_cloud(cloud)  # xyz only: the label column is untouched
        if len(cloud) > self.num_points:
            cloud = resample_point_cloud(cloud, self.num_points)
        if self.augment_options is not None:  # xyz only: the label column is untouched
            cloud = perturb_points(cloud, **self.augment_options)
        return cloud[:, :-1], cloud[:, -1].long()


def read_labelled(path: Path, modality: str, reader_options: dict[str, Any]) -> torch.Tensor:
    """(n, channels + 1): the modality's reader with the options' features and ``"labels"`` last."""
    features = [*reader_options.get("features", ()), "labels"]
    return get_modality(modality).reader(path, **{**reader_options, "features": features})


def segmentation_labels(config: Any, train_records: Sequence[Record]) -> LabelEncoder:
    """The classes of a segmentation recipe: ``config.classes``, else 0 … K-1 for the largest label K-1 of the
    training files (each read once)."""
    classes = [str(c) for c in config.classes]
    if not classes:
        options = {r.modality: config.reader_options.get(r.modality, {}) for r in train_records}
        largest = max(int(read_labelled(Path(r.source), r.modality, options[r.modality])[:, -1].max())
                      for r in train_records)
        if largest < 0:
            raise ValueError("the training files hold no labelled point (every label is -1)")
        classes = [str(i) for i in range(largest + 1)]
    return LabelEncoder("segmentation", classes, len(classes))


def segmentation_head_options(config: Any, tokenizer: torch.nn.Module, num_classes: int) -> dict[str, Any]:
    """The ``point_segmentation`` head of a modality: it takes the tokenizer's point channels too."""
    hidden = {"hidden_dim": config.head_hidden_dim} if config.head_hidden_dim else {}
    return {"kind": "point_segmentation", "num_classes": num_classes, "in_chans": tokenizer.in_chans,
            "dropout": config.head_dropout, **hidden}
