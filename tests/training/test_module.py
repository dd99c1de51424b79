"""The trainer's optimizer: the fused AdamW kernel takes the same steps as torch's reference AdamW loop."""
from __future__ import annotations

import copy

import pytest
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



def test_fp16_with_gradient_clipping_steps_unfused(tmp_path):
    """Lightning's mixed-precision plugin unscales gradients before clipping, which a fused AdamW step cannot
    allow (on CPU 16-mixed runs as bf16-mixed)."""
    from metatransformer.training import train
    from metatransformer.training.data import records_from_tensors

    options = {"preset": "nano", "finetune": "full", "epochs": 1, "batch_size": 4, "scheduler": "none",
               "tokenizer_options": {"image": {"img_size": 16, "patch_size": 8}}, "logger": "csv"}
    assert not make_optimizer(torch.nn.Linear(2, 2), TrainConfig(precision="16-mixed", grad_clip=1.0)).defaults["fused"]
    assert not make_optimizer(torch.nn.Linear(2, 2), TrainConfig(precision="bf16", grad_clip=1.0)).defaults["fused"]
    assert make_optimizer(torch.nn.Linear(2, 2), TrainConfig(precision="bf16-true", grad_clip=1.0)).defaults["fused"]
    records = records_from_tensors(torch.rand(8, 3, 16, 16), [0, 1] * 4, modality="image", split="train")
    for precision in ("16-mixed", "bf16-mixed"):
        result = train({**options, "precision": precision, "grad_clip": 1.0, "run_dir": str(tmp_path / precision)},
                       records=records)
        assert result.info["global_step"] == 2
    # clipping asked of the Trainer directly: the optimizer follows the trainer, not the recipe
    result = train({**options, "precision": "bf16-mixed", "run_dir": str(tmp_path / "trainer")}, records=records,
                   trainer_options={"gradient_clip_val": 1.0})
    assert result.info["global_step"] == 2


def test_too_few_samples_for_one_whole_batch_are_refused(tmp_path):
    from metatransformer.training import train
    from metatransformer.training.data import records_from_tensors

    records = records_from_tensors(torch.rand(2, 3, 16, 16), [0, 1], modality="image", split="train")
    with pytest.raises(ValueError, match="'image' has 2 samples: fewer than one whole batch of --batch-size 4"):
        train({"preset": "nano", "mixup": 0.8, "batch_size": 4, "tokenizer_options": {"image": {"img_size": 16}},
               "run_dir": str(tmp_path / "run")}, records=records)
