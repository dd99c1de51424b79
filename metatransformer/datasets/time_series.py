"""Time series files: CSV/Parquet tables and NumPy arrays, UCR/UEA ``.ts`` archives, and forecasting windows."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._optional import require
from ..batching import Padded
from .arrays import array_headers, load_arrays
from .registry import ReadError, check_file

TIME_SERIES_SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
TIME_COLUMNS = ("date", "time", "timestamp", "datetime")  # recognised by name when time_column is None
MAX_TABLE_BYTES = 2 << 30
MAX_TS_BYTES = 1 << 30
MAX_ARRAY_VALUES = 1 << 28  # values of a .npy/.npz series (2 GiB as float64)
# the ETT split (Informer): train/val/test months of 30 days, and the steps of a month of hourly ETTh1
ETT_MONTHS: tuple[int, int, int] = (12, 4, 4)
ETT_STEPS_PER_MONTH = 30 * 24


def read_time_series(
        path: str | os.PathLike,
        *,
        time_column: str | None = None,
        columns: Sequence[str] | None = None,
        missing: Literal["raise", "interpolate"] = "raise",
        max_bytes: int = MAX_TABLE_BYTES,
) -> torch.Tensor:
    """Read one multivariate series: rows are time steps, columns are channels.

    CSV and Parquet go through pandas: the time column (``time_column``, or the first column named
    ``date``/``time``/``timestamp``/``datetime``, as in ETTh1) is dropped, the feature ``columns`` (all
    others by default, which must then be numeric) become the channels, in that order. ``.npy`` holds a
    (length,) or (length, channels) array; ``.npz`` one such array (or one named ``series``).

    Args:
        path: the file.
        time_column: the time column of a table, left out of the channels.
        columns: the feature columns to keep, in order (all non-time columns when None).
        missing: ``"raise"`` on an empty cell or NaN, or ``"interpolate"`` them linearly along time
            (edges take the nearest value).
        max_bytes: larger files are refused.

    Returns:
        (length, channels) float32.

    Raises:
        ReadError: unreadable file, a requested column missing, non-numeric feature columns,
            no rows, missing values with ``missing="raise"``, infinite values.
    """
    path = check_file(path, max_bytes=max_bytes)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        frame = _read_table(path, suffix)
        array = _table_features(path, frame, time_column, columns)
    elif suffix in (".npy", ".npz"):
        array = _read_array(path)
    else:
        raise ReadError(f"{path}: expected a .csv, .parquet, .npy or .npz file")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ReadError(f"{path}: expected a (length, channels) series, got shape {array.shape}")
    array = array.astype(np.float32)
    if missing not in ("raise", "interpolate"):
        raise ValueError(f"read_time_series: missing must be 'raise' or 'interpolate', got {missing!r}")
    if np.isinf(array).any():
        raise ReadError(f"{path}: the series contains infinite values")
    nan = np.isnan(array)
    if nan.any():
        if missing == "raise":
            row, col = np.argwhere(nan)[0]
            raise ReadError(f"{path}: missing value (NaN) at row {row}, channel {col}; pass "
                            "missing='interpolate' to fill them")
        array = _interpolate(path, array, nan)
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_table(path: Path, suffix: str) -> Any:
    pandas = require("pandas")
    try:
        return pandas.read_csv(path) if suffix == ".csv" else pandas.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pandas.errors.ParserError, ImportError) as err:
        raise ReadError(f"{path}: cannot read the table: {err}") from err


def _table_features(path: Path, frame: Any, time_column: str | None, columns: Sequence[str] | None) -> np.ndarray:
    pandas = require("pandas")
    if time_column is None:
        time_column = next((c for c in frame.columns if str(c).lower() in TIME_COLUMNS), None)
    elif time_column not in frame.columns:
        raise ReadError(f"{path}: no time column {time_column!r}; the columns are {list(frame.columns)}")
    wanted = list(columns) if columns is not None else [c for c in frame.columns if c != time_column]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ReadError(f"{path}: missing column(s) {absent}; the columns are {list(frame.columns)}")
    if not wanted:
        raise ReadError(f"{path}: the table has no feature columns")
    text = [c for c in wanted if not pandas.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise ReadError(f"{path}: column(s) {text} are not numeric; name the time column (time_column=) "
                        "or the feature columns (columns=)")
    return frame[wanted].to_numpy(dtype=np.float64)


def _read_array(path: Path) -> np.ndarray:
    names = list(array_headers(path))
    if len(names) != 1 and "series" not in names:
        raise ReadError(f"{path}: expected one array (or one named 'series'), found {names}")
    name = "series" if "series" in names else names[0]
    data = load_arrays(path, [name], max_values=MAX_ARRAY_VALUES)[name]
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ReadError(f"{path}: expected a numeric array, got dtype {data.dtype}")
    return data


def _interpolate(path: Path, array: np.ndarray, nan: np.ndarray) -> np.ndarray:
    steps = np.arange(array.shape[0])
    for channel in range(array.shape[1]):
        known = ~nan[:, channel]
        if not known.any():
            raise ReadError(f"{path}: channel {channel} has no values to interpolate from")
        array[:, channel] = np.interp(steps, steps[known], array[known, channel])
    return array


# --- UCR/UEA .ts files -------------------------------------------------------------------------------------


class TsData(NamedTuple):
    """The contents of a ``.ts`` file.

    Attributes:
        series: one (length_i, channels) float32 tensor per case; NaN where the file has ``?``.
        labels: class strings (``@classLabel true``), a (cases,) float64 tensor (``@targetLabel true``,
            regression), or None.
        metadata: the header, keys lower-cased (``problemname``, ``univariate``, ``dimensions``,
            ``equallength``, ``serieslength``, ``missing``, ``classlabel``, ``class_labels``, ...).
    """

    series: list[torch.Tensor]
    labels: list[str] | torch.Tensor | None
    metadata: dict[str, Any]

    @property
    def lengths(self) -> torch.Tensor:
        """(cases,) int64 series lengths."""
        return torch.tensor([s.shape[0] for s in self.series], dtype=torch.long)

    def padded(self) -> Padded:
        """All cases zero-padded to the longest: values (cases, max length, channels) with missing
        values (``?``) set to 0, and a (cases, max length) mask True on the steps that exist and have
        every channel observed."""
        length = max(s.shape[0] for s in self.series)
        values = torch.zeros(len(self.series), length, self.series[0].shape[1])
        mask = torch.zeros(len(self.series), length, dtype=torch.bool)
        for i, s in enumerate(self.series):
            observed = ~s.isnan()
            values[i, :s.shape[0]] = torch.where(observed, s, 0.0)
            mask[i, :s.shape[0]] = observed.all(-1)
        return Padded(values, mask)

    def class_indices(self) -> torch.Tensor:
        """(cases,) int64: each label's index in the header's ``@classLabel`` list."""
        if not isinstance(self.labels, list):
            raise ValueError("the file has no class labels")
        index = {label: i for i, label in enumerate(self.metadata["class_labels"])}
        return torch.tensor([index[label] for label in self.labels], dtype=torch.long)


_BOOLEAN_KEYS = ("timestamps", "missing", "univariate", "equallength")


def read_ts(path: str | os.PathLike, *, max_bytes: int = MAX_TS_BYTES) -> TsData:
    """Read a UCR/UEA time series archive file (``.ts``, the sktime/aeon format).

    Header lines (``@key value``, keys case-insensitive) precede ``@data``; ``#`` and ``%`` lines are
    comments. Each data line is one case: its dimensions separated by ``:``, values in a dimension by
    ``,``, then the class label or regression target after the last ``:``. ``?`` is a missing value.
    Every case is checked against the header: the dimension count (``@dimensions``, 1 when
    ``@univariate true``), equal length and ``@seriesLength``, labels among ``@classLabel``'s,
    numeric targets, and ``?`` only with ``@missing true``. Timestamped files
    (``@timeStamps true``) are refused.

    Args:
        path: the ``.ts`` file.
        max_bytes: larger files are refused.

    Returns:
        :class:`TsData` (series, labels, metadata).

    Raises:
        ReadError: naming the file, and the line for data errors.
    """
    path = check_file(path, max_bytes=max_bytes)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as err:
        raise ReadError(f"{path}: cannot read the file as UTF-8 text: {err}") from err
    lines = text.splitlines()
    metadata, start = _parse_ts_header(path, lines)
    has_classes = metadata.get("classlabel", False)
    has_targets = metadata.get("targetlabel", False)
    dims = 1 if metadata.get("univariate") else metadata.get("dimensions")
    series: list[torch.Tensor] = []
    labels: list[str] = []
    for number, line in enumerate(lines[start:], start=start + 1):
        line = line.strip()
        if not line or line[0] in "#%":
            continue
        where = f"{path}: line {number}"
        parts = line.split(":")
        if has_classes or has_targets:
            if len(parts) < 2:
                raise ReadError(f"{where}: expected dimensions and a label separated by ':'")
            labels.append(parts.pop().strip())
        if dims is not None and len(parts) != dims:
            raise ReadError(f"{where}: {len(parts)} dimension(s), the header declares {dims}")
        dims = len(parts)
        series.append(_parse_case(where, parts, metadata.get("missing", False)))
    if not series:
        raise ReadError(f"{path}: no cases after @data")
    _check_lengths(path, series, metadata)
    metadata["dimensions"] = dims
    metadata["num_cases"] = len(series)
    return TsData(series, _labels(path, labels, metadata) if labels else None, metadata)


def _parse_ts_header(path: Path, lines: list[str]) -> tuple[dict[str, Any], int]:
    metadata: dict[str, Any] = {}
    for index, line in enumerate(lines):
        line = line.strip()
        if not line or line[0] in "#%":
            continue
        if not line.startswith("@"):
            raise ReadError(f"{path}: line {index + 1}: data before the @data line")
        key, _, value = line[1:].partition(" ")
        key, tokens = key.lower(), value.split()
        if key == "data":
            if not any(k in metadata for k in ("classlabel", "targetlabel")):
                raise ReadError(f"{path}: the header has neither @classLabel nor @targetLabel")
            if metadata.get("timestamps"):
                raise ReadError(f"{path}: timestamped .ts files (@timeStamps true) are not supported")
            if metadata.get("univariate") is False and "dimensions" not in metadata:
                metadata["dimensions"] = None  # counted from the first case
            return metadata, index + 1
        if key in _BOOLEAN_KEYS or key in ("classlabel", "targetlabel"):
            if not tokens or tokens[0].lower() not in ("true", "false"):
                raise ReadError(f"{path}: line {index + 1}: @{key} must be true or false, got {value!r}")
            metadata[key] = tokens[0].lower() == "true"
            if key == "classlabel":
                if metadata[key] and len(tokens) < 2:
                    raise ReadError(f"{path}: line {index + 1}: @classLabel true lists no classes")
                metadata["class_labels"] = tokens[1:]
        elif key in ("dimensions", "serieslength"):
            if len(tokens) != 1 or not tokens[0].isdigit() or int(tokens[0]) < 1:
                raise ReadError(f"{path}: line {index + 1}: @{key} must be a positive integer, got {value!r}")
            metadata[key] = int(tokens[0])
        else:
            metadata[key] = value.strip()
    raise ReadError(f"{path}: no @data line; not a .ts file")


def _parse_case(where: str, parts: list[str], allow_missing: bool) -> torch.Tensor:
    channels = []
    for dim, part in enumerate(parts):
        fields = [f.strip() for f in part.split(",")]
        if fields == [""]:
            raise ReadError(f"{where}: dimension {dim} is empty")
        if "?" in fields and not allow_missing:
            raise ReadError(f"{where}: a missing value '?' but the header says @missing false")
        try:
            values = np.array([math.nan if f == "?" else float(f) for f in fields], dtype=np.float32)
        except ValueError as err:
            raise ReadError(f"{where}: dimension {dim}: {err}") from err
        spelled = np.array([f != "?" for f in fields])
        if not np.isfinite(values[spelled]).all():  # float() also accepts "nan" and "inf"; only "?" is missing
            raise ReadError(f"{where}: dimension {dim} has a NaN or infinite value (a missing value is written '?')")
        channels.append(values)
    lengths = {len(c) for c in channels}
    if len(lengths) > 1:
        raise ReadError(f"{where}: ragged dimensions of lengths {[len(c) for c in channels]}; every dimension "
                        "of a case must have the same length")
    return torch.from_numpy(np.stack(channels, axis=1))  # length channels


def _check_lengths(path: Path, series: list[torch.Tensor], metadata: dict[str, Any]) -> None:
    lengths = [s.shape[0] for s in series]
    declared = metadata.get("serieslength")
    if metadata.get("equallength", declared is not None):
        expected = declared if declared is not None else lengths[0]
        bad = next((i for i, n in enumerate(lengths) if n != expected), None)
        if bad is not None:
            raise ReadError(f"{path}: case {bad} has length {lengths[bad]}, but the header declares equal "
                            f"lengths of {expected}")


def _labels(path: Path, labels: list[str], metadata: dict[str, Any]) -> list[str] | torch.Tensor:
    if metadata.get("classlabel"):
        known = set(metadata["class_labels"])
        bad = next((label for label in labels if label not in known), None)
        if bad is not None:
            raise ReadError(f"{path}: class label {bad!r} is not among the header's {metadata['class_labels']}")
        return labels
    try:
        targets = torch.tensor([float(label) for label in labels], dtype=torch.float64)
    except ValueError as err:
        raise ReadError(f"{path}: a regression target is not a number: {err}") from err
    if not torch.isfinite(targets).all():
        raise ReadError(f"{path}: a regression target is NaN or infinite")
    return targets


# --- forecasting windows ------------------------------------------------------------------------------------


class ForecastWindows(Dataset):
    """Sliding (lookback → horizon) windows over one long series.

    Item ``i`` is ``(series[s : s + lookback], series[s + lookback : s + lookback + horizon])`` with
    ``s = i · stride``: the model's input (lookback, channels) and its target (horizon, channels).

    Args:
        series: (length, channels) float.
        lookback: input steps L (96 in the ETTh1 reference).
        horizon: steps to forecast H (96, 192, 336, 720 in the literature).
        stride: steps between window starts.
    """

    def __init__(self, series: torch.Tensor, *, lookback: int, horizon: int, stride: int = 1) -> None:
        if series.dim() != 2:
            raise ValueError(f"series must be (length, channels), got {tuple(series.shape)}")
        if lookback < 1 or horizon < 1 or stride < 1:
            raise ValueError(f"lookback, horizon and stride must be >= 1, got {lookback}, {horizon}, {stride}")
        if series.shape[0] < lookback + horizon:
            raise ValueError(f"a series of {series.shape[0]} steps is shorter than one window "
                             f"({lookback} + {horizon})")
        self.series, self.lookback, self.horizon, self.stride = series, lookback, horizon, stride

    def __len__(self) -> int:
        return (self.series.shape[0] - self.lookback - self.horizon) // self.stride + 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = (index % len(self)) * self.stride
        middle = start + self.lookback
        return self.series[start:middle], self.series[middle:middle + self.horizon]


class ForecastSplits(NamedTuple):
    """Train/val/test windows of one series and the train statistics they were standardised with."""

    train: ForecastWindows
    val: ForecastWindows
    test: ForecastWindows
    mean: torch.Tensor  # (channels,)
    std: torch.Tensor  # (channels,)


def ett_splits(
        series: torch.Tensor,
        *,
        lookback: int = 96,
        horizon: int = 96,
        steps_per_month: int = ETT_STEPS_PER_MONTH,
        months: tuple[int, int, int] = ETT_MONTHS,
        standardize: bool = True,
) -> ForecastSplits:
    """The ETT benchmark split (Informer, Zhou et al. 2021) of a long series into forecasting windows.

    Train is the first 12 months (30-day months of ``steps_per_month`` steps: 720 for hourly ETTh1,
    2880 for 15-minute ETTm1), validation the next 4, test the 4 after; validation and test windows
    start ``lookback`` steps early so their first target follows the previous split directly. With
    ``standardize`` every channel is standardised with the training part's mean and std (returned, to
    report errors on the original scale).

    Args:
        series: (length, channels), e.g. ETTh1's 7 columns after the ``date`` column
            (:func:`read_time_series` drops it).

    Raises:
        ValueError: the series is shorter than the three parts, or a part holds no window.
    """
    borders = np.cumsum([0, *[m * steps_per_month for m in months]])
    if series.shape[0] < borders[-1]:
        raise ValueError(f"the split needs {borders[-1]} steps ({'/'.join(map(str, months))} months of "
                         f"{steps_per_month}), the series has {series.shape[0]}")
    return _split_at(series, [int(b) for b in borders], lookback=lookback, horizon=horizon, standardize=standardize)


def check_split_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``ratios`` as three floats (train, val, test): positive, summing to 1.

    Raises:
        ValueError: anything else, naming what was given.
    """
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"split ratios must be three positive fractions (train, val, test) summing to 1, "
                         f"e.g. [0.7, 0.1, 0.2]; got {ratios!r}")
    return values  # type: ignore[return-value]


