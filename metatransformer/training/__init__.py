"""Training on top of the library (Lightning + torchmetrics): data from folders, manifests and tensors;
frozen-encoder, partial and full fine-tuning; Multimodal Pathway; linear probe on cached features;
evaluation reports. Nothing below this package imports it.

Names are loaded lazily so that ``metatransformer --help`` does not import Lightning.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "api", "RunResult": "api", "build_model": "api", "prepare_records": "api", "load_run_model": "api",
    "merge_run": "api", "TrainConfig": "config", "evaluate_run": "evaluate", "compute_metrics": "evaluate",
    "ItemDataset": "data", "LabelEncoder": "data", "Record": "data", "ResumableBatchSampler": "data",
    "load_records": "data", "records_from_folder": "data", "records_from_manifest": "data",
    "records_from_tensors": "data", "MetaTransformerModule": "module",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
