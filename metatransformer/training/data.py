"""Training data: folder-per-class trees, manifests (CSV/TSV/JSONL/Parquet) and in-memory tensors,
read with each modality's registered reader + transform and collated with its registered collate.

Nothing here re-implements the per-modality pipeline: files go through
:func:`metatransformer.embed.item_loader` (reader → default transform built from the tokenizer's
options) and batches through the modality's ``collate``.

A manifest has one row per sample: ``path``, ``label`` and optionally ``modality`` and ``split``. Splits are
``train``, ``val`` (or valid/validation/dev) and ``test``; empty: assigned by ``val_fraction``. Re-identification
(task reid) uses the same format: the label is the person's identity, and the held-out identities' rows have
the split ``query`` or ``gallery`` (their role in retrieval; folder trees may have ``query/`` and ``gallery/``
split folders too). Each query is ranked against the gallery and each gallery item against the queries
(:mod:`.reid`); e.g. RegDB: visible test images ``query``, thermal ones ``gallery``.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..embed import item_loader
from ..heads import IGNORE_INDEX
from ..registry import canonical_modality, get_modality, list_modalities, modality_for_suffix
from .records import SPLIT_ALIASES, Record, normalize_split
from .tables import TableRow, encode_table_rows, is_table_file, records_from_table

_logger = logging.getLogger(__name__)

Task = Literal["classification", "multilabel", "regression", "forecast", "reid", "segmentation"]
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")
LABEL_SEPARATORS = ("|", ";")


def infer_modality(path: str | os.PathLike, override: str | None = None) -> str:
    """The modality of a file: ``override`` if given, else its suffix's registered claimant."""
    if override:
        return canonical_modality(override)
    modality = modality_for_suffix(Path(path).suffix)
    if modality is None:
        raise ValueError(f"{path}: no registered modality reads {Path(path).suffix!r} files; pass a modality "
                         f"(known: {', '.join(list_modalities())})")
    return modality


def _readable_suffixes(modality: str | None) -> set[str]:
    names = [modality] if modality else list_modalities()
    return {s for name in names for s in get_modality(name).suffixes}


def records_from_folder(root: str | os.PathLike, *, modality: str | None = None) -> list[Record]:
    """A folder-per-class tree: ``root/<class>/<file>``, or ``root/<split>/<class>/<file>`` with split folders
    named train / val (valid, validation) / test. Files whose suffix no modality reads are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    modality = canonical_modality(modality) if modality else None
    suffixes = _readable_suffixes(modality)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    trees = [(normalize_split(d.name), d) for d in split_dirs] if split_dirs and len(split_dirs) == len(subdirs) \
        else [(None, root)]
    records = []
    for split, tree in trees:
        for class_dir in sorted(p for p in tree.iterdir() if p.is_dir()):
            for file in sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
                records.append(Record(str(file), class_dir.name, infer_modality(file, modality), split))
    if not records:
        raise ValueError(f"{root}: no readable files in class folders (suffixes {sorted(suffixes)})")
    return records


def read_manifest_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV, JSON Lines or Parquet manifest as dicts."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    import pandas as pd

    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"label": str, "split": str},
                            keep_default_na=False)
    else:
        raise ValueError(f"{path}: a manifest must be one of {', '.join(MANIFEST_SUFFIXES)}")
    return frame.to_dict(orient="records")


def records_from_manifest(path: str | os.PathLike, *, modality: str | None = None) -> list[Record]:
    """A manifest with columns ``path``, ``label`` and optional ``modality`` and ``split`` (see the module's
    docstring); relative paths are resolved against the manifest's folder. ``modality`` (argument) overrides the
    column and the suffix."""
    path = Path(path)
    rows = read_manifest_table(path)
    records = []
    for i, row in enumerate(rows):
        missing = {"path", "label"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {i} lacks column(s) {sorted(missing)} (needed: path, label)")
        file = Path(str(row["path"]))
        file = file if file.is_absolute() else path.parent / file
        row_modality = modality or (row.get("modality") or None)
        records.append(Record(str(file), row["label"], infer_modality(file, row_modality), normalize_split(row.get("split"))))
    if not records:
        raise ValueError(f"{path}: the manifest has no rows")
    return records


def records_from_tensors(items: Sequence[Any] | torch.Tensor, labels: Sequence[Any] | torch.Tensor, *,
                         modality: str, split: str | None = None) -> list[Record]:
    """In-memory items (what the modality's reader would return, e.g. (c, h, w) floats in [0, 1])."""
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} items but {len(labels)} labels")
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    name = canonical_modality(modality)
    return [Record(item, label, name, normalize_split(split)) for item, label in zip(items, labels)]


