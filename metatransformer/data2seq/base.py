"""The Data2Seq contract every modality's tokenizer follows, and the batches it takes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

# Shape legend: b batch, n tokens, d width, l length of a padded item axis.


@dataclass
class TokenSequence:
    """A tokenizer's output, the encoder's input, and (with encoded tokens) the heads' input.

    Besides tokens and padding it records which tokens are prefix (cls) tokens and which modality
    each token came from, so pooling never mistakes a cls token for content, or one modality for
    another, in a fused sequence.

    Attributes:
        tokens: (b, n, d) float, position information already added.
        mask: (b, n) bool, True = real token, False = padding (or a missing value).
        prefix: (n,) bool, True = a prefix (cls) token; all False when omitted.
        segment: (n,) int64, index into ``modalities`` of the modality each token came from; all 0 when omitted.
        modalities: the modality names ``segment`` indexes; ``("",)`` when omitted (a bare tokenizer
            output, named by :meth:`MetaTransformer.tokenize`).
        context: one entry per ``modalities`` entry: what that tokenizer recorded for dense (per-element)
            heads, e.g. the point-cloud tokenizer's input points and the centre of each token; None where
            nothing. It travels with the tokens through the encoder untouched.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    prefix: torch.Tensor | None = None
    segment: torch.Tensor | None = None
    modalities: tuple[str, ...] = ("",)
    context: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3:
            raise ValueError(f"tokens must be (batch, tokens, dim), got {tuple(self.tokens.shape)}")
        if self.mask.shape != self.tokens.shape[:2] or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool {tuple(self.tokens.shape[:2])} tensor, "
                             f"got {self.mask.dtype} {tuple(self.mask.shape)}")
        n, device = self.tokens.shape[1], self.tokens.device
        if self.prefix is None:
            self.prefix = torch.zeros(n, dtype=torch.bool, device=device)
        if self.segment is None:
            self.segment = torch.zeros(n, dtype=torch.long, device=device)
        if self.prefix.shape != (n,) or self.segment.shape != (n,):
            raise ValueError(f"prefix and segment must be ({n},), got {tuple(self.prefix.shape)} and "
                             f"{tuple(self.segment.shape)}")
        if self.context is None:
            self.context = (None,) * len(self.modalities)
        if len(self.context) != len(self.modalities):
            raise ValueError(f"context needs one entry per modality ({len(self.modalities)}), got {len(self.context)}")

    @classmethod
    def with_prefix(cls, tokens: torch.Tensor, mask: torch.Tensor, num_prefix_tokens: int,
                    modality: str = "", context: Any = None) -> "TokenSequence":
        """A one-modality sequence whose first ``num_prefix_tokens`` tokens are prefix (cls) tokens."""
        prefix = torch.arange(tokens.shape[1], device=tokens.device) < num_prefix_tokens
        return cls(tokens, mask, prefix=prefix, modalities=(modality,), context=(context,))

    def replace(self, *, tokens: torch.Tensor | None = None, modality: str | None = None) -> "TokenSequence":
        """The same sequence with new tokens (e.g. the encoder's output) or its single modality renamed."""
        modalities = self.modalities
        if modality is not None:
            if len(modalities) != 1:
                raise ValueError("only a one-modality sequence can be renamed")
            modalities = (modality,)
        return TokenSequence(self.tokens if tokens is None else tokens, self.mask, self.prefix, self.segment, modalities,
                             self.context)

    @staticmethod
    def concat(sequences: Sequence["TokenSequence"]) -> "TokenSequence":
        """Join sequences of the same batch along the token axis: (b, n1+n2+..., d), the joint mask,
        and the prefix/segment/context records (segments re-indexed into the joint ``modalities``)."""
        if not sequences:
            raise ValueError("concat needs at least one sequence")
        sizes = [s.tokens.shape[0] for s in sequences]
        if len(set(sizes)) > 1:
            raise ValueError(f"all sequences must have the same batch size to be joined, got {sizes}")
        modalities: list[str] = []
        segments = []
        for seq in sequences:
            offset = len(modalities)
            modalities.extend(seq.modalities)
            segments.append(seq.segment + offset)
        return TokenSequence(torch.cat([s.tokens for s in sequences], dim=1),
                             torch.cat([s.mask for s in sequences], dim=1),
                             prefix=torch.cat([s.prefix for s in sequences]),
                             segment=torch.cat(segments), modalities=tuple(modalities),
                             context=tuple(c for s in sequences for c in s.context))

    def content_mask(self, modality: str | None = None) -> torch.Tensor:
        """(b, n) bool: real tokens that are not prefix tokens, of one modality or of all."""
        content = self.mask & ~self.prefix
        return content & self.modality_mask(modality) if modality is not None else content

    def modality_mask(self, modality: str) -> torch.Tensor:
        """(n,) bool: the tokens that came from ``modality``."""
        if modality not in self.modalities:
            raise ValueError(f"the sequence has no {modality!r} tokens; it has {list(self.modalities)}")
        ids = [i for i, m in enumerate(self.modalities) if m == modality]
        return torch.isin(self.segment, torch.tensor(ids, device=self.segment.device))

    def cls_index(self, modality: str | None = None) -> int:
        """Position of the first prefix (cls) token, of ``modality`` or of the whole sequence."""
        candidates = self.prefix if modality is None else self.prefix & self.modality_mask(modality)
        positions = candidates.nonzero()
        if positions.numel() == 0:
            where = f" of {modality!r}" if modality else ""
            raise ValueError(f"cls pooling needs a cls token{where}, but the sequence has none "
                             "(use pool='mean' or 'max', or a tokenizer with cls_token=True)")
        return int(positions[0])


