"""Audio as AST patch tokens: overlapping 16×16 patches of the log-mel filterbank."""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from .._validation import check_range
from ..batching import Padded, pad_collate
from ..datasets.audio import AUDIO_SUFFIXES, AUDIOSET_MEAN, AUDIOSET_STD, SAMPLE_RATE, fbank_transform, read_audio
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer, grid_pos_embed
from .image import ImageTokenizer

MAX_FRAMES = 100_000  # 1000 s at 10 ms
# AST's SpecAugment on AudioSet (ast/egs/audioset/run.sh: freqm=48, timem=192 for 1024 frames)
AST_FREQ_MASK, AST_TIME_MASK, AST_FRAMES = 48, 192, 1024


def patch_grid(frames: int, num_mel_bins: int, patch_size: int, stride: int) -> tuple[int, int]:
    """(frequency, time) patch counts of a (frames, mel) filterbank: 1 + (size - patch) // stride each."""
    return 1 + (num_mel_bins - patch_size) // stride, 1 + (frames - patch_size) // stride


class AudioTokenizer(Tokenizer):
    """Audio Spectrogram Transformer (AST) patch embedding over the Kaldi log-mel filterbank.

    Conv2d(1 → D, kernel ``patch_size``, stride ``stride``) over (mel × frames): overlapping patches,
    flattened frequency-major as AST does; + cls token + learned position embedding for
    ``target_length`` frames, resampled (bicubic, over the patch grid) for other lengths.
    Token counts at the defaults (128 mel bins, 16×16 patches, stride 10): 12 × 101 = 1212 patch
    tokens for 1024 frames (10 s), 12 × 9 = 108 for the 98 frames of a 1 s clip, 12 × 12 = 144 for
    AST's Speech Commands length of 128 frames; each + 1 cls token.

    With padded input, the patch tokens a clip would have without padding are real (mask True; at
    least one time step) and the rest are masked; the frame mask must mark a prefix (padding at the end).

    Args:
        dim: token width D.
        num_mel_bins: filterbank bins (frequency axis).
        target_length: frames the position embedding is learned for, and that the default
            preprocessing pads/crops clips to (None keeps each clip's length; positions are resampled).
        patch_size: square patch side.
        stride: patch stride on both axes (10 in AST: overlapping patches; = patch_size for none).
        cls_token: prepend a learned cls token.
        sample_rate: rate of the waveforms the default preprocessing receives (the reader's output rate).
        mean: filterbank normalisation mean of the default preprocessing (AudioSet's).
        std: filterbank normalisation std (AudioSet's); features become ``(fbank - mean) / (2 std)``.

    Inputs:
        fbank: (b, frames, num_mel_bins) float, normalised (see
            :func:`~metatransformer.datasets.audio.fbank_transform`), or a :class:`Padded` of it
            whose (b, frames) mask marks the real frames; frames >= patch_size.

    Returns:
        tokens (b, [1 +] f · t, D) with (f, t) = :func:`patch_grid`, and the (b, n) mask.
    """

    def __init__(
            self,
            *,
            dim: int,
            num_mel_bins: int = 128,
            target_length: int | None = 1024,
            patch_size: int = 16,
            stride: int = 10,
            cls_token: bool = True,
            sample_rate: int = SAMPLE_RATE,
            mean: float = AUDIOSET_MEAN,
            std: float = AUDIOSET_STD,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.patch_size", patch_size, low=1, high=512)
        check_range(f"{name}.stride", stride, low=1, high=patch_size)
        check_range(f"{name}.num_mel_bins", num_mel_bins, low=patch_size, high=1024)
        if target_length is not None:
            check_range(f"{name}.target_length", target_length, low=patch_size, high=MAX_FRAMES)
        check_range(f"{name}.sample_rate", sample_rate, low=1000, high=384_000)
        check_range(f"{name}.std", std, low=0, low_inclusive=False)
        self.num_mel_bins, self.target_length = num_mel_bins, target_length
        self.patch_size, self.stride = patch_size, stride
        self.sample_rate, self.mean, self.std = sample_rate, mean, std
        # Positions are learned on the grid of target_length frames (AST's 1024 when None).
        self.grid_size = patch_grid(target_length or 1024, num_mel_bins, patch_size, stride)
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch_size, stride=stride)
        self.cls_token = ClsToken(dim) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_prefix_tokens + math.prod(self.grid_size), dim) * 0.02)

    def forward(self, fbank: torch.Tensor | Padded) -> TokenSequence:
        values, frame_mask = (fbank.values, fbank.mask) if isinstance(fbank, Padded) else (fbank, None)
        if values.dim() != 3 or values.shape[-1] != self.num_mel_bins:
            raise ValueError(f"audio tokenizer expects (batch, frames, {self.num_mel_bins}) filterbanks, "
                             f"got {tuple(values.shape)}")
        if values.shape[1] < self.patch_size:
            raise ValueError(f"audio tokenizer needs at least {self.patch_size} frames, got {values.shape[1]}")
        x = self.patch_embed(values.transpose(1, 2).unsqueeze(1))  # b d f t
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # b (f t) d
        if frame_mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:  # the patches an unpadded clip of that many frames has (at least one)
            frames = frame_mask.sum(1, keepdim=True).to(x.device)  # b 1
            real = ((frames - self.patch_size).div(self.stride, rounding_mode="floor") + 1).clamp_min(1)
            starts = torch.arange(grid[1], device=x.device) < real  # b t
            mask = starts.unsqueeze(1).expand(-1, grid[0], -1).flatten(1)  # b (f t)
        if self.cls_token is not None:
            x, mask = self.cls_token(x, mask)
        return self.sequence(x + grid_pos_embed(self.pos_embed, grid, self.grid_size, self.num_prefix_tokens), mask)

    @classmethod
    def stem_from_checkpoint(cls, weights: Mapping[str, torch.Tensor], source_format: str
                             ) -> tuple[dict[str, object], dict[str, torch.Tensor]] | None:
        """AST's ImageNet initialisation: an image ViT's patch embedding (RGB filters summed to one
        channel), cls token and position embedding (resampled to the audio patch grid by :meth:`load_stem`)."""
        found = ImageTokenizer.stem_from_checkpoint(weights, source_format)
        if found is None:
            return None
        options, state = found
        state = {k: v for k, v in state.items() if not k.startswith("norm_pre.")}  # AST has no pre-norm
        return {"patch_size": options["patch_size"], "cls_token": options["cls_token"]}, state

    def load_stem(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load an image ViT stem: filters summed over RGB (timm's ``adapt_input_conv``), the square
        position grid resampled to this (frequency, time) grid; a missing patch bias stays zero."""
        state = dict(state)
        state["patch_embed.weight"] = adapt_input_conv(1, state["patch_embed.weight"])
        state.setdefault("patch_embed.bias", torch.zeros_like(self.patch_embed.bias))
        num_prefix = int("cls_token.token" in state)
        if num_prefix != self.num_prefix_tokens:
            raise ValueError(f"audio tokenizer: the stem has {num_prefix} cls token(s), the tokenizer "
                             f"{self.num_prefix_tokens}")
        old = math.isqrt(state["pos_embed"].shape[1] - num_prefix)
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(self.grid_size),
                                                    old_size=[old, old], num_prefix_tokens=num_prefix)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"audio tokenizer: ViT stem does not fit; missing {missing}, unexpected {unexpected}")


def audio_transform(tokenizer: AudioTokenizer) -> Callable[[torch.Tensor], Padded]:
    """The evaluation preprocessing that fits ``tokenizer``: waveform → normalised, padded filterbank."""
    return fbank_transform(target_length=tokenizer.target_length, num_mel_bins=tokenizer.num_mel_bins,
                           sample_rate=tokenizer.sample_rate, mean=tokenizer.mean, std=tokenizer.std,
                           min_frames=tokenizer.patch_size)


def audio_augment(tokenizer: AudioTokenizer, *, freq_mask: int | None = None, time_mask: int = AST_TIME_MASK,
                  time_mask_fraction: float = AST_TIME_MASK / AST_FRAMES) -> Callable[[torch.Tensor], Padded]:
    """Training counterpart of :func:`audio_transform`: the filterbank with SpecAugment masks (one
    frequency band and one time span, torchaudio's ``FrequencyMasking`` / ``TimeMasking``).

    Defaults are AST's AudioSet settings (freqm 48 of 128 mel bins, timem 192 of 1024 frames), scaled:
    the frequency mask to the tokenizer's mel bins, the time mask to at most 192/1024 of the frames (24
    for Speech Commands' 128; AST's own 1 s recipe uses 48: pass ``time_mask_fraction=0.375``).

    Args:
        freq_mask: widest frequency mask in mel bins (default ``48 · num_mel_bins / 128``).
        time_mask: widest time mask in frames.
        time_mask_fraction: a time mask is also at most this fraction of the frames.
    """
    if freq_mask is None:
        freq_mask = round(AST_FREQ_MASK * tokenizer.num_mel_bins / 128)
    return fbank_transform(target_length=tokenizer.target_length, num_mel_bins=tokenizer.num_mel_bins,
                           sample_rate=tokenizer.sample_rate, mean=tokenizer.mean, std=tokenizer.std,
                           min_frames=tokenizer.patch_size, freq_mask=freq_mask, time_mask=time_mask,
                           time_mask_fraction=time_mask_fraction)


register_modality("audio", tokenizer=AudioTokenizer, reader=read_audio, suffixes=AUDIO_SUFFIXES,
                  collate=pad_collate, transform=audio_transform, augment=audio_augment, mixing="mixup",
                  aliases=("sound", "speech"))
