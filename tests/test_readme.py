"""Runs the README's Python examples, in order, in one namespace, offline, once the published weights
are in the Hugging Face Hub cache (stand-ins fetched from a local HTTP stand-in for the Hub)."""
import dataclasses
import os
import re
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from metatransformer.pretrained import PRETRAINED, file_sha256, get_pretrained, weights_path
from metatransformer.registry import MODALITIES

from tests.conftest import reference_blocks
from tests.local_hub import local_hub  # noqa: F401 (fixture)

README = Path(__file__).resolve().parents[1] / "README.md"


def _populate_cache(hub, tmp_path, monkeypatch):
    """Stand-ins for the Meta-Transformer B16 file and the LAION-2B CLIP ViT-B/16 it takes its stems from,
    downloaded into the cache. The stand-in's bytes cannot have the published sha256, so the B16 entry is
    given the stand-in's for this test (a wrong sha256 being refused is tested in test_pretrained)."""
    served = tmp_path / "served"
    served.mkdir()
    blocks = served / "Meta-Transformer_base_patch16_encoder.pth"
    torch.save(reference_blocks(768, 12, 12).state_dict(), blocks)
    vit = timm.create_model("vit_base_patch16_clip_224", pretrained=False)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, served / "model.safetensors")
    b16, clip = get_pretrained("meta_transformer_b16"), get_pretrained("clip_vit_b16_laion2b")
    hub.add(b16.hf_repo, b16.filename, blocks)
    hub.add(clip.hf_repo, clip.filename, served / "model.safetensors")
    monkeypatch.setitem(PRETRAINED._entries, b16.name, dataclasses.replace(b16, sha256=file_sha256(blocks)))
    weights_path(b16.name), weights_path(clip.name)


def test_readme_python_examples_run(tmp_path, monkeypatch, local_hub):  # noqa: F811
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    _populate_cache(local_hub, tmp_path, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the quick start runs from the cache
    requests = local_hub.requests
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    registered = set(MODALITIES.names())
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:  # the README registers an example modality; leave the registry as it was
        for name in set(MODALITIES.names()) - registered:
            MODALITIES.unregister(name)
    assert local_hub.requests == requests
    assert os.path.isfile("runs/xray-model/model.safetensors")
    assert os.path.isfile("runs/merged-encoder/config.json")
    assert namespace["features"].shape == (2, 197, 768)
    assert namespace["fused"].pooled.shape == (2, 768)
    model = namespace["model"]
    assert model.config.tokenizers["image"].options["pre_norm"]  # the CLIP stem, not a random one


def test_readme_training_commands_are_accepted_by_the_cli(monkeypatch):
    """Every literal `metatransformer` command of the README's training section parses, and each `train`
    command resolves to a valid recipe (flags checked, YAML recipes loaded, options validated)."""
    import shlex

    from metatransformer.cli import build_parser
    from metatransformer.training.commands import config_from_args

    section = README.read_text().split("## Training", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("metatransformer ")]
    assert len(lines) >= 10
    monkeypatch.chdir(README.parent)  # recipes are named relative to the checkout
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        if args.command == "train":
            config = config_from_args(args)
            assert config.run_dir, line
