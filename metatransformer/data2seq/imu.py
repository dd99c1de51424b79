"""IMU streams (accelerometer + gyroscope) as strided Conv1d patch tokens with learned positions."""
from __future__ import annotations

import torch
import torch.nn as nn

from .._validation import check_range
from ..batching import Padded, pad_collate
from ..datasets.imu import IMU_SUFFIXES, read_imu
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer
from .time_series import series_augment


class IMUTokenizer(Tokenizer):
    """Conv1d(C → D, kernel = stride = ``patch_size``) over time → one token per patch, + cls +
    learned position embedding (position i is patch i: shorter streams use the first positions).

    Steps past the last whole patch are dropped. In a padded batch a patch is real when all its steps
    are (a stream shorter than one patch keeps one, zero-padded, real token).

    Args:
        dim: token width D.
        in_chans: channels (6: accelerometer x, y, z and gyroscope x, y, z; any number works).
        patch_size: steps per token (Ego4D at 200 Hz: 10 steps = 50 ms).
        max_len: the longest stream in steps; the position table has ``max_len // patch_size`` rows.
        cls_token: prepend a learned cls token.

    Inputs:
        stream: (b, steps, in_chans) float (m/s², rad/s as :func:`~metatransformer.datasets.read_imu`
            returns), or a :class:`Padded` of it with a (b, steps) mask (padding at the end).

    Returns:
        tokens (b, [1 +] steps // patch_size, D) and the (b, n) mask.
    """

    def __init__(
            self,
            *,
            dim: int,
            in_chans: int = 6,
            patch_size: int = 10,
            max_len: int = 2000,
            cls_token: bool = True,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.in_chans", in_chans, low=1, high=1024)
        check_range(f"{name}.patch_size", patch_size, low=1, high=100_000)
        check_range(f"{name}.max_len", max_len, low=patch_size, high=1_000_000)
        self.in_chans, self.patch_size, self.max_len = in_chans, patch_size, max_len
        self.patch_embed = nn.Conv1d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_prefix_tokens + max_len // patch_size, dim) * 0.02)

    def forward(self, stream: torch.Tensor | Padded) -> TokenSequence:
        values, step_mask = (stream.values, stream.mask) if isinstance(stream, Padded) else (stream, None)
        if values.dim() != 3 or values.shape[-1] != self.in_chans:
            raise ValueError(f"IMU tokenizer expects (batch, steps, {self.in_chans}) streams, "
                             f"got {tuple(values.shape)}")
        if not values.is_floating_point():
            raise TypeError(f"IMU tokenizer expects float values, got {values.dtype}")
        steps = values.shape[1]
        check_range("IMU stream length (steps)", steps, low=1, high=self.max_len)
        if step_mask is not None:
            values = values.masked_fill(~step_mask.unsqueeze(-1), 0.0)
        if steps < self.patch_size:  # one zero-padded patch
            values = nn.functional.pad(values, (0, 0, 0, self.patch_size - steps))
        x = self.patch_embed(values.transpose(1, 2)).transpose(1, 2)  # b n d
        num = x.shape[1]
        if step_mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:
            lengths = step_mask.sum(1, keepdim=True)  # b 1
            mask = torch.arange(num, device=x.device) < (lengths // self.patch_size).clamp_min(1)
        x = x + self.pos_embed[:, self.num_prefix_tokens:self.num_prefix_tokens + num]
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
            x = torch.cat([x[:, :1] + self.pos_embed[:, :1], x[:, 1:]], dim=1)
        return self.sequence(x, mask)


register_modality("imu", tokenizer=IMUTokenizer, reader=read_imu, suffixes=IMU_SUFFIXES, collate=pad_collate,
                  augment=series_augment, mixing="mixup", aliases=("inertial", "accelerometer"))
