"""Time series as tokens: one per step (Conv1d, circular padding) or one per patch (PatchTST), with RevIN."""
from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_range
from ..batching import Padded, pad_collate
from ..datasets.time_series import TIME_SERIES_SUFFIXES, read_time_series
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

MAX_CHANNELS = 4096


class InstanceStats(NamedTuple):
    """Per-instance, per-channel statistics of a batch (RevIN, Kim et al. 2022), kept to undo the
    normalisation on a forecast.

    Attributes:
        mean: (b, 1, c).
        std: (b, 1, c), ``sqrt(var + eps)`` (biased variance, as RevIN).
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, values: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> "InstanceStats":
        """Statistics of (b, l, c) ``values`` over their real steps (``mask`` (b, l), all when None);
        computed without gradient, as RevIN does."""
        with torch.no_grad():
            weights = (torch.ones_like(values[..., :1]) if mask is None
                       else mask.unsqueeze(-1).to(values.dtype))  # b l 1
            count = weights.sum(1, keepdim=True).clamp_min(1)
            mean = (values * weights).sum(1, keepdim=True) / count
            var = ((values - mean) ** 2 * weights).sum(1, keepdim=True) / count
            return cls(mean, (var + eps).sqrt())

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """(b, h, c) values on the normalised scale → the instance's original scale."""
        return values * self.std + self.mean


