"""Loading every published checkpoint format, checked against the model that wrote it."""
import json

import pytest
import timm
import torch
import torch.nn as nn

from metatransformer.encoders import (
    CheckpointError,
    convert_checkpoint,
    convert_state_dict,
    create_encoder,
    read_state_dict,
    save_encoder,
)
from tests.conftest import reference_blocks


def _metatransformer_file(tmp_path, dim, heads, depth):
    reference = reference_blocks(dim, heads, depth)
    path = tmp_path / "Meta-Transformer_encoder.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.mark.parametrize("preset", ["base", pytest.param("large", marks=pytest.mark.slow)])
def test_metatransformer_file_loads_strictly_and_matches(tmp_path, preset):
    dims = {"base": (768, 12, 12), "large": (1024, 16, 24)}[preset]
    reference, path = _metatransformer_file(tmp_path, *dims)
    encoder = create_encoder(preset, checkpoint=path).eval()
    x = torch.randn(2, 197, dims[0])
    with torch.no_grad():
        assert (encoder(x) - reference(x)).abs().max() <= 1e-5
    if preset == "large":  # the real file into the wrong preset
        with pytest.raises(CheckpointError, match=r"Meta-Transformer_encoder.pth.*24 blocks of width 1024.*'large'"):
            create_encoder("base", checkpoint=path)


def test_issue_form_of_the_checkpoint_with_timm_default_blocks(tmp_path):
    # Block(768, 12, qkv_bias=True) uses timm's LayerNorm (eps 1e-6): the config must say so.
    from timm.models.vision_transformer import Block
    torch.manual_seed(0)
    reference = nn.Sequential(*[Block(768, 12, qkv_bias=True) for _ in range(12)]).eval()
    path = tmp_path / "blocks.pth"
    torch.save(reference.state_dict(), path)
    encoder = create_encoder("base", norm_eps=1e-6, checkpoint=path).eval()
    x = torch.randn(2, 197, 768)
    with torch.no_grad():
        assert (encoder(x) - reference(x)).abs().max() <= 1e-5


def test_timm_vit_blocks_and_final_norm_match_and_extras_are_reported():
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, depth=2, num_classes=5).eval()
    converted = convert_state_dict(vit.state_dict())
    assert converted.source_format == "timm"
    assert {"head.weight", "head.bias"} <= set(converted.unused)
    assert {"patch_embed.proj.weight", "cls_token", "pos_embed"} <= set(converted.extras)
    assert not any(k.startswith(("patch_embed", "cls_token", "pos_embed")) for k in converted.encoder)
    # timm's generic ViT uses LayerNorm eps 1e-6.
    encoder = create_encoder("small", depth=2, norm_eps=1e-6, final_norm=True, checkpoint=vit.state_dict()).eval()
    x = torch.randn(2, 197, 384)
    with torch.no_grad():
        expected = vit.norm(vit.blocks(x))
        assert (encoder(x) - expected).abs().max() <= 1e-5


def test_timm_checkpoint_without_final_norm_reports_it(tmp_path):
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, depth=2)
    encoder = create_encoder("small", depth=2)
    from metatransformer.encoders import load_encoder_weights
    converted = load_encoder_weights(encoder, vit.state_dict())
    assert "norm.weight" in converted.unused


def _small_open_clip():
    open_clip = pytest.importorskip("open_clip")
    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"width": 64, "layers": 2, "patch_size": 8, "image_size": 32, "head_width": 16},
        text_cfg={"width": 32, "layers": 1, "heads": 2, "context_length": 8, "vocab_size": 100},
    ).eval()


def test_open_clip_visual_tower_matches(tmp_path):
    clip = _small_open_clip()
    with torch.no_grad():  # open_clip zero-initialises some biases; randomise every tensor
        for p in clip.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "open_clip.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, path)
    converted = convert_state_dict(read_state_dict(path))
    assert converted.source_format == "open_clip"
    assert converted.depth == 2  # the visual tower, not the text tower's single block
    assert "visual.proj" in converted.unused and "text_projection" in converted.unused
    encoder = create_encoder("nano", checkpoint=path).eval()
    x = torch.randn(3, 17, 64)
    with torch.no_grad():
        expected = clip.visual.transformer(x)
        assert (encoder(x) - expected).abs().max() <= 1e-5


