"""MetaTransformer: tokenizers per modality, one shared encoder, task heads."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn
from safetensors.torch import save_file

from . import __version__
from .data2seq import ImageTokenizer, TokenSequence, Tokenizer, canonical_modality, create_tokenizer, get_tokenizer_class
from .encoders import EncoderConfig, SharedEncoder, get_encoder_config
from .encoders.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    convert_state_dict,
    load_encoder_weights,
    load_state_dict_source,
    state_dict_differences,
)
from .heads import create_head, pool_tokens

_logger = logging.getLogger(__name__)
_CONFIG_FIELDS = ("encoder", "tokenizers", "heads", "freeze_encoder")


class Embedding(NamedTuple):
    """What :meth:`MetaTransformer.embed` returns.

    Attributes:
        pooled: (b, d) one vector per sample.
        tokens: (b, n, d) encoder output.
        mask: (b, n) bool, True = real token.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


class MetaTransformer(nn.Module):
    """Tokenizers (one per modality) → shared encoder → heads.

    Several modalities' token sequences can be concatenated and encoded together (Meta-Transformer's
    recipe for fusion); each modality's tokens get a learned modality-type embedding (zero at
    initialisation, so a single modality reproduces the checkpoint it was loaded from).

    Args:
        encoder: a preset name, an :class:`EncoderConfig` or its dict.
        tokenizers: {modality: tokenizer options} (or a list of modalities with default options).
        heads: {head name: {"kind": "classification" | "multilabel" | "regression" | "token", **options}}.
        freeze_encoder: freeze the shared encoder (Meta-Transformer's recipe); heads and tokenizers train.
    """

    def __init__(
            self,
            *,
            encoder: str | EncoderConfig | Mapping[str, Any] = "base",
            tokenizers: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("image",),
            heads: Mapping[str, Mapping[str, Any]] | None = None,
            freeze_encoder: bool = True,
    ) -> None:
        super().__init__()
        config = encoder if not isinstance(encoder, Mapping) else EncoderConfig.from_dict(dict(encoder))
        self.encoder = SharedEncoder(config=get_encoder_config(config))
        dim = self.encoder.dim
        if not isinstance(tokenizers, Mapping):
            tokenizers = {modality: {} for modality in tokenizers}
        tokenizer_options = {canonical_modality(m): dict(opts) for m, opts in tokenizers.items()}
        if not tokenizer_options:
            raise ValueError("a MetaTransformer needs at least one modality")
        self.tokenizers = nn.ModuleDict({m: create_tokenizer(m, dim, **opts) for m, opts in tokenizer_options.items()})
        head_options = {name: dict(opts) for name, opts in (heads or {}).items()}
        for name, opts in head_options.items():
            if "kind" not in opts:
                raise ValueError(f"head {name!r}: missing 'kind' (classification, multilabel, regression, token)")
        self.heads = nn.ModuleDict({name: create_head(opts["kind"], dim=dim, **{k: v for k, v in opts.items() if k != "kind"})
                                    for name, opts in head_options.items()})
        self.modality_embed = nn.Parameter(torch.zeros(len(self.tokenizers), dim))
        self.config = {"encoder": self.encoder.config.to_dict(), "tokenizers": tokenizer_options,
                       "heads": head_options, "freeze_encoder": freeze_encoder}
        if freeze_encoder:
            self.encoder.freeze()

    @property
    def modalities(self) -> list[str]:
        return list(self.tokenizers)

    def tokenizer(self, modality: str) -> Tokenizer:
        """This model's tokenizer for ``modality`` (any accepted spelling)."""
        name = canonical_modality(modality)
        if name not in self.tokenizers:
            raise ValueError(f"this model has no {name!r} tokenizer; it has {self.modalities}")
        return self.tokenizers[name]

    def tokenize(self, modality: str, batch: Any) -> TokenSequence:
        """Run one modality's tokenizer and add its modality-type embedding: (b, n, d) tokens and mask."""
        tokens, mask = self.tokenizer(modality)(batch)
        index = self.modalities.index(canonical_modality(modality))
        return TokenSequence(tokens + self.modality_embed[index].to(tokens.dtype), mask)

    def forward_features(self, inputs: Mapping[str, Any]) -> TokenSequence:
        """Tokenize every modality in ``inputs``, concatenate in the given order, encode with the joint mask.

        Inputs:
            inputs: {modality: batch}, all with the same batch size b.

        Returns:
            tokens (b, n_1 + n_2 + ..., d) and mask (b, n_1 + n_2 + ...).
        """
        return self._encode(inputs)[0]

    def _encode(self, inputs: Mapping[str, Any]) -> tuple[TokenSequence, torch.Tensor]:
        """Encoded features, and the mask of the real tokens that are not a modality's cls/prefix token."""
        if not inputs:
            raise ValueError("forward_features needs at least one {modality: batch}")
        sequences = [self.tokenize(modality, batch) for modality, batch in inputs.items()]
        sizes = {m: s.tokens.shape[0] for m, s in zip(inputs, sequences)}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"all modalities must have the same batch size to be fused, got {sizes}")
        content = []
        for modality, sequence in zip(inputs, sequences):
            mask = sequence.mask.clone()
            mask[:, :self.tokenizer(modality).num_prefix_tokens] = False
            content.append(mask)
        joint = TokenSequence.concat(sequences)
        return TokenSequence(self.encoder(joint.tokens, joint.mask), joint.mask), torch.cat(content, dim=1)

    def forward_head(self, features: TokenSequence, head: str) -> torch.Tensor:
        if head not in self.heads:
            raise ValueError(f"unknown head {head!r}; this model has {list(self.heads)}")
        return self.heads[head](features.tokens, features.mask)

    def forward(self, modality: str | Mapping[str, Any], batch: Any = None, *, head: str) -> torch.Tensor:
        """Head outputs for one modality (``model("image", images, head="cls")``) or several fused
        (``model({"image": images, "audio": waves}, head="cls")``)."""
        return self.forward_head(self.forward_features(_as_inputs(modality, batch)), head)

    def embed(self, modality: str | Mapping[str, Any], batch: Any = None, *, pool: str | None = None) -> Embedding:
        """Pooled embeddings and token features.

        Args:
            modality: a modality name with ``batch``, or {modality: batch} to fuse several.
            pool: ``"cls"`` (default for one modality with a cls token), ``"mean"`` or ``"max"`` over the
                real tokens that are not cls tokens (default when fusing).
        """
        inputs = _as_inputs(modality, batch)
        has_cls = len(inputs) == 1 and self.tokenizer(next(iter(inputs))).num_prefix_tokens > 0
        pool = pool or ("cls" if has_cls else "mean")
        if pool == "cls" and not has_cls:
            raise ValueError("cls pooling needs a single modality whose tokenizer has a cls token")
        features, content = self._encode(inputs)
        if pool == "cls":
            pooled = features.tokens[:, 0]
        else:
            pooled = pool_tokens(features.tokens, content, pool, num_prefix_tokens=0)
        return Embedding(pooled, features.tokens, features.mask)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters, in all and per part (tokenizers + heads + ... counted honestly)."""
        counts = {"trainable": 0, "frozen": 0}
        for part in ("tokenizers", "encoder", "heads"):
            counts[part] = sum(p.numel() for p in getattr(self, part).parameters())
        counts["modality_embed"] = self.modality_embed.numel()
        for param in self.parameters():
            counts["trainable" if param.requires_grad else "frozen"] += param.numel()
        return counts

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` rebuilds the model exactly."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt", "library": "metatransformer"})
        config = {"metatransformer_version": __version__, **self.config}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        map_location: str | torch.device = "cpu") -> "MetaTransformer":
        """Rebuild a model saved by :meth:`save_pretrained`; weights load strictly.

        Args:
            name_or_path: a local directory, or a Hugging Face Hub repo id (fetched through the Hub cache;
                ``HF_HUB_OFFLINE=1`` uses the cache only).
            revision: Hub revision (branch, tag or commit).
            map_location: device to put the model on.
        """
        directory = _resolve_pretrained_dir(name_or_path, revision)
        config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for required in (config_file, weights_file):
            if not required.is_file():
                raise CheckpointError(f"{directory}: {required.name} is missing (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_file}: not valid JSON ({err})") from err
        config.pop("metatransformer_version", None)
        unknown = sorted(set(config) - set(_CONFIG_FIELDS))
        if unknown:
            raise CheckpointError(f"{config_file}: unknown field(s) {unknown}; expected {list(_CONFIG_FIELDS)}")
        try:
            model = cls(**config)
        except (TypeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{config_file}: the config does not describe a valid model: {err}") from err
        state_dict = load_state_dict_source(weights_file)
        missing, unexpected, mismatched = state_dict_differences(model.state_dict(), state_dict)
        if missing or unexpected or mismatched:
            raise CheckpointError(f"{weights_file} does not match {config_file}: missing tensors {missing[:10]}, "
                                  f"unexpected tensors {unexpected[:10]}, shape mismatches {mismatched[:10]}")
        model.load_state_dict(state_dict, strict=True)
        return model.to(map_location)


def _resolve_pretrained_dir(name_or_path: str | os.PathLike, revision: str | None) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except (HFValidationError, OSError, ValueError) as err:
        raise CheckpointError(f"{name_or_path}: not a local directory, and the Hugging Face Hub repo could not be "
                              f"fetched or found in the cache: {err}") from err


def _as_inputs(modality: str | Mapping[str, Any], batch: Any) -> Mapping[str, Any]:
    if isinstance(modality, Mapping):
        if batch is not None:
            raise ValueError("pass either {modality: batch} or (modality, batch), not both")
        return modality
    return {modality: batch}


def create_model(
        preset: str | EncoderConfig = "base",
        *,
        modalities: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("image",),
        heads: Mapping[str, Mapping[str, Any]] | None = None,
        checkpoint: Any = None,
        freeze_encoder: bool = True,
        **encoder_overrides: Any,
) -> MetaTransformer:
    """Build a :class:`MetaTransformer` and optionally load a checkpoint into its encoder and image stems.

    Args:
        preset: encoder preset or config.
        modalities: modality names, or {modality: tokenizer options}.
        heads: {name: {"kind": ..., **options}}.
        checkpoint: an encoder checkpoint in any supported format (file or state dict). A full timm or
            OpenCLIP ViT also initialises every image-like tokenizer's stem (patch embedding, cls,
            position embedding, pre-norm); their options are taken from the checkpoint unless given.
        freeze_encoder: freeze the shared encoder.
        **encoder_overrides: encoder config fields (``final_norm=True``, ``act="quick_gelu"``...).
    """
    options = ({m: {} for m in modalities} if not isinstance(modalities, Mapping)
               else {m: dict(o) for m, o in modalities.items()})
    converted = None
    if checkpoint is not None:
        converted = convert_state_dict(load_state_dict_source(checkpoint))
        if converted.image_tokenizer:
            stem_options = ImageTokenizer.options_from_checkpoint(converted.image_tokenizer)
            for modality, opts in options.items():
                if _is_image_like(modality):
                    options[modality] = {**stem_options, **opts}
    model = MetaTransformer(encoder=get_encoder_config(preset, **encoder_overrides), tokenizers=options,
                            heads=heads, freeze_encoder=freeze_encoder)
    if converted is not None:
        load_encoder_weights(model.encoder, converted)
        for tokenizer in model.tokenizers.values():
            if isinstance(tokenizer, ImageTokenizer) and converted.image_tokenizer:
                tokenizer.load_vit_stem(converted.image_tokenizer)
    return model


def _is_image_like(modality: str) -> bool:
    return issubclass(get_tokenizer_class(modality), ImageTokenizer)
