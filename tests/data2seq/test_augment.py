"""Training augmentation registered per modality (``ModalitySpec.augment``): it changes training items, leaves
the evaluation transform alone, and its statistics are the documented ones."""
from __future__ import annotations

import math

import pytest
import torch

from metatransformer.batching import Padded
from metatransformer.data2seq import create_tokenizer, get_modality
from metatransformer.datasets import VideoClip

DIM = 32
TOKENIZERS = {
    "image": {"img_size": 16, "patch_size": 8}, "infrared": {"img_size": 16, "patch_size": 8},
    "xray": {"img_size": 16, "patch_size": 8}, "video": {"img_size": 16, "patch_size": 8, "num_frames": 4},
    "audio": {"target_length": 128}, "point_cloud": {"num_points": 64, "num_groups": 8, "group_size": 8},
    "hyperspectral": {"num_bands": 20, "patch_size": 3}, "time_series": {"in_chans": 3}, "imu": {},
}


def read_item(modality: str) -> object:
    """What each modality's reader returns, random content."""
    g = torch.Generator().manual_seed(0)
    if modality in ("image", "infrared", "xray"):
        return torch.rand(3, 24, 20, generator=g)
    if modality == "video":
        return VideoClip(torch.rand(3, 4, 24, 20, generator=g), torch.ones(4, dtype=torch.bool))
    if modality == "audio":
        return torch.randn(16000, generator=g) * 0.1
    if modality == "point_cloud":
        return torch.randn(100, 3, generator=g)
    if modality == "hyperspectral":
        return torch.rand(5, 5, 20, generator=g)
    return torch.randn(50, 3 if modality == "time_series" else 6, generator=g)


def _as_tensor(item: object) -> torch.Tensor:
    return item[0] if isinstance(item, tuple) else item


@pytest.mark.parametrize("modality", list(TOKENIZERS))
def test_augment_changes_training_items_and_never_the_evaluation_transform(modality):
    spec = get_modality(modality)
    tokenizer = create_tokenizer(modality, DIM, **TOKENIZERS[modality])
    item = read_item(modality)
    fit = spec.transform(tokenizer) if spec.transform else (lambda x: x)
    augment = spec.augment(tokenizer)
    evaluated = _as_tensor(fit(item))
    torch.testing.assert_close(_as_tensor(fit(item)), evaluated, rtol=0, atol=0)  # deterministic
    draws = []
    for seed in range(4):  # random draws (a symmetry of the patch may be the identity)
        torch.manual_seed(seed)
        draws.append(_as_tensor(augment(item)))
    assert all(d.shape == evaluated.shape for d in draws)
    assert sum(not torch.equal(d, evaluated) for d in draws) >= 3
    assert any(not torch.equal(d, draws[0]) for d in draws[1:])
    tokenizer(spec.collate([augment(item), augment(item)]))  # an augmented batch still tokenizes


@pytest.mark.parametrize("modality", ["text", "tabular", "graph"])
def test_discrete_modalities_have_no_augmentation_or_mixing(modality):
    spec = get_modality(modality)
    assert spec.augment is None and spec.mixing is None


def test_image_crop_and_flip_fit_the_tokenizer_channels():
    gray = create_tokenizer("xray", DIM, img_size=16, patch_size=8)
    assert get_modality("xray").augment(gray)(torch.rand(3, 30, 40)).shape == (1, 16, 16)
    rgb = create_tokenizer("image", DIM, img_size=16, patch_size=8, mean=(0.0,) * 3, std=(1.0,) * 3)
    image = torch.linspace(0, 1, 16).expand(3, 16, -1).contiguous()  # a horizontal ramp
    outputs = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = get_modality("image").augment(rgb, scale=(1.0, 1.0))(image)  # full-area crop: flips only
        outputs.add(bool(out[0, 0, 0] > out[0, 0, -1]))
        torch.testing.assert_close(out if out[0, 0, 0] < out[0, 0, -1] else out.flip(-1), image, atol=0.02, rtol=0)
    assert outputs == {True, False}


def test_video_crop_is_shared_by_the_frames_and_the_window_is_consecutive():
    tokenizer = create_tokenizer("video", DIM, img_size=16, patch_size=8, num_frames=4, mean=(0.0,) * 3,
                                 std=(1.0,) * 3)
    still = torch.rand(3, 1, 24, 20).expand(-1, 10, -1, -1)  # ten identical frames: one crop for all
    levels = torch.arange(10.0).view(1, 10, 1, 1) / 10  # frame k has value k / 10
    augment, evaluate = get_modality("video").augment(tokenizer), get_modality("video").transform(tokenizer)
    starts = set()
    for seed in range(30):
        torch.manual_seed(seed)
        frames, mask = augment(VideoClip(still.contiguous(), torch.ones(10, dtype=torch.bool)))
        assert all(torch.equal(frames[:, 0], frames[:, t]) for t in range(4)) and mask.all()
        frames, _ = augment(VideoClip((still * 0 + levels).contiguous(), torch.ones(10, dtype=torch.bool)))
        index = (frames.mean((0, 2, 3)) * 10).round().long()
        assert torch.equal(index, index[0] + torch.arange(4))  # 4 consecutive read frames
        starts.add(int(index[0]))
    assert starts == set(range(7))  # every window of 4 out of 10
    frames, _ = evaluate(VideoClip((still * 0 + levels).contiguous(), torch.ones(10, dtype=torch.bool)))
    assert (frames.mean((0, 2, 3)) * 10).round().long().tolist() == [3, 4, 5, 6]  # evaluation: the centre window
    padded = VideoClip(still.contiguous(), torch.arange(10) < 3)  # 3 real frames: no window to choose
    assert augment(padded).mask.tolist() == [True, True, True, False]


