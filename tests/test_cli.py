import json

import torch
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

    # Row i is the embedding of file i, as the library computes it.
    from metatransformer.embed import image_reader
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    reader = image_reader(loaded.tokenizer("image"))
    with torch.no_grad():
        expected = loaded.embed("image", reader(images / "1.png")[None]).pooled[0]
    torch.testing.assert_close(embeddings[1], expected, atol=1e-5, rtol=1e-5)
