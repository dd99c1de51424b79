"""Collating items into batches: same-shape items stacked, variable-length items padded with a mask."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch


class Padded(NamedTuple):
    """A batch of variable-length items, padded along their first axis.

    Attributes:
        values: (b, l, ...) the items stacked after padding with zeros.
        mask: (b, l) bool, True = a real position.
    """

    values: torch.Tensor
    mask: torch.Tensor


def stack_collate(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """Same-shape items (e.g. images resized to one size) to one (b, ...) tensor."""
    shapes = {tuple(item.shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"items of different shapes cannot be stacked: {sorted(shapes)}; resize them first "
                         "(the modality's transform) or use a padding collate")
    return torch.stack(list(items))


def pad_collate(items: Sequence[torch.Tensor], *, padding_value: float = 0.0) -> Padded:
    """Items of shape (l_i, ...) (equal trailing shapes) to ``Padded`` values (b, max l_i, ...) and mask (b, l).

    An item that comes with its own mask (a ``Padded`` of one item, e.g. a clip shorter than its
    frame count) keeps it.
    """
    values = [item.values if isinstance(item, Padded) else item for item in items]
    trailing = {tuple(v.shape[1:]) for v in values}
    if len(trailing) > 1:
        raise ValueError(f"items differ beyond their first axis: {sorted(trailing)}")
    length = max(v.shape[0] for v in values)
    out = values[0].new_full((len(values), length, *values[0].shape[1:]), padding_value)
    mask = torch.zeros(len(values), length, dtype=torch.bool)
    for i, (item, value) in enumerate(zip(items, values)):
        out[i, :value.shape[0]] = value
        mask[i, :value.shape[0]] = item.mask if isinstance(item, Padded) else True
    return Padded(out, mask)


def stack_or_pad_collate(items: Sequence[torch.Tensor]) -> torch.Tensor | Padded:
    """Same-shape items stacked (:func:`stack_collate`), else padded with a mask (:func:`pad_collate`): e.g.
    point clouds resampled to one size, or kept at their own sizes (per-point segmentation)."""
    if all(not isinstance(item, Padded) for item in items) and len({tuple(item.shape) for item in items}) == 1:
        return torch.stack(list(items))
    return pad_collate(items)
