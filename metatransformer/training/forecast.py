"""Forecasting data (``task: forecast``): sliding (lookback → horizon) windows over one long series.

A series file in the ETTh1 layout (a ``date`` column + the feature columns, one row per step; any file
:func:`~metatransformer.datasets.time_series.read_time_series` reads) is cut into train/val/test parts by
:func:`~metatransformer.datasets.time_series.ett_splits` (``split_months`` months of ``steps_per_month`` steps:
12/4/4 months of 720 hours for ETTh1) or, with ``split_ratios``, by
:func:`~metatransformer.datasets.time_series.ratio_splits` (Autoformer's fractions of the series: 0.7/0.1/0.2
for Traffic, Weather, Exchange), every channel standardised with the training part's mean and std. Each
:class:`~metatransformer.datasets.ForecastWindows` window (every ``window_stride`` steps) is one :class:`Record`
whose source is a :class:`SeriesWindow`; items are (lookback, channels) windows, targets the next (horizon,
channels) steps, collated by the modality's collate. Errors (MSE/MAE) are on the standardised scale, as in the
ETT literature.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from ..datasets.time_series import (
    ETT_MONTHS,
    ETT_STEPS_PER_MONTH,
    TIME_COLUMNS,
    ForecastWindows,
    ett_splits,
    ratio_splits,
    read_time_series,
)
from ..registry import canonical_modality
from .records import SPLITS, Record


@dataclass(eq=False)
class SeriesWindow:
    """A record's source: window ``index`` of ``windows`` (one :class:`ForecastWindows` shared per split)."""

    windows: ForecastWindows
    index: int
    channels: tuple = ()
    file: str = ""

    def __repr__(self) -> str:
        return f"SeriesWindow({self.file!r}, window {self.index})"


def channel_names(path: str | os.PathLike, count: int) -> list[str]:
    """The feature column names of a table series (the time column left out), else ``c0, c1, ...``."""
    path = Path(path)
    names: list[str] = []
    if path.suffix.lower() == ".csv":
        import pandas as pd

        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        time = next((c for c in columns if c.lower() in TIME_COLUMNS), None)
        names = [c for c in columns if c != time]
    return names if len(names) == count else [f"c{i}" for i in range(count)]


def records_from_series(path: str | os.PathLike, *, lookback: int, horizon: int, stride: int = 1,
                        steps_per_month: int = ETT_STEPS_PER_MONTH, months: Sequence[int] = ETT_MONTHS,
                        ratios: Sequence[float] | None = None, modality: str | None = None) -> list[Record]:
    """One record per forecasting window of the series in ``path``, split train/val/test by :func:`ett_splits`
    (``months``), or by :func:`ratio_splits` when ``ratios`` are given, standardised with the training part's
    statistics."""
    if len(months) != 3:
        raise ValueError(f"split_months must be 3 numbers (train, val, test months), got {list(months)}")
    series = read_time_series(path)
    try:
        splits = ratio_splits(series, lookback=lookback, horizon=horizon, ratios=ratios) if ratios is not None else \
            ett_splits(series, lookback=lookback, horizon=horizon, steps_per_month=steps_per_month,
                       months=tuple(int(m) for m in months))
    except ValueError as err:  # the split's messages count steps, not files: say which series is too short
        raise ValueError(f"{path}: {err}") from err
    names = tuple(channel_names(path, series.shape[1]))
    name = canonical_modality(modality or "time_series")
    records = []
    for split, part in zip(SPLITS, (splits.train, splits.val, splits.test)):
        windows = ForecastWindows(part.series, lookback=lookback, horizon=horizon, stride=stride)
        records += [Record(SeriesWindow(windows, i, names, str(path)), None, name, split) for i in range(len(windows))]
    return records


def config_records(source: Any, config: Any) -> list[Record]:
    """The records of one ``--data`` source of a forecasting recipe (:class:`~.config.TrainConfig`)."""
    if isinstance(source, (list, tuple)) and all(isinstance(r, Record) for r in source):
        return list(source)
    return records_from_series(source, lookback=config.lookback, horizon=config.horizon,
                               stride=config.window_stride, steps_per_month=config.steps_per_month,
                               months=config.split_months, ratios=config.split_ratios, modality=config.modality)


def series_channels(records: Sequence[Record]) -> list[str]:
    """The channel names of forecasting records (every series must have the same)."""
    names = {r.source.channels for r in records}
    if len(names) != 1:
        raise ValueError(f"forecasting series differ in their channels: {sorted(names)}")
    return list(names.pop())


class WindowDataset(Dataset):
    """Forecasting records of one modality → ((lookback, C) window, (horizon, C) target)."""

    modality_collate = True  # make_loader collates items with the modality's collate

    def __init__(self, records: Sequence[Record]) -> None:
        modalities = {r.modality for r in records}
        if len(modalities) > 1:
            raise ValueError(f"a WindowDataset holds one modality, got {sorted(modalities)}")
        if not all(isinstance(r.source, SeriesWindow) for r in records):
            raise ValueError("a WindowDataset holds forecasting windows (SeriesWindow records)")
        self.records = list(records)
        self.modality = modalities.pop() if modalities else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = self.records[index].source
        return source.windows[source.index]


def forecast_head_options(config: Any, tokenizer: torch.nn.Module, channels: int) -> dict[str, Any]:
    """The ``forecast`` head of a modality: flattens the tokenizer's content tokens of a lookback window
    (mean-pools them when the tokenizer cannot count them)."""
    count = getattr(tokenizer, "num_tokens", None)
    return {"kind": "forecast", "horizon": config.horizon, "channels": channels,
            "num_tokens": count(config.lookback) if callable(count) else None, "dropout": config.head_dropout,
            "loss_type": "mse"}


def forecast_outputs(model: Any, modality: str, batch: Any, features: Any = None) -> torch.Tensor:
    """The modality's forecast head on ``batch``, de-normalised with the tokenizer's per-instance statistics
    when it normalises each window (RevIN), so forecasts are on the windows' scale."""
    tokenizer = model.tokenizer(modality)
    features = features if features is not None else model.forward_features({modality: batch})
    stats = tokenizer.instance_stats(batch) if getattr(tokenizer, "instance_norm", False) else None
    return model.heads[modality](features, stats)
