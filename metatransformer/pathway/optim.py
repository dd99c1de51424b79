"""Optimizer parameter groups for pathway training: λ never decays, the auxiliary decay is explicit."""
from __future__ import annotations

import torch.nn as nn

from .reparam import pathway_layers


def pathway_param_groups(
        model: nn.Module,
        *,
        weight_decay: float,
        aux_weight_decay: float,
        scale_lr: float | None = None,
) -> list[dict]:
    """Parameter groups for ``torch.optim`` (AdamW...) of a model with pathway layers.

    Groups (empty ones are left out), trainable parameters only:
        ``decay``: weights with 2+ dimensions, ``weight_decay``.
        ``no_decay``: biases, norms, embeddings' 1-D parameters, 0.
        ``pathway_scale``: every λ, always 0 decay (decay would pull λ to 0, i.e. switch the pathway off),
            learning rate ``scale_lr`` if given.
        ``pathway_aux``: trainable auxiliary weights, ``aux_weight_decay``.
    """
    scale_ids, aux_ids = set(), set()
    for layer in pathway_layers(model).values():
        scale_ids.update(id(p) for p in layer.scales)
        aux_ids.update(id(p) for p in layer.aux_weights)
    groups: dict[str, dict] = {
        "decay": {"params": [], "weight_decay": weight_decay},
        "no_decay": {"params": [], "weight_decay": 0.0},
        "pathway_scale": {"params": [], "weight_decay": 0.0, **({"lr": scale_lr} if scale_lr is not None else {})},
        "pathway_aux": {"params": [], "weight_decay": aux_weight_decay},
    }
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in scale_ids:
            name = "pathway_scale"
        elif id(param) in aux_ids:
            name = "pathway_aux"
        else:
            name = "decay" if param.dim() >= 2 else "no_decay"
        groups[name]["params"].append(param)
    return [{"name": name, **group} for name, group in groups.items() if group["params"]]
