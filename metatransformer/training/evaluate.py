"""Evaluation of a run: metrics (accuracy, macro-F1, OA/AA/κ, mAP, MAE/MSE, segmentation OA/mIoU/mAcc;
re-identification Rank-k, mAP, mINP per retrieval direction), per-class report, confusion matrix and
training-curve PNGs, results JSON + Markdown."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torchmetrics
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional import classification as C

from ..embed import to_device
from ..heads import IGNORE_INDEX
from ..metrics import per_class_accuracy
from ..model import MetaTransformer
from ..registry import get_modality
from ..serialization import CheckpointError
from .api import RUN_INFO, load_run_model, make_dataset, source_records
from .config import TrainConfig
from .data import ItemDataset, LabelEncoder, Record, group_by_modality, make_loader, assign_splits
from .forecast import forecast_outputs
from .reid import evaluate_retrieval, retrieval_records

RETRIEVAL = "retrieval"  # what a reid run is evaluated on: its query and gallery records


def compute_metrics(task: str, outputs: torch.Tensor, target: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Scalar metrics and per-class tables of one modality's predictions (torchmetrics)."""
    outputs, n = outputs.float(), max(1, len(classes))
    if task == "classification":
        preds = outputs.argmax(-1)
        kw = {"task": "multiclass", "num_classes": n}
        per_p = C.precision(preds, target, average="none", **kw)
        per_r = C.recall(preds, target, average="none", **kw)
        per_f = C.f1_score(preds, target, average="none", **kw)
        support = torch.bincount(target, minlength=n)
        return {
            "accuracy": float(C.accuracy(preds, target, average="micro", **kw)),
            "macro_f1": float(C.f1_score(preds, target, average="macro", **kw)),
            "OA": float(C.accuracy(preds, target, average="micro", **kw)),
            "AA": float(per_r[support > 0].mean()) if (support > 0).any() else float("nan"),
            "kappa": float(torchmetrics.functional.cohen_kappa(preds, target, **kw)),
            "per_class": [{"class": c, "precision": float(per_p[i]), "recall": float(per_r[i]),
                           "f1": float(per_f[i]), "support": int(support[i])} for i, c in enumerate(classes)],
            "confusion_matrix": C.confusion_matrix(preds, target, **kw).tolist(),
        }
    if task == "multilabel":
        kw = {"task": "multilabel", "num_labels": n}
        probs = outputs.sigmoid()
        per_ap = C.average_precision(probs, target.long(), average="none", **kw)
        return {
            "mAP": float(C.average_precision(probs, target.long(), average="macro", **kw)),
            "macro_f1": float(C.f1_score(probs, target.long(), average="macro", **kw)),
            "per_class": [{"class": c, "AP": float(per_ap[i]), "support": int(target[:, i].sum())}
                          for i, c in enumerate(classes)],
        }
    if task == "segmentation":  # (points, classes) logits of every labelled point
        preds = outputs.argmax(-1)
        kw = {"task": "multiclass", "num_classes": n}
        iou = C.jaccard_index(preds, target, average="none", **kw)
        accuracy = per_class_accuracy(preds, target, n)  # NaN for a class absent from the target
        support = torch.bincount(target, minlength=n)
        return {
            "OA": float(C.accuracy(preds, target, average="micro", **kw)),
            "mIoU": float(C.jaccard_index(preds, target, average="macro", **kw)),  # classes seen or predicted
            "mAcc": float(accuracy.nanmean()),
            "per_class": [{"class": c, "IoU": float(iou[i]), "accuracy": float(accuracy[i]), "support": int(support[i])}
                          for i, c in enumerate(classes)],
            "confusion_matrix": C.confusion_matrix(preds, target, **kw).tolist(),
            "points": len(target),
        }
    if task == "forecast":  # (n, horizon, channels): the errors of every step and channel, and per channel
        error = outputs - target.float()
        return {"MAE": float(error.abs().mean()), "MSE": float(error.pow(2).mean()),
                "per_class": [{"class": c, "MAE": float(error[..., i].abs().mean()),
                               "MSE": float(error[..., i].pow(2).mean())} for i, c in enumerate(classes)]}
    outputs = outputs.reshape(target.shape)
    return {"MAE": float(torchmetrics.functional.mean_absolute_error(outputs, target.float())),
            "MSE": float(torchmetrics.functional.mean_squared_error(outputs, target.float()))}


