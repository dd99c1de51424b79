"""Encoder architecture configs as data, and the named presets."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .._validation import check_range, check_value, dataclass_from_dict
from ..registry import Registry

Activation = Literal["gelu", "quick_gelu"]
ScaleGranularity = Literal["layer", "qkv", "channel"]
# Far beyond any published ViT (ViT-22B: width 6144, 48 blocks), low enough that a corrupt config is
# refused before its blocks are allocated.
MAX_DIM, MAX_DEPTH = 16384, 256


@dataclass(frozen=True)
class PathwayConfig:
    """An un-merged Multimodal Pathway, recorded so the re-parameterized encoder saves, reloads and resumes.

    Written by :func:`~metatransformer.pathway.reparameterize_aux_into_target_model` and cleared by
    :func:`~metatransformer.pathway.merge_pathway`; the auxiliary weights and λ live in the state dict.

    Args:
        layers: (block index, layer name inside the block, number of auxiliary weights) per
            re-parameterized linear layer.
        scale_granularity: λ per layer, per q/k/v slice of a fused qkv (``"qkv"``) or per output channel.
        learnable_scale: whether λ trains.
        trainable_aux: whether the auxiliary weights train.
        aux_dtype: storage dtype of the auxiliary weights (``"float32"``, ``"bfloat16"``, ``"float16"``),
            or None for the target weight's dtype.
    """

    layers: tuple[tuple[int, str, int], ...]
    scale_granularity: ScaleGranularity = "layer"
    learnable_scale: bool = True
    trainable_aux: bool = True
    aux_dtype: Literal["float32", "bfloat16", "float16"] | None = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, check_value(getattr(self, field.name), hints[field.name],
                                                             f"PathwayConfig.{field.name}"))
        for block, name, num_aux in self.layers:
            check_range(f"PathwayConfig.layers block index of {name!r}", block, low=0, high=MAX_DEPTH - 1)
            check_range(f"PathwayConfig.layers auxiliary count of {name!r}", num_aux, low=1, high=16)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the shared encoder: a stack of pre-norm timm ``Block``s.

    Nothing in a block checkpoint records the activation, the LayerNorm eps or the head count, and a
    wrong choice still loads strictly, so they live here. Every field is type- and range-checked on
    construction, before anything is allocated.

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
        pathway: an un-merged Multimodal Pathway's structure (see :class:`PathwayConfig`), or None.
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
    pathway: PathwayConfig | None = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, check_value(getattr(self, field.name), hints[field.name],
                                                             f"EncoderConfig.{field.name}"))
        check_range("EncoderConfig.dim", self.dim, low=1, high=MAX_DIM)
        check_range("EncoderConfig.depth", self.depth, low=1, high=MAX_DEPTH)
        check_range("EncoderConfig.num_heads", self.num_heads, low=1, high=self.dim)
        check_range("EncoderConfig.mlp_ratio", self.mlp_ratio, low=0, high=64, low_inclusive=False)
        check_range("EncoderConfig.norm_eps", self.norm_eps, low=0, high=1, low_inclusive=False)
        check_range("EncoderConfig.drop_path_rate", self.drop_path_rate, low=0, high=1)
        if self.dim % self.num_heads:
            raise ValueError(f"EncoderConfig: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.pathway is not None and max(b for b, _, _ in self.pathway.layers) >= self.depth:
            raise ValueError(f"EncoderConfig: the pathway names blocks beyond depth {self.depth}")

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "EncoderConfig":
        """Build from a JSON-style dict: unknown, missing and mistyped fields are named."""
        return dataclass_from_dict(cls, data, where="EncoderConfig")


ENCODER_PRESETS: Registry[EncoderConfig] = Registry("encoder preset")
# Meta-Transformer B16 / L14: the LAION-2B OpenCLIP ViT-B/16 and ViT-L/14 visual blocks.
ENCODER_PRESETS.register("base", EncoderConfig(dim=768, depth=12, num_heads=12), aliases=("b16", "vit_base"))
ENCODER_PRESETS.register("large", EncoderConfig(dim=1024, depth=24, num_heads=16), aliases=("l14", "vit_large"))
# Small widths for experiments and tests; no public checkpoint.
ENCODER_PRESETS.register("small", EncoderConfig(dim=384, depth=12, num_heads=6))
ENCODER_PRESETS.register("tiny", EncoderConfig(dim=192, depth=12, num_heads=3))
ENCODER_PRESETS.register("nano", EncoderConfig(dim=64, depth=2, num_heads=4))


def list_encoder_presets() -> list[str]:
    return ENCODER_PRESETS.names()


def get_encoder_config(preset: str | EncoderConfig, **overrides: Any) -> EncoderConfig:
    """Resolve a preset name (or a config) and apply field overrides."""
    config = preset if isinstance(preset, EncoderConfig) else ENCODER_PRESETS.get(preset)
    return dataclasses.replace(config, **overrides) if overrides else config


def presets_matching(dim: int, depth: int) -> list[str]:
    """Names of the presets with this width and depth (used to suggest a fit for a checkpoint)."""
    return [name for name in ENCODER_PRESETS.names()
            if (ENCODER_PRESETS.get(name).dim, ENCODER_PRESETS.get(name).depth) == (dim, depth)]
