import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import metatransformer as mt
from metatransformer.batching import Padded, pad_collate
from metatransformer.data2seq import TimeSeriesTokenizer, get_modality
from metatransformer.data2seq.time_series import InstanceStats

pandas = pytest.importorskip("pandas")


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    table = np.zeros((length, dim))
    for pos in range(length):
        for i in range(0, dim, 2):
            angle = pos / 10000 ** (i / dim)
            table[pos, i], table[pos, i + 1] = math.sin(angle), math.cos(angle)
    return torch.tensor(table, dtype=torch.float32)


def _revin(x: torch.Tensor) -> torch.Tensor:
    array = x.double().numpy()
    mean, var = array.mean(1, keepdims=True), array.var(1, keepdims=True)  # biased, as RevIN
    return torch.from_numpy((array - mean) / np.sqrt(var + 1e-5)).float()


def test_step_tokens_are_a_circular_conv1d_plus_sinusoidal_positions():
    tokenizer = TimeSeriesTokenizer(dim=16, in_chans=7)
    reference = nn.Conv1d(7, 16, kernel_size=3, padding=1, padding_mode="circular", bias=False)
    reference.weight.data.copy_(tokenizer.value_embed.weight)
    x = torch.randn(3, 96, 7) * 5 + 2
    seq = mt.create_tokenizer("time-series", 16)  # the registered name and the defaults build
    assert seq(x).tokens.shape == (3, 96, 16)
    with torch.no_grad():
        expected = reference(_revin(x).transpose(1, 2)).transpose(1, 2) + _sinusoid(96, 16)
        ours = tokenizer(x)
    torch.testing.assert_close(ours.tokens, expected, atol=1e-4, rtol=1e-4)
    assert ours.mask.all() and tokenizer.num_prefix_tokens == 0


def test_patch_tokens_follow_patchtst():
    tokenizer = TimeSeriesTokenizer(dim=16, in_chans=3, tokens="patch", patch_len=16, patch_stride=8,
                                    instance_norm=False)
    x = torch.randn(2, 512, 3)
    with torch.no_grad():
        ours = tokenizer(x).tokens
        padded = nn.ReplicationPad1d((0, 8))(x.transpose(1, 2))  # PatchTST's padding_patch="end"
        patches = padded.unfold(-1, 16, 8)  # b c n 16
        expected = torch.einsum("bcnk,dck->bnd", patches, tokenizer.value_embed.weight) + tokenizer.value_embed.bias
    assert ours.shape == (2, (512 - 16) // 8 + 2, 16) == (2, 64, 16)
    torch.testing.assert_close(ours, expected + _sinusoid(64, 16), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["step", "patch"])
def test_a_padded_series_gets_the_tokens_it_gets_alone(kind):
    tokenizer = TimeSeriesTokenizer(dim=8, in_chans=2, tokens=kind, patch_len=8, patch_stride=4, cls_token=True)
    long, short = torch.randn(64, 2), torch.randn(37, 2) * 3
    with torch.no_grad():
        batch = tokenizer(pad_collate([long, short]))
        alone = tokenizer(short.unsqueeze(0))
    real = int(batch.mask[1].sum())
    assert real == alone.tokens.shape[1] == 1 + tokenizer.num_tokens(37)
    assert batch.mask[1, :real].all() and not batch.mask[1, real:].any() and batch.mask[0].all()
    torch.testing.assert_close(batch.tokens[1, :real], alone.tokens[0], atol=1e-5, rtol=1e-5)
    stats = tokenizer.instance_stats(pad_collate([long, short]))
    torch.testing.assert_close(stats.mean[1, 0], short.mean(0))


def test_instance_stats_round_trip():
    x = torch.randn(4, 50, 3) * torch.tensor([1.0, 10.0, 0.1]) + 7
    stats = InstanceStats.of(x)
    torch.testing.assert_close(stats.std[:, 0], torch.from_numpy(np.sqrt(x.numpy().var(1) + 1e-5)))
    torch.testing.assert_close(stats.denormalize(stats.normalize(x)), x)


def test_bad_series_raise():
    tokenizer = TimeSeriesTokenizer(dim=8, in_chans=7)
    with pytest.raises(ValueError, match=r"\(batch, length, 7\)"):
        tokenizer(torch.randn(2, 96, 3))
    with pytest.raises(ValueError, match="patch_stride"):
        TimeSeriesTokenizer(dim=8, patch_len=4, patch_stride=8)
    with pytest.raises(ValueError, match="length"):
        TimeSeriesTokenizer(dim=8, tokens="patch", patch_len=16)(torch.randn(1, 10, 7))


def test_csv_files_to_encoder_through_the_registered_pipeline(tmp_path):
    paths = []
    for i, steps in enumerate((96, 60)):
        frame = pandas.DataFrame(np.random.default_rng(i).standard_normal((steps, 7)), columns=list("abcdefg"))
        frame.insert(0, "date", pandas.date_range("2020-01-01", periods=steps, freq="h").astype(str))
        paths.append(tmp_path / f"s{i}.csv")
        frame.to_csv(paths[-1], index=False)
    spec = get_modality("ts")
    tokenizer = mt.create_tokenizer("ts", 64)
    batch = spec.collate([spec.reader(p) for p in paths])
    assert isinstance(batch, Padded) and batch.values.shape == (2, 96, 7)
    seq = tokenizer(batch)
    assert seq.mask.sum(1).tolist() == [96, 60]
    out = mt.create_encoder("nano")(seq.tokens, seq.mask)
    assert out.shape == (2, 96, 64) and torch.isfinite(out).all()
