import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from metatransformer import create_encoder
from metatransformer.data2seq import Data2Seq, ImageTokenizer, VideoTokenizer, get_modality
from metatransformer.datasets import VideoClip

from ..datasets.test_video import moving_square, write_video

pytest.importorskip("av")


def positions(tokenizer, clips):
    """(b, n, d) position part of the tokens: output minus an independent Conv3d of the clip (no cls)."""
    tokens = tokenizer(clips).tokens[:, tokenizer.num_prefix_tokens:]
    embed = tokenizer.patch_embed
    conv = F.conv3d(clips, embed.weight, embed.bias, stride=embed.stride)
    return tokens - conv.flatten(2).transpose(1, 2)


def linear_resample(values, size):
    """Reference 1-D linear resampling, half-pixel centres (align_corners=False), edges clamped: (n, d) -> (size, d)."""
    n = values.shape[0]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    return np.stack([np.interp(src, np.arange(n), values[:, j]) for j in range(values.shape[1])], axis=1)


def test_reference_token_count():
    seq = Data2Seq("video", dim=32)(torch.randn(1, 3, 16, 224, 224))
    tokens, mask = seq.tokens, seq.mask
    assert tokens.shape == (1, 1 + 8 * 14 * 14, 32) == (1, 1569, 32) and mask.all()


@pytest.mark.parametrize("frames", [8, 16, 32])
@pytest.mark.parametrize("size", [(224, 224), (96, 160)])
def test_token_count_and_separable_positions_resample(frames, size):
    tokenizer = VideoTokenizer(dim=8, num_frames=16, img_size=224)
    clips = torch.randn(1, 3, frames, *size)
    pos = positions(tokenizer, clips)[0].detach()
    gt, gh, gw = frames // 2, size[0] // 16, size[1] // 16
    assert tokenizer(clips).tokens.shape == (1, 1 + gt * gh * gw, 8)
    pos = pos.reshape(gt, gh * gw, 8)
    temporal = tokenizer.pos_embed_temporal[0].detach().numpy()
    spatial = tokenizer.pos_embed_spatial.detach()
    expected_t = torch.from_numpy(linear_resample(temporal, gt)).float() if gt != 8 else torch.from_numpy(temporal)
    expected_s = (resample_abs_pos_embed(spatial, new_size=[gh, gw], old_size=[14, 14], num_prefix_tokens=0)
                  if (gh, gw) != (14, 14) else spatial)[0]
    torch.testing.assert_close(pos, expected_t[:, None] + expected_s[None], atol=2e-5, rtol=0)


def test_padded_frames_are_masked_and_cls_never():
    tokenizer = VideoTokenizer(dim=8, num_frames=8, img_size=32)
    frame_mask = torch.tensor([[True] * 8, [True] * 3 + [False] * 5])
    seq = tokenizer(VideoClip(torch.randn(2, 3, 8, 32, 32), frame_mask))
    assert seq.tokens.shape == (2, 1 + 4 * 4, 8)
    tubelet_real = torch.tensor([True, True, False, False])  # frames (0,1), (2,3) have a real frame
    assert seq.mask[0].all() and seq.mask[1, 0]
    assert torch.equal(seq.mask[1, 1:].reshape(4, 4), tubelet_real[:, None].expand(4, 4))
    assert seq.prefix.tolist() == [True] + [False] * 16


def test_inflated_image_stem_gives_the_image_tokens_on_a_still_clip():
    image = ImageTokenizer(dim=16, patch_size=8, img_size=32, pre_norm=True)
    with torch.no_grad():
        for p in image.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    video = VideoTokenizer.from_image_tokenizer(image, num_frames=6, tubelet_size=3)
    frame = torch.randn(2, 3, 32, 32)
    still = frame[:, :, None].expand(-1, -1, 6, -1, -1)
    with torch.no_grad():
        expected = image(frame).tokens  # (b, 1 + 16, d), positions and pre-norm included
        ours = video(still).tokens  # (b, 1 + 2·16, d)
    torch.testing.assert_close(ours[:, 0], expected[:, 0], atol=1e-5, rtol=0)
    for t in range(2):  # every time step equals the image tokens: temporal positions start at zero
        torch.testing.assert_close(ours[:, 1 + 16 * t:1 + 16 * (t + 1)], expected[:, 1:], atol=1e-5, rtol=0)