def test_nn_multihead_attention_resblocks_in_open_clip_layout():
    # An independent reference for the key map: resblocks built from torch.nn.MultiheadAttention.
    class ResBlock(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, h, batch_first=True)
            self.mlp = nn.Sequential()
            self.mlp.add_module("c_fc", nn.Linear(d, 4 * d))
            self.mlp.add_module("gelu", nn.GELU())
            self.mlp.add_module("c_proj", nn.Linear(4 * d, d))

        def forward(self, x):
            y = self.ln_1(x)
            x = x + self.attn(y, y, y, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    blocks = nn.Sequential(*[ResBlock(64, 4) for _ in range(2)]).eval()
    with torch.no_grad():
        for p in blocks.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state_dict = {f"visual.transformer.resblocks.{k}": v for k, v in blocks.state_dict().items()}
    encoder = create_encoder("nano", checkpoint=state_dict).eval()
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        assert (encoder(x) - blocks(x)).abs().max() <= 1e-5


def test_videomae_separate_q_v_biases_are_fused():
    reference = reference_blocks(64, 4, 2)
    state_dict = {f"blocks.{k}": v for k, v in reference.state_dict().items()}
    for i in range(2):
        bias = state_dict.pop(f"blocks.{i}.attn.qkv.bias")
        state_dict[f"blocks.{i}.attn.q_bias"], _, state_dict[f"blocks.{i}.attn.v_bias"] = bias.chunk(3)
    converted = convert_state_dict(state_dict)
    fused = converted.encoder["blocks.0.attn.qkv.bias"]
    assert torch.equal(fused[64:128], torch.zeros(64))
    assert torch.equal(fused[:64], state_dict["blocks.0.attn.q_bias"])
    assert torch.equal(fused[128:], state_dict["blocks.0.attn.v_bias"])


def test_own_format_round_trip_and_conversion(tmp_path):
    reference, path = _metatransformer_file(tmp_path, 64, 4, 2)
    out_dir = convert_checkpoint(path, tmp_path / "converted", config="nano")
    assert json.loads((out_dir / "config.json").read_text())["encoder"]["dim"] == 64
    encoder = create_encoder(checkpoint=out_dir).eval()
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert torch.equal(encoder(x), create_encoder("nano", checkpoint=path).eval()(x))
    save_encoder(encoder, tmp_path / "again")
    assert read_state_dict(tmp_path / "again" / "model.safetensors").keys() == encoder.state_dict().keys()


def test_conversion_picks_the_preset_that_fits(tmp_path):
    vit = timm.create_model("vit_base_patch16_clip_224", pretrained=False)
    out_dir = convert_checkpoint(vit.state_dict(), tmp_path / "b16")
    config = json.loads((out_dir / "config.json").read_text())["encoder"]
    assert (config["dim"], config["depth"], config["num_heads"], config["final_norm"]) == (768, 12, 12, True)


def test_tampered_config_names_the_field(tmp_path):
    out_dir = save_encoder(create_encoder("nano"), tmp_path / "enc")
    config = json.loads((out_dir / "config.json").read_text())
    config["encoder"]["heads"] = config["encoder"].pop("num_heads")
    (out_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="heads"):
        create_encoder(checkpoint=out_dir)


def test_large_checkpoint_into_base_names_the_fitting_preset():
    large = {f"{i}.{k}": torch.empty(s) for i in range(24) for k, s in {
        "norm1.weight": (1024,), "attn.qkv.weight": (3072, 1024), "attn.proj.weight": (1024, 1024),
        "norm2.weight": (1024,), "mlp.fc1.weight": (4096, 1024), "mlp.fc2.weight": (1024, 4096)}.items()}
    with pytest.raises(CheckpointError, match=r"24 blocks of width 1024.*'large'.*12 blocks of width 768.*'base'"):
        create_encoder("base", checkpoint=large)


def test_truncated_files_name_the_file(tmp_path):
    _, path = _metatransformer_file(tmp_path, 64, 4, 2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="Meta-Transformer_encoder.pth"):
        create_encoder("nano", checkpoint=path)
    save_encoder(create_encoder("nano"), tmp_path / "enc")
    weights = tmp_path / "enc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        create_encoder(checkpoint=tmp_path / "enc")
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty"):
        create_encoder("nano", checkpoint=empty)


def test_another_models_file_says_what_was_expected(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"no transformer blocks found.*conv1.weight"):
        create_encoder("base", checkpoint=path)


def test_missing_keys_and_missing_blocks_are_named():
    state_dict = reference_blocks(64, 4, 2).state_dict()
    del state_dict["1.mlp.fc2.bias"]
    with pytest.raises(CheckpointError, match="block 1 lacks \\['mlp.fc2.bias'\\]"):
        create_encoder("nano", checkpoint=state_dict)
    # A tensor every block needs, missing from all of them, is named too (not a raw KeyError).
    state_dict = {k: v for k, v in reference_blocks(64, 4, 2).state_dict().items() if "norm1.weight" not in k}
    with pytest.raises(CheckpointError, match="block 0 lacks \\['norm1.weight'\\]"):
        convert_state_dict(state_dict)
    state_dict = {k: v for k, v in reference_blocks(64, 4, 3).state_dict().items() if not k.startswith("1.")}
    with pytest.raises(CheckpointError, match="blocks \\[1\\] are missing"):
        create_encoder("nano", depth=3, checkpoint=state_dict)
    with pytest.raises(CheckpointError, match="missing keys \\['norm.bias', 'norm.weight'\\]"):
        create_encoder("nano", final_norm=True, checkpoint=reference_blocks(64, 4, 2).state_dict())


def test_pickles_are_loaded_with_weights_only(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(path)


def test_wrapped_training_checkpoints_are_unwrapped(tmp_path):
    reference = reference_blocks(64, 4, 2)
    path = tmp_path / "train.pt"
    torch.save({"model": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}, path)
    encoder = create_encoder("nano", checkpoint=path).eval()
    x = torch.randn(1, 4, 64)
    with torch.no_grad():
        assert (encoder(x) - reference(x)).abs().max() <= 1e-5


def test_an_absurd_block_index_is_refused_before_any_per_block_work():
    state_dict = dict(reference_blocks(64, 4, 1).state_dict())
    # The boundary first: index 256 (one past the last allowed) must hit the same check, not the gap check.
    with pytest.raises(CheckpointError, match="block index 256 is beyond the 256 blocks"):
        convert_state_dict({**state_dict, "256.norm1.weight": torch.zeros(64)})
    state_dict["1000000000.norm1.weight"] = torch.zeros(64)
    with pytest.raises(CheckpointError, match="block index 1000000000 is beyond the 256 blocks"):
        convert_state_dict(state_dict)
