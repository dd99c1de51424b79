import json

import pytest
import torch

from metatransformer import MetaTransformer, create_model
from metatransformer.encoders import CheckpointError
from tests.conftest import reference_blocks


def _model(**kwargs):
    return create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8}, "xray": {"img_size": 32, "patch_size": 8}},
                        heads={"cls": {"kind": "classification", "num_classes": 3}}, **kwargs)


def test_frozen_encoder_by_default_and_honest_counts():
    model = _model()
    counts = model.parameter_counts()
    assert counts["frozen"] == counts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    assert counts["trainable"] == counts["tokenizers"] + counts["heads"] + counts["modality_embed"]
    assert counts["trainable"] + counts["frozen"] == sum(p.numel() for p in model.parameters())
    assert _model(freeze_encoder=False).parameter_counts()["frozen"] == 0


def test_forward_embed_and_training_step_reach_only_trainable_parts():
    model = _model()
    images = torch.randn(2, 3, 32, 32)
    logits = model("image", images, head="cls")
    assert logits.shape == (2, 3)
    model.heads["cls"].loss(logits, torch.tensor([0, 1])).backward()
    assert model.tokenizers["image"].patch_embed.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())
    embedding = model.embed("image", images)
    assert embedding.pooled.shape == (2, 64) and embedding.features.tokens.shape == (2, 17, 64)
    torch.testing.assert_close(embedding.pooled, embedding.features.tokens[:, 0])


def test_fusion_concatenates_with_a_joint_mask_and_type_embeddings():
    model = _model().eval()
    images, xrays = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        for embed in model.modality_embed.values():
            embed.copy_(torch.randn_like(embed))
        fused = model.forward_features({"image": images, "xray": xrays})
        assert fused.tokens.shape == (2, 34, 64) and fused.mask.shape == (2, 34)
        assert fused.modalities == ("image", "xray") and fused.prefix.nonzero().flatten().tolist() == [0, 17]
        image_tokens = model.tokenizers["image"](images).tokens
        xray_tokens = model.tokenizers["xray"](xrays).tokens
        joint = torch.cat([image_tokens + model.modality_embed["image"], xray_tokens + model.modality_embed["xray"]], 1)
        torch.testing.assert_close(fused.tokens, model.encoder(joint))
        pooled = model.embed({"image": images, "xray": xrays}).pooled
        content = torch.cat([fused.tokens[:, 1:17], fused.tokens[:, 18:]], 1)  # both cls tokens left out
        torch.testing.assert_close(pooled, content.mean(1))
        assert model({"image": images, "xray": xrays}, head="cls").shape == (2, 3)
    with pytest.raises(ValueError, match="same batch size"):
        model.forward_features({"image": images, "xray": xrays[:1]})
    with pytest.raises(ValueError, match="no 'infrared' tokenizer"):
        model.embed("infrared", images)


def test_save_and_load_round_trip_exactly(tmp_path):
    model = _model().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path / "model")
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded("image", images, head="cls"), model("image", images, head="cls"))
    assert loaded.config == model.config
    assert loaded.parameter_counts() == model.parameter_counts()


def test_tampered_config_and_missing_tensor_are_named(tmp_path):
    directory = _model().save_pretrained(tmp_path / "model")
    config_file = directory / "config.json"
    original = config_file.read_text()

    config = json.loads(original)
    config["heads"]["cls"]["num_classes"] = 5
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatches \['heads.cls.fc.weight"):
        MetaTransformer.from_pretrained(directory)

    config = json.loads(original)
    config["colour"] = "blue"
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown field.*colour"):
        MetaTransformer.from_pretrained(directory)

    config = json.loads(original)
    config["tokenizers"]["image"]["patch"] = 8
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json.*patch"):
        MetaTransformer.from_pretrained(directory)

    config_file.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        MetaTransformer.from_pretrained(directory)

    config_file.write_text(original)
    from safetensors.torch import load_file, save_file
    tensors = load_file(directory / "model.safetensors")
    del tensors["modality_embed.xray"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensors \['modality_embed.xray'\]"):
        MetaTransformer.from_pretrained(directory)


def test_meta_transformer_checkpoint_loads_into_the_model():
    reference = reference_blocks(64, 4, 2)
    model = create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8}},
                         checkpoint=reference.state_dict()).eval()
    tokens = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert (model.encoder(tokens) - reference(tokens)).abs().max() <= 1e-5


def test_unknown_directory_or_repo_is_a_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time; no network in tests
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="no-such-user/no-such-model: not a local directory"):
        MetaTransformer.from_pretrained("no-such-user/no-such-model")


