"""Forecasting head: encoded time series tokens → the next ``horizon`` steps of every channel."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range
from ..data2seq.base import TokenSequence
from ..data2seq.time_series import InstanceStats
from .heads import HEADS


@HEADS.decorator("forecast", aliases=("forecasting",))
class ForecastHead(nn.Module):
    """LayerNorm → (flatten the content tokens | mean-pool them) → dropout → Linear → (b, horizon, channels).

    With ``num_tokens`` the content (non-prefix) tokens are flattened into one vector, the linear head
    over tokens of PatchTST and of the Meta-Transformer time series recipe; padded tokens are zeroed
    first. Without it the real content tokens are mean-pooled, which fits any sequence length.
    Pass the tokenizer's :class:`~metatransformer.data2seq.time_series.InstanceStats` to ``forward``
    to return the forecast on each series' original scale (RevIN de-normalisation).

    Args:
        dim: token width D.
        horizon: steps to forecast H.
        channels: channels C forecast per step.
        num_tokens: content tokens per sequence to flatten (the tokenizer's ``num_tokens(lookback)``),
            or None to mean-pool.
        norm: LayerNorm on the tokens first (the encoder file has no final norm).
        dropout: dropout before the linear layer.
        loss_type: ``"mse"`` or ``"mae"``.
        norm_eps: eps of the LayerNorm.

    Inputs:
        features: the encoder's :class:`TokenSequence` (tokens (b, n, D)).
        stats: optional per-instance statistics to de-normalise with.

    Returns:
        (b, horizon, channels).
    """

    def __init__(
            self,
            *,
            dim: int,
            horizon: int,
            channels: int,
            num_tokens: int | None = None,
            norm: bool = True,
            dropout: float = 0.0,
            loss_type: Literal["mse", "mae"] = "mse",
            norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_range("ForecastHead.horizon", horizon, low=1, high=1_000_000)
        check_range("ForecastHead.channels", channels, low=1, high=100_000)
        check_range("ForecastHead.dropout", dropout, low=0, high=1)
        if num_tokens is not None:
            check_range("ForecastHead.num_tokens", num_tokens, low=1, high=1_000_000)
        if loss_type not in ("mse", "mae"):
            raise ValueError(f"ForecastHead.loss_type: must be 'mse' or 'mae', got {loss_type!r}")
        self.horizon, self.channels, self.num_tokens, self.loss_type = horizon, channels, num_tokens, loss_type
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim * (num_tokens or 1), horizon * channels)

    def forward(self, features: TokenSequence, stats: InstanceStats | None = None) -> torch.Tensor:
        tokens = self.norm(features.tokens)
        content = features.content_mask()  # b n
        if self.num_tokens is None:
            weights = content.unsqueeze(-1).to(tokens.dtype)  # b n 1
            x = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1)  # b d
        else:
            body = tokens[:, ~features.prefix]  # b n' d
            if body.shape[1] != self.num_tokens:
                raise ValueError(f"ForecastHead was built for {self.num_tokens} content tokens, got {body.shape[1]}")
            x = body.masked_fill(~content[:, ~features.prefix].unsqueeze(-1), 0.0).flatten(1)  # b (n' d)
        out = self.fc(self.dropout(x)).view(-1, self.horizon, self.channels)  # b h c
        return stats.denormalize(out) if stats is not None else out

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """MSE or MAE over the forecast, averaged over the targets ``mask`` ((b, h) or (b, h, c) bool,
        True = observed) keeps, or all of them."""
        if outputs.shape != target.shape:
            raise ValueError(f"outputs {tuple(outputs.shape)} and target {tuple(target.shape)} differ in shape")
        error = F.mse_loss(outputs, target, reduction="none") if self.loss_type == "mse" \
            else F.l1_loss(outputs, target, reduction="none")
        if mask is None:
            return error.mean()
        weights = (mask.unsqueeze(-1) if mask.dim() == 2 else mask).expand_as(error).to(error.dtype)
        return (error * weights).sum() / weights.sum().clamp_min(1)
