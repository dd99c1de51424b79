"""The Data2Seq contract every modality's tokenizer follows."""
from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn as nn


class TokenSequence(NamedTuple):
    """A tokenizer's output, and the encoder's input.

    Attributes:
        tokens: (b, n, d) float, position information already added.
        mask: (b, n) bool, True = real token, False = padding (or a missing value).
    """

    tokens: torch.Tensor
    mask: torch.Tensor

    @staticmethod
    def concat(sequences: "list[TokenSequence]") -> "TokenSequence":
        """Join sequences of the same batch along the token axis: (b, n1+n2+..., d) and the joint mask."""
        return TokenSequence(torch.cat([s.tokens for s in sequences], dim=1),
                             torch.cat([s.mask for s in sequences], dim=1))


class Tokenizer(nn.Module):
    """Base class of Data2Seq tokenizers: raw batch in, :class:`TokenSequence` out.

    Subclasses are registered with :func:`~metatransformer.data2seq.register_tokenizer`, take their
    options as keyword arguments (so a config dict rebuilds them), state their input in an ``Inputs:``
    docstring section, and set ``num_prefix_tokens`` (1 with a leading cls token, else 0).

    Args:
        dim: token width D, the shared encoder's width.
    """

    modality: ClassVar[str] = ""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"{type(self).__name__}: dim must be positive, got {dim}")
        self.dim = dim
        self.num_prefix_tokens = 0

    def forward(self, batch: Any) -> TokenSequence:  # pragma: no cover - abstract
        raise NotImplementedError


def full_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(b, n) all-True mask for an unpadded (b, n, d) sequence."""
    return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


class ClsToken(nn.Module):
    """A learned token prepended to every sequence (always real, never masked).

    Inputs:
        tokens: (b, n, d); mask: (b, n) bool.

    Returns:
        tokens (b, 1 + n, d) and mask (b, 1 + n).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.token, std=1e-6)  # timm's ViT init

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tokens.shape[0]
        tokens = torch.cat([self.token.expand(batch, -1, -1).to(tokens.dtype), tokens], dim=1)
        mask = torch.cat([mask.new_ones(batch, 1), mask], dim=1)
        return tokens, mask