class Tokenizer(nn.Module):
    """Base class of Data2Seq tokenizers: raw batch in, :class:`TokenSequence` out.

    A subclass is registered with its reader through :func:`~metatransformer.register_modality`. Its
    constructor is keyword-only, with annotated JSON-friendly options (int, float, bool, str, tuples,
    Literal), so a config dict rebuilds it and the model config checks option types before building;
    it checks its own value ranges before allocating anything. It states its input in an ``Inputs:``
    docstring section, sets ``num_prefix_tokens`` (1 with a leading cls token, else 0) and returns
    ``self.sequence(tokens, mask)``.

    Args:
        dim: token width D, the shared encoder's width.
    """

    modality: ClassVar[str] = ""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"{type(self).__name__}: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.num_prefix_tokens = 0

    def forward(self, batch: Any) -> TokenSequence:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def stem_from_checkpoint(cls, weights: Mapping[str, torch.Tensor], source_format: str
                             ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The pretrained-stem hook (timm's ``checkpoint_filter_fn`` pattern): find this tokenizer's
        weights in a full model checkpoint, so the encoder's checkpoint code knows only encoder keys.

        Args:
            weights: the checkpoint's keys outside the transformer blocks, relative to the tower's prefix.
            source_format: the detected format (``"timm"``, ``"open_clip"``, ``"metatransformer"``).

        Returns:
            (options that fit the stem, its weights for :meth:`load_stem`), or None (the default) when
            the checkpoint holds nothing for this tokenizer.
        """
        return None

    def load_stem(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load the weights :meth:`stem_from_checkpoint` found, adapting them to this tokenizer's shape."""
        raise NotImplementedError(f"{type(self).__name__} has no pretrained stem")

    def sequence(self, tokens: torch.Tensor, mask: torch.Tensor, context: Any = None) -> TokenSequence:
        """Wrap (b, n, d) tokens and their (b, n) mask with this tokenizer's prefix and modality records, and
        what it records for dense heads (``context``)."""
        return TokenSequence.with_prefix(tokens, mask, self.num_prefix_tokens, self.modality, context)


def grid_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], trained_grid: tuple[int, int],
                   num_prefix_tokens: int) -> torch.Tensor:
    """A learned (1, prefix + gh·gw, d) position table for a patch ``grid``: the table itself for the grid
    it was learned on, else resampled bicubically (timm's ``resample_abs_pos_embed``), prefix rows kept."""
    if tuple(grid) == tuple(trained_grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=list(trained_grid),
                                  num_prefix_tokens=num_prefix_tokens)


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
