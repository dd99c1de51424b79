"""``train(config)``: records → model → Lightning Trainer → checkpoints, logs and a save_pretrained model.

Run folder::

    RUN_DIR/config.yaml        the resolved recipe
    RUN_DIR/run.json           labels, modalities, parameter counts, pathway report, final metrics
    RUN_DIR/checkpoints/       best-*.ckpt (by the monitored metric) and last.ckpt (resume from it)
    RUN_DIR/logs/version_*/    CSV metrics (one version per launch; resumed runs add one)
    RUN_DIR/tb/                TensorBoard events (when tensorboard is installed)
    RUN_DIR/model/             MetaTransformer.save_pretrained of the final model
    RUN_DIR/model-merged/      pathway runs: the pathway folded into a plain model
    RUN_DIR/features/          linear probe: cached encoder features
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..encoders import create_encoder
from ..heads import create_head
from ..model import MetaTransformer, create_model
from ..pathway import export_merged, reparameterize_aux_into_target_model
from ..serialization import CheckpointError, is_checkpoint_dir, read_checkpoint_config
from .config import TrainConfig
from .data import ItemDataset, LabelEncoder, Record, assign_splits, group_by_modality, load_records, make_loader
from .features import FeatureDataset, cached_features
from .forecast import WindowDataset, config_records, forecast_head_options, series_channels
from .module import MONITOR, MetaTransformerModule
from .records import ROLES, SPLITS
from .reid import retrieval_records, retrieval_sets
from .segmentation import PointLabelDataset, segmentation_head_options, segmentation_labels
from .tables import fit_table_schema, has_table_rows

_logger = logging.getLogger(__name__)
RUN_INFO = "run.json"


# ------------------------------------------------------------------------------------------- records
def source_records(config: TrainConfig, source: Any) -> list[Record]:
    """The records of one data source: samples, table rows, or (task forecast) series windows."""
    if config.task == "forecast":
        return config_records(source, config)
    return load_records(source, modality=config.modality, label_column=config.label_column)


def fit_labels(config: TrainConfig, train_records: Sequence[Record]) -> LabelEncoder:
    """The label encoder of the training records (forecast: the series' channels as its classes; segmentation:
    the point classes)."""
    if config.task == "forecast":
        channels = series_channels(train_records)
        return LabelEncoder("forecast", channels, len(channels))
    if config.task == "segmentation":
        return segmentation_labels(config, train_records)
    return LabelEncoder.fit(config.task, [r.label for r in train_records])


def make_dataset(config: TrainConfig, records: Sequence[Record], tokenizer: torch.nn.Module, labels: LabelEncoder,
                 *, augment: bool = False) -> Any:
    """The dataset of one modality's records: forecasting windows, labelled point files, or items read with the
    modality's pipeline."""
    if config.task == "forecast":
        return WindowDataset(records)
    modality = records[0].modality if records else None
    if config.task == "segmentation":
        return PointLabelDataset(records, tokenizer, labels, reader_options=config.reader_options.get(modality),
                                 augment=augment, augment_options=config.augment_options.get(modality))
    return ItemDataset(records, tokenizer, labels, augment=augment, reader_options=config.reader_options.get(modality),
                       augment_options=config.augment_options.get(modality))


def with_series_channels(config: TrainConfig, labels: LabelEncoder, modalities: Sequence[str]) -> TrainConfig:
    """task forecast: ``config`` with the tokenizers' ``in_chans`` set to the series' channels (unless given)."""
    if config.task != "forecast" or config.model:
        return config
    options = {m: dict(o) for m, o in config.tokenizer_options.items()}
    for modality in modalities:
        options.setdefault(modality, {}).setdefault("in_chans", labels.num_outputs)
    return dataclasses.replace(config, tokenizer_options=options) if options != config.tokenizer_options else config


def prepare_records(config: TrainConfig, extra: Sequence[Record] = ()) -> list[Record]:
    """Every record of the recipe's sources (plus ``extra``), each with a split (task reid: records without
    one train, the query and gallery records are its validation)."""
    records = [r for source in config.data for r in source_records(config, source)] + list(extra)
    if not records:
        raise ValueError("no training data: pass --data (folders or manifests) or records")
    if config.task != "reid" and any(r.split in ROLES for r in records):
        raise ValueError(f"{' / '.join(ROLES)} records are re-identification data: train them with task reid")
    return assign_splits(records, val_fraction=config.val_fraction if config.task != "reid" else 0.0, seed=config.seed)


