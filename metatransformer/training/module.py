"""The LightningModule: one MetaTransformer (shared encoder, a tokenizer + a head per modality), its loss,
its optimizer groups (pathway-aware) and torchmetrics validation."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
from lightning.pytorch.plugins.precision import MixedPrecision
import torch
import torchmetrics
from torchmetrics import MetricCollection

from ..data2seq import TokenSequence
from ..heads import IGNORE_INDEX
from ..model import MetaTransformer
from ..pathway import pathway_param_groups
from .config import TrainConfig
from .forecast import forecast_outputs
from .mixing import batch_mixers
from .reid import RetrievalMetric, reid_embeddings

# metric that picks the best checkpoint, and whether higher is better
MONITOR = {"classification": ("acc", "max"), "multilabel": ("map", "max"), "regression": ("mae", "min"),
           "forecast": ("mae", "min"), "reid": ("rank1", "max"), "segmentation": ("miou", "max")}


def task_metrics(task: str, num_outputs: int) -> MetricCollection:
    """Validation metrics of a task (torchmetrics); reid: retrieval among the held-out identities."""
    if task == "reid":
        return MetricCollection({"retrieval": RetrievalMetric()})
    if task == "classification":
        return MetricCollection({
            "acc": torchmetrics.Accuracy(task="multiclass", num_classes=num_outputs, average="micro"),
            "f1": torchmetrics.F1Score(task="multiclass", num_classes=num_outputs, average="macro"),
        })
    if task == "multilabel":
        return MetricCollection({
            "map": torchmetrics.AveragePrecision(task="multilabel", num_labels=num_outputs, average="macro"),
            "f1": torchmetrics.F1Score(task="multilabel", num_labels=num_outputs, average="macro"),
        })
    if task == "segmentation":  # over every labelled point (padding and unlabelled points carry IGNORE_INDEX)
        kw = {"task": "multiclass", "num_classes": num_outputs, "ignore_index": IGNORE_INDEX}
        return MetricCollection({"oa": torchmetrics.Accuracy(average="micro", **kw),
                                 "miou": torchmetrics.JaccardIndex(average="macro", **kw)})
    return MetricCollection({"mae": torchmetrics.MeanAbsoluteError(), "mse": torchmetrics.MeanSquaredError()})


def metric_inputs(task: str, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = outputs.float()
    if task == "multilabel":
        return outputs.sigmoid(), target.long()
    if task == "forecast":
        return outputs, target.float()
    if task == "segmentation":  # (b, n, c) logits, (b, n) labels → one row per point
        return outputs.flatten(0, 1), target.flatten()
    if task == "regression":
        return outputs.reshape(target.shape) if outputs.numel() == target.numel() else outputs, target.float()
    return outputs, target


class MetaTransformerModule(pl.LightningModule):
    """Trains ``model``'s heads (named after their modality) with its tokenizers and, as configured, its encoder.

    Batches: a dict {modality: (batch, targets)} in training (every modality each step; the losses add),
    ``(batch, targets)`` of ``val_modalities[dataloader_idx]`` in validation (task reid: query and gallery records
    with (identity, role) targets, see :mod:`.reid`). In linear-probe mode the batches
    hold cached encoder features (see :mod:`metatransformer.training.features`) instead of raw batches.

    Args:
        model: the model; heads are named after the modalities.
        config: the training recipe (optimizer, schedule, task).
        num_outputs: head outputs (classes or regression targets).
        probe: train on cached features.
        val_modalities: the modality of each validation loader, in order (default: every modality; a
            modality without validation records has no loader).
    """

    def __init__(self, model: MetaTransformer, config: TrainConfig, num_outputs: int, *, probe: bool = False,
                 val_modalities: Sequence[str] | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.task = config.task
        self.probe = probe
        self.modalities = list(model.tokenizers)
        self.val_modalities = list(self.modalities if val_modalities is None else val_modalities)
        # reid: one retrieval over every modality's records (a query may match a gallery item of another modality)
        groups = ["retrieval"] if self.task == "reid" else self.modalities
        self.val_metrics = torch.nn.ModuleDict({g: task_metrics(self.task, num_outputs) for g in groups})
        self.val_loss = torch.nn.ModuleDict({m: torchmetrics.MeanMetric() for m in self.modalities})
        self.mixers = batch_mixers(config, num_outputs, self.modalities)

    # ------------------------------------------------------------------ forward
    def features_of(self, modality: str, batch: Any) -> TokenSequence:
        if self.probe:
            return cached_sequence(batch, modality)
        return self.model.forward_features({modality: batch})

    def outputs_of(self, modality: str, batch: Any) -> torch.Tensor:
        if self.task == "forecast":  # the forecast on the windows' scale (RevIN statistics of the tokenizer)
            return forecast_outputs(self.model, modality, batch, self.features_of(modality, batch))
        return self.model.heads[modality](self.features_of(modality, batch))

    def forward(self, modality: str, batch: Any) -> torch.Tensor:
        return self.outputs_of(modality, batch)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, Mapping):
            batch = {self.modalities[0]: batch}
        total = 0.0
        size = 0
        for modality, (inputs, target) in batch.items():
            if modality in self.mixers:  # soft targets; validation batches stay unmixed
                inputs, target = self.mixers[modality](inputs, target)
            outputs = self.outputs_of(modality, inputs)
            loss = self.model.heads[modality].loss(outputs, target)
            self.log(f"train/{modality}/loss" if len(self.modalities) > 1 else "train/loss_step", loss.detach(),
                     on_step=True, on_epoch=False, batch_size=len(target))
            total = total + loss
            size += len(target)
        self.log("train/loss", total.detach(), on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return total

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        modality = self.val_modalities[dataloader_idx]
        inputs, target = batch
        real = ~self._padding(dataloader_idx, batch_idx, len(target))  # each record counted once over the ranks
        if self.task == "reid":  # held-out identities: no loss, their embeddings are ranked at the epoch's end
            embeddings = reid_embeddings(self.model, modality, self.features_of(modality, inputs))
            self.val_metrics["retrieval"].update(embeddings[real], target[real])
            return
        outputs = self.outputs_of(modality, inputs)
        if not real.any():
            return
        outputs, target = outputs[real], target[real]
        loss = self.model.heads[modality].loss(outputs, target)
        self.val_loss[modality].update(loss.detach().float(), weight=len(target))
        self.val_metrics[modality].update(*metric_inputs(self.task, outputs, target))

    def _padding(self, dataloader_idx: int, batch_idx: int, size: int) -> torch.Tensor:
        """The items of a validation batch that a distributed sampler repeated (all False in one process)."""
        loaders = self.trainer.val_dataloaders if self.trainer is not None else None
        loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
        sampler = getattr(loader, "batch_sampler", None)
        if not hasattr(sampler, "padding"):
            return torch.zeros(size, dtype=torch.bool, device=self.device)
        return sampler.padding(batch_idx).to(self.device)

    def on_train_start(self) -> None:
        # one seed gave every process the same initial weights; from here augmentation, mixup and dropout
        # draw per process, or every rank would crop, mask and mix its (different) samples identically
        if self.trainer.world_size > 1:
            pl.seed_everything(self.config.seed + self.global_rank, workers=True, verbose=False)

    def on_validation_epoch_end(self) -> None:
        if self.task == "reid":
            for name, value in self.val_metrics["retrieval"].compute().items():
                self.log(f"val/{name}", value, prog_bar=name == "rank1", sync_dist=True)
            self.val_metrics["retrieval"].reset()
            return
        # torchmetrics' compute() already reduced across processes; sync_dist averages those equal values (a no-op
        # on the numbers) and keeps Lightning from warning that epoch-level values are not synchronised
        combined: dict[str, list[torch.Tensor]] = {}
        for modality in self.modalities:
            # decided by what every rank shares: a rank whose share of a small validation set is all padding
            # updated nothing, yet must join the same metric reductions as the others (or they wait forever)
            if modality not in self.val_modalities:
                continue
            values = {"loss": self.val_loss[modality].compute(), **self.val_metrics[modality].compute()}
            for name, value in values.items():
                combined.setdefault(name, []).append(value.float())
                if len(self.modalities) > 1:
                    self.log(f"val/{modality}/{name}", value.float(), sync_dist=True)
            self.val_loss[modality].reset()
            self.val_metrics[modality].reset()
        for name, values in combined.items():  # the mean over modalities (= the value for one modality)
            self.log(f"val/{name}", torch.stack(values).mean(), prog_bar=name in ("loss", "acc"), sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        config = self.config
        clips = bool(self.trainer.gradient_clip_val) and isinstance(self.trainer.precision_plugin, MixedPrecision)
        optimizer = make_optimizer(self.model, config, clips_mixed_precision=clips)
        if config.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(config.warmup_steps, total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# devices with torch's fused AdamW kernel: one pass over all parameters instead of a Python loop of
# per-tensor ops (about 6x faster per step for a base encoder on CPU)
_FUSED_ADAMW_DEVICES = ("cpu", "cuda", "xpu", "mps")


def make_optimizer(model: torch.nn.Module, config: TrainConfig, *,
                   clips_mixed_precision: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in :func:`~metatransformer.pathway.pathway_param_groups` (no decay on
    biases, norms and λ; λ's own learning rate), fused where the device has the kernel.

    Args:
        model: the model; only parameters that require gradients are optimised.
        config: the recipe: ``lr``, ``weight_decay``, ``aux_weight_decay``, ``aux_lambda_lr``.
        clips_mixed_precision: whether Lightning's mixed-precision plugin will clip the gradients, which it
            refuses for a fused step (it must unscale them first); default: read from the recipe's
            ``grad_clip`` and ``precision`` (the trainer passes what it actually runs with).
    """
    groups = pathway_param_groups(model, weight_decay=config.weight_decay,
                                  aux_weight_decay=config.aux_weight_decay, scale_lr=config.aux_lambda_lr)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    fused = all(p.device.type in _FUSED_ADAMW_DEVICES and p.is_floating_point() for g in groups for p in g["params"])
    if clips_mixed_precision is None:
        clips_mixed_precision = bool(config.grad_clip) and not str(config.precision).endswith(("-true", "32", "64"))
    fused = fused and not clips_mixed_precision
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused)


def cached_sequence(batch: Mapping[str, torch.Tensor], modality: str) -> TokenSequence:
    """Rebuild the encoded sequence a head sees from cached features (tokens, mask, prefix)."""
    return TokenSequence(batch["tokens"], batch["mask"], prefix=batch["prefix"][0], modalities=(modality,))
