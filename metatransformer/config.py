"""The model config: a dataclass tree (encoder, tokenizers, heads) with every default resolved.

It is checked whole — types, ranges, unknown fields, modality and head names — before any module is
built, and it is what ``save_pretrained`` writes as ``config.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ._validation import ConfigError, check_value, dataclass_from_dict, resolve_options
from .encoders.config import EncoderConfig, get_encoder_config
from .heads import HEADS
from .registry import MODALITIES


@dataclass(frozen=True)
class TokenizerConfig:
    """One modality's tokenizer: its registered name and every constructor option (defaults filled in)."""

    modality: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, modality: str, options: Mapping[str, Any]) -> "TokenizerConfig":
        spec = MODALITIES.get(modality)
        where = f"tokenizers.{spec.name}"
        return cls(spec.name, resolve_options(spec.tokenizer, options, where=where))


@dataclass(frozen=True)
class HeadConfig:
    """One task head: its registered kind and every constructor option (defaults filled in)."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, name: str, options: Mapping[str, Any]) -> "HeadConfig":
        if not isinstance(options, Mapping) or "kind" not in options:
            raise ConfigError(f"heads.{name}: missing 'kind' (one of {HEADS.names()})")
        kind = HEADS.canonical(check_value(options["kind"], str, f"heads.{name}.kind"))
        rest = {k: v for k, v in options.items() if k != "kind"}
        return cls(kind, resolve_options(HEADS.get(kind), rest, where=f"heads.{name}"))


@dataclass(frozen=True)
class ModelConfig:
    """What a :class:`~metatransformer.MetaTransformer` is made of.

    Args:
        encoder: the shared encoder's architecture.
        tokenizers: {modality: tokenizer config}, in the order the modalities were given.
        heads: {head name: head config}.
        freeze_encoder: whether the encoder is frozen (Meta-Transformer's recipe).
        trainable_blocks: with a frozen encoder, the number of last blocks (and the final norm) that
            still train, as ``encoder.unfreeze(last_n_blocks=n)`` leaves them; None: all frozen.
    """

    encoder: EncoderConfig
    tokenizers: dict[str, TokenizerConfig] = field(default_factory=dict)
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    freeze_encoder: bool = True
    trainable_blocks: int | None = None

    @classmethod
    def build(
            cls,
            *,
            encoder: str | EncoderConfig | Mapping[str, Any] = "base",
            tokenizers: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("image",),
            heads: Mapping[str, Mapping[str, Any]] | None = None,
            freeze_encoder: bool = True,
            trainable_blocks: int | None = None,
    ) -> "ModelConfig":
        """Resolve the user's form (preset names, modality lists, partial option dicts) into a full config."""
        if isinstance(encoder, Mapping):
            encoder = EncoderConfig.from_dict(encoder)
        if isinstance(tokenizers, str) or not isinstance(tokenizers, (Mapping, Sequence)):
            raise ConfigError(f"tokenizers: expected a list of modalities or {{modality: options}}, got {tokenizers!r}")
        if not isinstance(tokenizers, Mapping):
            tokenizers = {modality: {} for modality in tokenizers}
        resolved: dict[str, TokenizerConfig] = {}
        for modality, options in tokenizers.items():
            config = TokenizerConfig.resolve(modality, check_value(options, dict, f"tokenizers.{modality}"))
            if config.modality in resolved:
                raise ConfigError(f"tokenizers: {modality!r} names {config.modality!r} twice")
            resolved[config.modality] = config
        encoder = get_encoder_config(encoder)
        freeze_encoder = check_value(freeze_encoder, bool, "freeze_encoder")
        trainable_blocks = check_value(trainable_blocks, int | None, "trainable_blocks")
        if trainable_blocks is not None:
            if not freeze_encoder:
                raise ConfigError("trainable_blocks: only with freeze_encoder=true (an unfrozen encoder trains every block)")
            if not 0 <= trainable_blocks <= encoder.depth:
                raise ConfigError(f"trainable_blocks: must be in [0, {encoder.depth}], got {trainable_blocks}")
        return cls(encoder=encoder, tokenizers=resolved,
                   heads={check_value(name, str, "heads key"): HeadConfig.resolve(name, options)
                          for name, options in (heads or {}).items()},
                   freeze_encoder=freeze_encoder, trainable_blocks=trainable_blocks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"encoder": {...}, "tokenizers": {modality: options}, "heads": {name: {"kind", ...}}}``."""
        return {"encoder": self.encoder.to_dict(),
                "tokenizers": {m: dict(t.options) for m, t in self.tokenizers.items()},
                "heads": {n: {"kind": h.kind, **h.options} for n, h in self.heads.items()},
                "freeze_encoder": self.freeze_encoder, "trainable_blocks": self.trainable_blocks}

    @classmethod
    def from_dict(cls, data: Any) -> "ModelConfig":
        """Parse the JSON form; unknown, missing and mistyped fields raise :class:`ConfigError` naming them."""
        raw = dataclass_from_dict(_RawModelConfig, data, where="config")
        return cls.build(encoder=raw.encoder, tokenizers=raw.tokenizers, heads=raw.heads,
                         freeze_encoder=raw.freeze_encoder, trainable_blocks=raw.trainable_blocks)


@dataclass(frozen=True)
class _RawModelConfig:
    """The JSON form's fields and types, checked before they are resolved."""

    encoder: dict[str, Any]
    tokenizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    freeze_encoder: bool = True
    trainable_blocks: int | None = None