@torch.inference_mode()
def predict(model: MetaTransformer, dataset: ItemDataset, *, batch_size: int = 32, num_workers: int = 0,
            device: str = "cpu", task: str = "classification") -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs and targets of every item (the head named after the modality). forecast: the forecast head
    de-normalised with the tokenizer's per-window statistics, as in training; segmentation: one row per
    labelled point ((points, classes) and (points,)), padding and unlabelled points left out."""
    model.eval().to(device)
    outputs, targets = [], []
    for batch, target in make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0, num_workers=num_workers):
        batch = to_device(batch, torch.device(device))
        output = forecast_outputs(model, dataset.modality, batch) if task == "forecast" else \
            model(dataset.modality, batch, head=dataset.modality)
        output = output.float().cpu()
        if task == "segmentation":
            labelled = target != IGNORE_INDEX
            output, target = output[labelled], target[labelled]
        outputs.append(output)
        targets.append(target)
    return torch.cat(outputs), torch.cat(targets)


class ViewDataset(Dataset):
    """Records of one modality's files → (their test-time views, target), through the modality's registered
    ``views`` (e.g. clips spaced over the file × crops).

    Args:
        records: the samples (files, all of one modality).
        tokenizer: the model's tokenizer for that modality (views are fitted to it).
        labels: the label encoder.
        temporal: views along time.
        spatial: views in space.
        reader_options: keyword arguments of the modality's reader.
    """

    def __init__(self, records: Sequence[Record], tokenizer: torch.nn.Module, labels: LabelEncoder, *,
                 temporal: int, spatial: int, reader_options: dict[str, Any] | None = None) -> None:
        self.records = list(records)
        self.modality = self.records[0].modality
        self.spec = get_modality(self.modality)
        if self.spec.views is None:
            raise ValueError(f"modality {self.modality!r} has no test-time views (--temporal-views/--spatial-views)")
        if not all(isinstance(r.source, (str, os.PathLike)) for r in self.records):
            raise ValueError("test-time views are read from files; these records hold in-memory items")
        self.count = temporal * spatial
        self.tokenizer, self.targets = tokenizer, [labels.encode(r.label) for r in self.records]
        self.options = {"temporal": temporal, "spatial": spatial, **(reader_options or {})}
        self._views: Callable[[Path], list[Any]] | None = self.spec.views(tokenizer, **self.options)  # checks them

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[list[Any], torch.Tensor]:
        if self._views is None:
            self._views = self.spec.views(self.tokenizer, **self.options)
        source = self.records[index].source
        views = self._views(Path(source))
        if len(views) != self.count:
            raise ValueError(f"{source}: the {self.modality} views gave {len(views)} items, expected {self.count}")
        return views, self.targets[index]

    def collate(self, samples: Sequence[tuple[list[Any], torch.Tensor]]) -> tuple[Any, torch.Tensor]:
        """Every view of every sample in one batch (sample-major), and the samples' targets."""
        return self.spec.collate([v for views, _ in samples for v in views]), torch.stack([t for _, t in samples])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_views": None}  # rebuilt in each worker


