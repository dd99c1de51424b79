"""Encoder architecture configs as data, and the named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Activation = Literal["gelu", "quick_gelu"]


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the shared encoder: a stack of pre-norm timm ``Block``s.

    Nothing in a block checkpoint records the activation, the LayerNorm eps or the head count, and a
    wrong choice still loads strictly, so they live here.

    Args:
        dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: whether the fused qkv projection has a bias.
        act: ``"gelu"`` (exact, LAION OpenCLIP / Meta-Transformer) or ``"quick_gelu"`` (OpenAI CLIP).
        norm_eps: LayerNorm epsilon (1e-5 for CLIP-derived blocks; timm's generic ViT uses 1e-6).
        final_norm: apply a LayerNorm after the last block (timm ViT ``norm``; the Meta-Transformer
            file has none, so heads supply it there).
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
    """

    dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    act: Activation = "gelu"
    norm_eps: float = 1e-5
    final_norm: bool = False
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"EncoderConfig: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.act not in ("gelu", "quick_gelu"):
            raise ValueError(f"EncoderConfig: act must be 'gelu' or 'quick_gelu', got {self.act!r}")
        if self.depth < 1:
            raise ValueError(f"EncoderConfig: depth must be >= 1, got {self.depth}")

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        """Build from a dict, naming any unknown field instead of failing with a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"EncoderConfig: unknown field(s) {unknown}; known fields are {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in data)
        if missing:
            raise ValueError(f"EncoderConfig: missing required field(s) {missing}")
        return cls(**data)


ENCODER_PRESETS: dict[str, EncoderConfig] = {
    # Meta-Transformer B16 / L14: the LAION-2B OpenCLIP ViT-B/16 and ViT-L/14 visual blocks.
    "base": EncoderConfig(dim=768, depth=12, num_heads=12),
    "large": EncoderConfig(dim=1024, depth=24, num_heads=16),
    # Small widths for experiments and tests; no public checkpoint.
    "small": EncoderConfig(dim=384, depth=12, num_heads=6),
    "tiny": EncoderConfig(dim=192, depth=12, num_heads=3),
    "nano": EncoderConfig(dim=64, depth=2, num_heads=4),
}


def list_encoder_presets() -> list[str]:
    return sorted(ENCODER_PRESETS)


def get_encoder_config(preset: str | EncoderConfig, **overrides: Any) -> EncoderConfig:
    """Resolve a preset name (or a config) and apply field overrides."""
    if isinstance(preset, EncoderConfig):
        config = preset
    else:
        try:
            config = ENCODER_PRESETS[preset]
        except KeyError:
            raise ValueError(f"unknown encoder preset {preset!r}; known presets: {list_encoder_presets()}") from None
    return dataclasses.replace(config, **overrides) if overrides else config


def presets_matching(dim: int, depth: int) -> list[str]:
    """Names of the presets with this width and depth (used to suggest a fit for a checkpoint)."""
    return [name for name, c in ENCODER_PRESETS.items() if c.dim == dim and c.depth == depth]
