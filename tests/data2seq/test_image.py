import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from metatransformer import create_model
from metatransformer.data2seq import Data2Seq, ImageTokenizer


def _randomized(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def test_image_tokens_shape_and_mask():
    sequence = Data2Seq(modality="image", dim=768)(torch.randn(2, 3, 224, 224))
    tokens, mask = sequence.tokens, sequence.mask
    assert sequence.prefix.tolist() == [True] + [False] * 196 and sequence.modalities == ("image",)
    assert tokens.shape == (2, 197, 768) and mask.shape == (2, 197) and mask.dtype == torch.bool and mask.all()


def test_other_sizes_interpolate_the_position_embedding():
    tokenizer = ImageTokenizer(dim=64, patch_size=16, img_size=224)
    images = torch.randn(1, 3, 160, 320)
    tokens = tokenizer(images).tokens
    assert tokens.shape == (1, 1 + 10 * 20, 64)
    # Against timm's resampling of the same table to the (10, 20) grid: a transposed (h, w) would differ.
    expected_pos = resample_abs_pos_embed(tokenizer.pos_embed, new_size=[10, 20], old_size=[14, 14],
                                          num_prefix_tokens=1)
    with torch.no_grad():
        patches = tokenizer.patch_embed(images).flatten(2).transpose(1, 2)
        expected = torch.cat([tokenizer.cls_token.token, patches], 1) + expected_pos
    torch.testing.assert_close(tokens, expected)
    transposed = resample_abs_pos_embed(tokenizer.pos_embed, new_size=[20, 10], old_size=[14, 14], num_prefix_tokens=1)
    assert not torch.allclose(expected_pos, transposed.reshape_as(expected_pos))


def test_large_style_patch_and_channels():
    assert Data2Seq(modality="x-ray", dim=64, patch_size=14)(torch.randn(1, 1, 224, 224)).tokens.shape == (1, 257, 64)
    assert Data2Seq(modality="infrared", dim=64, in_chans=3)(torch.randn(1, 3, 224, 224)).tokens.shape == (1, 197, 64)


def test_bad_images_raise():
    tokenizer = ImageTokenizer(dim=64)
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        tokenizer(torch.randn(3, 224, 224))
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        tokenizer(torch.randn(1, 3, 100, 224))
    with pytest.raises(TypeError, match="float"):
        tokenizer(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))


def test_tokenizer_and_encoder_reproduce_timm_clip_vit_features():
    vit = _randomized(timm.create_model("vit_base_patch16_clip_224", pretrained=False))
    model = create_model("base", modalities=["image"], checkpoint=vit.state_dict(), final_norm=True).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = vit.forward_features(images)
        ours = model.forward_features({"image": images}).tokens
    assert (ours - expected).abs().max() <= 1e-5


def test_tokenizer_and_encoder_reproduce_open_clip_image_features():
    open_clip = pytest.importorskip("open_clip")
    clip = _randomized(open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"width": 64, "layers": 2, "patch_size": 8, "image_size": 32, "head_width": 16},
        text_cfg={"width": 32, "layers": 1, "heads": 2, "context_length": 8, "vocab_size": 100},
    ))
    state_dict = clip.state_dict()
    model = create_model("nano", modalities=["image"], checkpoint=state_dict, final_norm=True).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        pooled = model.embed("image", images).pooled  # cls token after ln_post
        assert (pooled @ state_dict["visual.proj"] - clip.encode_image(images)).abs().max() <= 1e-5


def test_one_channel_stem_from_an_rgb_checkpoint_sums_the_filters():
    vit = _randomized(timm.create_model("vit_base_patch16_clip_224", pretrained=False))
    model = create_model("base", modalities=["xray"], checkpoint=vit.state_dict())
    gray = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        ours = model.tokenizers["xray"](gray).tokens
        rgb = model.tokenizers["xray"].norm_pre(vit._pos_embed(vit.patch_embed(gray.expand(-1, 3, -1, -1))))
    torch.testing.assert_close(ours, rgb, atol=1e-5, rtol=1e-5)
