"""Reading audio files (WAV, FLAC, OGG, MP3 through libsndfile) and the Kaldi filterbank AST uses."""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from .._optional import require
from ..batching import Padded
from .registry import ReadError, check_file

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3")
SAMPLE_RATE = 16000
# AST's AudioSet statistics of the log-mel filterbank (ast/src/run.sh: dataset_mean/std).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
# The reference filterbank (AST): torchaudio.compliance.kaldi.fbank with these options.
FBANK_OPTIONS: dict[str, Any] = {"htk_compat": True, "use_energy": False, "window_type": "hanning",
                                 "num_mel_bins": 128, "dither": 0.0, "frame_length": 25.0, "frame_shift": 10.0}
MAX_AUDIO_SECONDS = 4 * 3600.0
# libsndfile subtype -> (integer dtype to read, scale to [-1, 1)).
_INTEGER_READS = {"PCM_16": ("int16", 2.0 ** -15), "PCM_24": ("int32", 2.0 ** -31), "PCM_32": ("int32", 2.0 ** -31)}


def read_audio(
        path: str | os.PathLike,
        *,
        sample_rate: int | None = SAMPLE_RATE,
        mono: bool = True,
        max_seconds: float = MAX_AUDIO_SECONDS,
) -> torch.Tensor:
    """Decode an audio file with ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3...).

    Channels are averaged into one (``mono``) and the signal is resampled with
    :func:`torchaudio.functional.resample` (windowed sinc, its defaults) to ``sample_rate``.

    Args:
        path: the audio file.
        sample_rate: output rate in Hz (16 kHz, the reference), or None to keep the file's.
        mono: average the channels; with False the result is (channels, samples).
        max_seconds: longer files are refused before they are decoded.

    Returns:
        (samples,) float32 in [-1, 1] (integer PCM is scaled by libsndfile), or (channels, samples).

    Raises:
        ReadError: missing, empty, corrupt or not audio; longer than ``max_seconds``; no samples;
            NaN or infinite samples (float files).
    """
    path = check_file(path)
    soundfile = require("soundfile")
    try:
        with soundfile.SoundFile(str(path)) as audio:  # one open: header checks, then decoding
            if audio.samplerate <= 0 or audio.channels <= 0:
                raise ReadError(f"{path}: the header declares {audio.channels} channels at {audio.samplerate} Hz")
            if audio.frames > max_seconds * audio.samplerate:
                raise ReadError(f"{path}: {audio.frames / audio.samplerate:.1f} s of audio is longer than the "
                                f"{max_seconds:g} s this reader accepts (max_seconds=)")
            # Integer PCM is read as integers and scaled here: the same values as libsndfile's float
            # conversion (a power-of-two scale), several times faster.
            dtype, scale = _INTEGER_READS.get(audio.subtype, ("float32", 1.0))
            rate = audio.samplerate
            data = audio.read(dtype=dtype, always_2d=True)  # (samples, channels)
    except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, ReadError):
            raise
        raise ReadError(f"{path}: cannot decode the audio: {err}") from err
    if data.shape[0] == 0:
        raise ReadError(f"{path}: the file holds no audio samples")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise ReadError(f"{path}: the audio contains NaN or infinite samples")
    if mono:  # a mat-vec mixes channels far faster than a mean over a short inner axis
        wave = torch.from_numpy(data @ np.full(data.shape[1], scale / data.shape[1], dtype=np.float32))[None]
    else:
        wave = torch.from_numpy(np.ascontiguousarray(data.T)) * scale  # c n
    if sample_rate is not None and sample_rate != rate:
        wave = require("torchaudio").functional.resample(wave, rate, sample_rate)
    return wave[0] if mono else wave


def fbank(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE, **options: Any) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank with the reference (AST) settings.

    :func:`torchaudio.compliance.kaldi.fbank` with :data:`FBANK_OPTIONS` (128 mel bins, 25 ms windows
    every 10 ms, Hanning, ``htk_compat``, no energy, no dither); ``options`` override them.

    Args:
        waveform: (samples,) or (1, samples) mono float; at least one window (25 ms) long.
        sample_rate: its rate in Hz.

    Returns:
        (frames, mel_bins) float32, frames = 1 + (samples - 400) // 160 at 16 kHz.
    """
    kaldi = require("torchaudio.compliance.kaldi")
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    return kaldi.fbank(waveform, sample_frequency=sample_rate, **{**FBANK_OPTIONS, **options})


def fit_length(values: torch.Tensor, length: int) -> Padded:
    """Crop or zero-pad the first axis of ``values`` to ``length``, with a mask of the real positions.

    Returns:
        ``Padded(values (length, ...), mask (length,))``.
    """
    real = min(values.shape[0], length)
    out = values.new_zeros((length, *values.shape[1:]))
    out[:real] = values[:real]
    mask = torch.zeros(length, dtype=torch.bool)
    mask[:real] = True
    return Padded(out, mask)


def fbank_transform(
        *,
        target_length: int | None = 1024,
        num_mel_bins: int = 128,
        sample_rate: int = SAMPLE_RATE,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        freq_mask: int = 0,
        time_mask: int = 0,
        time_mask_fraction: float = 1.0,
        min_frames: int = 16,
) -> Callable[[torch.Tensor], Padded]:
    """Waveform → normalised filterbank frames, as AST prepares its input.

    The clip mean is subtracted, :func:`fbank` computed, frames padded or cropped to ``target_length``
    (AST: 1024 for 10 s AudioSet clips, 128 for 1 s Speech Commands), normalised as
    ``(fbank - mean) / (2 * std)`` (AudioSet statistics by default). For training, SpecAugment masks come
    first (torchaudio's ``FrequencyMasking`` / ``TimeMasking``, widths up to ``freq_mask`` / ``time_mask``;
    AST uses 48 / 192 on AudioSet): as in AST's data loader they zero the raw filterbank, before the
    normalisation, like its zero padding.

    Args:
        target_length: frames to pad/crop to, or None to keep each clip's own count (at least ``min_frames``).
        time_mask_fraction: a time mask is also at most this fraction of the frames (torchaudio's ``p``).
        min_frames: the least frame count (one patch), reached by padding.

    Returns:
        ``item -> Padded(values (frames, mel), mask (frames,))``, mask False on padded frames.
    """
    torchaudio = require("torchaudio")
    masks = [torchaudio.transforms.FrequencyMasking(freq_mask)] if freq_mask else []
    masks += [torchaudio.transforms.TimeMasking(time_mask, p=time_mask_fraction)] if time_mask else []
    window = int(sample_rate * FBANK_OPTIONS["frame_length"] / 1000)

    def apply(waveform: torch.Tensor) -> Padded:
        waveform = waveform.reshape(-1)
        if waveform.shape[0] < window:  # shorter than one frame: pad with silence
            waveform = torch.nn.functional.pad(waveform, (0, window - waveform.shape[0]))
        feats = fbank(waveform - waveform.mean(), sample_rate, num_mel_bins=num_mel_bins)  # frames mel
        padded = fit_length(feats, target_length or max(feats.shape[0], min_frames))
        values = padded.values
        if masks:
            spec = values.T.unsqueeze(0)  # 1 mel frames, the layout torchaudio's masks expect
            for mask in masks:
                spec = mask(spec)
            values = spec[0].T
        return Padded((values - mean) / (2 * std), padded.mask)

    return apply
