"""Per-point segmentation head: encoded point-group tokens → class logits for every input point."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range
from ..data2seq.base import TokenSequence
from ..data2seq.point import PointGroups
from ..geometry import interpolate_points
from .heads import HEADS

IGNORE_INDEX = -1  # the target of unlabelled and padded points: never scored

# Shape legend: b batch, n points, m group centres (tokens), k neighbours, c channels, d width, h hidden.


@HEADS.decorator("point_segmentation", aliases=("point_seg",))
class PointSegmentationHead(nn.Module):
    """Semantic segmentation of point clouds by PointNet++ feature propagation from the group centres.

    The tokens of the point cloud's groups (LayerNorm, then Linear d → h) are interpolated onto every
    input point from its ``k`` nearest group centres, with inverse squared-distance weights
    (:func:`~metatransformer.geometry.interpolate_points`, PointNet++'s 3-NN interpolation); each point's
    own input channels (xyz and features) are concatenated, and an MLP (Linear → LayerNorm → GELU,
    dropout, Linear) gives its logits. Projecting before interpolating is the same as after (the weights
    sum to 1) and interpolates h instead of d channels.

    The centres and points come from the :class:`~metatransformer.data2seq.point.PointGroups` the point-cloud
    tokenizer records in the sequence's ``context``; in a fused sequence, ``modality`` picks whose.

    Args:
        dim: token width D.
        num_classes: classes per point.
        in_chans: channels of the input points (the tokenizer's ``in_chans``), concatenated to their
            interpolated features.
        hidden_dim: width h of the interpolated features and of the MLP.
        k: centres each point interpolates from.
        modality: the point-cloud modality of a fused sequence (default: its only point-cloud modality).
        dropout: dropout before the last layer.
        norm_eps: eps of the LayerNorms.

    Inputs:
        features: the encoded :class:`TokenSequence` of the point-cloud tokenizer's output.

    Returns:
        (b, n, num_classes) logits for the n input points of the tokenizer (padding rows included).
    """

    def __init__(
            self,
            *,
            dim: int,
            num_classes: int,
            in_chans: int = 3,
            hidden_dim: int = 256,
            k: int = 3,
            modality: str | None = None,
            dropout: float = 0.0,
            norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_range("PointSegmentationHead.num_classes", num_classes, low=1, high=1_000_000)
        check_range("PointSegmentationHead.in_chans", in_chans, low=3, high=64)
        check_range("PointSegmentationHead.hidden_dim", hidden_dim, low=1, high=1_000_000)
        check_range("PointSegmentationHead.k", k, low=1, high=64)
        check_range("PointSegmentationHead.dropout", dropout, low=0, high=1)
        self.k, self.modality = k, modality
        self.norm = nn.LayerNorm(dim, eps=norm_eps)  # the encoder file has no final norm
        self.proj = nn.Linear(dim, hidden_dim)
        self.mlp = nn.Sequential(nn.Linear(hidden_dim + in_chans, hidden_dim), nn.LayerNorm(hidden_dim, eps=norm_eps),
                                 nn.GELU())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def _groups(self, features: TokenSequence) -> tuple[int, PointGroups]:
        """The position in ``features.modalities`` of the point cloud to segment, and its groups."""
        found = [(i, c) for i, (m, c) in enumerate(zip(features.modalities, features.context))
                 if isinstance(c, PointGroups) and self.modality in (None, m)]
        if len(found) != 1:
            what = f"{self.modality!r} " if self.modality else ""
            raise ValueError(f"PointSegmentationHead needs the point groups of one {what}point cloud in the sequence "
                             f"(the point-cloud tokenizer records them; cached features do not keep them), found "
                             f"{len(found)} among {list(features.modalities)}; set modality= to pick one")
        return found[0]

    def forward(self, features: TokenSequence) -> torch.Tensor:
        index, groups = self._groups(features)
        body = (features.segment == index) & ~features.prefix  # n: this cloud's group tokens, in centre order
        tokens = self.proj(self.norm(features.tokens[:, body]))  # b m h
        propagated = interpolate_points(tokens, groups.centres, groups.points[..., :3], self.k,
                                        mask=features.mask[:, body])  # b n h
        x = self.mlp(torch.cat([propagated, groups.points.to(propagated.dtype)], dim=-1))  # b n h
        return self.fc(self.dropout(x))

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the labelled points: outputs (b, n, c), target (b, n) int64 with
        ``IGNORE_INDEX`` (-1) for unlabelled and padded points, mask (b, n) bool of the points to score
        (all labelled ones when None). Zero (with gradients) when no point is scored."""
        if outputs.shape[:-1] != target.shape:
            raise ValueError(f"outputs {tuple(outputs.shape)} do not match per-point targets {tuple(target.shape)}")
        if mask is not None:
            target = target.masked_fill(~mask, IGNORE_INDEX)
        # the mean over the scored points, without a host sync to ask whether there are any
        total = F.cross_entropy(outputs.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (target != IGNORE_INDEX).sum().clamp_min(1)
