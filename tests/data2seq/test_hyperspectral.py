import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metatransformer import create_encoder
from metatransformer.batching import Padded
from metatransformer.data2seq import Data2Seq, HyperspectralTokenizer, get_modality
from metatransformer.datasets import HyperspectralPixels

scipy_io = pytest.importorskip("scipy.io")
envi = pytest.importorskip("spectral.io.envi")


def test_reference_configuration_gives_201_tokens_of_linear_band_projections():
    tokenizer = Data2Seq("hyperspectral", dim=32)
    pixels = torch.randn(4, 200, 1, 1)
    seq = tokenizer(pixels)
    assert seq.tokens.shape == (4, 201, 32) and seq.mask.all() and seq.prefix.tolist() == [True] + [False] * 200
    # band token i = w · value_i + b + position_i (an independent affine map per band value)
    expected = pixels.reshape(4, 200, 1) * tokenizer.proj.weight[:, 0] + tokenizer.proj.bias + tokenizer.pos_embed[0]
    torch.testing.assert_close(seq.tokens[:, 1:], expected)
    torch.testing.assert_close(seq.tokens[:, 0], tokenizer.cls_token.token[0].expand(4, -1))


def test_neighbourhoods_and_band_groups():
    tokenizer = HyperspectralTokenizer(dim=16, num_bands=10, patch_size=3, band_group=4)
    pixels = torch.randn(2, 10, 3, 3)
    seq = tokenizer(pixels)
    assert seq.tokens.shape == (2, 1 + 3, 16)  # ceil(10 / 4) groups
    groups = F.pad(pixels.flatten(1), (0, 2 * 9)).reshape(2, 3, 36)  # the last group zero-filled
    expected = groups @ tokenizer.proj.weight.T + tokenizer.proj.bias + tokenizer.pos_embed[0]
    torch.testing.assert_close(seq.tokens[:, 1:], expected)


def test_other_band_counts_resample_positions_linearly():
    tokenizer = HyperspectralTokenizer(dim=4, num_bands=5, cls_token=False)
    with torch.no_grad():
        tokenizer.proj.weight.zero_()
        tokenizer.proj.bias.zero_()
        tokenizer.pos_embed.copy_(torch.arange(5.0)[None, :, None].expand(1, 5, 4))  # position i = i
    tokens = tokenizer(torch.zeros(1, 10, 1, 1)).tokens[0, :, 0]
    # half-pixel linear resampling of 0..4 to 10 samples, edges clamped
    expected = np.clip((np.arange(10) + 0.5) / 2 - 0.5, 0, 4)
    np.testing.assert_allclose(tokens.detach().numpy(), expected, atol=1e-6)


def test_padded_bands_are_masked():
    tokenizer = HyperspectralTokenizer(dim=8, num_bands=6, band_group=2)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    seq = tokenizer(Padded(torch.randn(2, 6, 1, 1), mask))
    assert seq.mask.tolist() == [[True] * 4, [True, True, True, False]]  # group (2, 3) holds one real band


def test_bad_inputs_and_options():
    tokenizer = HyperspectralTokenizer(dim=8, num_bands=6, patch_size=3)
    with pytest.raises(ValueError, match=r"\(batch, bands, 3, 3\)"):
        tokenizer(torch.randn(2, 6, 1, 1))
    with pytest.raises(TypeError, match="float"):
        tokenizer(torch.zeros(2, 6, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="band_group"):
        HyperspectralTokenizer(dim=8, num_bands=6, band_group=7)


def test_pixel_dataset_batches_through_tokenizer_and_encoder():
    cube = torch.rand(5, 6, 12)
    labels = torch.zeros(5, 6, dtype=torch.long)
    labels[0, 0], labels[4, 5], labels[2, 2] = 1, 2, 3
    data = HyperspectralPixels(cube, labels, patch_size=3)
    patches, targets = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    seq = HyperspectralTokenizer(dim=64, num_bands=12, patch_size=3)(patches)
    assert seq.tokens.shape == (3, 13, 64) and targets.tolist() == [0, 2, 1]
    assert torch.isfinite(create_encoder("nano")(seq.tokens, seq.mask)).all()


def test_files_with_different_band_counts_through_reader_transform_collate_tokenizer(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1000, (6, 5, 12)), rng.uniform(0, 1000, (4, 4, 9)).astype(np.int16)
    scipy_io.savemat(tmp_path / "a.mat", {"cube": a})
    envi.save_image(str(tmp_path / "b.hdr"), b)
    spec = get_modality("hyperspectral")
    tokenizer = Data2Seq("hyperspectral", dim=64, num_bands=12)
    transform = spec.transform(tokenizer)
    items = [transform(spec.reader(p)) for p in (tmp_path / "a.mat", tmp_path / "b.hdr")]
    # the default transform pools the whole scene: the mean of each min-max-scaled band
    scaled = (a - a.min((0, 1))) / np.ptp(a, axis=(0, 1))
    np.testing.assert_allclose(items[0][:, 0, 0].numpy(), scaled.mean((0, 1)), atol=1e-5)
    batch = spec.collate(items)
    seq = tokenizer(batch)
    assert seq.tokens.shape == (2, 13, 64)
    assert seq.mask.tolist() == [[True] * 13, [True] * 10 + [False] * 3]
    encoded = create_encoder("nano")(seq.tokens, seq.mask)
    assert encoded.shape == (2, 13, 64) and torch.isfinite(encoded).all()
