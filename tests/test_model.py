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
    assert embedding.pooled.shape == (2, 64) and embedding.tokens.shape == (2, 17, 64)
    torch.testing.assert_close(embedding.pooled, embedding.tokens[:, 0])


def test_fusion_concatenates_with_a_joint_mask_and_type_embeddings():
    model = _model().eval()
    images, xrays = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        model.modality_embed.copy_(torch.randn_like(model.modality_embed))
        fused = model.forward_features({"image": images, "xray": xrays})
        assert fused.tokens.shape == (2, 34, 64) and fused.mask.shape == (2, 34)
        image_tokens, _ = model.tokenizers["image"](images)
        xray_tokens, _ = model.tokenizers["xray"](xrays)
        joint = torch.cat([image_tokens + model.modality_embed[0], xray_tokens + model.modality_embed[1]], 1)
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
    del tensors["modality_embed"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensors \['modality_embed'\]"):
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