def with_table_schemas(config: TrainConfig, train_records: Sequence[Record]) -> TrainConfig:
    """``config`` with a ``schema`` tokenizer option fitted on the training rows of every modality whose
    records are table rows (unless the recipe gives one, or ``--model`` brings its own tokenizers)."""
    if config.model:
        return config

    options = {m: dict(o) for m, o in config.tokenizer_options.items()}
    for modality, records in group_by_modality(train_records).items():
        if has_table_rows(records) and "schema" not in options.get(modality, {}):
            options.setdefault(modality, {})["schema"] = fit_table_schema(records, categorical=config.categorical_columns)
    return dataclasses.replace(config, tokenizer_options=options) if options != config.tokenizer_options else config


def head_options(config: TrainConfig, labels: LabelEncoder) -> dict[str, Any]:
    common = {"pool": config.pool, "hidden_dim": config.head_hidden_dim, "dropout": config.head_dropout}
    if config.task in ("classification", "reid"):  # reid trains an identity classifier
        return {"kind": "classification", "num_classes": labels.num_outputs,
                "label_smoothing": config.label_smoothing, **common}
    if config.task == "multilabel":
        return {"kind": "multilabel", "num_classes": labels.num_outputs, **common}
    return {"kind": "regression", "num_outputs": labels.num_outputs, **common}


# ------------------------------------------------------------------------------------------- model
# tasks whose head is sized by the modality's tokenizer: (config, tokenizer, label outputs) → head options
TOKENIZER_SIZED_HEADS = {"forecast": forecast_head_options, "segmentation": segmentation_head_options}


def load_aux_encoder(path: str | os.PathLike, like: MetaTransformer) -> torch.nn.Module:
    """The auxiliary encoder: from a save_pretrained directory, or any encoder checkpoint read at the target's
    architecture (a directory we wrote carries its own)."""
    if is_checkpoint_dir(path) and read_checkpoint_config(path).get("tokenizers"):
        return MetaTransformer.from_pretrained(path).encoder
    return create_encoder(like.encoder.config, checkpoint=str(path))


def build_model(config: TrainConfig, labels: LabelEncoder, modalities: Sequence[str]) -> tuple[MetaTransformer, Any]:
    """The model of a recipe: tokenizers for ``modalities``, one head per modality (named after it), the
    trainable set of ``finetune``/``unfreeze_last``/``linear_probe`` and the pathway of ``aux``.

    Returns:
        (model, the :class:`~metatransformer.pathway.PathwayReport` or None).
    """
    sized_by_tokenizer = TOKENIZER_SIZED_HEADS.get(config.task)
    options = head_options(config, labels) if sized_by_tokenizer is None else None
    if sized_by_tokenizer is not None:  # the head's size depends on the tokenizer: built after it
        model = MetaTransformer.from_pretrained(config.model) if config.model else \
            create_model(config.preset, modalities={m: dict(config.tokenizer_options.get(m, {})) for m in modalities},
                         checkpoint=config.checkpoint, pretrained=config.pretrained)
        missing = [m for m in modalities if m not in model.tokenizers]
        if missing:
            raise ValueError(f"--model {config.model} has no tokenizer for {missing}; it has {model.modalities}")
        model.heads = torch.nn.ModuleDict({m: create_head(dim=model.encoder.dim, **sized_by_tokenizer(
            config, model.tokenizer(m), labels.num_outputs)) for m in modalities})
    elif config.model:
        model = MetaTransformer.from_pretrained(config.model)
        missing = [m for m in modalities if m not in model.tokenizers]
        if missing:
            raise ValueError(f"--model {config.model} has no tokenizer for {missing}; it has {model.modalities}")
        model.heads = torch.nn.ModuleDict({m: create_head(dim=model.encoder.dim, **options) for m in modalities})
    else:
        model = create_model(config.preset, modalities={m: dict(config.tokenizer_options.get(m, {})) for m in modalities},
                             heads={m: dict(options) for m in modalities}, checkpoint=config.checkpoint,
                             pretrained=config.pretrained)
    model.requires_grad_(True)
    if config.finetune == "full":
        model.freeze_encoder = False
    else:
        model.encoder.freeze()
        if config.unfreeze_last:
            model.encoder.unfreeze(config.unfreeze_last)
        model.freeze_encoder = not config.unfreeze_last
    if config.linear_probe:
        model.tokenizers.requires_grad_(False)
        model.modality_embed.requires_grad_(False)
    report = None
    if config.pathway:
        aux = load_aux_encoder(config.aux, model) if config.aux else None
        report = reparameterize_aux_into_target_model(
            model.encoder, aux, control=config.aux_control, seed=config.seed, block_map=config.aux_block_map,
            scale_granularity=config.aux_lambda_granularity, scale_init=config.aux_lambda_init,
            learnable_scale=config.aux_lambda_learnable, trainable_aux=config.aux_trainable)
    return model, report


