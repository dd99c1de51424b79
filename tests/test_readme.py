"""Runs the README's Python examples, in order, in one namespace (with a Meta-Transformer-format file)."""
import os
import re
from pathlib import Path

import torch

from metatransformer.registry import MODALITIES

from tests.conftest import reference_blocks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    torch.save(reference_blocks(768, 12, 12).state_dict(), tmp_path / "Meta-Transformer_base_patch16_encoder.pth")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    registered = set(MODALITIES.names())
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:  # the README registers an example modality; leave the registry as it was
        for name in set(MODALITIES.names()) - registered:
            MODALITIES.unregister(name)
    assert os.path.isfile("runs/xray-model/model.safetensors")
    assert os.path.isfile("runs/merged-encoder/config.json")
    assert namespace["features"].shape == (2, 197, 768)
    assert namespace["fused"].pooled.shape == (2, 768)
