"""MetaTransformer: tokenizers per modality, one shared encoder, task heads."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn

from .config import ModelConfig
from .data2seq import TokenSequence, Tokenizer, create_tokenizer
from .encoders import EncoderConfig, SharedEncoder, get_encoder_config
from .encoders.checkpoint import convert_state_dict, load_encoder_weights, load_state_dict_source, state_dict_differences
from .heads import Head, create_head, pool_tokens
from .registry import canonical_modality, get_modality
from .serialization import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    read_checkpoint_config,
    read_checkpoint_weights,
    write_checkpoint_dir,
)

_logger = logging.getLogger(__name__)


class Embedding(NamedTuple):
    """What :meth:`MetaTransformer.embed` returns.

    Attributes:
        pooled: (b, d) one vector per sample.
        features: the encoded :class:`TokenSequence` (tokens (b, n, d), mask, prefix/segment records).
    """

    pooled: torch.Tensor
    features: TokenSequence


class MetaTransformer(nn.Module):
    """Tokenizers (one per modality) → shared encoder → heads.

    Several modalities' token sequences can be concatenated and encoded together (Meta-Transformer's
    recipe for fusion); each modality's tokens get a learned modality-type embedding, keyed by the
    modality's name (zero at initialisation, so a single modality reproduces the checkpoint it was
    loaded from).

    Built from module instances (torchmultimodal's builder style); :func:`create_model` and
    :meth:`from_config` build it from the config form, which :meth:`save_pretrained` writes.

    Args:
        encoder: the shared encoder.
        tokenizers: {modality: tokenizer}, names in any accepted spelling.
        heads: {head name: head}.
        freeze_encoder: freeze the shared encoder; tokenizers and heads train.
    """

    def __init__(
            self,
            *,
            encoder: SharedEncoder,
            tokenizers: Mapping[str, Tokenizer],
            heads: Mapping[str, Head] | None = None,
            freeze_encoder: bool = True,
    ) -> None:
        super().__init__()
        if not tokenizers:
            raise ValueError("a MetaTransformer needs at least one modality")
        self.encoder = encoder
        self.tokenizers = nn.ModuleDict({canonical_modality(m): t for m, t in tokenizers.items()})
        for modality, tokenizer in self.tokenizers.items():
            if tokenizer.dim != encoder.dim:
                raise ValueError(f"the {modality} tokenizer's width {tokenizer.dim} is not the encoder's {encoder.dim}")
        self.heads = nn.ModuleDict(dict(heads or {}))
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(encoder.dim)) for m in self.tokenizers})
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.freeze()

    @classmethod
    def from_config(cls, config: ModelConfig) -> "MetaTransformer":
        """Build every module of a resolved config (its types were checked whole before this). The small
        modules come first: their constructors check value ranges before the encoder is allocated."""
        dim = config.encoder.dim
        tokenizers = {m: create_tokenizer(m, dim, **t.options) for m, t in config.tokenizers.items()}
        heads = {name: create_head(h.kind, dim=dim, **h.options) for name, h in config.heads.items()}
        encoder = SharedEncoder(config=config.encoder)
        return cls(encoder=encoder, tokenizers=tokenizers, heads=heads, freeze_encoder=config.freeze_encoder)

    @property
    def config(self) -> ModelConfig:
        """The config that rebuilds this model, read from its modules (each keeps its resolved options)."""
        return ModelConfig.build(
            encoder=self.encoder.config,
            tokenizers={m: _options_of(t, f"the {m} tokenizer") for m, t in self.tokenizers.items()},
            heads={n: {"kind": h.kind, **_options_of(h, f"head {n!r}")} for n, h in self.heads.items()},
            freeze_encoder=self.freeze_encoder)

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
        """Run one modality's tokenizer and add its modality-type embedding.

        Returns:
            a :class:`TokenSequence` named after the modality: tokens (b, n, d), mask (b, n).
        """
        name = canonical_modality(modality)
        sequence = self.tokenizer(name)(batch).replace(modality=name)
        return sequence.replace(tokens=sequence.tokens + self.modality_embed[name].to(sequence.tokens.dtype))

    def forward_features(self, inputs: Mapping[str, Any] | torch.Tensor) -> TokenSequence:
        """Tokenize every modality in ``inputs``, concatenate in the given order, encode with the joint mask.

        Inputs:
            inputs: {modality: batch}, all with the same batch size b; a bare batch for a one-modality model.

        Returns:
            the encoded sequence: tokens (b, n_1 + n_2 + ..., d), mask, prefix/segment records.
        """
        if not isinstance(inputs, Mapping):
            if len(self.modalities) != 1:
                raise ValueError(f"this model has several modalities {self.modalities}; pass {{modality: batch}}")
            inputs = {self.modalities[0]: inputs}
        if not inputs:
            raise ValueError("forward_features needs at least one {modality: batch}")
        joint = TokenSequence.concat([self.tokenize(modality, batch) for modality, batch in inputs.items()])
        return joint.replace(tokens=self.encoder(joint.tokens, joint.mask))

    def forward_head(self, features: TokenSequence, head: str) -> torch.Tensor:
        if head not in self.heads:
            raise ValueError(f"unknown head {head!r}; this model has {list(self.heads)}")
        return self.heads[head](features)

    def forward(self, modality: str | Mapping[str, Any], batch: Any = None, *, head: str) -> torch.Tensor:
        """Head outputs for one modality (``model("image", images, head="cls")``) or several fused
        (``model({"image": images, "audio": waves}, head="cls")``)."""
        return self.forward_head(self.forward_features(_as_inputs(modality, batch)), head)

    def embed(self, modality: str | Mapping[str, Any], batch: Any = None, *, pool: str | None = None) -> Embedding:
        """Pooled embeddings and token features, pooled by the same rule as the heads
        (:func:`~metatransformer.heads.pool_tokens`).

        Args:
            modality: a modality name with ``batch``, or {modality: batch} to fuse several.
            pool: ``"cls"`` (default for one modality whose tokenizer has a cls token), ``"mean"`` or
                ``"max"`` over the content tokens (default otherwise).
        """
        inputs = _as_inputs(modality, batch)
        if pool is None:
            has_cls = len(inputs) == 1 and self.tokenizer(next(iter(inputs))).num_prefix_tokens > 0
            pool = "cls" if has_cls else "mean"
        features = self.forward_features(inputs)
        return Embedding(pool_tokens(features, pool), features)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters, in all and per part (tokenizers + heads + ... counted honestly)."""
        counts = {"trainable": 0, "frozen": 0}
        for part in ("tokenizers", "encoder", "heads", "modality_embed"):
            counts[part] = sum(p.numel() for p in getattr(self, part).parameters())
        for param in self.parameters():
            counts["trainable" if param.requires_grad else "frozen"] += param.numel()
        return counts

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` rebuilds the model exactly."""
        return write_checkpoint_dir(directory, self.config.to_dict(), self.state_dict())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        map_location: str | torch.device = "cpu") -> "MetaTransformer":
        """Rebuild a model saved by :meth:`save_pretrained`; the config is checked whole before anything
        is built, and the weights load strictly.

        Args:
            name_or_path: a local directory, or a Hugging Face Hub repo id (fetched through the Hub cache;
                ``HF_HUB_OFFLINE=1`` uses the cache only).
            revision: Hub revision (branch, tag or commit).
            map_location: device to put the model on.
        """
        directory = _resolve_pretrained_dir(name_or_path, revision)
        data = read_checkpoint_config(directory)
        if not data.get("tokenizers"):
            raise CheckpointError(f"{directory}: holds an encoder only (no tokenizers); build a model around it with "
                                  "create_model(preset, modalities=[...], checkpoint=directory)")
        try:
            model = cls.from_config(ModelConfig.from_dict(data))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from err
        state_dict = read_checkpoint_weights(directory)
        missing, unexpected, mismatched = state_dict_differences(model.state_dict(), state_dict)
        if missing or unexpected or mismatched:
            raise CheckpointError(f"{directory / WEIGHTS_NAME} does not match {CONFIG_NAME}: missing tensors "
                                  f"{missing[:10]}, unexpected tensors {unexpected[:10]}, shape mismatches {mismatched[:10]}")
        model.load_state_dict(state_dict, strict=True)
        return model.to(map_location)


def _options_of(module: nn.Module, what: str) -> dict[str, Any]:
    options = getattr(module, "options", None)
    if options is None:
        raise ValueError(f"{what} was built directly, so its options are unknown; build it with create_tokenizer "
                         "/ create_head (which record them) to save or describe the model")
    return dict(options)


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
    """Build a :class:`MetaTransformer` from the config form and optionally load a checkpoint.

    Args:
        preset: encoder preset or config.
        modalities: modality names, or {modality: tokenizer options}.
        heads: {name: {"kind": ..., **options}}.
        checkpoint: an encoder checkpoint in any supported format (file or state dict). Each tokenizer's
            ``stem_from_checkpoint`` hook finds its own weights in it (a full timm or OpenCLIP ViT
            initialises the image-like stems); their options are taken from the checkpoint unless given.
        freeze_encoder: freeze the shared encoder.
        **encoder_overrides: encoder config fields (``final_norm=True``, ``act="quick_gelu"``...).
    """
    options = ({m: {} for m in modalities} if not isinstance(modalities, Mapping)
               else {m: dict(o) for m, o in modalities.items()})
    converted, stems = None, {}
    if checkpoint is not None:
        converted = convert_state_dict(load_state_dict_source(checkpoint))
        for modality in options:
            found = get_modality(modality).tokenizer.stem_from_checkpoint(converted.extras, converted.source_format)
            if found is not None:
                stem_options, stems[modality] = found
                options[modality] = {**stem_options, **options[modality]}
    config = ModelConfig.build(encoder=get_encoder_config(preset, **encoder_overrides), tokenizers=options,
                               heads=heads, freeze_encoder=freeze_encoder)
    model = MetaTransformer.from_config(config)
    if converted is not None:
        load_encoder_weights(model.encoder, converted)
        for modality, state in stems.items():
            model.tokenizer(modality).load_stem(state)
    return model