def test_specaugment_is_torchaudio_masking_at_ast_settings_scaled():
    """AST's data loader: kaldi fbank of the mean-removed clip, zero-padded to the target length, SpecAugment
    masks on the raw filterbank, then (fbank - mean) / (2 std)."""
    import torchaudio

    tokenizer = create_tokenizer("audio", DIM, target_length=128)
    spec = get_modality("audio")
    wave = read_item("audio")
    torch.manual_seed(3)
    augmented = spec.augment(tokenizer)(wave)
    raw = torchaudio.compliance.kaldi.fbank((wave - wave.mean()).reshape(1, -1), htk_compat=True,
                                            sample_frequency=16000, use_energy=False, window_type="hanning",
                                            num_mel_bins=128, dither=0.0, frame_shift=10)
    raw = torch.nn.functional.pad(raw, (0, 0, 0, max(0, 128 - len(raw))))[:128]
    torch.manual_seed(3)
    reference = torchaudio.transforms.FrequencyMasking(48)(raw.T.unsqueeze(0))  # 1 mel frames
    reference = torchaudio.transforms.TimeMasking(192, p=192 / 1024)(reference)[0].T
    reference = (reference - tokenizer.mean) / (2 * tokenizer.std)
    torch.testing.assert_close(augmented.values, reference, rtol=1e-5, atol=1e-5)
    masked = -tokenizer.mean / (2 * tokenizer.std)  # a zeroed raw bin, normalised
    for seed in range(20):
        torch.manual_seed(seed)
        item = spec.augment(tokenizer)(wave)
        hit = ((item.values - masked).abs() < 1e-6)[item.mask]  # real frames (padding is zeroed too)
        masked_bins, masked_frames = hit.all(0).nonzero().flatten(), hit.all(1).nonzero().flatten()
        assert len(masked_bins) < 48 and len(masked_frames) <= int(128 * 192 / 1024)  # at most F, p·T wide
        for band in (masked_bins, masked_frames):  # one contiguous band each
            assert len(band) == 0 or band[-1] - band[0] == len(band) - 1
    small = create_tokenizer("audio", DIM, num_mel_bins=64, target_length=128)
    torch.manual_seed(0)
    item = spec.augment(small, time_mask=0)(wave)
    assert ((item.values - masked).abs() < 1e-6)[item.mask].all(0).sum() < 24  # 48 · 64/128


def test_point_scale_and_translate_within_point_mae_bounds():
    tokenizer = create_tokenizer("point_cloud", DIM, **TOKENIZERS["point_cloud"])
    spec = get_modality("point_cloud")
    cloud = read_item("point_cloud")
    fitted = spec.transform(tokenizer)(cloud)
    for seed in range(20):
        torch.manual_seed(seed)
        out = spec.augment(tokenizer)(cloud)
        centred = fitted - fitted.mean(0)
        scale = ((out - out.mean(0)) * centred).sum(0) / centred.pow(2).sum(0)  # per axis
        shift = out.mean(0) - fitted.mean(0) * scale
        assert ((scale >= 2 / 3 - 1e-5) & (scale <= 3 / 2 + 1e-5)).all()
        assert (shift.abs() <= 0.2 + 1e-5).all()
        torch.testing.assert_close(out, fitted * scale + shift)
    torch.manual_seed(0)
    jittered = spec.augment(tokenizer, scale=(1, 1), translate=0, jitter=0.01)(cloud)
    noise = jittered - fitted
    assert noise.abs().max() <= 0.05 and 0.005 < float(noise.std()) < 0.015
    torch.manual_seed(0)
    turned = spec.augment(tokenizer, scale=(1, 1), translate=0, rotate=True)(cloud)
    torch.testing.assert_close(turned[:, 1], fitted[:, 1])  # y is up
    torch.testing.assert_close(turned[:, [0, 2]].norm(dim=1), fitted[:, [0, 2]].norm(dim=1))
    assert not torch.allclose(turned, fitted)


def test_hyperspectral_patch_takes_one_of_the_square_symmetries():
    tokenizer = create_tokenizer("hyperspectral", DIM, num_bands=20, patch_size=3)
    spec = get_modality("hyperspectral")
    cube = read_item("hyperspectral")
    patch = spec.transform(tokenizer)(cube)
    symmetries = [torch.rot90(patch, k, dims=(-2, -1)).flip(-1) if f else torch.rot90(patch, k, dims=(-2, -1))
                  for k in range(4) for f in (False, True)]
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        out = spec.augment(tokenizer)(cube)
        (index,) = [i for i, s in enumerate(symmetries) if torch.equal(out, s)]
        seen.add(index)
    assert seen == set(range(8))


def test_series_jitter_and_scaling_statistics():
    tokenizer = create_tokenizer("time_series", DIM, in_chans=3)
    series = read_item("time_series") * torch.tensor([1.0, 10.0, 100.0])  # channels of different spread
    augment = get_modality("time_series").augment
    torch.manual_seed(0)
    factors = torch.stack([augment(tokenizer, jitter=0.0)(series)[0] / series[0] for _ in range(2000)])
    assert float(factors.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(factors.std()) == pytest.approx(0.1, abs=0.01)
    noise = torch.stack([augment(tokenizer, scale=0.0)(series) - series for _ in range(200)])
    relative = noise.std((0, 1)) / series.std(0, correction=0)
    torch.testing.assert_close(relative, torch.full((3,), 0.03), atol=0.003, rtol=0)
    padded = Padded(torch.cat([series, torch.zeros(5, 3)]), torch.arange(55) < 50)
    out = augment(tokenizer)(padded)
    assert torch.equal(out.mask, padded.mask) and not math.isnan(float(out.values.sum()))
