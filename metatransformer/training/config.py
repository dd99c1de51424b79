"""The training recipe as one dataclass: YAML recipes, command-line flags and the Python API share it, and the
resolved recipe is saved with every run (``RUN_DIR/config.yaml``)."""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from ..datasets.time_series import ETT_MONTHS, ETT_STEPS_PER_MONTH, check_split_ratios
from ..registry import canonical_modality, get_modality

# the fields that shape forecasting windows and splits: task forecast only
FORECAST_FIELDS = ("lookback", "horizon", "window_stride", "split_months", "steps_per_month", "split_ratios")


def _f(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - argparse's word
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Everything one training run needs. Fields are the ``metatransformer train`` flags (``_`` → ``-``)."""

    # data
    data: list = _f([], "folder-per-class directories or manifests (CSV/TSV/JSONL/Parquet: path, label, "
                        "[modality], [split]); several sources and modalities may be mixed; task reid: the "
                        "label is the identity, split query/gallery marks the held-out identities")
    modality: Optional[str] = _f(None, "modality of every file (default: inferred from each file's suffix or the "
                                       "manifest's modality column)")
    task: Literal["classification", "multilabel", "regression", "forecast", "reid", "segmentation"] = _f(
        "classification", "task (sets head and metrics); forecast: --data is one long series (ETTh1 layout: a date "
                          "column + the feature columns) cut into lookback → horizon windows; reid: identity "
                          "classification on the train records, validated and evaluated by retrieval between the "
                          "query and gallery records (Rank-k, mAP, mINP); segmentation: per-point classes of "
                          "labelled point files (.npz: points, [colors], labels), the manifest's label column unused")
    classes: list = _f([], "segmentation: class names in label order (label i = classes[i]); default: 0 … K-1 for "
                           "the largest label K-1 of the training files")
    label_column: Optional[str] = _f(None, "table files (CSV/TSV/Parquet) in --data are tables of samples, one per "
                                           "row: this column is the label, a 'split' column (if any) the split, "
                                           "the other columns the features (tabular modality)")
    categorical_columns: list = _f([], "table columns encoded as categories although numeric (string/object "
                                       "columns always are); the schema is fitted on the training rows")
    lookback: int = _f(96, "forecast: input steps L of a window")
    horizon: int = _f(96, "forecast: steps H to forecast")
    window_stride: int = _f(1, "forecast: steps between window starts")
    split_months: list = _f(list(ETT_MONTHS), "forecast: train/val/test months of the series (ETT split)")
    steps_per_month: int = _f(ETT_STEPS_PER_MONTH, "forecast: steps of a (30-day) month: 720 hourly (ETTh1), 2880 "
                                                   "every 15 min (ETTm1)")
    split_ratios: Optional[list] = _f(None, "forecast: train/val/test fractions of the series instead of the month "
                                            "split (Autoformer's Dataset_Custom: 0.7 0.1 0.2 for Traffic, Weather, "
                                            "Exchange)")
    val_fraction: float = _f(0.2, "share of records without a split that go to validation (seeded, per class; "
                                  "task reid: none, it validates on the query/gallery records)")
    batch_size: int = _f(32, "samples per modality per step and per process")
    num_workers: int = _f(0, "DataLoader worker processes")
    reader_options: dict = _f({}, "per-modality keyword arguments of the modality's file reader, JSON: "
                                  "{\"hyperspectral\": {\"scale\": \"none\"}} (files already scaled)")
    augment: bool = _f(False, "augment the training items with each modality's registered training augmentation "
                              "(ModalitySpec.augment; the README lists them); validation items are never augmented")
    augment_options: dict = _f({}, "per-modality keyword arguments of the modality's augmentation (with --augment), "
                                   "JSON: {\"point_cloud\": {\"jitter\": 0.01, \"rotate\": true}}")
    mixup: float = _f(0.0, "classification: mixup α of training batches (λ ~ Beta(α, α), timm's Mixup; DeiT: 0.8); "
                           "targets become soft (label smoothing included), validation stays unmixed")
    cutmix: float = _f(0.0, "classification: cutmix α of image-like batches (DeiT: 1.0); other modalities that mix "
                            "take mixup only")
    mixup_prob: float = _f(1.0, "probability that a training batch is mixed")
    mixup_switch_prob: float = _f(0.5, "with mixup and cutmix on: probability that a mixed batch takes cutmix")
    # model
    preset: str = _f("base", "encoder preset (base, large, small, tiny, nano)")
    checkpoint: Optional[str] = _f(None, "encoder checkpoint (Meta-Transformer .pth, timm, OpenCLIP, ours)")
    pretrained: Optional[str] = _f(None, "published weights by name (see `metatransformer weights`), fetched "
                                         "through the Hugging Face cache; image-like stems from their CLIP source")
    model: Optional[str] = _f(None, "start from a save_pretrained directory (its tokenizers are reused)")
    tokenizer_options: dict = _f({}, "per-modality tokenizer options, JSON: {\"image\": {\"img_size\": 32}}")
    pool: str = _f("cls", "head pooling: cls, mean, max")
    head_hidden_dim: Optional[int] = _f(None, "hidden width of an MLP head (default: linear head)")
    head_dropout: float = _f(0.0, "dropout before the head's last layer")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy (classification)")
    # what trains
    finetune: Literal["frozen", "full"] = _f("frozen", "frozen: tokenizers + heads on the frozen encoder; full: "
                                                       "everything trains")
    unfreeze_last: Optional[int] = _f(None, "with finetune=frozen, also train the last N encoder blocks")
    linear_probe: bool = _f(False, "train the heads only: frozen tokenizer + encoder; without augmentation or mixup "
                                   "the features are encoded once and cached on disk")
    cache_dir: Optional[str] = _f(None, "feature cache of the linear probe (default RUN_DIR/features)")
    # multimodal pathway
    aux: Optional[str] = _f(None, "auxiliary model for Cross-Modal Re-parameterization (M2PT): a save_pretrained "
                                  "directory or an encoder checkpoint")
    aux_trainable: bool = _f(True, "train the auxiliary weights (the paper) or keep them frozen")
    aux_lambda_init: float = _f(0.0, "initial λ")
    aux_lambda_learnable: bool = _f(True, "learn λ (otherwise fixed at --aux-lambda-init)")
    aux_lambda_lr: Optional[float] = _f(None, "learning rate of λ (default: --lr)")
    aux_lambda_granularity: Literal["layer", "qkv", "channel"] = _f("layer", "one λ per layer, per q/k/v or per channel")
    aux_weight_decay: float = _f(0.0, "weight decay of the auxiliary weights (λ never decays)")
    aux_control: Optional[Literal["random", "shuffled"]] = _f(None, "control run: random auxiliary weights of the "
                                                                    "same scale, or shuffled block pairing")
    aux_block_map: Optional[str] = _f(None, "'stretch' pairs encoders of different depth in block order")
    # optimisation
    epochs: int = _f(10, "training epochs")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: epochs decide)")
    lr: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(0.05, "AdamW weight decay (not on biases, norms, λ)")
    scheduler: Literal["none", "cosine"] = _f("cosine", "learning-rate schedule (cosine with linear warm-up)")
    warmup_steps: int = _f(0, "linear warm-up steps")
    accumulate: int = _f(1, "gradient accumulation: batches per optimizer step")
    grad_clip: Optional[float] = _f(None, "clip the gradient norm")
    precision: str = _f("32-true", "Lightning precision: 32-true, bf16-mixed, 16-mixed, bf16-true")
    seed: int = _f(0, "seed of initialisation, splits, data order")
    deterministic: bool = _f(True, "deterministic algorithms (torch.use_deterministic_algorithms)")
    # hardware
    accelerator: str = _f("auto", "cpu, gpu, auto")
    devices: str = _f("1", "devices (or processes on CPU): 1, 2, auto")
    strategy: str = _f("auto", "auto, ddp, ddp_spawn (CPU uses gloo)")
    # run
    run_dir: str = _f("runs/run", "output folder: config.yaml, run.json, checkpoints/, logs/, model/")
    resume: Optional[str] = _f(None, "resume: 'last' (RUN_DIR/checkpoints/last.ckpt) or a .ckpt path")
    checkpoint_every_n_steps: Optional[int] = _f(None, "also write last.ckpt every N optimizer steps (mid-epoch)")
    monitor: Optional[str] = _f(None, "metric that picks the best checkpoint (default: val/acc, val/map, val/mae, "
                                      "val/rank1 or val/miou)")
    logger: Literal["csv", "tensorboard", "both"] = _f("both", "loggers (tensorboard only when installed)")
    log_every_n_steps: int = _f(10, "logging interval")
    progress_bar: bool = _f(False, "show Lightning's progress bar")

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        if self.unfreeze_last is not None and self.finetune != "frozen":
            raise ValueError("--unfreeze-last applies to finetune=frozen")
        if self.linear_probe and (self.finetune != "frozen" or self.unfreeze_last):
            raise ValueError("--linear-probe trains the heads only: it excludes finetune=full and --unfreeze-last")
        if self.aux_control == "shuffled" and not self.aux:
            raise ValueError("--aux-control shuffled needs --aux (random needs none)")
        samples = {"forecast": "windows of series files", "segmentation": "labelled point files"}
        if self.task in samples and (self.linear_probe or self.label_column):
            raise ValueError(f"task {self.task} trains on {samples[self.task]} (encoded every step): it excludes "
                             "--linear-probe and --label-column")
        if self.task != "forecast":
            given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self)
                     if f.name in FORECAST_FIELDS and getattr(self, f.name) != field_default(f)]
            if given:
                raise ValueError(f"{', '.join(given)} shape forecasting windows and splits: they apply to task "
                                 f"forecast, not {self.task}")
        if self.split_ratios is not None:
            self.split_ratios = list(check_split_ratios(self.split_ratios))
            if [float(m) for m in self.split_months] != list(ETT_MONTHS) or self.steps_per_month != ETT_STEPS_PER_MONTH:
                raise ValueError("--split-ratios replaces the month split: leave --split-months and --steps-per-month "
                                 "at their defaults")
        # the run looks options up by canonical modality names: an alias key would be silently unused
        self.reader_options = _by_modality("--reader-options", self.reader_options)
        self.tokenizer_options = _by_modality("--tokenizer-options", self.tokenizer_options)
        self.augment_options = _by_modality("--augment-options", self.augment_options)
        if self.augment_options and not self.augment:
            raise ValueError("--augment-options configure the training augmentation, which is off: set --augment")
        for modality, options in self.augment_options.items():
            _check_augment_options(modality, options)
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if min(self.mixup, self.cutmix) < 0 or not 0 <= self.mixup_prob <= 1 or not 0 <= self.mixup_switch_prob <= 1:
            raise ValueError("--mixup and --cutmix must be >= 0, --mixup-prob and --mixup-switch-prob in [0, 1]")
        if self.mixing and self.task != "classification":
            raise ValueError(f"--mixup/--cutmix mix class labels: they apply to task classification, not {self.task}")
        if self.mixing and self.batch_size % 2:
            raise ValueError(f"--mixup/--cutmix pair sample i with sample b-1-i of a batch (timm's Mixup): "
                             f"--batch-size must be even, got {self.batch_size}")

    @property
    def mixing(self) -> bool:
        """Training batches are mixed (mixup or cutmix)."""
        return self.mixup > 0 or self.cutmix > 0

    @property
    def pathway(self) -> bool:
        return bool(self.aux) or self.aux_control == "random"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = {k.replace("-", "_"): v for k, v in (data or {}).items()}
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """A recipe file; relative ``data`` paths are resolved against the recipe's folder when they exist there."""
        path = Path(path)
        data = yaml.safe_load(path.read_text()) or {}
        sources = data.get("data", [])
        sources = [sources] if isinstance(sources, str) else sources
        data["data"] = [str(path.parent / s) if not Path(s).is_absolute() and (path.parent / s).exists() else s
                        for s in sources]
        return cls.from_dict({**data, **overrides})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def _by_modality(flag: str, options: Any) -> dict[str, dict[str, Any]]:
    """Per-modality ``options`` keyed by canonical modality names (``{"rgb": ...}`` → ``{"image": ...}``).

    Raises:
        ValueError: not a mapping of mappings, an unknown modality, or two keys naming one modality.
    """
    if not isinstance(options, dict):
        raise ValueError(f"{flag} maps modality names to options, got {options!r}")
    canonical: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        try:
            modality = canonical_modality(name)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{flag}: {err}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{flag}: the options of {name!r} must be a mapping of keyword arguments, got {value!r}")
        if modality in canonical:
            raise ValueError(f"{flag}: two keys name modality {modality!r}; give its options once")
        canonical[modality] = value
    return canonical


def _check_augment_options(modality: str, options: dict[str, Any]) -> None:
    """Refuse options that ``modality``'s augmentation does not take (its keyword-only parameters), so that a
    misspelling fails here rather than as a TypeError at the first training item."""
    augment = get_modality(modality).augment
    if augment is None:
        raise ValueError(f"--augment-options: modality {modality!r} has no training augmentation")
    parameters = list(inspect.signature(augment).parameters.values())[1:]  # after the tokenizer
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"--augment-options: the {modality} augmentation has no option(s) {unknown}; it takes "
                         f"{', '.join(accepted) or 'none'}")


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a :class:`TrainConfig` field (a fresh one for list and dict fields)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()
