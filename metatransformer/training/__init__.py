"""Training on top of the library (Lightning + torchmetrics): data from folders, manifests and tensors;
frozen-encoder, partial and full fine-tuning; Multimodal Pathway; linear probe on cached features;
evaluation reports. Nothing below this package imports it."""
from .api import RunResult, build_model, prepare_records, train
from .config import TrainConfig
from .data import (
    ItemDataset,
    LabelEncoder,
    Record,
    ResumableBatchSampler,
    load_records,
    records_from_folder,
    records_from_manifest,
    records_from_tensors,
)

__all__ = ["ItemDataset", "LabelEncoder", "Record", "ResumableBatchSampler", "RunResult", "TrainConfig",
           "build_model", "load_records", "prepare_records", "records_from_folder", "records_from_manifest",
           "records_from_tensors", "train"]