def parameter_summary(model: MetaTransformer) -> dict[str, int]:
    """Trainable and frozen parameters, in all and per part, pathway weights included."""
    counts = model.parameter_counts()
    for part in ("tokenizers", "encoder", "heads", "modality_embed"):
        counts[f"{part}_trainable"] = sum(p.numel() for p in getattr(model, part).parameters() if p.requires_grad)
    return counts


# ------------------------------------------------------------------------------------------- data module
class MetaDataModule(pl.LightningDataModule):
    """Train/val loaders per modality (a dict for training: Lightning draws a batch of every modality each step),
    seeded and DDP-consistent; its state (epoch, batches consumed) makes mid-epoch resume exact."""

    def __init__(self, train_sets: dict[str, Any], val_sets: dict[str, Any], config: TrainConfig) -> None:
        super().__init__()
        self.train_sets, self.val_sets, self.config = train_sets, val_sets, config
        self.consumed = 0
        self._resume: tuple[int, int] | None = None

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> dict[str, Any]:
        rank, world = self._world()
        c = self.config
        loaders = {m: make_loader(ds, batch_size=c.batch_size, shuffle=True, seed=c.seed, num_workers=c.num_workers,
                                  drop_last=world > 1 or c.mixing, rank=rank, world_size=world)  # mixup: even batches
                   for m, ds in self.train_sets.items()}
        empty = [m for m, loader in loaders.items() if len(loader.batch_sampler) == 0]
        if empty:  # whole batches only (several processes, or mixup): too few samples would train nothing
            raise ValueError(f"training modality {empty[0]!r} has {len(self.train_sets[empty[0]])} samples: fewer than "
                             f"one whole batch of --batch-size {c.batch_size} for each of {world} process(es)")
        if self._resume is not None:
            epoch, consumed = self._resume
            self._resume = None
            total = max(len(loader.batch_sampler) for loader in loaders.values())
            if consumed >= total:  # saved at the end of an epoch: the next one starts afresh
                epoch, consumed, self.consumed = epoch + 1, 0, 0
            for loader in loaders.values():
                sampler = loader.batch_sampler
                sampler.set_epoch(epoch)
                sampler.skip_batches(consumed % max(1, len(sampler)))
        return loaders

    def val_dataloader(self) -> list[Any]:
        rank, world = self._world()
        c = self.config
        return [make_loader(self.val_sets[m], batch_size=c.batch_size, shuffle=False, seed=c.seed,
                            num_workers=c.num_workers, rank=rank, world_size=world)
                for m in self.val_sets]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.trainer.current_epoch if self.trainer is not None else 0, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = (int(state["epoch"]), int(state["consumed"]))
        self.consumed = int(state["consumed"])


