"""Task heads on the shared encoder's tokens, each with its loss (SPEC §4)."""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pooling import Pool, normalize_pool, pool_tokens


class Head(nn.Module):
    """LayerNorm → pooling → (MLP) → dropout → Linear. Subclasses choose the loss.

    The Meta-Transformer encoder file has no final norm, so heads supply it (``norm=True``).
    Pooling follows the single-sequence rule: ``cls`` is the first token, ``mean``/``max`` cover the real
    tokens after the first ``num_prefix_tokens``. In a fused multi-modality sequence the later
    modalities' cls tokens are therefore pooled too; :meth:`MetaTransformer.embed` leaves every cls out.

    Args:
        dim: token width D.
        num_outputs: classes or regression targets.
        pool: ``"cls"``, ``"mean"``, ``"max"`` or several (concatenated).
        hidden_dim: width of one hidden GELU layer, or None for a linear head.
        norm: LayerNorm on the tokens before pooling.
        dropout: dropout before the last layer.
        num_prefix_tokens: leading tokens (cls) left out of mean/max pooling.
        norm_eps: eps of the LayerNorm.

    Inputs:
        tokens: (b, n, d) encoder output; mask: (b, n) bool, True = real token.

    Returns:
        (b, num_outputs).
    """

    def __init__(
            self,
            *,
            dim: int,
            num_outputs: int,
            pool: Pool = "cls",
            hidden_dim: int | None = None,
            norm: bool = True,
            dropout: float = 0.0,
            num_prefix_tokens: int = 1,
            norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.pool = normalize_pool(pool) if pool != "none" else ()
        self.num_prefix_tokens = num_prefix_tokens
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()
        in_dim = dim * max(len(self.pool), 1)
        self.pre_logits = (nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU()) if hidden_dim else nn.Identity())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim or in_dim, num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.fc.out_features

    def reset(self, num_outputs: int) -> None:
        """Replace the last layer for ``num_outputs`` outputs (new task, new class count)."""
        self.fc = nn.Linear(self.fc.in_features, num_outputs, device=self.fc.weight.device, dtype=self.fc.weight.dtype)

    def forward_features(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, n, d) → pooled pre-logits (b, hidden or d·kinds)."""
        pooled = pool_tokens(self.norm(tokens), mask, self.pool, num_prefix_tokens=self.num_prefix_tokens)
        return self.pre_logits(pooled)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(tokens, mask)))

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ClassificationHead(Head):
    """Single-label classification; cross-entropy with optional label smoothing.

    Args:
        num_classes: number of classes.
        label_smoothing: passed to ``F.cross_entropy``.
        **kwargs: see :class:`Head`.
    """

    def __init__(self, *, num_classes: int, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(num_outputs=num_classes, **kwargs)
        self.label_smoothing = label_smoothing

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """outputs (b, c) logits, target (b,) int64 class indices."""
        return F.cross_entropy(outputs, target, label_smoothing=self.label_smoothing)


class MultiLabelHead(Head):
    """Multi-label classification (AudioSet style); BCE with logits, targets (b, c) in {0, 1}."""

    def __init__(self, *, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_outputs=num_classes, **kwargs)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, target.to(outputs.dtype))


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

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(outputs.dtype).reshape(outputs.shape)
        return F.l1_loss(outputs, target) if self.loss_type == "l1" else F.mse_loss(outputs, target)


class TokenHead(Head):
    """Per-token classification (point or pixel segmentation): (b, n, d) → (b, n, c).

    The loss ignores padded tokens and the prefix tokens. Targets are (b, n) class indices aligned
    with the tokens (entries at ignored positions are not read).
    """

    def __init__(self, *, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_outputs=num_classes, pool="none", **kwargs)

    def forward_features(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pre_logits(self.norm(tokens))

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """outputs (b, n, c), target (b, n) int64, mask (b, n) bool of the tokens to score."""
        valid = torch.ones(target.shape, dtype=torch.bool, device=target.device) if mask is None else mask.clone()
        valid[:, :self.num_prefix_tokens] = False
        return F.cross_entropy(outputs[valid], target[valid])


HEADS: dict[str, type[Head]] = {
    "classification": ClassificationHead,
    "multilabel": MultiLabelHead,
    "regression": RegressionHead,
    "token": TokenHead,
}


def create_head(kind: str, *, dim: int, **options: Any) -> Head:
    """Build a head by kind (``classification``, ``multilabel``, ``regression``, ``token``)."""
    try:
        cls = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head kind {kind!r}; known kinds: {sorted(HEADS)}") from None
    try:
        return cls(dim=dim, **options)
    except TypeError as err:
        raise TypeError(f"{cls.__name__}: {err}") from err
