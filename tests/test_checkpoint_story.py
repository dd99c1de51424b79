"""One checkpoint story: what every entry point writes, every entry point reads.

Writers: create_encoder (save_encoder), create_model (save_pretrained), MetaTransformer.from_pretrained
(re-saved), convert, export_merged (of an encoder and of a model), and the originals' file formats
(Meta-Transformer blocks .pth, a full timm ViT). Readers: create_encoder, create_model,
MetaTransformer.from_pretrained, embed --checkpoint, embed --model, inspect, convert, export_merged.
Each reader must load the writer's encoder weights exactly; from_pretrained on an encoder-only output
must refuse with a message that says how to load it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from metatransformer import MetaTransformer, create_encoder, create_model
from metatransformer.cli import main
from metatransformer.encoders import CheckpointError, convert_checkpoint, save_encoder
from metatransformer.pathway import export_merged, reparameterize_aux_into_target_model
from tests.conftest import reference_blocks

NANO_IMAGE = {"img_size": 32, "patch_size": 8}


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return module


def _with_pathway(target: torch.nn.Module, encoder_of=lambda m: m) -> torch.nn.Module:
    """Re-parameterize with a random auxiliary and a non-zero λ, so the merge changes the weights."""
    reparameterize_aux_into_target_model(encoder_of(target), _randomize(create_encoder("nano")), trainable_aux=False)
    with torch.no_grad():
        for name, param in target.named_parameters():
            if ".scales." in name:
                param.fill_(0.3)
    return target


def _encoder_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    from metatransformer.pathway.merge import merged_state_dict
    state = merged_state_dict(module)
    return {k: v for k, v in state.items() if k.startswith(("blocks.", "norm."))}


# Each writer: tmp dir -> (artifact path, the encoder weights it holds, is it a whole model).
def w_create_encoder(tmp):
    encoder = _randomize(create_encoder("nano"))
    return save_encoder(encoder, tmp / "encoder"), _encoder_weights(encoder), False


def w_create_model(tmp):
    model = _randomize(create_model("nano", modalities={"image": NANO_IMAGE}))
    return model.save_pretrained(tmp / "model"), _encoder_weights(model.encoder), True


def w_from_pretrained(tmp):
    path, _, _ = w_create_model(tmp)
    model = MetaTransformer.from_pretrained(path)
    return model.save_pretrained(tmp / "resaved"), _encoder_weights(model.encoder), True


def w_convert(tmp):
    blocks = reference_blocks(64, 4, 2)
    torch.save(blocks.state_dict(), tmp / "mt.pth")
    out = convert_checkpoint(tmp / "mt.pth", tmp / "converted")
    return out, {f"blocks.{k}": v for k, v in blocks.state_dict().items()}, False


def w_export_merged_encoder(tmp):
    encoder = _with_pathway(_randomize(create_encoder("nano")))
    weights = _encoder_weights(encoder)
    return export_merged(encoder, tmp / "merged-encoder"), weights, False


def w_export_merged_model(tmp):
    model = _with_pathway(_randomize(create_model("nano", modalities={"image": NANO_IMAGE})), lambda m: m.encoder)
    weights = _encoder_weights(model.encoder)
    return export_merged(model, tmp / "merged-model"), weights, True


def w_meta_transformer_pth(tmp):
    blocks = reference_blocks(64, 4, 2)
    torch.save(blocks.state_dict(), tmp / "Meta-Transformer_nano.pth")
    return tmp / "Meta-Transformer_nano.pth", {f"blocks.{k}": v for k, v in blocks.state_dict().items()}, False


def w_timm_vit_file(tmp):
    vit = _randomize(timm.create_model("vit_base_patch16_clip_224", pretrained=False, img_size=32, patch_size=8,
                                       embed_dim=64, depth=2, num_heads=4))
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, tmp / "vit.safetensors")
    weights = {k: v for k, v in vit.state_dict().items() if k.startswith(("blocks.", "norm."))}
    return tmp / "vit.safetensors", weights, False


WRITERS = [w_create_encoder, w_create_model, w_from_pretrained, w_convert, w_export_merged_encoder,
           w_export_merged_model, w_meta_transformer_pth, w_timm_vit_file]


def _same_encoder(encoder: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = encoder.state_dict()
    assert set(state) == set(expected), sorted(set(state) ^ set(expected))
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def _picture(tmp: Path) -> Path:
    picture = tmp / "pictures" / "a.png"
    picture.parent.mkdir(exist_ok=True)
    Image.new("RGB", (40, 30), color=(10, 120, 200)).save(picture)
    return picture


def r_create_encoder(artifact, expected, is_model, tmp):
    _same_encoder(create_encoder(artifact), expected)
    _same_encoder(create_encoder(checkpoint=artifact), expected)


def r_create_model(artifact, expected, is_model, tmp):
    model = create_model(checkpoint=artifact, modalities={"image": NANO_IMAGE})
    _same_encoder(model.encoder, expected)
    if is_model:  # a saved model's tokenizer comes with it
        saved = MetaTransformer.from_pretrained(artifact)
        for key, value in saved.tokenizers.state_dict().items():
            assert torch.equal(model.tokenizers.state_dict()[key], value), key


def r_from_pretrained(artifact, expected, is_model, tmp):
    if not is_model:
        with pytest.raises(CheckpointError, match=r"create_model\(.*checkpoint=|create_model\(modalities"):
            MetaTransformer.from_pretrained(artifact)
        return
    _same_encoder(MetaTransformer.from_pretrained(artifact).encoder, expected)


def _embed(flag, artifact, is_model, tmp):
    out = tmp / f"emb-{flag}.safetensors"
    assert main(["embed", str(_picture(tmp)), f"--{flag}", str(artifact), "--output", str(out)]) == 0
    embeddings = load_file(out)["embeddings"]
    assert embeddings.shape == (1, 64) and torch.isfinite(embeddings).all()
    if is_model:  # the saved model is used whole: same vectors as from_pretrained + embed
        from metatransformer.embed import embed_files
        reference = embed_files(MetaTransformer.from_pretrained(artifact).eval(), "image", [_picture(tmp)])
        torch.testing.assert_close(embeddings, reference.embeddings, atol=0, rtol=0)


def r_embed_checkpoint(artifact, expected, is_model, tmp):
    _embed("checkpoint", artifact, is_model, tmp)


def r_embed_model(artifact, expected, is_model, tmp):
    _embed("model", artifact, is_model, tmp)


def r_inspect(artifact, expected, is_model, tmp, capsys=None):
    assert main(["inspect", str(artifact)]) == 0


def r_convert(artifact, expected, is_model, tmp):
    assert main(["convert", str(artifact), str(tmp / "reconverted")]) == 0
    _same_encoder(create_encoder(tmp / "reconverted"), expected)


def r_export_merged(artifact, expected, is_model, tmp):
    if is_model:
        model = MetaTransformer.from_pretrained(artifact)
        reparameterize_aux_into_target_model(model.encoder, create_encoder("nano"))  # λ = 0: weights unchanged
        export_merged(model, tmp / "exported")
        _same_encoder(MetaTransformer.from_pretrained(tmp / "exported").encoder, expected)
    else:
        encoder = create_encoder(artifact)
        reparameterize_aux_into_target_model(encoder, create_encoder("nano"))
        export_merged(encoder, tmp / "exported")
    _same_encoder(create_encoder(tmp / "exported"), expected)


READERS = [r_create_encoder, r_create_model, r_from_pretrained, r_embed_checkpoint, r_embed_model, r_inspect,
           r_convert, r_export_merged]


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__[2:])
@pytest.mark.parametrize("writer", WRITERS, ids=lambda f: f.__name__[2:])
def test_every_writer_is_readable_by_every_reader(writer, reader, tmp_path, capsys):
    artifact, expected, is_model = writer(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random stems of blocks-only artifacts warn; tested elsewhere
        reader(artifact, expected, is_model, tmp_path)
    if reader is r_inspect:
        report = json.loads(capsys.readouterr().out)
        assert (report["depth"], report["dim"]) == (2, 64)
        if is_model:
            assert report["directory"] == "model" and report["preprocessing"]["image"]["img_size"] == 32