class _CountBatches(Callback):
    """Counts the training batches of the current epoch for :class:`MetaDataModule`'s resume state."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        trainer.datamodule.consumed += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        trainer.datamodule.consumed = 0


class _PrintCounts(Callback):
    def __init__(self, text: str) -> None:
        self.text = text

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero:
            print(self.text, flush=True)


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path
    model: MetaTransformer
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    is_global_zero: bool = True  # False in the other processes of a distributed run (they report nothing)


def _devices(value: str) -> Any:
    return int(value) if str(value).isdigit() else value


def _loggers(config: TrainConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = []
    if config.logger in ("csv", "both"):
        loggers.append(CSVLogger(run_dir, name="logs"))
    if config.logger in ("tensorboard", "both"):
        try:
            import tensorboard  # noqa: F401
            loggers.append(TensorBoardLogger(run_dir, name="tb"))
        except ImportError:
            if config.logger == "tensorboard":
                raise
    return loggers


def train(config: TrainConfig | dict[str, Any], *, records: Sequence[Record] = (),
          callbacks: Sequence[Callback] = (), trainer_options: dict[str, Any] | None = None) -> RunResult:
    """Train a recipe (see :class:`TrainConfig`); ``records`` adds in-memory or pre-built samples to ``config.data``.

    Returns:
        a :class:`RunResult` (the trained model, final validation metrics, the best checkpoint).
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    all_records = prepare_records(config, records)
    train_records = [r for r in all_records if r.split == "train"]
    if not train_records:
        raise ValueError("no training records (every record is in the val or test split)")
    labels = fit_labels(config, train_records)
    config = with_table_schemas(config, train_records)  # saved in config.yaml and in the model's tokenizer config
    by_modality = group_by_modality(train_records)
    modalities = list(by_modality)
    config = with_series_channels(config, labels, modalities)
    model, report = build_model(config, labels, modalities)
    counts = parameter_summary(model)
    text = (f"parameters: {counts['trainable']:,} trainable, {counts['frozen']:,} frozen "
            f"(tokenizers {counts['tokenizers_trainable']:,}/{counts['tokenizers']:,}, encoder "
            f"{counts['encoder_trainable']:,}/{counts['encoder']:,}, heads {counts['heads_trainable']:,}/"
            f"{counts['heads']:,} trainable/all)" + (f"\n{report}" if report else ""))
    val_groups = group_by_modality([r for r in all_records if r.split == "val"])
    train_sets: dict[str, Any] = {m: make_dataset(config, rs, model.tokenizer(m), labels, augment=config.augment)
                                  for m, rs in by_modality.items()}
    val_sets: dict[str, Any] = {m: make_dataset(config, val_groups[m], model.tokenizer(m), labels)
                                for m in modalities if m in val_groups} if config.task != "reid" else \
        retrieval_sets(config, retrieval_records(all_records), model)
    probe_info: dict[str, Any] = {}
    probe = config.linear_probe and not (config.augment or config.mixing)  # the cache holds unaugmented features
    if probe:
        cache_dir = Path(config.cache_dir or run_dir / "features")
        use_gpu = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
        model.to("cuda" if use_gpu else "cpu")  # encode once on the fastest device, train where Lightning puts it
        start = time.perf_counter()
        cached = []
        for sets, split in ((train_sets, "train"), (val_sets, "val")):
            for m in list(sets):
                features, hit = cached_features(model, sets[m], cache_dir, split=split, pool=config.pool,
                                                batch_size=config.batch_size, num_workers=config.num_workers)
                sets[m] = FeatureDataset(features, m)
                cached.append(hit)
        model.to("cpu")
        probe_info = {"encode_seconds": time.perf_counter() - start, "from_cache": all(cached),
                      "cache_dir": str(cache_dir)}
    config.save(run_dir / "config.yaml")
    module = MetaTransformerModule(model, config, labels.num_outputs, probe=probe, val_modalities=list(val_sets))
    datamodule = MetaDataModule(train_sets, val_sets, config)
    metric, mode = MONITOR[config.task]
    monitor = config.monitor or (f"val/{metric}" if val_sets else None)
    if monitor and monitor.endswith("loss"):
        mode = "min"
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch}-{step}", monitor=monitor, mode=mode,
                           save_top_k=1 if monitor else 0, auto_insert_metric_name=False)
    # last.ckpt after every epoch (and every N optimizer steps when asked): what --resume reads
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                           every_n_train_steps=config.checkpoint_every_n_steps, enable_version_counter=False,
                           save_on_train_epoch_end=True)
    all_callbacks: list[Callback] = [best, last, _CountBatches(), _PrintCounts(text), *callbacks]
    options = dict(accelerator=config.accelerator, devices=_devices(config.devices), strategy=config.strategy,
                   precision=config.precision, max_epochs=config.epochs, max_steps=config.max_steps,
                   accumulate_grad_batches=config.accumulate, gradient_clip_val=config.grad_clip,
                   deterministic=config.deterministic, default_root_dir=run_dir, logger=_loggers(config, run_dir),
                   callbacks=all_callbacks, use_distributed_sampler=False, log_every_n_steps=config.log_every_n_steps,
                   enable_progress_bar=config.progress_bar, enable_model_summary=False,
                   num_sanity_val_steps=0, limit_val_batches=1.0 if val_sets else 0)
    options.update(trainer_options or {})
    trainer = pl.Trainer(**options)
    ckpt_path = None
    if config.resume:
        ckpt_path = str(ckpt_dir / "last.ckpt") if config.resume == "last" else config.resume
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
    info = {"task": config.task, "labels": labels.to_dict(), "modalities": modalities, "parameters": counts,
            "pathway": str(report) if report else None, "linear_probe": probe_info or None,
            "best_checkpoint": best.best_model_path or None, "monitor": monitor,
            "best_score": float(best.best_model_score) if best.best_model_score is not None else None,
            "last_checkpoint": str(ckpt_dir / "last.ckpt"), "fit_seconds": time.perf_counter() - start,
            "global_step": _global_step(trainer, ckpt_dir / "last.ckpt"), "metrics": metrics,
            "splits": {s: sum(r.split == s for r in all_records) for s in (*SPLITS, *ROLES)}}
    if trainer.is_global_zero:
        model.save_pretrained(run_dir / "model")
        if report is not None:
            export_merged(model, run_dir / "model-merged")
        (run_dir / RUN_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return RunResult(run_dir, model, metrics, best.best_model_path or None, info, trainer.is_global_zero)


def _global_step(trainer: pl.Trainer, last: Path) -> int:
    """The optimizer steps taken. Under ``ddp_spawn`` the loop ran in worker processes and the main process's
    trainer never counted them: the last checkpoint (written after the final epoch) has the count."""
    if trainer.global_step or not last.is_file():
        return trainer.global_step
    return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"])


# ------------------------------------------------------------------------------------------- reloading a run
def rebuild_from_checkpoint(run_dir: str | os.PathLike, ckpt_path: str | os.PathLike) -> MetaTransformer:
    """The run's model (pathway layers included) rebuilt from its recipe, with a Lightning checkpoint's weights."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    info = json.loads((run_dir / RUN_INFO).read_text())
    model, _ = build_model(config, LabelEncoder(**info["labels"]), info["modalities"])
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}, strict=True)
    return model


def load_run_model(run_dir: str | os.PathLike, checkpoint: str = "final") -> tuple[MetaTransformer, str]:
    """A run's model: ``final`` (RUN_DIR/model-merged, else RUN_DIR/model, else last.ckpt), ``best``, ``last``
    or a .ckpt path. Returns (model, where it came from)."""
    run_dir = Path(run_dir)
    if checkpoint == "final":
        errors = []
        for name in ("model-merged", "model"):
            if (run_dir / name).is_dir():
                try:
                    return MetaTransformer.from_pretrained(run_dir / name), str(run_dir / name)
                except (CheckpointError, ValueError, KeyError, RuntimeError) as err:
                    errors.append(f"{name}: {err}")
        _logger.warning("no loadable saved model in %s (%s); using checkpoints/last.ckpt", run_dir, "; ".join(errors))
        checkpoint = "last"
    if checkpoint in ("best", "last"):
        info = json.loads((run_dir / RUN_INFO).read_text())
        path = info.get("best_checkpoint") if checkpoint == "best" else None
        path = path or str(run_dir / "checkpoints" / "last.ckpt")
    else:
        path = checkpoint
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return rebuild_from_checkpoint(run_dir, path), str(path)


def merge_run(run_dir: str | os.PathLike, output: str | os.PathLike, *, checkpoint: str = "final") -> tuple[Path, int]:
    """Fold a pathway run's auxiliary weights into a plain model (``W ← W + λ·W_aux``) and save it with
    ``save_pretrained``. Returns (output folder, number of merged layers)."""
    from ..pathway import merge_pathway

    if checkpoint == "final" and (Path(run_dir) / "model").is_dir():
        try:
            model = MetaTransformer.from_pretrained(Path(run_dir) / "model")
        except (CheckpointError, ValueError, KeyError, RuntimeError) as err:
            _logger.warning("%s/model does not load (%s); rebuilding from checkpoints/last.ckpt", run_dir, err)
            model, _ = load_run_model(run_dir, "last")
    else:
        model, _ = load_run_model(run_dir, "last" if checkpoint == "final" else checkpoint)
    merged = merge_pathway(model)
    return model.save_pretrained(output), merged