def ratio_splits(
        series: torch.Tensor,
        *,
        lookback: int = 96,
        horizon: int = 96,
        ratios: Sequence[float] = (0.7, 0.1, 0.2),
        standardize: bool = True,
) -> ForecastSplits:
    """The split of Autoformer's ``Dataset_Custom`` (Wu et al. 2021; Traffic, Weather, Exchange, Electricity)
    of a long series of ``n`` steps into forecasting windows.

    ``Dataset_Custom.__read_data__`` in thuml/Autoformer ``data_provider/data_loader.py`` (the same in
    thuml/Time-Series-Library) computes ``num_train = int(n * 0.7)``, ``num_test = int(n * 0.2)``,
    ``num_vali = n - num_train - num_test``, ``border1s = [0, num_train - seq_len, n - num_test - seq_len]``,
    ``border2s = [num_train, num_train + num_vali, n]`` and fits its ``StandardScaler`` on
    ``data[0:num_train]``. Here train is ``int(n · ratios[0])`` steps, test the last ``int(n · ratios[2])``,
    validation the rest between them (``ratios[1]`` of the series up to rounding); validation and test
    windows start ``lookback`` (``seq_len``) steps early, and with ``standardize`` every channel is
    standardised with the training part's mean and std (returned).

    Args:
        series: (length, channels), e.g. ``weather.csv``'s 21 columns after ``date``.
        ratios: train, val, test fractions (see :func:`check_split_ratios`).

    Raises:
        ValueError: bad ratios, or a part too short for one window.
    """
    train, _, test = check_split_ratios(ratios)
    n = series.shape[0]
    borders = [0, int(n * train), n - int(n * test), n]
    return _split_at(series, borders, lookback=lookback, horizon=horizon, standardize=standardize)


def _split_at(series: torch.Tensor, borders: Sequence[int], *, lookback: int, horizon: int,
              standardize: bool) -> ForecastSplits:
    """Windows of the parts between ``borders`` (train, val, test), val and test starting ``lookback`` steps
    before their border, standardised with the training part's statistics."""
    for name, lo, hi in zip(("train", "val", "test"), borders[:-1], borders[1:]):
        need = horizon + lookback * (name == "train")  # val/test borrow their lookback from the part before
        if hi - lo < need:
            raise ValueError(f"the {name} part has {hi - lo} steps, too few for one {lookback} → {horizon} window")
    train = series[borders[0]:borders[1]]
    # population std, as the sklearn StandardScaler the reference loaders fit; a channel constant over the
    # training part keeps scale 1 there too (a tiny floor would blow up its val/test values)
    mean, std = train.mean(0), train.std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    data = (series - mean) / std if standardize else series
    starts = [borders[0], borders[1] - lookback, borders[2] - lookback]
    windows = [ForecastWindows(data[lo:hi], lookback=lookback, horizon=horizon) for lo, hi in zip(starts, borders[1:])]
    return ForecastSplits(*windows, mean=mean, std=std)