def average_views(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """(n, views, c) head outputs → (n, c), the views' probabilities averaged and returned as logits:
    classification: log of the mean softmax; multilabel: logit of the mean sigmoid; regression: the mean."""
    if task == "classification":
        return outputs.softmax(-1).mean(1).log()
    if task == "multilabel":
        return torch.logit(outputs.sigmoid().mean(1))
    return outputs.mean(1)


@torch.inference_mode()
def predict_views(model: MetaTransformer, dataset: ViewDataset, *, task: str, batch_size: int = 32,
                  num_workers: int = 0, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-view :func:`predict`: each sample's views through the model (``batch_size`` views a batch, whole
    samples), combined by :func:`average_views`. Returns (outputs (n, c), targets)."""
    model.eval().to(device)
    outputs, targets = [], []
    loader = DataLoader(dataset, batch_size=max(1, batch_size // dataset.count), shuffle=False,
                        num_workers=num_workers, collate_fn=dataset.collate)
    for batch, target in loader:
        output = model(dataset.modality, to_device(batch, torch.device(device)), head=dataset.modality)
        outputs.append(average_views(task, output.float().cpu().unflatten(0, (len(target), dataset.count))))
        targets.append(target)
    return torch.cat(outputs), torch.cat(targets)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = min(20, 2 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if n > 8 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_logged_metrics(run_dir: Path) -> Any:
    """Every CSV metrics file of the run (one per launch), concatenated and ordered by step."""
    import pandas as pd

    files = sorted((run_dir / "logs").glob("version_*/metrics.csv"))
    frames = [pd.read_csv(f) for f in files if f.stat().st_size]
    return pd.concat(frames, ignore_index=True).sort_values("step", kind="stable") if frames else None


def plot_curves(run_dir: Path, path: Path) -> Path | None:
    """Training loss and validation metrics against the step, from the CSV logs."""
    frame = read_logged_metrics(run_dir)
    if frame is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in frame.columns if c.startswith(("train/", "val/"))]
    losses = [c for c in columns if c.endswith("loss") or c.endswith("loss_step")]
    others = [c for c in columns if c not in losses]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, cols, title in ((axes[0], losses, "loss"), (axes[1], others, "validation metrics")):
        for col in cols:
            series = frame[["step", col]].dropna()
            if len(series):
                ax.plot(series["step"], series[col], marker="o" if len(series) < 30 else None, label=col)
        ax.set_xlabel("step")
        ax.set_title(title)
        if cols:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _markdown(results: dict[str, Any]) -> str:
    views = results.get("views")
    lines = [f"# Evaluation of {results['run_dir']}", "", f"split: **{results['split']}**, model: `{results['model']}`"
             + (f", views: {views['temporal']} temporal × {views['spatial']} spatial" if views else ""), ""]
    for modality, res in results["modalities"].items():
        lines += [f"## {modality} ({res['count']} samples)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in res.items() if isinstance(v, float)]
        if res.get("per_class"):
            keys = [k for k in res["per_class"][0] if k != "class"]
            lines += ["", "| class | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            for row in res["per_class"]:
                cells = [f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
                lines.append(f"| {row['class']} | " + " | ".join(cells) + " |")
        for name in ("confusion_png",):
            if res.get(name):
                lines += ["", f"![confusion matrix]({Path(res[name]).name})"]
        lines.append("")
    if results.get("directions"):
        directions = results["directions"]
        lines += ["## Re-identification", "", "| metric | " + " | ".join(directions) + " |",
                  "|---" * (len(directions) + 1) + "|"]
        for name in next(iter(directions.values())):
            cells = [f"{d[name]:.4f}" if isinstance(d[name], float) else str(d[name]) for d in directions.values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("curves_png"):
        lines += ["## Training curves", "", f"![curves]({Path(results['curves_png']).name})", ""]
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, *, data: Sequence[str] | None = None, split: str | None = None,
                 checkpoint: str = "final", output: str | Path | None = None, batch_size: int | None = None,
                 device: str = "cpu", temporal_views: int = 1, spatial_views: int = 1) -> dict[str, Any]:
    """Evaluate a training run on a split of its data (or of ``data``) and write the report.

    Args:
        run_dir: the run folder written by ``train``.
        data: other sources (folders or manifests) than the run's own.
        split: ``test``, ``val``, ``train`` or ``all``; default: test if the data has a test split, else val,
            else (other ``data`` without splits) all. A reid run is evaluated on its query and gallery records
            (retrieval in both directions; ``split`` does not apply).
        checkpoint: ``final`` (RUN_DIR/model), ``best``, ``last`` or a .ckpt path.
        output: report folder (default RUN_DIR/eval-SPLIT).
        batch_size: samples per batch (default: the run's).
        device: where the model runs.
        temporal_views: views of each file along time (>= 1), combined with ``spatial_views`` (>= 1) in space
            by the modality's registered ``views`` (e.g. clips × crops, the UCF101 / Kinetics protocol of
            10 × 3) and averaged by :func:`average_views`; 1 × 1: the single view.
        spatial_views: views of each file in space.

    Returns:
        the results (also written as results.json and results.md).

    Raises:
        ValueError: fewer than one temporal or spatial view, views for a task that has none, or no records in
            ``split``.
    """
    if temporal_views < 1 or spatial_views < 1:
        raise ValueError(f"--temporal-views and --spatial-views must be >= 1 (1 × 1: one view), got {temporal_views} "
                         f"and {spatial_views}")
    run_dir = Path(run_dir)
    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    info = json.loads((run_dir / RUN_INFO).read_text())
    labels = LabelEncoder(**info["labels"])
    model, model_name = load_run_model(run_dir, checkpoint)
    sources = list(data) if data else config.data
    records = [r for s in sources for r in source_records(config, s)]
    records = assign_splits(records, val_fraction=config.val_fraction if not data and labels.task != "reid" else 0.0,
                            seed=config.seed)
    present = {r.split for r in records}
    if labels.task == "reid":
        if split is not None:
            raise ValueError(f"a reid run is evaluated on its query and gallery records, not on split {split!r}")
        split = RETRIEVAL
    if split is None:  # the run's test split, else its val split; other data without splits: all of it
        split = "test" if "test" in present else "val" if "val" in present else "all" if data else "train"
    chosen = records if split == "all" else retrieval_records(records) if split == RETRIEVAL else \
        [r for r in records if r.split == split]
    if not chosen:
        raise ValueError(f"no records in split {split!r} (present: {sorted(present)})")
    out = Path(output or run_dir / f"eval-{split}")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"run_dir": str(run_dir), "split": split, "model": model_name, "modalities": {}}
    views = temporal_views * spatial_views > 1
    if views:
        if labels.task in ("forecast", "reid", "segmentation"):
            raise ValueError(f"test-time views do not apply to task {labels.task}")
        results["views"] = {"temporal": temporal_views, "spatial": spatial_views}
    if labels.task == "reid":  # one retrieval over every modality's query and gallery records
        results["directions"] = evaluate_retrieval(model, config, chosen, batch_size=batch_size or config.batch_size,
                                                   device=device)
    for modality, rs in group_by_modality(chosen if labels.task != "reid" else []).items():
        if views:
            dataset = ViewDataset(rs, model.tokenizer(modality), labels, temporal=temporal_views,
                                  spatial=spatial_views, reader_options=config.reader_options.get(modality))
            outputs, targets = predict_views(model, dataset, task=labels.task, device=device,
                                             batch_size=batch_size or config.batch_size)
        else:
            dataset = make_dataset(config, rs, model.tokenizer(modality), labels)
            outputs, targets = predict(model, dataset, batch_size=batch_size or config.batch_size, device=device,
                                       task=labels.task)
        res = {"count": len(rs), **compute_metrics(labels.task, outputs, targets, labels.classes)}
        if "confusion_matrix" in res:
            res["confusion_png"] = str(plot_confusion(res["confusion_matrix"], labels.classes,
                                                      out / f"confusion_{modality}.png", f"{modality} ({split})"))
        if res.get("per_class"):
            import pandas as pd

            pd.DataFrame(res["per_class"]).to_csv(out / f"per_class_{modality}.csv", index=False)
        results["modalities"][modality] = res
    curves = plot_curves(run_dir, out / "curves.png")
    results["curves_png"] = str(curves) if curves else None
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "results.md").write_text(_markdown(results), encoding="utf-8")  # class and channel names need not be ASCII
    results["output"] = str(out)
    return results


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
