import math

import numpy as np
import pytest
import torch

from metatransformer.datasets import ReadError, fbank, fbank_transform, read, read_audio
from metatransformer.datasets.audio import AUDIOSET_MEAN, AUDIOSET_STD

soundfile = pytest.importorskip("soundfile")
torchaudio = pytest.importorskip("torchaudio")
from torchaudio.compliance import kaldi  # noqa: E402


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_44k_stereo_wav_reads_back_as_the_16k_mono_mix(tmp_path):
    left, right = _tone(440, 1.0, 44100), _tone(1000, 1.0, 44100, 0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    wave = read_audio(path)
    mix = torch.from_numpy((left + right) / 2).unsqueeze(0)
    expected = torchaudio.functional.resample(mix, 44100, 16000)[0]
    assert wave.dtype == torch.float32 and wave.shape == (16000,)
    torch.testing.assert_close(wave, expected, atol=1e-6, rtol=0)
    # and it is the analytic 16 kHz signal away from the filter's edge effects
    analytic = (_tone(440, 1.0, 16000) + _tone(1000, 1.0, 16000, 0.25)) / 2
    assert np.abs(wave.numpy()[200:-200] - analytic[200:-200]).max() < 5e-3


def test_native_rate_pcm_and_flac_are_not_resampled(tmp_path):
    samples = np.round(_tone(300, 0.5, 16000) * 32767).astype(np.int16)
    for name in ("pcm.wav", "lossless.flac"):
        soundfile.write(tmp_path / name, samples, 16000)
        wave = read(tmp_path / name)  # modality inferred from the suffix
        torch.testing.assert_close(wave, torch.from_numpy(samples / 32768.0).float(), atol=1e-7, rtol=0)
    stereo = read_audio(tmp_path / "pcm.wav", mono=False, sample_rate=None)
    assert stereo.shape == (1, 8000)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT"])
def test_every_sample_format_reads_as_libsndfile_floats_mixed_down(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(path, np.random.default_rng(0).uniform(-1, 1, (3000, 2)), 16000, subtype=subtype)
    floats, _ = soundfile.read(path, dtype="float32", always_2d=True)
    assert torch.equal(read_audio(path), torch.from_numpy(floats).mean(1))
    assert torch.equal(read_audio(path, mono=False), torch.from_numpy(floats.T.copy()))


def test_fbank_equals_torchaudio_kaldi_with_the_reference_settings():
    wave = torch.from_numpy(_tone(700, 1.0, 16000) + 0.01 * np.random.default_rng(0).standard_normal(16000)
                            .astype(np.float32))
    expected = kaldi.fbank(wave.unsqueeze(0), htk_compat=True, sample_frequency=16000, use_energy=False,
                           window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10, frame_length=25)
    ours = fbank(wave, 16000)
    assert ours.shape == (98, 128)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("freq", [500.0, 1000.0, 2500.0, 5000.0])
def test_a_pure_tone_lands_in_its_mel_bin(freq):
    # Kaldi's bins: 128 triangles with centres evenly spaced on the HTK mel scale between 20 Hz and Nyquist.
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(8000.0)
    centres = [low + (i + 1) * (high - low) / 129 for i in range(128)]
    expected = min(range(128), key=lambda i: abs(centres[i] - mel(freq)))
    feats = fbank(torch.from_numpy(_tone(freq, 1.0, 16000)), 16000)
    assert int(feats.mean(0).argmax()) == expected


def test_fbank_transform_normalises_pads_and_masks():
    wave = torch.from_numpy(_tone(440, 1.0, 16000))
    item = fbank_transform(target_length=128)(wave)
    reference = kaldi.fbank((wave - wave.mean()).unsqueeze(0), htk_compat=True, sample_frequency=16000,
                            use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    assert item.values.shape == (128, 128) and item.mask.sum() == 98 and item.mask[:98].all()
    torch.testing.assert_close(item.values[:98], (reference + 4.2677393) / (2 * 4.5689974))
    cropped = fbank_transform(target_length=50)(wave)
    assert cropped.values.shape == (50, 128) and cropped.mask.all()
    short = fbank_transform(target_length=None)(wave[:100])  # shorter than one 25 ms window
    assert short.values.shape == (16, 128) and short.mask.sum() == 1


def test_spec_augment_masks_whole_bands_and_frames():
    torch.manual_seed(0)
    wave = torch.from_numpy(_tone(440, 2.0, 16000)) + 0.1 * torch.randn(32000)
    clean = fbank_transform(target_length=None)(wave).values
    masked = fbank_transform(target_length=None, freq_mask=30, time_mask=60)(wave).values
    zero = -AUDIOSET_MEAN / (2 * AUDIOSET_STD)  # a raw filterbank value zeroed by a mask (AST), normalised
    hit = (masked - zero).abs() < 1e-6
    zero_bins = hit.all(0) & ((clean - zero).abs() > 1e-6).any(0)
    zero_frames = hit.all(1) & ((clean - zero).abs() > 1e-6).any(1)
    assert zero_bins.any() and zero_frames.any()
    kept = ~zero_bins.unsqueeze(0) & ~zero_frames.unsqueeze(1)
    assert torch.equal(masked[kept], clean[kept])


def test_bad_audio_files_raise_read_error_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for path in (corrupt, text, empty, tmp_path / "missing.wav"):
        with pytest.raises(ReadError, match=str(path.name)):
            read_audio(path)
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(ReadError, match=r"long\.wav.*longer than"):
        read_audio(long, max_seconds=2.0)
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.full(1000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ReadError, match=r"nan\.wav.*NaN"):
        read_audio(nan)
