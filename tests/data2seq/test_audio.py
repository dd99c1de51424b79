import numpy as np
import pytest
import torch

import metatransformer as mt
from metatransformer.batching import Padded
from metatransformer.data2seq import AudioTokenizer, get_modality
from metatransformer.data2seq.audio import patch_grid

soundfile = pytest.importorskip("soundfile")


def test_1024_frames_give_1212_patch_tokens_and_a_cls():
    tokenizer = mt.create_tokenizer("audio", 32)
    seq = tokenizer(torch.randn(2, 1024, 128))
    assert patch_grid(1024, 128, 16, 10) == (12, 101)
    assert seq.tokens.shape == (2, 1213, 32) and seq.mask.all() and seq.prefix.tolist() == [True] + [False] * 1212


@pytest.mark.parametrize("frames, time_patches", [(98, 9), (128, 12), (2048, 204)])
def test_other_lengths_resample_the_positions(frames, time_patches):
    seq = AudioTokenizer(dim=32)(torch.randn(1, frames, 128))  # 98 frames: a 1 s clip
    assert seq.tokens.shape == (1, 1 + 12 * time_patches, 32)


def test_patch_tokens_are_overlapping_16x16_patches_frequency_major():
    tokenizer = AudioTokenizer(dim=8, target_length=128, cls_token=False)
    with torch.no_grad():
        tokenizer.pos_embed.zero_()
        feats = torch.randn(1, 128, 128)  # (frames, mel)
        tokens = tokenizer(feats).tokens[0]
        weight, bias = tokenizer.patch_embed.weight[:, 0], tokenizer.patch_embed.bias  # d 16(mel) 16(time)
        for f, t in [(0, 0), (3, 7), (11, 11)]:
            patch = feats[0, 10 * t:10 * t + 16, 10 * f:10 * f + 16].T  # mel x time, AST's (1, mel, frames) input
            expected = (weight * patch).sum((1, 2)) + bias
            torch.testing.assert_close(tokens[f * 12 + t], expected, atol=1e-5, rtol=1e-5)


def test_padded_frames_give_masked_tokens():
    values = torch.randn(2, 1024, 128)
    mask = torch.zeros(2, 1024, dtype=torch.bool)
    mask[0], mask[1, :98] = True, True
    seq = AudioTokenizer(dim=16)(Padded(values, mask))
    assert seq.mask[0].all()
    assert seq.mask[1].sum() == 1 + 12 * 9  # cls + the 108 patches of an unpadded 98-frame clip
    real_time = seq.mask[1, 1:].view(12, 101)
    assert real_time[:, :9].all() and not real_time[:, 9:].any()


def test_patch_embedding_from_an_image_vit_sums_the_rgb_filters():
    # the stem keys of a timm ViT-B/16 (vit.state_dict() of timm.create_model("vit_base_patch16_224"))
    vit = {"patch_embed.proj.weight": torch.randn(64, 3, 16, 16), "patch_embed.proj.bias": torch.randn(64),
           "cls_token": torch.randn(1, 1, 64), "pos_embed": torch.randn(1, 197, 64),
           "blocks.0.norm1.weight": torch.ones(64)}
    options, state = AudioTokenizer.stem_from_checkpoint(vit, "timm")
    tokenizer = AudioTokenizer(dim=64, **options)
    tokenizer.load_stem(state)
    torch.testing.assert_close(tokenizer.patch_embed.weight, vit["patch_embed.proj.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(tokenizer.patch_embed.bias, vit["patch_embed.proj.bias"])
    torch.testing.assert_close(tokenizer.cls_token.token, vit["cls_token"])
    torch.testing.assert_close(tokenizer.pos_embed[:, 0], vit["pos_embed"][:, 0])
    assert tokenizer.pos_embed.shape == (1, 1213, 64)
    # the square 14 x 14 grid is resampled to 12 x 101: its corners stay close to the source's corners
    grid = tokenizer.pos_embed[0, 1:].view(12, 101, 64)
    source = vit["pos_embed"][0, 1:].view(14, 14, 64)
    assert (grid[0, 0] - source[0, 0]).abs().mean() < (grid[0, 0] - source[-1, -1]).abs().mean()


def test_bad_inputs_raise():
    tokenizer = AudioTokenizer(dim=16)
    with pytest.raises(ValueError, match=r"\(batch, frames, 128\)"):
        tokenizer(torch.randn(1, 100, 64))
    with pytest.raises(ValueError, match="at least 16 frames"):
        tokenizer(torch.randn(1, 10, 128))
    with pytest.raises(ValueError, match="stride"):
        AudioTokenizer(dim=16, stride=20)


@pytest.mark.parametrize("target_length", [1024, None])
def test_files_to_encoder_through_the_registered_pipeline(tmp_path, target_length):
    rng = np.random.default_rng(0)
    paths = []
    for i, (seconds, rate) in enumerate([(1.0, 16000), (2.5, 44100), (0.3, 22050)]):
        paths.append(tmp_path / f"clip{i}.wav")
        soundfile.write(paths[-1], 0.1 * rng.standard_normal((int(seconds * rate), 2)), rate)
    spec = get_modality("audio")
    tokenizer = mt.create_tokenizer("audio", 64, target_length=target_length)
    transform = spec.transform(tokenizer)
    batch = spec.collate([transform(spec.reader(p)) for p in paths])
    seq = tokenizer(batch)
    frames = [98, 248, 28]  # 1 + (samples at 16 kHz - 400) // 160
    expected = [1 + 12 * (1 + (n - 16) // 10) for n in frames]
    assert seq.mask.sum(1).tolist() == expected
    out = mt.create_encoder("nano")(seq.tokens, seq.mask)
    assert out.shape == seq.tokens.shape and torch.isfinite(out).all()
