"""A training sample before it is read: its source, raw label, modality and split."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")
ROLES = ("query", "gallery")  # task reid: the held-out identities' records, by their role in retrieval
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test", "testing": "test", **{role: role for role in ROLES}}


@dataclass
class Record:
    """One sample: a file path or an in-memory item, its raw label, modality and split (None = unassigned)."""

    source: Any
    label: Any
    modality: str
    split: str | None = None


def normalize_split(split: Any) -> str | None:
    if split is None or (isinstance(split, float) and math.isnan(split)) or split == "":
        return None
    key = str(split).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (or valid/validation/dev), "
                         f"or {' / '.join(ROLES)} (task reid)")
    return SPLIT_ALIASES[key]