def test_inflation_from_a_timm_vit_checkpoint_matches_timm_patch_tokens():
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pre_norm=True,
                            no_embed_class=False).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    found = VideoTokenizer.stem_from_checkpoint(vit.state_dict(), "timm")
    assert found is not None
    options, state = found
    video = VideoTokenizer(dim=16, num_frames=4, norm_eps=1e-6, **options)  # timm's generic ViT eps
    video.load_stem(state)
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = vit.norm_pre(vit._pos_embed(vit.patch_embed(frame)))  # timm: cls + positions, then norm_pre
        ours = video(frame[:, :, None].expand(-1, -1, 4, -1, -1)).tokens
    torch.testing.assert_close(ours[:, :17], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[:, 17:], expected[:, 1:], atol=1e-5, rtol=0)
    assert VideoTokenizer.stem_from_checkpoint({"foo": torch.zeros(1)}, "timm") is None


def test_inflation_to_another_size_resamples_spatial_positions():
    image = ImageTokenizer(dim=8, patch_size=8, img_size=32)
    video = VideoTokenizer(dim=8, patch_size=8, img_size=48, num_frames=4)
    video.load_stem(image.state_dict())
    expected = resample_abs_pos_embed(image.pos_embed[:, 1:].detach(), new_size=[6, 6], old_size=[4, 4],
                                      num_prefix_tokens=0)
    torch.testing.assert_close(video.pos_embed_spatial.detach(), expected)
    with pytest.raises(ValueError, match=r"16x16 patches is needed to inflate, got .* shape \(8, 3, 8, 8\)"):
        VideoTokenizer(dim=8, patch_size=16, img_size=32).load_stem(image.state_dict())


def test_bad_inputs_and_options():
    tokenizer = VideoTokenizer(dim=8, num_frames=4, img_size=32)
    with pytest.raises(ValueError, match=r"\(batch, 3, frames, height, width\)"):
        tokenizer(torch.randn(3, 4, 32, 32))
    with pytest.raises(ValueError, match="multiple of 2"):
        tokenizer(torch.randn(1, 3, 5, 32, 32))
    with pytest.raises(TypeError, match="float"):
        tokenizer(torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_frames"):
        VideoTokenizer(dim=8, num_frames=1)
    with pytest.raises(ValueError, match="multiple"):
        VideoTokenizer(dim=8, num_frames=5)


def test_files_of_different_lengths_through_reader_transform_collate_tokenizer_encoder(tmp_path):
    spec = get_modality("video")
    paths = [write_video(tmp_path / "a.mp4", moving_square(30)),
             write_video(tmp_path / "b.webm", moving_square(5, height=40, width=32)),
             write_video(tmp_path / "c.mkv", moving_square(12))]
    tokenizer = Data2Seq("video", dim=64, num_frames=8, img_size=32)
    transform = spec.transform(tokenizer)
    batch = spec.collate([transform(spec.reader(p, num_frames=8)) for p in paths])
    seq = tokenizer(batch)
    assert seq.tokens.shape == (3, 1 + 4 * 2 * 2, 64)
    # b.webm has 5 frames: tubelets (0,1), (2,3), (4,pad) are real, (pad,pad) is masked
    assert seq.mask[0].all() and seq.mask[2].all()
    assert seq.mask[1].tolist() == [True] + [True] * 12 + [False] * 4
    encoded = create_encoder("nano")(seq.tokens, seq.mask)
    assert encoded.shape == (3, 17, 64) and torch.isfinite(encoded).all()


def test_one_channel_tokenizer_gets_luminance_clips(tmp_path):
    spec = get_modality("video")
    tokenizer = Data2Seq("video", dim=16, in_chans=1, num_frames=4, img_size=16)
    clip = spec.reader(write_video(tmp_path / "a.mp4", moving_square(6)), num_frames=4)
    item = spec.transform(tokenizer)(clip)
    assert item.frames.shape == (1, 4, 16, 16) and item.mask.all()
    assert tokenizer(spec.collate([item])).tokens.shape == (1, 1 + 2, 16)
