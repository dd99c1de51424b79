"""Mixup / cutmix of classification training batches, with timm's ``Mixup`` (soft targets, label smoothing).

What a modality's batches take is registered with it (``ModalitySpec.mixing``): ``"cutmix"`` (image-like:
mixup, and cutmix boxes over the last two axes), ``"mixup"`` (whole-sample mixing only) or None (refused).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.data import Mixup

from ..registry import get_modality
from .config import TrainConfig


class _Mixup(Mixup):
    """timm's Mixup that keeps the last batch's λ (1: the batch was not mixed), so masks are mixed alike."""

    lam = 1.0

    def _mix_batch(self, x: torch.Tensor) -> float:
        self.lam = float(super()._mix_batch(x))
        return self.lam


class BatchMixer:
    """Mixes one modality's training batches in timm's batch mode: one λ per batch, sample i mixed with
    sample b-1-i, targets ``λ·y_i + (1-λ)·y_(b-1-i)`` over label-smoothed one-hot vectors.

    A batch is a tensor or a ``(values, mask)`` pair (:class:`~metatransformer.batching.Padded`, video
    clips); a mixed position is real when it is real in either sample. Cutmix boxes cover the last two
    axes of every leading channel and frame (one box for a whole clip).

    Args:
        kind: ``"cutmix"`` (mixup and cutmix) or ``"mixup"`` (cutmix off).
        num_classes: classes C.
        mixup: mixup α (0: off).
        cutmix: cutmix α (0: off; ignored for ``"mixup"``).
        prob: probability that a batch is mixed.
        switch_prob: with both on, probability of cutmix for a mixed batch.
        label_smoothing: smoothing of the one-hot targets.

    Inputs:
        batch: the collated batch (b even), target (b,) class indices.

    Returns:
        (the mixed batch, soft targets (b, C) that sum to 1).
    """

    def __init__(self, kind: str, num_classes: int, *, mixup: float, cutmix: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0) -> None:
        self.boxes = kind == "cutmix"  # this kind of batch takes cutmix boxes
        self.mixer = _Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix if self.boxes else 0.0, prob=prob,
                            switch_prob=switch_prob, mode="batch", label_smoothing=label_smoothing,
                            num_classes=num_classes)

    def __call__(self, batch: Any, target: torch.Tensor) -> tuple[Any, torch.Tensor]:
        values, mask = batch if isinstance(batch, tuple) else (batch, None)
        shape = values.shape
        flat = values.reshape(shape[0], -1, *shape[-2:]) if self.boxes else values  # b (c t) h w for clips
        mixed, soft = self.mixer(flat, target)
        values = mixed.reshape(shape)
        if mask is None:
            return values, soft
        mask = mask | mask.flip(0) if self.mixer.lam < 1 else mask
        if hasattr(batch, "_replace"):  # a named pair (Padded, VideoClip...) keeps its type, whatever its field names
            return batch._replace(**dict(zip(batch._fields, (values, mask)))), soft
        return (values, mask), soft


def batch_mixers(config: TrainConfig, num_classes: int, modalities: Sequence[str]) -> dict[str, BatchMixer]:
    """A :class:`BatchMixer` per modality of a run with ``--mixup``/``--cutmix`` (none otherwise).

    Raises:
        ValueError: a modality's batches cannot be mixed, or take mixup only and only cutmix is on.
    """
    if not config.mixing:
        return {}
    mixers = {}
    for modality in modalities:
        kind = get_modality(modality).mixing
        if kind is None:
            raise ValueError(f"--mixup/--cutmix: {modality} batches cannot be mixed (discrete or unordered inputs)")
        if kind == "mixup" and not config.mixup:
            raise ValueError(f"--cutmix: {modality} batches take mixup only (no cutmix boxes); set --mixup")
        mixers[modality] = BatchMixer(kind, num_classes, mixup=config.mixup, cutmix=config.cutmix,
                                      prob=config.mixup_prob, switch_prob=config.mixup_switch_prob,
                                      label_smoothing=config.label_smoothing)
    return mixers
