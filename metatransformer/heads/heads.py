"""Task heads on the shared encoder's tokens, each with its loss (SPEC §4)."""
from __future__ import annotations

from typing import Any, Literal, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range, resolve_options
from ..data2seq.base import TokenSequence
from ..registry import Registry
from .pooling import PoolKind, normalize_pool, pool_tokens

HEADS: Registry[type["Head"]] = Registry("head")


class Head(nn.Module):
    """LayerNorm → pooling → (MLP) → dropout → Linear. Subclasses choose the loss.

    The Meta-Transformer encoder file has no final norm, so heads supply it (``norm=True``). Pooling
    follows :func:`~metatransformer.heads.pool_tokens`: cls pooling takes a real cls token (never a
    patch), mean/max pooling covers content tokens only, of ``modality`` or of every modality.

    Args:
        dim: token width D.
        num_outputs: classes or regression targets.
        pool: ``"cls"``, ``"mean"``, ``"max"`` or several (concatenated).
        modality: pool only this modality's tokens in a fused sequence; all modalities when None.
        hidden_dim: width of one hidden GELU layer, or None for a linear head.
        norm: LayerNorm on the tokens before pooling.
        dropout: dropout before the last layer.
        norm_eps: eps of the LayerNorm.

    Inputs:
        features: the encoded :class:`TokenSequence`: tokens (b, n, d), mask (b, n), prefix/segment records.

    Returns:
        (b, num_outputs).
    """

    def __init__(
            self,
            *,
            dim: int,
            num_outputs: int,
            pool: Union[PoolKind, tuple[PoolKind, ...]] = "cls",
            modality: str | None = None,
            hidden_dim: int | None = None,
            norm: bool = True,
            dropout: float = 0.0,
            norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_range(f"{name}.num_outputs", num_outputs, low=1, high=1_000_000)
        check_range(f"{name}.dropout", dropout, low=0, high=1)
        check_range(f"{name}.norm_eps", norm_eps, low=0, low_inclusive=False)
        if hidden_dim is not None:
            check_range(f"{name}.hidden_dim", hidden_dim, low=1, high=1_000_000)
        self.pool = normalize_pool(pool)
        self.modality = modality
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()
        in_dim = dim * len(self.pool)
        self.pre_logits = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU()) if hidden_dim else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim or in_dim, num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.fc.out_features

    def reset(self, num_outputs: int) -> None:
        """Replace the last layer for ``num_outputs`` outputs (new task, new class count)."""
        self.fc = nn.Linear(self.fc.in_features, num_outputs, device=self.fc.weight.device, dtype=self.fc.weight.dtype)

    def forward_features(self, features: TokenSequence) -> torch.Tensor:
        """Pooled pre-logits (b, hidden or d · kinds)."""
        normed = features.replace(tokens=self.norm(features.tokens))
        return self.pre_logits(pool_tokens(normed, self.pool, modality=self.modality))

    def forward(self, features: TokenSequence) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(features)))

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The task loss. ``mask`` (b, n) selects the scored tokens of per-token heads; others ignore it."""
        raise NotImplementedError  # pragma: no cover - abstract


@HEADS.decorator("classification", aliases=("cls", "classifier"))
class ClassificationHead(Head):
    """Single-label classification; cross-entropy with optional label smoothing. Targets (b,) int64, or
    (b, num_classes) class probabilities (soft targets, e.g. mixup's, which carry their own smoothing).

    Args:
        num_classes: number of classes.
        label_smoothing: passed to ``F.cross_entropy``.
        **kwargs: see :class:`Head`.
    """

    fixed_options = ("num_outputs",)

    def __init__(self, *, num_classes: int, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        check_range("ClassificationHead.label_smoothing", label_smoothing, low=0, high=1)
        super().__init__(num_outputs=num_classes, **kwargs)
        self.label_smoothing = label_smoothing

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if target.is_floating_point():  # probabilities: smoothing is already in them
            return F.cross_entropy(outputs, target.to(outputs.dtype))
        return F.cross_entropy(outputs, target, label_smoothing=self.label_smoothing)


@HEADS.decorator("multilabel", aliases=("multi_label",))
class MultiLabelHead(Head):
    """Multi-label classification (AudioSet style); BCE with logits, targets (b, c) in {0, 1}."""

    fixed_options = ("num_outputs",)

    def __init__(self, *, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_outputs=num_classes, **kwargs)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, target.to(outputs.dtype))


@HEADS.decorator("regression")
class RegressionHead(Head):
    """Regression (graph PCQM4M: L1); targets (b, num_outputs) or (b,) when num_outputs = 1.

    Args:
        loss_type: ``"l1"`` or ``"mse"``.
    """

    def __init__(self, *, num_outputs: int = 1, loss_type: Literal["l1", "mse"] = "l1", **kwargs: Any) -> None:
        if loss_type not in ("l1", "mse"):
            raise ValueError(f"loss_type must be 'l1' or 'mse', got {loss_type!r}")
        super().__init__(num_outputs=num_outputs, **kwargs)
        self.loss_type = loss_type

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        target = target.to(outputs.dtype).reshape(outputs.shape)
        return F.l1_loss(outputs, target) if self.loss_type == "l1" else F.mse_loss(outputs, target)


@HEADS.decorator("token", aliases=("segmentation", "per_token"))
class TokenHead(Head):
    """Per-token classification (point or pixel segmentation): (b, n, d) → (b, n, c).

    Its loss scores the content tokens (real, not prefix, of ``modality`` when set) unless a ``mask``
    says otherwise. Targets are (b, n) class indices aligned with the tokens; entries at unscored
    positions are not read.
    """

    fixed_options = ("num_outputs", "pool")

    def __init__(self, *, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_outputs=num_classes, pool="mean", **kwargs)

    def forward_features(self, features: TokenSequence) -> torch.Tensor:
        return self.pre_logits(self.norm(features.tokens))

    def scored_mask(self, features: TokenSequence) -> torch.Tensor:
        """(b, n) bool: the tokens this head's loss scores by default."""
        return features.content_mask(self.modality)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """outputs (b, n, c), target (b, n) int64, mask (b, n) bool of the tokens to score
        (``scored_mask(features)``); all tokens when None."""
        valid = torch.ones(target.shape, dtype=torch.bool, device=target.device) if mask is None else mask
        return F.cross_entropy(outputs[valid], target[valid])


def create_head(kind: str, *, dim: int, **options: Any) -> Head:
    """Build a head by kind (see ``HEADS.names()``: classification, multilabel, regression, token).

    Returns:
        the head, with its canonical ``kind`` and every option (given or default) in ``options``.
    """
    cls = HEADS.get(kind)
    resolved = resolve_options(cls, options, where=cls.__name__)
    head = cls(dim=dim, **resolved)
    head.kind, head.options = HEADS.canonical(kind), resolved
    return head