def test_reordering_or_adding_modalities_never_swaps_learned_weights(tmp_path):
    model = _model().eval()
    # Not constant vectors: LayerNorm cancels a constant added to every feature, hiding a swap in the outputs.
    image_embed, xray_embed = torch.linspace(-1, 1, 64), torch.linspace(1, -1, 64) ** 3
    with torch.no_grad():
        model.modality_embed["image"].copy_(image_embed)
        model.modality_embed["xray"].copy_(xray_embed)
    state = model.state_dict()
    reordered = create_model("nano", modalities={"xray": {"img_size": 32, "patch_size": 8},
                                                 "image": {"img_size": 32, "patch_size": 8}},
                             heads={"cls": {"kind": "classification", "num_classes": 3}})
    reordered.load_state_dict(state, strict=True)
    assert reordered.modality_embed["image"].equal(image_embed) and reordered.modality_embed["xray"].equal(xray_embed)
    images, xrays = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reordered.eval()("image", images, head="cls"), model("image", images, head="cls"))
        torch.testing.assert_close(reordered("xray", xrays, head="cls"), model("xray", xrays, head="cls"))
        # Each modality's tokens get its own embedding, looked up by name whatever the order.
        xray_tokens = reordered.tokenizers["xray"](xrays).tokens
        torch.testing.assert_close(reordered.tokenize("xray", xrays).tokens, xray_tokens + xray_embed)
    # A model with one more modality refuses a strict load (the new embedding is missing), never silently drops.
    larger = create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8},
                                              "xray": {"img_size": 32, "patch_size": 8}, "infrared": {}},
                          heads={"cls": {"kind": "classification", "num_classes": 3}})
    with pytest.raises(RuntimeError, match="modality_embed.infrared"):
        larger.load_state_dict(state, strict=True)


@pytest.mark.parametrize("path, value, message", [
    (("encoder", "depth"), 1000000, "depth: must be >= 1 and <= 256"),
    (("encoder", "dim"), 64.0, "dim: expected an integer"),
    (("encoder", "depth"), 2.5, "depth: expected an integer"),
    (("encoder", "num_heads"), 0, "num_heads: must be >= 1"),
    (("encoder", "norm_eps"), -1, "norm_eps: must be > 0"),
    (("encoder", "final_norm"), "false", "final_norm: expected true/false"),
    (("encoder", "width"), 64, "unknown field.*'width'"),
    (("tokenizers", "image", "patch_size"), 0, "patch_size: must be >= 1"),
    (("tokenizers", "image", "cls_token"), "false", "cls_token: expected true/false"),
    (("tokenizers", "image", "patch"), 8, "unknown option.*'patch'"),
    (("heads", "cls", "num_classes"), 2.5, "num_classes: expected an integer"),
    (("heads", "cls", "kind"), "ranking", "unknown head 'ranking'"),
    (("schema_version",), 99, "schema_version 99 is not supported"),
    (("freeze_encoder",), "false", "freeze_encoder: expected true/false"),
])
def test_config_defects_are_refused_by_name_before_anything_is_built(tmp_path, monkeypatch, path, value, message):
    directory = _model().save_pretrained(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (directory / "config.json").write_text(json.dumps(config))

    def allocate(*args, **kwargs):
        raise AssertionError("the encoder was built from a config that should have been refused")

    monkeypatch.setattr("metatransformer.model.SharedEncoder", allocate)
    with pytest.raises(CheckpointError, match=message):
        MetaTransformer.from_pretrained(directory)


def test_model_from_module_instances_and_its_config():
    from metatransformer import create_encoder
    from metatransformer.data2seq import ImageTokenizer, create_tokenizer
    from metatransformer.heads import create_head

    encoder = create_encoder("nano")
    model = MetaTransformer(encoder=encoder, tokenizers={"X-Ray": create_tokenizer("xray", 64, img_size=32, patch_size=8)},
                            heads={"dx": create_head("classification", dim=64, num_classes=2)})
    assert model.modalities == ["xray"] and model.config.tokenizers["xray"].options["img_size"] == 32
    assert model.config.heads["dx"].options["num_classes"] == 2
    direct = MetaTransformer(encoder=encoder, tokenizers={"image": ImageTokenizer(dim=64)})
    with pytest.raises(ValueError, match="built directly.*create_tokenizer"):
        direct.config
    with pytest.raises(ValueError, match="width 32 is not the encoder's 64"):
        MetaTransformer(encoder=encoder, tokenizers={"image": create_tokenizer("image", 32)})
    # timm habit: a bare tensor to forward_features of a one-modality model.
    assert model.forward_features(torch.randn(1, 1, 32, 32)).tokens.shape == (1, 17, 64)
