"""Building encoders from presets and checkpoints, and writing them in our directory format."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..pretrained import get_pretrained, is_pretrained_name, resolve_pretrained, weights_path
from ..serialization import (
    CONFIG_NAME,
    CheckpointError,
    is_checkpoint_dir,
    read_checkpoint_config,
    read_checkpoint_weights,
    write_checkpoint_dir,
)
from .checkpoint import (
    PICKLE_SUFFIXES,
    ConvertedCheckpoint,
    convert_state_dict,
    load_encoder_weights,
    load_state_dict_source,
)
from .config import ENCODER_PRESETS, EncoderConfig, get_encoder_config, presets_matching
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


@dataclass
class CheckpointSource:
    """A checkpoint of any supported kind, read once.

    Attributes:
        converted: the encoder weights in the canonical layout, and the tower's other keys.
        config: the encoder config recorded in a directory we wrote; None for a bare file or state dict.
        document: the whole ``config.json`` of a directory (a model's has ``tokenizers``); None otherwise.
        weights: all tensors of a directory (a model's ``tokenizers.*`` too); empty otherwise.
        name: how to refer to it in messages.
    """

    converted: ConvertedCheckpoint
    config: EncoderConfig | None = None
    document: dict[str, Any] | None = None
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    name: str = "state dict"

    def fitting_config(self, preset: str | EncoderConfig | None, **overrides: Any) -> EncoderConfig:
        """The directory's config, else ``preset``, else the preset whose width and depth fit (then the
        final norm is kept when the checkpoint has one, unless ``final_norm`` is given)."""
        if self.config is not None:  # a directory we wrote records the whole architecture
            return get_encoder_config(self.config, **overrides)
        if preset is None:
            fits = presets_matching(self.converted.dim, self.converted.depth)
            if not fits:
                raise CheckpointError(f"{self.name}: {self.converted.describe()}; pass a preset or an EncoderConfig "
                                      "with the head count")
            preset = fits[0]
            overrides.setdefault("final_norm", "norm.weight" in self.converted.encoder)
        return get_encoder_config(preset, **overrides)


def looks_like_checkpoint_path(value: Any) -> bool:
    """Whether a ``preset`` argument is really a checkpoint (an existing path, or a checkpoint suffix)."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str) or value in ENCODER_PRESETS:
        return False
    return Path(value).exists() or value.endswith((*PICKLE_SUFFIXES, ".safetensors"))


def read_checkpoint_source(source: Any) -> CheckpointSource:
    """Read a file (any supported format), a directory we wrote (encoder, whole model, ``convert`` or
    ``export_merged`` output), a state dict or a :class:`ConvertedCheckpoint`."""
    if isinstance(source, CheckpointSource):
        return source
    if isinstance(source, ConvertedCheckpoint):
        return CheckpointSource(source)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        if not is_checkpoint_dir(source):
            raise CheckpointError(f"{source}: a directory without {CONFIG_NAME}; expected a directory written by "
                                  "save_pretrained, save_encoder, convert or export_merged, or a checkpoint file")
        encoder_config, encoder_weights = read_encoder_dir(source)
        return CheckpointSource(convert_state_dict(encoder_weights), encoder_config, read_checkpoint_config(source),
                                read_checkpoint_weights(source), str(source))
    name = "state dict" if isinstance(source, Mapping) else str(source)
    return CheckpointSource(convert_state_dict(load_state_dict_source(source)), name=name)


def create_encoder(
        preset: str | EncoderConfig | os.PathLike | None = None,
        *,
        checkpoint: Any = None,
        pretrained: bool | str | None = None,
        strict: bool = True,
        **overrides: Any,
) -> SharedEncoder:
    """Build the shared encoder from a preset and optionally load weights.

    Args:
        preset: a name from ``ENCODER_PRESETS`` (``base``, ``large``, ``small``, ``tiny``, ``nano``), an
            :class:`EncoderConfig`, a published weights name (its architecture; weights only with
            ``pretrained=True``, as in timm), or a checkpoint path (same as ``checkpoint=``). Default:
            the preset that fits the checkpoint, else ``base``.
        checkpoint: a file (``.pth``/``.pt``/``.bin``/``.safetensors``), a directory we wrote (its config
            is used), or a state dict in any supported format.
        pretrained: a published weights name (``metatransformer weights`` lists them), or True for the
            preset's default entry; fetched through the Hugging Face Hub cache and sha256-checked.
        strict: with a checkpoint, fail on missing or unexpected block keys.
        **overrides: config fields to change (``act="quick_gelu"``, ``final_norm=True``...).
    """
    if looks_like_checkpoint_path(preset):
        if checkpoint is not None:
            raise ValueError("a checkpoint was given twice (as preset and checkpoint=)")
        preset, checkpoint = None, preset
    if isinstance(preset, str) and preset not in ENCODER_PRESETS and is_pretrained_name(preset):
        entry = get_pretrained(preset)
        preset, pretrained = None, (entry if pretrained is True else pretrained)
        if pretrained is None or pretrained is False:
            return SharedEncoder(config=entry.encoder_config(**overrides))
    entry = resolve_pretrained(pretrained, preset)
    if entry is not None:
        if checkpoint is not None:
            raise ValueError("pass checkpoint= or pretrained=, not both")
        config = (entry.encoder_config(**overrides) if preset is None
                  else get_encoder_config(preset, **{**entry.encoder, **overrides}))
        checkpoint = weights_path(entry)
        source = read_checkpoint_source(checkpoint)
    elif checkpoint is not None:
        source = read_checkpoint_source(checkpoint)
        config = source.fitting_config(preset, **overrides)
    else:
        return SharedEncoder(config=get_encoder_config(preset or "base", **overrides))
    encoder = SharedEncoder(config=config)
    load_encoder_weights(encoder, source.converted, strict=strict, name=source.name)
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
        source: a checkpoint file, a directory we wrote (a model's encoder is extracted), a state dict,
            or a published weights name (fetched and converted with its architecture).
        output_dir: directory to write ``config.json`` and ``model.safetensors`` to.
        config: the architecture; by default the directory's, or the preset whose width and depth fit.
        **overrides: config fields, e.g. ``act="quick_gelu"`` for OpenAI CLIP blocks.
    """
    if isinstance(source, str) and not Path(source).exists() and is_pretrained_name(source):
        return save_encoder(create_encoder(config, pretrained=source, **overrides), output_dir)
    return save_encoder(create_encoder(config, checkpoint=read_checkpoint_source(source), **overrides), output_dir)
