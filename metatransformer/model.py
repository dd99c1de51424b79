"""MetaTransformer: tokenizers per modality, one shared encoder, task heads."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn

from .config import ModelConfig
from .data2seq import TokenSequence, Tokenizer, create_tokenizer
from .encoders import ENCODER_PRESETS, EncoderConfig, SharedEncoder, get_encoder_config
from .encoders.checkpoint import load_encoder_weights, state_dict_differences
from .encoders.factory import looks_like_checkpoint_path, read_checkpoint_source
from .heads import Head, create_head, pool_tokens
from .pretrained import PretrainedUnavailable, get_pretrained, is_pretrained_name, resolve_pretrained, weights_path
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
        model = cls(encoder=encoder, tokenizers=tokenizers, heads=heads, freeze_encoder=config.freeze_encoder)
        if config.trainable_blocks is not None:
            model.encoder.unfreeze(last_n_blocks=config.trainable_blocks)
        return model

    @property
    def config(self) -> ModelConfig:
        """The config that rebuilds this model, read from its modules (each keeps its resolved options)
        and from the encoder's freeze state (``encoder.unfreeze(last_n_blocks=n)`` is recorded)."""
        freeze_encoder, trainable_blocks = self._freeze_state()
        return ModelConfig.build(
            encoder=self.encoder.config,
            tokenizers={m: _options_of(t, f"the {m} tokenizer") for m, t in self.tokenizers.items()},
            heads={n: {"kind": h.kind, **_options_of(h, f"head {n!r}")} for n, h in self.heads.items()},
            freeze_encoder=freeze_encoder, trainable_blocks=trainable_blocks)

    def _freeze_state(self) -> tuple[bool, int | None]:
        """(freeze_encoder, trainable_blocks) that reproduce the encoder's ``requires_grad`` flags."""
        def own(module: nn.Module) -> list[bool]:  # a pathway's auxiliary weights and λ have their own recipe
            return [p.requires_grad for name, p in module.named_parameters()
                    if ".aux_weights." not in f".{name}" and ".scales." not in f".{name}"]

        flags = own(self.encoder)
        if not any(flags):
            return True, None
        if all(flags):
            return False, None
        per_block = [set(own(block)) for block in self.encoder.blocks]
        trainable = [s == {True} for s in per_block]
        n = len(trainable) - trainable.index(True) if True in trainable else 0
        norm = {p.requires_grad for p in self.encoder.norm.parameters()}
        if (all(len(s) == 1 for s in per_block) and trainable == [False] * (len(trainable) - n) + [True] * n
                and norm <= {True}):
            return True, n
        warnings.warn("the encoder's requires_grad flags follow no freeze()/unfreeze(last_n_blocks=...) pattern; "
                      "the saved config records it as frozen", stacklevel=3)
        return True, None

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

    def forward(self, modality: str | Mapping[str, Any] | torch.Tensor, batch: Any = None, *,
                head: str | None = None) -> torch.Tensor:
        """Head outputs for one modality (``model("image", images, head="cls")``) or several fused
        (``model({"image": images, "audio": waves}, head="cls")``). As in timm, a one-modality model
        takes the bare batch (``model(images)``), and ``head`` may be omitted when there is one head."""
        if not isinstance(modality, (str, Mapping)):
            if batch is not None:
                raise ValueError("pass (modality, batch), {modality: batch}, or a bare batch for a one-modality model")
            modality, batch = self.forward_features(modality), None
        if head is None:
            if len(self.heads) != 1:
                raise ValueError(f"name the head: this model has heads {list(self.heads)}" if self.heads else
                                 "this model has no head: use embed()/forward_features(), or build it with "
                                 "heads={...} or num_classes=N")
            head = next(iter(self.heads))
        features = modality if isinstance(modality, TokenSequence) else self.forward_features(_as_inputs(modality, batch))
        return self.forward_head(features, head)

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
            raise CheckpointError(f"{directory}: holds an encoder only (no tokenizers), as save_encoder, convert and "
                                  "export_merged of an encoder write it; build a model around it with "
                                  f"create_model(modalities=[...], checkpoint={str(directory)!r}), or load the encoder "
                                  f"alone with create_encoder({str(directory)!r})")
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
        if not (path / CONFIG_NAME).is_file():
            raise CheckpointError(f"{path}: a directory without {CONFIG_NAME}, so not a saved model; "
                                  "MetaTransformer.save_pretrained writes one")
        return path
    if path.is_file():
        raise CheckpointError(f"{path}: a checkpoint file, not a saved model directory; load it with "
                              f"create_model(modalities=[...], checkpoint={str(path)!r}) or create_encoder({str(path)!r})")
    if is_pretrained_name(str(name_or_path)):
        raise CheckpointError(f"{name_or_path}: published encoder weights, not a saved model; build a model with "
                              f"create_model(modalities=[...], pretrained={str(name_or_path)!r})")
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
        preset: str | EncoderConfig | os.PathLike | None = None,
        *,
        modalities: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("image",),
        heads: Mapping[str, Mapping[str, Any]] | None = None,
        checkpoint: Any = None,
        pretrained: bool | str | None = None,
        stem_checkpoint: Any = None,
        num_classes: int | None = None,
        freeze_encoder: bool = True,
        trainable_blocks: int | None = None,
        **encoder_overrides: Any,
) -> MetaTransformer:
    """Build a :class:`MetaTransformer` from the config form and optionally load weights.

    Args:
        preset: encoder preset or config; a checkpoint path works too (as ``checkpoint=``). Default:
            the published entry's, the checkpoint directory's, the preset that fits the checkpoint, or ``base``.
        modalities: modality names, or {modality: tokenizer options}.
        heads: {name: {"kind": ..., **options}}.
        checkpoint: weights in any format the library reads: a file (Meta-Transformer, timm, OpenCLIP), a
            state dict, or a directory we wrote. Each tokenizer's ``stem_from_checkpoint`` hook finds its own
            weights in a full ViT (their options are taken from it unless given); a saved model's directory
            also gives its tokenizers (options and weights) for the modalities it has. A final norm in the
            checkpoint is kept unless ``final_norm=False``.
        pretrained: a published weights name (``metatransformer weights``), or True for the preset's
            default: fetched through the Hugging Face Hub cache, sha256-checked; its architecture and its
            preprocessing (mean/std, size, interpolation, crop: saved in the image-like tokenizers' options)
            are used, and blocks-only entries take the image-like stems from their CLIP ViT (``stem_source``).
        stem_checkpoint: a full ViT checkpoint to take the tokenizer stems from, instead of ``checkpoint``.
        num_classes: timm's habit: add a classification head named ``"head"`` (0 or None: none).
        freeze_encoder: freeze the shared encoder.
        trainable_blocks: with a frozen encoder, let the last n blocks (and the final norm) train.
        **encoder_overrides: encoder config fields (``final_norm=True``, ``act="quick_gelu"``...).

    Warns:
        UserWarning: encoder weights were loaded while an image-like tokenizer's stem stays random.
    """
    options = ({m: {} for m in modalities} if not isinstance(modalities, Mapping)
               else {m: dict(o) for m, o in modalities.items()})
    options = {get_modality(m).name: o for m, o in options.items()}
    if looks_like_checkpoint_path(preset):
        if checkpoint is not None:
            raise ValueError("a checkpoint was given twice (as preset and checkpoint=)")
        preset, checkpoint = None, preset
    if isinstance(preset, str) and preset not in ENCODER_PRESETS and is_pretrained_name(preset):
        named = get_pretrained(preset)  # timm: the name gives the architecture, pretrained= the weights
        preset = None
        pretrained = named if pretrained is True else pretrained
        if not pretrained:
            encoder_overrides = {**named.encoder, **encoder_overrides}
            preset = named.preset or named.encoder_config()
    entry = resolve_pretrained(pretrained, preset)
    if entry is not None:
        if checkpoint is not None:
            raise ValueError("pass checkpoint= or pretrained=, not both")
        checkpoint = weights_path(entry)
        encoder_overrides = {**entry.encoder, **encoder_overrides}
        preset = preset or entry.preset or entry.encoder_config()
    source = read_checkpoint_source(checkpoint) if checkpoint is not None else None
    if source is not None:
        encoder_config = source.fitting_config(preset, **encoder_overrides)
    else:
        encoder_config = get_encoder_config(preset or "base", **encoder_overrides)

    saved_tokenizers: dict[str, dict[str, torch.Tensor]] = {}
    if source is not None and source.document and source.document.get("tokenizers"):
        for modality, saved in source.document["tokenizers"].items():  # a saved model: reuse its tokenizers
            if modality in options:
                options[modality] = {**saved, **options[modality]}
                prefix = f"tokenizers.{modality}."
                saved_tokenizers[modality] = {k[len(prefix):]: v for k, v in source.weights.items()
                                              if k.startswith(prefix)}
                saved_tokenizers[modality]["__modality_embed__"] = source.weights.get(f"modality_embed.{modality}")

    wants_stem = [m for m in options if m not in saved_tokenizers and _has_stem_hook(m)]
    stem_source, stem_entry = None, None
    if stem_checkpoint is not None:
        stem_source = read_checkpoint_source(stem_checkpoint)
    elif entry is not None and entry.stem_source and wants_stem:
        stem_entry = get_pretrained(entry.stem_source)
        try:
            stem_source = read_checkpoint_source(weights_path(stem_entry))
        except PretrainedUnavailable as err:
            warnings.warn(f"pretrained {entry.name!r} holds encoder blocks only, and its tokenizer stems' source "
                          f"{stem_entry.name!r} is unavailable: {err}", UserWarning, stacklevel=2)
    elif source is not None:
        stem_source = source
    preprocessing = entry.preprocessing if entry is not None else None
    if preprocessing is None and stem_entry is not None:
        preprocessing = stem_entry.preprocessing

    stems: dict[str, dict[str, torch.Tensor]] = {}
    for modality in wants_stem:
        tokenizer_cls = get_modality(modality).tokenizer
        found = (tokenizer_cls.stem_from_checkpoint(stem_source.converted.extras, stem_source.converted.source_format)
                 if stem_source is not None else None)
        stem_options = {}
        if found is not None:
            stem_options, stems[modality] = found
        preprocess_options = preprocessing.tokenizer_options(tokenizer_cls, options[modality]) if preprocessing else {}
        options[modality] = {**stem_options, **preprocess_options, **options[modality]}

    if num_classes:
        heads = dict(heads or {})
        if "head" in heads:
            raise ValueError("num_classes= adds a head named 'head', but heads= already has one")
        heads["head"] = {"kind": "classification", "num_classes": num_classes}
    config = ModelConfig.build(encoder=encoder_config, tokenizers=options, heads=heads,
                               freeze_encoder=freeze_encoder, trainable_blocks=trainable_blocks)
    model = MetaTransformer.from_config(config)
    if source is not None:
        load_encoder_weights(model.encoder, source.converted, name=source.name)
        for modality, state in stems.items():
            model.tokenizer(modality).load_stem(state)
        for modality, state in saved_tokenizers.items():
            embed = state.pop("__modality_embed__")
            model.tokenizer(modality).load_state_dict(state, strict=True)
            if embed is not None:
                with torch.no_grad():
                    model.modality_embed[modality].copy_(embed)
        random_stems = [m for m in wants_stem if m not in stems]
        if random_stems:
            warnings.warn(
                f"{source.name}: the encoder is pretrained but the {', '.join(random_stems)} tokenizer stem "
                "(patch embedding, cls token, position embedding) is randomly initialised, so embeddings are "
                "meaningless and differ from run to run. Use pretrained='meta_transformer_b16' (or _l14), which takes "
                "the stem from the CLIP ViT the blocks came from; pass stem_checkpoint= a full timm/OpenCLIP ViT "
                "(CLI: --pretrained / --stem-checkpoint); or train the tokenizer before using its embeddings.",
                UserWarning, stacklevel=2)
    return model


def _has_stem_hook(modality: str) -> bool:
    """Whether a modality's tokenizer can take pretrained weights from a full ViT (image-like tokenizers)."""
    return get_modality(modality).tokenizer.stem_from_checkpoint.__func__ is not Tokenizer.stem_from_checkpoint.__func__
