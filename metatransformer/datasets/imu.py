"""IMU streams (accelerometer + gyroscope) from CSV/Parquet/NumPy: units, resampling to a fixed rate, windows."""
from __future__ import annotations

import os
from typing import Literal, Sequence

import numpy as np
import torch

from .registry import ReadError, check_file
from .time_series import MAX_TABLE_BYTES, _read_array, _read_table

IMU_SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
IMU_COLUMNS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
STANDARD_GRAVITY = 9.80665  # m/s² per g
_ACCEL_SCALE = {"m/s^2": 1.0, "g": STANDARD_GRAVITY}
_GYRO_SCALE = {"rad/s": 1.0, "deg/s": np.pi / 180.0}
MAX_RATE = 100_000.0


def read_imu(
        path: str | os.PathLike,
        *,
        columns: Sequence[str] = IMU_COLUMNS,
        time_column: str | None = None,
        accel_units: Literal["m/s^2", "g"] = "m/s^2",
        gyro_units: Literal["rad/s", "deg/s"] = "rad/s",
        sample_rate: float | None = None,
        max_bytes: int = MAX_TABLE_BYTES,
) -> torch.Tensor:
    """Read an accelerometer + gyroscope stream as (length, 6) float32 in m/s² and rad/s.

    Tables (CSV, Parquet) map ``columns`` to the channels in order: accelerometer x, y, z then
    gyroscope x, y, z (``acc_x ... gyro_z`` by default; any number of channels works, the first three
    are scaled as acceleration and the next three as angular rate). ``.npy``/``.npz`` hold a
    (length, channels) array in that channel order. Accelerations in ``g`` are multiplied by
    9.80665 and rates in ``deg/s`` by π/180.

    With ``sample_rate`` and a ``time_column`` (seconds, increasing; irregular sampling allowed) the
    stream is linearly interpolated onto a uniform grid at ``sample_rate`` Hz from the first timestamp.

    Args:
        path: the file.
        columns: the channel columns of a table, in order.
        time_column: timestamps in seconds (tables only).
        accel_units: units of the first three channels.
        gyro_units: units of channels 4–6.
        sample_rate: output rate in Hz (needs ``time_column``), or None to keep the samples as stored.
        max_bytes: larger files are refused.

    Returns:
        (length, channels) float32.

    Raises:
        ReadError: unreadable file; missing columns; non-numeric, NaN or infinite values;
            timestamps that do not increase; ``sample_rate`` without timestamps.
    """
    path = check_file(path, max_bytes=max_bytes)
    if accel_units not in _ACCEL_SCALE or gyro_units not in _GYRO_SCALE:
        raise ValueError(f"units must be one of {list(_ACCEL_SCALE)} / {list(_GYRO_SCALE)}, "
                         f"got {accel_units!r} / {gyro_units!r}")
    suffix = path.suffix.lower()
    times = None
    if suffix in (".csv", ".parquet"):
        frame = _read_table(path, suffix)
        wanted = list(columns) + ([time_column] if time_column is not None else [])
        absent = [c for c in wanted if c not in frame.columns]
        if absent:
            raise ReadError(f"{path}: missing column(s) {absent}; the columns are {list(frame.columns)}")
        try:
            data = np.array(frame[list(columns)].to_numpy(dtype=np.float64))  # a writable copy
            times = frame[time_column].to_numpy(dtype=np.float64) if time_column is not None else None
        except (ValueError, TypeError) as err:
            raise ReadError(f"{path}: non-numeric IMU values: {err}") from err
    elif suffix in (".npy", ".npz"):
        data = _read_array(path).astype(np.float64)  # a copy
        if time_column is not None:
            raise ReadError(f"{path}: arrays have no time column; pass time_column only for tables")
    else:
        raise ReadError(f"{path}: expected a .csv, .parquet, .npy or .npz file")
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        raise ReadError(f"{path}: expected (length, channels) samples, got shape {data.shape}")
    if not np.isfinite(data).all():
        row, col = np.argwhere(~np.isfinite(data))[0]
        raise ReadError(f"{path}: missing or infinite value at row {row}, channel {col}")
    data[:, :3] *= _ACCEL_SCALE[accel_units]
    data[:, 3:6] *= _GYRO_SCALE[gyro_units]
    if sample_rate is not None:
        if times is None:
            raise ReadError(f"{path}: resampling to {sample_rate} Hz needs timestamps (time_column=)")
        data = _resample(path, data, times, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))


def _resample(path: os.PathLike, data: np.ndarray, times: np.ndarray, rate: float) -> np.ndarray:
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"sample_rate must be in (0, {MAX_RATE:g}] Hz, got {rate}")
    if not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise ReadError(f"{path}: timestamps must be finite and strictly increasing")
    steps = int(np.floor((times[-1] - times[0]) * rate + 1e-9)) + 1
    if steps > data.shape[0] * 1000 + 1_000_000:
        raise ReadError(f"{path}: resampling {data.shape[0]} samples to {rate} Hz would give {steps} steps")
    grid = times[0] + np.arange(steps) / rate
    return np.stack([np.interp(grid, times, data[:, c]) for c in range(data.shape[1])], axis=1)


def imu_windows(
        stream: torch.Tensor,
        *,
        length: int,
        hop: int,
        labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cut a (steps, channels) stream into windows of ``length`` steps every ``hop`` steps.

    Args:
        stream: (steps, channels).
        length: window length in steps (Ego4D's 2 s at 200 Hz: 400).
        hop: steps between window starts.
        labels: optional (steps,) int64 per-step labels; each window gets its most frequent label
            (the smallest on a tie).

    Returns:
        windows (num_windows, length, channels) (a view, no copy) and (num_windows,) labels or None;
        a trailing part shorter than ``length`` is dropped.
    """
    if length < 1 or hop < 1:
        raise ValueError(f"length and hop must be >= 1, got {length} and {hop}")
    if stream.dim() != 2 or stream.shape[0] < length:
        raise ValueError(f"expected a (steps, channels) stream of at least {length} steps, got {tuple(stream.shape)}")
    windows = stream.unfold(0, length, hop).transpose(1, 2)  # w l c
    if labels is None:
        return windows, None
    if labels.shape != stream.shape[:1]:
        raise ValueError(f"labels must be ({stream.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype != torch.long or (labels < 0).any():
        raise ValueError("labels must be non-negative int64 class indices")
    counts = torch.nn.functional.one_hot(labels.unfold(0, length, hop)).sum(1)  # w classes
    return windows, counts.argmax(-1)  # argmax takes the first maximum: the smallest label on a tie
