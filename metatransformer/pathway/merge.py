"""Merging the pathway away: W ← W + Σ λ·W_aux gives the original architecture and keys, at zero inference cost."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from ..config import ModelConfig
from ..encoders.config import EncoderConfig
from ..serialization import atomic_write, write_checkpoint_dir
from .reparam import pathway_layers


def merge_pathway(model: nn.Module) -> int:
    """Replace every :class:`PathwayLinear` in ``model`` with a plain ``nn.Linear`` holding the merged weight.

    Merge before ``torch.compile``, export or deployment. Returns the number of merged layers.
    """
    layers = pathway_layers(model)
    for name, layer in layers.items():
        model.set_submodule(name, layer.to_linear())
    for module in model.modules():  # the encoder no longer records a pathway
        if isinstance(getattr(module, "config", None), EncoderConfig) and module.config.pathway is not None:
            module.config = dataclasses.replace(module.config, pathway=None)
    return len(layers)


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict ``model`` will have once merged: the original keys, no auxiliary weights or λ.

    The model itself is not changed.
    """
    layers = pathway_layers(model)
    target_weights = {f"{name}.target_weight": name for name in layers}
    pathway_only = tuple(f"{name}.{part}." for name in layers for part in ("aux_weights", "scales"))
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key in target_weights:
            name = target_weights[key]
            state_dict[f"{name}.weight"] = layers[name].merged_weight().detach().to(value.dtype)
        elif not key.startswith(pathway_only):
            state_dict[key] = value
    return state_dict


def export_merged(model: nn.Module, path: str | Path) -> Path:
    """Write the merged model with its original keys.

    A :class:`~metatransformer.encoders.SharedEncoder` or a :class:`~metatransformer.MetaTransformer` is
    written in our directory format (``config.json`` + ``model.safetensors``), which ``create_encoder`` /
    ``MetaTransformer.from_pretrained`` open; any other model (e.g. a timm ViT) as one ``.safetensors``
    file that loads strictly into the un-re-parameterized architecture.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    if isinstance(config, (EncoderConfig, ModelConfig)):
        document = {"encoder": config.to_dict()} if isinstance(config, EncoderConfig) else config.to_dict()
        document["encoder"]["pathway"] = None  # the merged weights have the plain architecture
        return write_checkpoint_dir(path, document, merged_state_dict(model))
    tensors = {k: v.detach().contiguous() for k, v in merged_state_dict(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    return path


@torch.no_grad()
def check_merge(model: nn.Module, *inputs: Any, atol: float = 1e-5) -> float:
    """Compare ``model`` with a merged copy on ``inputs``; return the max abs difference.

    Raises:
        AssertionError: the difference exceeds ``atol``.
    """
    merged = copy.deepcopy(model)
    merge_pathway(merged)
    was_training = model.training
    model.eval(), merged.eval()
    try:
        difference = (model(*inputs) - merged(*inputs)).abs().max().item()
    finally:
        model.train(was_training)
    if difference > atol:
        raise AssertionError(f"merged and un-merged outputs differ by {difference:.3g} > atol={atol}")
    return difference
