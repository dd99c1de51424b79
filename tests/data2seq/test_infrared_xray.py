"""Infrared and X-ray from real files through the generic pipeline, and their stems from RGB checkpoints."""
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from metatransformer import create_encoder
from metatransformer.data2seq import InfraredTokenizer, create_tokenizer, get_modality


def _pipeline(modality, paths):
    """What ``embed`` does per modality: reader → transform(tokenizer) → collate → tokenizer → encoder."""
    encoder = create_encoder("nano").eval()
    spec = get_modality(modality)
    tokenizer = create_tokenizer(modality, encoder.config.dim).eval()
    transform = spec.transform(tokenizer)
    batch = spec.collate([transform(spec.reader(path)) for path in paths])
    with torch.no_grad():
        seq = tokenizer(batch)
        return batch, seq, encoder(seq.tokens, seq.mask)


def test_infrared_files_of_different_sizes_and_formats_embed(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", 20 + 15 * rng.random((120, 160)))  # radiometric °C
    Image.fromarray(rng.integers(0, 65536, (240, 320), dtype=np.uint16)).save(tmp_path / "b.png")
    Image.fromarray(rng.random((90, 90), dtype=np.float32)).save(tmp_path / "c.tiff")
    batch, seq, out = _pipeline("thermal", sorted(tmp_path.iterdir()))
    assert batch.shape == (3, 1, 224, 224)
    assert seq.tokens.shape == out.shape == (3, 197, create_encoder("nano").config.dim) and seq.mask.all()
    assert torch.isfinite(out).all() and seq.prefix[0] and not seq.prefix[1:].any()


def test_xray_dicom_and_sixteen_bit_png_embed(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ramp = np.tile(np.linspace(0, 65535, 200), (300, 1)).astype(np.uint16)  # along the side the crop keeps
    Image.fromarray(ramp).save(tmp_path / "r.png")
    paths = [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm"), tmp_path / "r.png"]
    batch, seq, out = _pipeline("x-ray", paths)
    assert batch.shape == (3, 1, 224, 224) and out.shape[:2] == (3, 197) and torch.isfinite(out).all()
    # the transform normalises [0, 1] with the averaged CLIP statistics: the 16-bit ramp spans that range
    mean, std = sum((0.48145466, 0.4578275, 0.40821073)) / 3, sum((0.26862954, 0.26130258, 0.27577711)) / 3
    assert batch[2].min() * std + mean == pytest.approx(0, abs=0.02)
    assert batch[2].max() * std + mean == pytest.approx(1, abs=0.02)


def test_infrared_stem_from_a_three_channel_patch_embedding():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    stem = InfraredTokenizer.stem_from_checkpoint(vit.state_dict(), "timm")
    assert stem is not None
    options, state = stem
    tokenizer = InfraredTokenizer(dim=vit.embed_dim, **options).eval()
    assert tokenizer.in_chans == 1 and state["patch_embed.weight"].shape[1] == 3
    tokenizer.load_stem(state)
    gray = torch.randn(2, 1, 224, 224)
    with torch.no_grad():
        ours = tokenizer(gray).tokens
        # a 1-channel image through the summed filters equals the replicated RGB image through the originals
        theirs = vit.norm_pre(vit._pos_embed(vit.patch_embed(gray.expand(-1, 3, -1, -1))))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokenizer.patch_embed.weight, vit.patch_embed.proj.weight.sum(1, keepdim=True))