def sinusoidal_positions(length: int, dim: int, *, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) fixed sin/cos position encoding (Vaswani et al.; Informer's ``PositionalEmbedding``)."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)  # l 1
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[:dim // 2])
    return table


class TimeSeriesTokenizer(Tokenizer):
    """Multivariate series → tokens, one per time step or one per patch, + sinusoidal positions.

    ``tokens="step"`` (the reference, Informer's ``TokenEmbedding``): Conv1d(C → D, kernel 3, circular
    padding), one token per step. With padded batches each series wraps around its own end, not the
    padding, so a short series gets the tokens it would get alone.
    ``tokens="patch"`` (PatchTST) for long series: Conv1d(C → D, kernel = ``patch_len``, stride =
    ``patch_stride``) after repeating the last step ``patch_stride`` times (PatchTST's end padding):
    ``(L - patch_len) // patch_stride + 2`` tokens; in a padded batch a series of length l has the
    first ``(l - patch_len) // patch_stride + 2`` real, patched as if alone. Steps the mask marks as
    missing inside a series are set to 0 after normalisation (the mean) and left out of the statistics.
    With ``instance_norm`` every series is first normalised by its own per-channel mean and std
    (RevIN without affine); :meth:`instance_stats` gives those statistics to de-normalise a forecast
    (see :class:`~metatransformer.heads.forecast.ForecastHead`).

    Args:
        dim: token width D.
        in_chans: channels C (7 for ETTh1).
        tokens: ``"step"`` or ``"patch"``.
        patch_len: patch length (``tokens="patch"``).
        patch_stride: patch stride (``tokens="patch"``).
        instance_norm: per-instance normalisation (RevIN).
        cls_token: prepend a learned cls token (classification).
        max_len: longest series accepted (steps).

    Inputs:
        series: (b, l, in_chans) float, or a :class:`Padded` whose (b, l) mask marks real steps
            (padding at the end, as :func:`~metatransformer.batching.pad_collate` makes).

    Returns:
        tokens (b, [1 +] n, D) and the (b, n) mask.
    """

    def __init__(
            self,
            *,
            dim: int,
            in_chans: int = 7,
            tokens: Literal["step", "patch"] = "step",
            patch_len: int = 16,
            patch_stride: int = 8,
            instance_norm: bool = True,
            cls_token: bool = False,
            max_len: int = 100_000,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.in_chans", in_chans, low=1, high=MAX_CHANNELS)
        check_range(f"{name}.patch_len", patch_len, low=1, high=max_len)
        check_range(f"{name}.patch_stride", patch_stride, low=1, high=patch_len)
        check_range(f"{name}.max_len", max_len, low=1, high=10_000_000)
        if tokens not in ("step", "patch"):
            raise ValueError(f"{name}.tokens: must be 'step' or 'patch', got {tokens!r}")
        self.in_chans, self.kind, self.max_len = in_chans, tokens, max_len
        self.patch_len, self.patch_stride = patch_len, patch_stride
        self.instance_norm = instance_norm
        kernel, stride = (3, 1) if tokens == "step" else (patch_len, patch_stride)
        self.value_embed = nn.Conv1d(in_chans, dim, kernel_size=kernel, stride=stride, bias=tokens == "patch")
        if tokens == "step":  # Informer initialises its TokenEmbedding this way
            nn.init.kaiming_normal_(self.value_embed.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)

    def num_tokens(self, length: int) -> int:
        """Content tokens (no cls) of a series of ``length`` steps."""
        return length if self.kind == "step" else (length - self.patch_len) // self.patch_stride + 2

    def instance_stats(self, series: torch.Tensor | Padded) -> InstanceStats:
        """The per-instance statistics ``forward`` normalises with (over real steps only)."""
        values, mask = self._unpack(series)
        return InstanceStats.of(values, mask)

    def forward(self, series: torch.Tensor | Padded) -> TokenSequence:
        values, step_mask = self._unpack(series)
        if self.instance_norm:
            values = InstanceStats.of(values, step_mask).normalize(values)
        if step_mask is not None:
            values = values.masked_fill(~step_mask.unsqueeze(-1), 0.0)
        if self.kind == "step":
            x, mask = self._step_tokens(values, step_mask)
        else:
            x, mask = self._patch_tokens(values, step_mask)
        x = x + sinusoidal_positions(x.shape[1], self.dim, device=x.device).to(x.dtype)
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
        return self.sequence(x, mask)

    def _unpack(self, series: torch.Tensor | Padded) -> tuple[torch.Tensor, torch.Tensor | None]:
        values, mask = (series.values, series.mask) if isinstance(series, Padded) else (series, None)
        if values.dim() != 3 or values.shape[-1] != self.in_chans:
            raise ValueError(f"time series tokenizer expects (batch, length, {self.in_chans}) series, "
                             f"got {tuple(values.shape)}")
        if not values.is_floating_point():
            raise TypeError(f"time series tokenizer expects float values, got {values.dtype}")
        check_range("time series length", values.shape[1], low=1 if self.kind == "step" else self.patch_len,
                    high=self.max_len)
        return values, mask

    def _step_tokens(self, values: torch.Tensor, step_mask: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = values.shape
        if step_mask is None:
            x = self.value_embed(F.pad(values.transpose(1, 2), (1, 1), mode="circular"))  # b d l
            return x.transpose(1, 2), torch.ones(batch, length, dtype=torch.bool, device=values.device)
        # Circular padding per series: neighbours of step t are (t ± 1) mod its own length.
        lengths = _lengths(step_mask)  # b 1
        steps = torch.arange(length, device=values.device).expand(batch, -1)  # b l
        window = torch.stack([values.gather(1, ((steps + k) % lengths).unsqueeze(-1).expand_as(values))
                              for k in (-1, 0, 1)], dim=-1)  # b l c 3
        x = torch.einsum("blck,dck->bld", window, self.value_embed.weight)
        return x, step_mask


    def _patch_tokens(self, values: torch.Tensor, step_mask: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = values.shape
        if step_mask is not None:  # repeat each series' own last step into its padding and past the end
            lengths = _lengths(step_mask)  # b 1
            index = torch.minimum(torch.arange(length + self.patch_stride, device=values.device), lengths - 1)
            values = values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
        else:
            values = torch.cat([values, values[:, -1:].expand(-1, self.patch_stride, -1)], dim=1)
        x = self.value_embed(values.transpose(1, 2)).transpose(1, 2)  # b n d
        if step_mask is None:
            return x, torch.ones(x.shape[:2], dtype=torch.bool, device=values.device)
        real = (lengths - self.patch_len).div(self.patch_stride, rounding_mode="floor") + 2  # b 1
        return x, torch.arange(x.shape[1], device=values.device) < real.clamp_min(1)


def _lengths(step_mask: torch.Tensor) -> torch.Tensor:
    """(b, 1) series lengths: one past the last real step (missing values inside a series stay inside)."""
    steps = torch.arange(1, step_mask.shape[1] + 1, device=step_mask.device)
    return torch.where(step_mask, steps, 0).amax(1, keepdim=True).clamp_min(1)


def series_augment(tokenizer: Tokenizer, *, jitter: float = 0.03, scale: float = 0.1
                   ) -> Callable[[torch.Tensor | Padded], torch.Tensor | Padded]:
    """Training augmentation of a (steps, channels) series (time series, IMU): each channel multiplied by
    a factor N(1, ``scale``²), then Gaussian noise of ``jitter`` × the channel's standard deviation added
    at every step. Defaults: the jittering σ = 0.03 and scaling σ = 0.1 of Iwana & Uchida's survey of
    time-series augmentation (2021; on z-normalised series, hence relative to each channel's spread here).

    Args:
        tokenizer: unused (the augmentation fits any series tokenizer).
        jitter: noise standard deviation, in channel standard deviations.
        scale: standard deviation of the per-channel factor around 1.
    """

    def apply(series: torch.Tensor | Padded) -> torch.Tensor | Padded:
        values = series.values if isinstance(series, Padded) else series
        real = values[series.mask] if isinstance(series, Padded) else values
        spread = real.std(0, correction=0, keepdim=True)  # 1 c
        out = values * torch.normal(1.0, scale, spread.shape) + torch.randn_like(values) * jitter * spread
        return Padded(out, series.mask) if isinstance(series, Padded) else out

    return apply


register_modality("time_series", tokenizer=TimeSeriesTokenizer, reader=read_time_series,
                  suffixes=TIME_SERIES_SUFFIXES, collate=pad_collate, augment=series_augment, mixing="mixup",
                  aliases=("timeseries", "ts"))
