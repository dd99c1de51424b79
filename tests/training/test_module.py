"""The trainer's optimizer: the fused AdamW kernel takes the same steps as torch's reference AdamW loop."""
from __future__ import annotations

import copy

import torch

from metatransformer.training import TrainConfig, build_model
from metatransformer.training.data import LabelEncoder
from metatransformer.training.module import make_optimizer


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, target: torch.Tensor) -> None:
    for _ in range(3):
        loss = model.heads["image"].loss(model("image", images, head="image"), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_fused_adamw_steps_like_the_reference_loop_with_pathway_groups():
    torch.manual_seed(0)
    config = TrainConfig(preset="nano", finetune="full", aux_control="random", aux_lambda_lr=0.05, lr=1e-2,
                         tokenizer_options={"image": {"img_size": 16, "patch_size": 8}})
    model, _ = build_model(config, LabelEncoder("classification", ["a", "b", "c"], 3), ["image"])
    reference = copy.deepcopy(model)
    fused = make_optimizer(model, config)
    assert fused.defaults["fused"]
    loop = torch.optim.AdamW([{**g, "params": [dict(reference.named_parameters())[n] for n, p in model.named_parameters()
                                              if any(p is q for q in g["params"])]} for g in fused.param_groups],
                             foreach=False)
    names = {g["name"]: g for g in fused.param_groups}
    assert names["pathway_scale"]["weight_decay"] == 0 and names["pathway_scale"]["lr"] == 0.05
    images, target = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    _steps(model, fused, images, target)
    _steps(reference, loop, images, target)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
    scale = next(p for n, p in model.named_parameters() if "scales" in n)
    assert scale.abs().max() > 0  # λ moved: the pathway group really is optimised
