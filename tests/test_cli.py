import json

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from metatransformer import MetaTransformer, create_model
from metatransformer.cli import main
from tests.conftest import reference_blocks


def test_convert_and_inspect(tmp_path, capsys):
    source = tmp_path / "Meta-Transformer_nano.pth"
    torch.save(reference_blocks(64, 4, 2).state_dict(), source)
    assert main(["convert", str(source), str(tmp_path / "out"), "--preset", "nano"]) == 0
    assert main(["inspect", str(tmp_path / "out" / "model.safetensors")]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["format"] == "timm" and report["depth"] == 2 and report["fits_presets"] == ["nano"]
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x")]) == 2


def test_embed_keeps_good_results_when_one_file_is_bad(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (40 + i, 30), color=(i * 60, 100, 200)).save(images / f"{i}.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    model = create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8}})
    model.save_pretrained(tmp_path / "model")

    output = tmp_path / "emb.safetensors"
    assert main(["embed", str(images), "--model", str(tmp_path / "model"), "--batch-size", "2",
                 "--output", str(output)]) == 0
    index = json.loads(output.with_suffix(".json").read_text())
    assert [p.rsplit("/", 1)[1] for p in index["files"]] == ["0.png", "1.png", "2.png"]
    assert list(index["errors"]) == [str(images / "broken.jpg")]
    embeddings = load_file(output)["embeddings"]
    assert embeddings.shape == (3, 64)

    # Row i is the embedding of file i, preprocessed here independently of the library's reader:
    # PIL decode, bicubic antialiased resize of the short side, centre crop, CLIP normalisation.
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    pixels = torch.from_numpy(np.asarray(Image.open(images / "1.png").convert("RGB"), dtype=np.float32) / 255)
    pixels = pixels.permute(2, 0, 1)[None]  # 1 3 30 41
    resized = F.interpolate(pixels, size=(32, 43), mode="bicubic", antialias=True, align_corners=False)
    crop = resized[..., :, 5:37]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    with torch.no_grad():
        expected = loaded.embed("image", (crop - mean) / std).pooled[0]
    torch.testing.assert_close(embeddings[1], expected, atol=1e-4, rtol=1e-4)


def test_embed_refuses_to_write_over_an_input(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    before = image.read_bytes()
    index = tmp_path / "a.json"
    index.write_text("{}")
    for output in ("a.png", "a.json"):
        assert main(["embed", str(image), "--preset", "nano", "--output", str(tmp_path / output)]) == 2
        assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["embed", str(image), str(index), "--modality", "image", "--preset", "nano",
                 "--output", str(tmp_path / "a.safetensors")]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert image.read_bytes() == before and index.read_text() == "{}"