def load_records(source: Any, *, modality: str | None = None, label_column: str | None = None) -> list[Record]:
    """Records of a folder, a manifest file, a list of records, or a ``{"items", "labels", "modality"}`` dict;
    with ``label_column``, a table file (CSV/TSV/Parquet) gives one record per row (:mod:`.tables`)."""
    if label_column is not None:

        if is_table_file(source):
            return records_from_table(source, label_column=label_column, modality=modality)
    if isinstance(source, dict):
        return records_from_tensors(source["items"], source["labels"], modality=source.get("modality") or modality,
                                    split=source.get("split"))
    if isinstance(source, (list, tuple)) and all(isinstance(r, Record) for r in source):
        return list(source)
    path = Path(source)
    if path.is_dir():
        return records_from_folder(path, modality=modality)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return records_from_manifest(path, modality=modality)
    raise ValueError(f"{source}: expected a folder-per-class directory or a manifest ({', '.join(MANIFEST_SUFFIXES)})")


def assign_splits(records: list[Record], *, val_fraction: float, seed: int) -> list[Record]:
    """Records without a split go to train or val: a seeded split of ``val_fraction`` per (modality, label),
    at least one val record per modality when there are records without a split and val_fraction > 0."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pending: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        if record.split is None:
            pending.setdefault((record.modality, str(record.label)), []).append(record)
    rng = random.Random(seed)
    for key in sorted(pending):
        group = pending[key]
        rng.shuffle(group)
        n_val = int(round(len(group) * val_fraction)) if len(group) > 1 else 0
        for i, record in enumerate(group):
            record.split = "val" if i < n_val else "train"
    assigned = {id(r) for group in pending.values() for r in group}
    if val_fraction > 0:
        for modality in {r.modality for r in records}:
            mine = [r for r in records if r.modality == modality]
            movable = [r for r in mine if id(r) in assigned and r.split == "train"]
            if not any(r.split == "val" for r in mine) and len(movable) > 1:
                movable[-1].split = "val"
    return records


# --------------------------------------------------------------------------------------------- labels
def _split_labels(label: Any) -> list[str]:
    if isinstance(label, (list, tuple)):
        return [str(x) for x in label]
    text = str(label)
    for sep in LABEL_SEPARATORS:
        if sep in text:
            return [x.strip() for x in text.split(sep) if x.strip()]
    return [text.strip()] if text.strip() else []


@dataclass
class LabelEncoder:
    """Raw labels to targets. classification (and reid): class index; multilabel: multi-hot over ``classes``
    (labels are lists or ``a|b`` / ``a;b`` strings); regression: float vector of ``num_outputs``.
    forecast and segmentation read their targets from the samples: ``classes`` names the series' channels
    or the point classes."""

    task: Task
    classes: list[str] = field(default_factory=list)
    num_outputs: int = 1

    @classmethod
    def fit(cls, task: Task, labels: Sequence[Any], classes: Sequence[str] | None = None) -> "LabelEncoder":
        if task == "regression":
            widths = {len(_floats(x)) for x in labels}
            if len(widths) > 1:
                raise ValueError(f"regression targets have different lengths: {sorted(widths)}")
            return cls(task, [], widths.pop() if widths else 1)
        if classes is None:
            names = {c for x in labels for c in (_split_labels(x) if task == "multilabel" else [str(x)])}
            classes = sorted(names, key=_natural_key)
        return cls(task, list(classes), len(classes))

    def encode(self, label: Any) -> torch.Tensor:
        if self.task == "regression":
            values = _floats(label)
            return torch.tensor(values if self.num_outputs > 1 else values[0], dtype=torch.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        if self.task == "multilabel":
            target = torch.zeros(len(self.classes), dtype=torch.float32)
            for name in _split_labels(label):
                target[self._index(index, name)] = 1
            return target
        return torch.tensor(self._index(index, str(label)), dtype=torch.long)

    @staticmethod
    def _index(index: dict[str, int], name: str) -> int:
        if name not in index:
            raise ValueError(f"label {name!r} is not one of the training classes {list(index)[:20]}")
        return index[name]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": self.classes, "num_outputs": self.num_outputs}


def _floats(label: Any) -> list[float]:
    if isinstance(label, (list, tuple)):
        return [float(x) for x in label]
    if isinstance(label, str) and any(sep in label for sep in LABEL_SEPARATORS):
        return [float(x) for x in _split_labels(label)]
    return [float(label)]


def _natural_key(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


# ------------------------------------------------------------------------------------- datasets
class _TokenizerHolder:
    """What :func:`item_loader` needs of a model (``tokenizer(name)``), picklable for DataLoader workers."""

    def __init__(self, tokenizers: dict[str, torch.nn.Module]) -> None:
        self.tokenizers = tokenizers

    def tokenizer(self, name: str) -> torch.nn.Module:
        return self.tokenizers[name]


class ItemDataset(Dataset):
    """Records of one modality → (item, target): files through the modality's reader + transform
    (:func:`metatransformer.embed.item_loader`), in-memory items through its transform only.

    Args:
        records: the samples (all of one modality).
        tokenizer: the model's tokenizer for that modality (the transform is built from its options).
        labels: the label encoder.
        augment: use the modality's registered training augmentation (``augment``) instead of its
            ``transform`` where it has one.
        reader_options: keyword arguments of the modality's reader (e.g. ``{"scale": "none"}`` for
            hyperspectral patches that a converter already scaled over the whole scene).
        augment_options: keyword arguments of the modality's augmentation.
    """

    def __init__(self, records: Sequence[Record], tokenizer: torch.nn.Module, labels: LabelEncoder, *,
                 augment: bool = False, reader_options: dict[str, Any] | None = None,
                 augment_options: dict[str, Any] | None = None) -> None:
        modalities = {r.modality for r in records}
        if len(modalities) > 1:
            raise ValueError(f"an ItemDataset holds one modality, got {sorted(modalities)}")
        self.records = list(records)
        self.modality = modalities.pop() if modalities else None
        self.holder = _TokenizerHolder({self.modality: tokenizer}) if self.modality else None
        self.labels = labels
        self.targets = [labels.encode(r.label) for r in self.records]
        self.rows = None  # table rows (.tables.TableRow sources): encoded once with the tokenizer's schema
        if self.records and isinstance(self.records[0].source, _table_row_type()):

            self.rows = encode_table_rows(self.records, tokenizer)
        self.augment = augment
        self.reader_options = dict(reader_options or {})
        self.augment_options = dict(augment_options or {})
        self._load: Callable[[Path], Any] | None = None
        self._transform: Callable[[Any], Any] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _loaders(self) -> tuple[Callable[[Path], Any], Callable[[Any], Any]]:
        if self._load is None:
            spec = get_modality(self.modality)
            tokenizer = self.holder.tokenizer(self.modality)
            augment = spec.augment(tokenizer, **self.augment_options) \
                if self.augment and spec.augment is not None else None
            default = spec.transform(tokenizer) if spec.transform is not None else (lambda item: item)
            self._transform = augment or default
            reader = functools.partial(spec.reader, **self.reader_options) \
                if self.reader_options and spec.reader is not None else spec.reader
            if augment is not None and reader is not None:
                self._load = lambda path: augment(reader(path))
            elif self.reader_options and reader is not None:
                self._load = (lambda path: default(reader(path))) if spec.transform is not None else reader
            else:
                self._load = item_loader(self.holder, self.modality) if spec.reader is not None else None
        return self._load, self._transform

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        if self.rows is not None:
            return self.rows.select(slice(index, index + 1)), self.targets[index]
        record = self.records[index]
        load, transform = self._loaders()
        if isinstance(record.source, (str, os.PathLike)):
            if load is None:
                raise ValueError(f"modality {self.modality!r} has no file reader; pass in-memory items")
            item = load(Path(record.source))
        else:
            item = transform(record.source)
        return item, self.targets[index]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_load"] = state["_transform"] = None  # rebuilt in each worker
        return state


def _table_row_type() -> type:

    return TableRow


class ModalityCollate:
    """(item, target) pairs → (the modality's collated batch, stacked targets). Targets of different lengths
    (the per-point labels of clouds of different sizes) are padded with ``IGNORE_INDEX`` (-1), as the modality's
    collate pads the items."""

    def __init__(self, modality: str) -> None:
        self.modality = modality

    def __call__(self, samples: Sequence[tuple[Any, torch.Tensor]]) -> tuple[Any, torch.Tensor]:
        items, targets = zip(*samples)
        if len({t.shape for t in targets}) > 1:
            targets = torch.nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX)
        else:
            targets = torch.stack(list(targets))
        return get_modality(self.modality).collate(list(items)), targets


class _EpochSetter:
    def __init__(self, owner: "ResumableBatchSampler") -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class ResumableBatchSampler(Sampler[list[int]]):
    """Seeded batches that are the same in 1 process and in DDP, and that resume mid-epoch.

    Epoch ``e`` draws one permutation from ``seed + e``; with ``world_size`` processes, rank ``r`` takes
    positions ``r, r + w, ...`` (DistributedSampler's rule), so the union of the ranks' i-th batches is
    the 1-process i-th batch of ``batch_size · world_size`` samples. :meth:`skip_batches` drops the first
    batches of the next iteration (those a resumed run already trained on).
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> "_EpochSetter":
        """Lightning sets the epoch through ``loader.batch_sampler.sampler.set_epoch`` (not on a batch sampler)."""
        return _EpochSetter(self)

    def skip_batches(self, count: int) -> None:
        self._skip = max(0, int(count))

    def _indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.size))
        if self.world_size > 1:
            total = math.ceil(self.size / self.world_size) * self.world_size
            order = (order + order[:total - len(order)])[self.rank::self.world_size]
        return order

    def padding(self, batch_index: int) -> torch.Tensor:
        """(batch,) bool: which items of this rank's batch ``batch_index`` repeat a sample only to give every rank
        the same number of samples (DistributedSampler's padding); metrics must not count them twice."""
        start = batch_index * self.batch_size
        stop = min(start + self.batch_size, math.ceil(self.size / self.world_size))
        return torch.arange(start, stop) * self.world_size + self.rank >= self.size

    def __iter__(self) -> Iterator[list[int]]:
        order, skip = self._indices(), self._skip
        self._skip = 0
        for b in range(skip, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        per_rank = math.ceil(self.size / self.world_size)
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`ResumableBatchSampler` and the modality's collate
    (an :class:`ItemDataset`, or a dataset with ``modality_collate``) or the default one (cached features)."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                    rank=rank, world_size=world_size)
    modality_collate = isinstance(dataset, ItemDataset) or getattr(dataset, "modality_collate", False)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=ModalityCollate(dataset.modality) if modality_collate else None,
                      num_workers=num_workers, persistent_workers=False,
                      worker_init_fn=_seed_worker if num_workers else None)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2 ** 32
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def group_by_modality(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.modality, []).append(record)
    return groups
