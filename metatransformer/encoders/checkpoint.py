"""Read encoder checkpoints in every format the originals published, and write our own.

Formats (detected from the keys, see SPEC §2):

- ``metatransformer``: Meta-Transformer's encoder file, an ``nn.Sequential`` of blocks: ``{i}.norm1.weight``...
- ``timm``: a timm ViT state dict, ``blocks.{i}.*`` plus ``patch_embed``, ``cls_token``, ``pos_embed``,
  ``norm_pre``, ``norm``, ``head``...; VideoMAE-style ``attn.q_bias``/``attn.v_bias`` are fused into ``qkv``.
- ``open_clip``: an OpenCLIP visual tower, ``visual.transformer.resblocks.{i}.*`` (or without ``visual.``).
- our own: a directory with ``config.json`` and ``model.safetensors`` (timm block keys).

Everything is converted to the encoder's canonical layout, ``blocks.{i}.*`` and ``norm.*``. The tower's
other keys are handed, relative to its prefix, to the tokenizers' ``stem_from_checkpoint`` hooks: this
module knows encoder keys only. Keys nobody uses are reported rather than dropped silently.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from ..serialization import CheckpointError, read_safetensors
from .config import MAX_DEPTH, EncoderConfig, presets_matching

_logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
StateDict = dict[str, torch.Tensor]
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

# Parameters inside one timm Block, the canonical layout.
BLOCK_KEYS = (
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)
_OPEN_CLIP_BLOCK_KEYS = {
    "ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias",
    "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj.weight": "attn.proj.weight", "attn.out_proj.bias": "attn.proj.bias",
    "ln_2.weight": "norm2.weight", "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
# The final norm after the blocks, relative to the tower's prefix. OpenCLIP's ln_post normalises the
# pooled token; per token it is the same LayerNorm as a final norm.
_FINAL_NORM_KEYS = {"timm": "norm.", "open_clip": "ln_post.", "metatransformer": None}
# Blocks need these; biases are optional (qkv_bias=False towers have none).
_REQUIRED_BLOCK_KEYS = ("norm1.weight", "attn.qkv.weight", "attn.proj.weight", "norm2.weight", "mlp.fc1.weight",
                        "mlp.fc2.weight")
_BLOCK_PATTERNS = {
    "timm": re.compile(r"^(?P<prefix>(?:.*\.)?)blocks\.(?P<index>\d+)\.(?P<key>.+)$"),
    "open_clip": re.compile(r"^(?P<prefix>(?:.*\.)?)transformer\.resblocks\.(?P<index>\d+)\.(?P<key>.+)$"),
    "metatransformer": re.compile(r"^(?P<prefix>(?:module\.)?)(?P<index>\d+)\.(?P<key>(?:norm1|norm2|attn|mlp)\..+)$"),
}


@dataclass
class ConvertedCheckpoint:
    """A checkpoint in the canonical layout.

    Attributes:
        source_format: ``metatransformer``, ``timm`` or ``open_clip``.
        encoder: ``blocks.{i}.*`` and, if the source has a final norm, ``norm.*``.
        extras: the tower's other keys (patch embedding, cls token, positions, pre-norm...), relative to
            its prefix, for the tokenizers' ``stem_from_checkpoint`` hooks.
        unused: source keys the encoder does not take (stems, heads, other towers...).
    """

    source_format: str
    encoder: StateDict
    extras: StateDict = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len({k.split(".")[1] for k in self.encoder if k.startswith("blocks.")})

    @property
    def dim(self) -> int:
        return self.encoder["blocks.0.norm1.weight"].shape[0]

    @property
    def mlp_hidden_dim(self) -> int:
        return self.encoder["blocks.0.mlp.fc1.weight"].shape[0]

    def describe(self) -> str:
        fits = presets_matching(self.dim, self.depth)
        fit = f"fits preset {fits[0]!r}" if fits else "fits no preset: pass an EncoderConfig"
        return f"{self.depth} blocks of width {self.dim}, mlp {self.mlp_hidden_dim} ({fit})"


def read_state_dict(path: PathLike) -> StateDict:
    """Read a state dict from ``.safetensors`` or a pickle (``.pth``/``.pt``/``.bin``/``.ckpt``).

    Pickles are read with ``weights_only=True``; a training checkpoint that wraps the weights under
    ``state_dict``, ``model`` or ``module`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"{path}: could not be read as a PyTorch state dict with weights_only=True "
            f"(truncated, not a checkpoint, or it pickles objects other than tensors): {err}"
        ) from err
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, source: Any) -> StateDict:
    for _ in range(3):  # {"model": {"state_dict": ...}} at most this deep in practice
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model", "module") if k in obj), None)
            if inner is not None:
                obj = inner
                continue
        break
    raise CheckpointError(f"{source}: expected a mapping of parameter names to tensors, got {type(obj).__name__}")


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], *, prefix: str | None = None) -> ConvertedCheckpoint:
    """Detect the format of a state dict and convert it to the canonical layout.

    Args:
        state_dict: parameter name -> tensor, in any supported format.
        prefix: the key prefix of the transformer tower when several towers are present (for example
            ``"visual."``); detected when None.

    Raises:
        CheckpointError: no transformer blocks found, ambiguous towers, an unknown key inside a block,
            missing or incomplete blocks, or more blocks than any encoder has (checked before any
            per-block work, so a key like ``blocks.1000000000.…`` costs nothing).
    """
    found = _find_blocks(state_dict)
    if not found:
        sample = ", ".join(list(state_dict)[:5])
        raise CheckpointError(
            "no transformer blocks found: expected keys like '0.attn.qkv.weight' (Meta-Transformer), "
            "'blocks.0.attn.qkv.weight' (timm) or 'visual.transformer.resblocks.0.attn.in_proj_weight' "
            f"(OpenCLIP); the checkpoint's keys start with: {sample}"
        )
    if prefix is None:
        towers = sorted(found)
        if len(towers) > 1:
            visual = [t for t in towers if t[1].startswith("visual.")]
            if len(visual) != 1:
                raise CheckpointError(f"blocks found under several prefixes {[t[1] for t in towers]}; pass prefix=")
            towers = visual
        source_format, prefix = towers[0]
    else:
        matches = [t for t in found if t[1] == prefix]
        if not matches:
            raise CheckpointError(f"no blocks under prefix {prefix!r}; found {sorted(t[1] for t in found)}")
        source_format = matches[0][0]

    block_keys = found[(source_format, prefix)]
    _check_blocks(block_keys, source_format)
    converted = ConvertedCheckpoint(source_format=source_format, encoder={})
    used: set[str] = set()
    for source_key, (index, key) in block_keys.items():
        used.add(source_key)
        if source_format == "open_clip":
            if key not in _OPEN_CLIP_BLOCK_KEYS:
                raise CheckpointError(f"{source_key}: unknown parameter in an OpenCLIP block (supported: "
                                      f"{sorted(_OPEN_CLIP_BLOCK_KEYS)})")
            key = _OPEN_CLIP_BLOCK_KEYS[key]
        converted.encoder[f"blocks.{index}.{key}"] = state_dict[source_key]
    _fuse_separate_qkv_bias(converted.encoder)

    norm_prefix = _FINAL_NORM_KEYS[source_format]
    for source_key, tensor in state_dict.items():
        if source_key in used or not source_key.startswith(prefix):
            continue
        key = source_key[len(prefix):]
        if norm_prefix and key in (norm_prefix + "weight", norm_prefix + "bias"):
            converted.encoder["norm." + key[len(norm_prefix):]] = tensor
            used.add(source_key)
        else:
            converted.extras[key] = tensor
    converted.unused = sorted(set(state_dict) - used)
    return converted


def _find_blocks(state_dict: Mapping[str, torch.Tensor]) -> dict[tuple[str, str], dict[str, tuple[int, str]]]:
    """Group block parameters by (format, prefix): source key -> (block index, key inside the block)."""
    found: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for source_key in state_dict:
        for fmt, pattern in _BLOCK_PATTERNS.items():
            match = pattern.match(source_key)
            if match is None:
                continue
            found.setdefault((fmt, match["prefix"]), {})[source_key] = (int(match["index"]), match["key"])
            break
    return found


def _fuse_separate_qkv_bias(encoder: StateDict) -> None:
    """VideoMAE/BEiT blocks store q and v biases and no k bias: qkv.bias = cat(q_bias, 0, v_bias)."""
    for key in [k for k in encoder if k.endswith(".attn.q_bias")]:
        block = key[: -len("q_bias")]
        q_bias, v_bias = encoder.pop(key), encoder.pop(block + "v_bias")
        encoder[block + "qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def load_state_dict_source(source: Any) -> StateDict:
    """A state dict from a file path or a mapping."""
    if isinstance(source, Mapping):
        return _unwrap_state_dict(source, "state dict")
    return read_state_dict(source)


def state_dict_differences(
        expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
) -> tuple[list[str], list[str], list[str]]:
    """What keeps ``given`` from loading strictly where ``expected`` is: missing keys, unexpected keys,
    (both sorted), and ``"key: given shape vs expected shape"`` per shape mismatch, in ``expected``'s order."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [f"{k}: {tuple(given[k].shape)} vs expected {tuple(v.shape)}"
                  for k, v in expected.items() if k in given and given[k].shape != v.shape]
    return missing, unexpected, mismatched


def load_encoder_weights(encoder: torch.nn.Module, source: Any, *, strict: bool = True,
                         name: str | None = None) -> ConvertedCheckpoint:
    """Load a checkpoint of any supported format (a file, a state dict, or an already
    :class:`ConvertedCheckpoint`) into a :class:`SharedEncoder`.

    A source ``norm.*`` is loaded when the encoder has a final norm and reported otherwise. With
    ``strict``, a missing or unexpected block key, a shape difference, or a depth/width mismatch
    raises a :class:`CheckpointError` that names the keys and the preset that would fit.

    Returns:
        the converted checkpoint, whose ``unused`` lists the keys that were not loaded.
    """
    if isinstance(source, ConvertedCheckpoint):
        name, converted = name or "checkpoint", replace(source, unused=list(source.unused))
    else:
        name = name or (source if not isinstance(source, Mapping) else "state dict")
        converted = convert_state_dict(load_state_dict_source(source))
    config: EncoderConfig = encoder.config
    if (converted.depth, converted.dim, converted.mlp_hidden_dim) != (config.depth, config.dim, config.mlp_hidden_dim):
        fits = presets_matching(config.dim, config.depth)
        raise CheckpointError(
            f"{name}: the checkpoint ({converted.source_format}) has {converted.describe()}; the encoder has "
            f"{config.depth} blocks of width {config.dim}, mlp {config.mlp_hidden_dim}"
            + (f" (preset {fits[0]!r})" if fits else "")
        )
    weights = dict(converted.encoder)
    if not config.final_norm:
        if "norm.weight" in weights:
            warnings.warn(f"{name}: the checkpoint has a final norm after the blocks, but the encoder was built with "
                          "final_norm=False, so it is not used; pass final_norm=True (or no preset, to take the "
                          "architecture from the checkpoint) to keep it", UserWarning, stacklevel=3)
        converted.unused += sorted(k for k in weights if k.startswith("norm."))
        weights = {k: v for k, v in weights.items() if not k.startswith("norm.")}
    missing, unexpected, mismatched = state_dict_differences(encoder.state_dict(), weights)
    if mismatched:
        raise CheckpointError(f"{name}: shape mismatch in {len(mismatched)} tensors: " + "; ".join(mismatched[:8]))
    if strict and (missing or unexpected):
        raise CheckpointError(f"{name}: missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
                              f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    encoder.load_state_dict(weights, strict=strict)
    if converted.unused:
        _logger.info("%s: %d checkpoint keys not used by the encoder: %s", name, len(converted.unused),
                     ", ".join(converted.unused[:10]))
    return converted


def _check_blocks(block_keys: Mapping[str, tuple[int, str]], source_format: str) -> None:
    """Refuse block indices that are absurd or have gaps, and blocks that lack a required tensor."""
    keys_per_block: dict[int, set[str]] = {}
    for index, key in block_keys.values():
        if index >= MAX_DEPTH:
            raise CheckpointError(f"block index {index} is beyond the {MAX_DEPTH} blocks any encoder may have")
        keys_per_block.setdefault(index, set()).add(key)
    indices = sorted(keys_per_block)
    gaps = sorted(set(range(indices[-1] + 1)) - set(indices))
    if gaps:
        raise CheckpointError(f"blocks {gaps} are missing (found blocks {indices[0]}..{indices[-1]}); "
                              "the checkpoint is incomplete")
    if source_format == "open_clip":
        keys_per_block = {i: {_OPEN_CLIP_BLOCK_KEYS.get(k, k) for k in keys} for i, keys in keys_per_block.items()}
    expected = set(_REQUIRED_BLOCK_KEYS).union(*keys_per_block.values())
    for index, keys in keys_per_block.items():
        missing = sorted(expected - keys)
        if missing:
            raise CheckpointError(f"block {index} lacks {missing}; the checkpoint is incomplete")
