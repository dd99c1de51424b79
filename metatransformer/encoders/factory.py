"""Building encoders from presets and checkpoints, and writing them in our directory format."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..serialization import (
    CheckpointError,
    is_checkpoint_dir,
    read_checkpoint_config,
    read_checkpoint_weights,
    write_checkpoint_dir,
)
from .checkpoint import convert_state_dict, load_encoder_weights, load_state_dict_source
from .config import EncoderConfig, get_encoder_config, presets_matching
from .encoder import SharedEncoder


def save_encoder(encoder: SharedEncoder, directory: str | os.PathLike) -> Path:
    """Write the encoder as ``config.json`` + ``model.safetensors`` in ``directory``."""
    return write_checkpoint_dir(directory, {"encoder": encoder.config.to_dict()}, encoder.state_dict())


def read_encoder_dir(path: str | os.PathLike) -> tuple[EncoderConfig, dict[str, torch.Tensor]]:
    """The encoder config and weights of a checkpoint directory: an encoder's, or a whole model's
    (whose ``encoder.`` weights are taken)."""
    config = read_checkpoint_config(path)
    if "encoder" not in config:
        raise CheckpointError(f"{path}: config.json has no 'encoder' field")
    try:
        encoder_config = EncoderConfig.from_dict(config["encoder"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(path) / 'config.json'}: {err}") from err
    weights = read_checkpoint_weights(path)
    if any(k.startswith("encoder.") for k in weights):
        weights = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
    return encoder_config, weights


def create_encoder(
        preset: str | EncoderConfig = "base",
        *,
        checkpoint: Any = None,
        strict: bool = True,
        **overrides: Any,
) -> SharedEncoder:
    """Build the shared encoder from a preset and optionally load weights.

    Args:
        preset: a name from ``ENCODER_PRESETS`` (``base``, ``large``, ``small``, ``tiny``, ``nano``) or
            an :class:`EncoderConfig`.
        checkpoint: a file (``.pth``/``.pt``/``.bin``/``.safetensors``), a directory we wrote (its config
            replaces ``preset``), or a state dict in any supported format.
        strict: with a checkpoint, fail on missing or unexpected block keys.
        **overrides: config fields to change (``act="quick_gelu"``, ``final_norm=True``...).
    """
    if isinstance(checkpoint, (str, os.PathLike)) and is_checkpoint_dir(checkpoint):
        preset, checkpoint = read_encoder_dir(checkpoint)
    encoder = SharedEncoder(config=get_encoder_config(preset, **overrides))
    if checkpoint is not None:
        load_encoder_weights(encoder, checkpoint, strict=strict)
    return encoder


def convert_checkpoint(
        source: str | os.PathLike | Mapping[str, torch.Tensor],
        output_dir: str | os.PathLike,
        *,
        config: EncoderConfig | str | None = None,
        **overrides: Any,
) -> Path:
    """Convert a checkpoint in any supported format into our safetensors + JSON config directory.

    Args:
        source: a checkpoint file or state dict.
        output_dir: directory to write ``config.json`` and ``model.safetensors`` to.
        config: the architecture; by default the preset whose width and depth fit the checkpoint.
        **overrides: config fields, e.g. ``act="quick_gelu"`` for OpenAI CLIP blocks.
    """
    state_dict = load_state_dict_source(source)
    if config is None:
        converted = convert_state_dict(state_dict)
        fits = presets_matching(converted.dim, converted.depth)
        if not fits:
            raise CheckpointError(f"{source if not isinstance(source, Mapping) else 'state dict'}: "
                                  f"{converted.describe()}; pass config= with the head count")
        config = fits[0]
        overrides.setdefault("final_norm", "norm.weight" in converted.encoder)
    encoder = SharedEncoder(config=get_encoder_config(config, **overrides))
    load_encoder_weights(encoder, state_dict)
    return save_encoder(encoder, output_dir)
