"""Multimodal Pathway cost, measured in one run on the same encoder:

(a) training-step time and training memory of plain fine-tuning vs pathway fine-tuning (trainable
    and frozen auxiliary); (b) inference latency of the merged model vs the plain model; (c) the same
    training step with the original M2PT layer, ``F.linear(x, W + λ·W_aux, b)`` with both weights
    trainable, as the reference implementation.

Training memory is counted exactly, the same way on every device: parameters + gradients + AdamW state
+ tensors saved for backward (storages counted once, parameters not counted again).

    python benchmarks/pathway.py [--preset small] [--batch 8] [--tokens 197] [--repeats 5]
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from _timing import benchmark_parser, interleaved_medians
from metatransformer.encoders import create_encoder
from metatransformer.pathway import (
    DEFAULT_LAYERS,
    merge_pathway,
    pathway_layers,
    pathway_param_groups,
    reparameterize_aux_into_target_model,
)


class M2PTReferenceLinear(nn.Module):
    """The original M2PT layer: both weights trainable, the sum formed in the parameter dtype and saved
    by autograd for the backward pass."""

    def __init__(self, linear: nn.Linear, aux_weight: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.aux_weight = nn.Parameter(aux_weight.detach().clone())
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight + self.scale * self.aux_weight, self.bias)


def m2pt_reference(target: nn.Module, aux: nn.Module) -> nn.Module:
    for target_block, aux_block in zip(target.blocks, aux.blocks):
        for name in DEFAULT_LAYERS:
            reference = M2PTReferenceLinear(target_block.get_submodule(name), aux_block.get_submodule(name).weight)
            target_block.set_submodule(name, reference)
    return target


def training_memory_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, step_inputs: torch.Tensor) -> int:
    """Bytes held during one training step (see the module docstring)."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _step(model, optimizer, step_inputs)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    return params + grads + state + sum(saved.values())


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor) -> None:
    loss = model(inputs).float().square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    args = benchmark_parser(__doc__, preset="small").parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    plain = create_encoder(args.preset).to(device).train()
    aux = create_encoder(args.preset).to(device)
    variants: dict[str, nn.Module] = {"plain": plain}
    for name, trainable in (("pathway_trainable_aux", True), ("pathway_frozen_aux", False)):
        model = copy.deepcopy(plain)
        report = reparameterize_aux_into_target_model(model, aux, trainable_aux=trainable)
        variants[name] = model
    variants["m2pt_reference"] = m2pt_reference(copy.deepcopy(plain), aux)
    optimizers = {
        name: torch.optim.AdamW(pathway_param_groups(model, weight_decay=0.05, aux_weight_decay=0.05), lr=1e-4)
        for name, model in variants.items()
    }
    inputs = torch.randn(args.batch, args.tokens, plain.dim, device=device)

    step_seconds = interleaved_medians(
        {name: (lambda m=model, o=optimizers[name]: _step(m, o, inputs)) for name, model in variants.items()},
        repeats=args.repeats, device=device)
    memory = {name: training_memory_bytes(model, optimizers[name], inputs) for name, model in variants.items()}
    weight_copy = sum(layer.target_weight.numel() * layer.target_weight.element_size()
                      for layer in pathway_layers(variants["pathway_frozen_aux"]).values())

    merged = copy.deepcopy(variants["pathway_trainable_aux"]).eval()
    merge_pathway(merged)
    plain.eval()
    with torch.inference_mode():
        inference = interleaved_medians({"plain": lambda: plain(inputs), "merged": lambda: merged(inputs)},
                                        repeats=args.repeats * 2, device=device)

    print(f"device={device} preset={args.preset} batch={args.batch} tokens={args.tokens} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}")
    print(report)
    print(f"{'training step':<24}{'ms':>10}{'x plain':>10}{'memory MiB':>12}{'overhead (weight copies)':>27}")
    for name in variants:
        overhead = (memory[name] - memory["plain"]) / weight_copy
        print(f"{name:<24}{step_seconds[name] * 1e3:>10.1f}{step_seconds[name] / step_seconds['plain']:>10.3f}"
              f"{memory[name] / 2 ** 20:>12.1f}{overhead:>27.2f}")
    print(f"inference: plain {inference['plain'] * 1e3:.1f} ms, merged {inference['merged'] * 1e3:.1f} ms, "
          f"merged/plain = {inference['merged'] / inference['plain']:.3f}")


if __name__ == "__main__":
    main()
