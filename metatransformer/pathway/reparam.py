"""Cross-Modal Re-parameterization: pair the target's blocks with an auxiliary model's and wrap their linears."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence, Union

import torch
import torch.nn as nn

from ..encoders.config import EncoderConfig, PathwayConfig, ScaleGranularity
from .layer import PathwayLinear, scale_groups

_logger = logging.getLogger(__name__)

DEFAULT_LAYERS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
# target layer name -> aux layer name, or several aux names whose weights are stacked along the output
# rows (separate q, k, v projections into a fused qkv).
LayerMap = Union[Sequence[str], Mapping[str, Union[str, Sequence[str]]]]
BlockMap = Union[None, Literal["stretch"], Mapping[int, int]]


class PathwayPairingError(ValueError):
    """The target and auxiliary models cannot be paired as asked (depth, width, head count, layers)."""


@dataclass
class PathwayReport:
    """What :func:`reparameterize_aux_into_target_model` did.

    Attributes:
        block_pairs: (target block index, auxiliary block index) per auxiliary model.
        layers: number of re-parameterized linear layers.
        aux_parameters: auxiliary weight elements added (all auxiliaries).
        scale_parameters: λ values added.
        trainable_parameters_added: parameters added that receive gradients.
        memory_bytes_added: storage of the added parameters (gradients and optimizer state not included).
        target_parameters: parameters of the target before re-parameterization.
    """

    block_pairs: list[list[tuple[int, int]]] = field(default_factory=list)
    layers: int = 0
    aux_parameters: int = 0
    scale_parameters: int = 0
    trainable_parameters_added: int = 0
    memory_bytes_added: int = 0
    target_parameters: int = 0

    def __str__(self) -> str:
        pairs = "; ".join(", ".join(f"{t}<-{a}" for t, a in pairs) for pairs in self.block_pairs)
        return (f"Multimodal Pathway: {self.layers} layers re-parameterized with {len(self.block_pairs)} auxiliary "
                f"model(s), blocks (target<-aux) {pairs}; +{self.aux_parameters:,} aux weights "
                f"({self.aux_parameters / max(self.target_parameters, 1):.2f}x the target's parameters), "
                f"+{self.scale_parameters:,} scales, +{self.trainable_parameters_added:,} trainable, "
                f"+{self.memory_bytes_added / 2 ** 20:.1f} MiB")


def find_block_stack(model: nn.Module, layer_name: str) -> tuple[str, list[nn.Module]]:
    """The one ModuleList/Sequential in ``model`` whose children all contain ``layer_name`` as a linear layer.

    Works for our SharedEncoder (``blocks``), timm ViTs (``blocks``), Meta-Transformer's ``nn.Sequential``
    (the model itself), a MetaTransformer model (``encoder.blocks``), HF BERT (``encoder.layer``).
    """
    stacks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 0:
            if all(isinstance(_get(child, layer_name), (nn.Linear, PathwayLinear)) for child in module):
                stacks.append((name, list(module)))
    if len(stacks) != 1:
        found = [n or "<model>" for n, _ in stacks]
        raise PathwayPairingError(
            f"expected exactly one stack of blocks containing a linear {layer_name!r} in "
            f"{type(model).__name__}, found {len(stacks)}: {found}")
    return stacks[0]


def _get(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def pair_blocks(target_depth: int, aux_depth: int, block_map: BlockMap) -> list[tuple[int, int]]:
    """Target block index -> auxiliary block index, explicit about any depth mismatch.

    Args:
        block_map: None (depths must be equal), ``"stretch"`` (aux block floor(i·Da/Dt), keeping the
            low-to-high order), or an explicit {target index: aux index} (unlisted target blocks are left alone).
    """
    if block_map is None:
        if target_depth != aux_depth:
            raise PathwayPairingError(
                f"the target has {target_depth} blocks and the auxiliary {aux_depth}: pass block_map='stretch' "
                "(keeps low-to-high order) or an explicit {target_block: aux_block} mapping")
        return [(i, i) for i in range(target_depth)]
    if block_map == "stretch":
        return [(i, i * aux_depth // target_depth) for i in range(target_depth)]
    if isinstance(block_map, Mapping):
        pairs = sorted((int(t), int(a)) for t, a in block_map.items())
        bad = [(t, a) for t, a in pairs if not (0 <= t < target_depth and 0 <= a < aux_depth)]
        if bad:
            raise PathwayPairingError(f"block_map pairs {bad} are out of range (target {target_depth} blocks, "
                                      f"aux {aux_depth} blocks)")
        return pairs
    raise PathwayPairingError(f"block_map must be None, 'stretch' or a dict, got {block_map!r}")


def _layer_map(layer_names: LayerMap) -> dict[str, tuple[str, ...]]:
    if isinstance(layer_names, str):
        layer_names = (layer_names,)
    if isinstance(layer_names, Mapping):
        return {t: (a,) if isinstance(a, str) else tuple(a) for t, a in layer_names.items()}
    return {name: (name,) for name in layer_names}


def _aux_weight(block: nn.Module, names: tuple[str, ...], where: str) -> torch.Tensor:
    weights = []
    for name in names:
        layer = _get(block, name)
        if not isinstance(layer, nn.Linear):
            raise PathwayPairingError(f"{where}: the auxiliary block has no linear layer {name!r}")
        weights.append(layer.weight.detach())
    return torch.cat(weights) if len(weights) > 1 else weights[0]


def _head_count(block: nn.Module) -> int | None:
    for path in ("attn", "attention.self", "self_attn"):
        module = _get(block, path)
        for attr in ("num_heads", "num_attention_heads"):
            if module is not None and isinstance(getattr(module, attr, None), int):
                return getattr(module, attr)
    return None


def _random_like(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian weights with the same shape, mean and std as ``weight``: the 'random auxiliary' control."""
    noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
    return (noise * weight.float().std() + weight.float().mean()).to(weight.dtype)


def reparameterize_aux_into_target_model(
        target: nn.Module,
        aux: nn.Module | Sequence[nn.Module] | None = None,
        layer_names: LayerMap = DEFAULT_LAYERS,
        *,
        block_map: BlockMap = None,
        control: Literal["random", "shuffled"] | None = None,
        seed: int = 0,
        scale_granularity: ScaleGranularity = "layer",
        scale_init: float = 0.0,
        learnable_scale: bool = True,
        trainable_aux: bool = True,
        aux_dtype: torch.dtype | None = None,
) -> PathwayReport:
    """Re-parameterize ``target``'s linear layers with an auxiliary transformer's: W ← W + λ·W_aux.

    The same name and first arguments as M2PT's function. The target is changed in place: each chosen
    ``nn.Linear`` of each paired block becomes a :class:`PathwayLinear`; the auxiliary weights are copied
    onto the target's device, never shared with ``aux``.

    Args:
        target: our SharedEncoder or MetaTransformer model, a timm ViT, or any model with one stack of blocks.
        aux: the auxiliary model, or several (W + Σ_k λ_k·W_aux,k). None only with ``control="random"``,
            which then draws weights at the target's per-layer scale.
        layer_names: linear layers inside a block, or {target name: aux name(s)}, e.g.
            ``{"attn.qkv": ("attention.self.query", "attention.self.key", "attention.self.value")}``.
        block_map: depth pairing, see :func:`pair_blocks`. A depth mismatch raises unless given.
        control: ``"random"`` replaces each auxiliary weight with Gaussian weights of the same shape,
            mean and std; ``"shuffled"`` pairs the target's blocks with a random permutation of the
            auxiliary's. Both are the honest baselines the paper lacks.
        seed: seed for the controls.
        scale_granularity: one λ per layer, per q/k/v slice (``"qkv"``, for layers with 3·d outputs), or
            per output channel.
        scale_init: initial λ; fixed if ``learnable_scale`` is False.
        trainable_aux: train the auxiliary weights (the paper) or freeze them.
        aux_dtype: storage dtype for the auxiliary copies (e.g. torch.bfloat16 when frozen).

    Returns:
        a :class:`PathwayReport` (also logged).

    Raises:
        PathwayPairingError: depth, width or head-count mismatch, missing layers, or ambiguous block stacks.
    """
    layer_map = _layer_map(layer_names)
    first_target_layer = next(iter(layer_map))
    stack_name, target_blocks = find_block_stack(target, first_target_layer)
    if aux is None:
        if control != "random":
            raise PathwayPairingError("aux=None is only meaningful with control='random'")
        aux_models: list[nn.Module | None] = [None]
    else:
        aux_models = list(aux) if isinstance(aux, (list, tuple)) else [aux]
    generator = torch.Generator().manual_seed(seed)

    aux_block_lists: list[list[nn.Module]] = []
    report = PathwayReport(target_parameters=sum(p.numel() for p in target.parameters()))
    for aux_model in aux_models:
        if aux_model is None:
            aux_blocks = target_blocks  # only shapes and scales are taken from them
            layer_map = {t: (t,) for t in layer_map}
        else:
            _, aux_blocks = find_block_stack(aux_model, next(iter(layer_map.values()))[0])
        pairs = pair_blocks(len(target_blocks), len(aux_blocks), block_map)
        if control == "shuffled":
            permutation = torch.randperm(len(aux_blocks), generator=generator).tolist()
            pairs = [(t, permutation[a]) for t, a in pairs]
        report.block_pairs.append(pairs)
        aux_block_lists.append(aux_blocks)

    wrapped: dict[tuple[int, str], tuple[nn.Linear, list[torch.Tensor]]] = {}
    for pairs, aux_blocks in zip(report.block_pairs, aux_block_lists):
        for target_index, aux_block_index in pairs:
            target_block, aux_block = target_blocks[target_index], aux_blocks[aux_block_index]
            where = f"target block {target_index} / aux block {aux_block_index}"
            heads = _head_count(target_block), _head_count(aux_block)
            if None not in heads and heads[0] != heads[1]:
                raise PathwayPairingError(f"{where}: head counts differ (target {heads[0]}, aux {heads[1]}); "
                                          "equal shapes would pair unrelated head subspaces")
            for target_name, aux_names in layer_map.items():
                layer = _get(target_block, target_name)
                if isinstance(layer, PathwayLinear):
                    raise PathwayPairingError(f"{where}: {target_name!r} is already re-parameterized; merge first")
                if not isinstance(layer, nn.Linear):
                    raise PathwayPairingError(f"{where}: the target block has no linear layer {target_name!r}")
                weight = _aux_weight(aux_block, aux_names, where)
                if weight.shape != layer.weight.shape:
                    raise PathwayPairingError(f"{where}, layer {target_name!r}: target weight {tuple(layer.weight.shape)} "
                                              f"vs auxiliary {tuple(weight.shape)} (different width)")
                if control == "random":
                    weight = _random_like(weight, generator)
                wrapped.setdefault((target_index, target_name), (layer, []))[1].append(weight)

    for (target_index, target_name), (layer, weights) in wrapped.items():
        pathway = PathwayLinear(layer, weights, scale_groups=scale_groups(scale_granularity, target_name, layer.out_features),
                                scale_init=scale_init, learnable_scale=learnable_scale,
                                trainable_aux=trainable_aux, aux_dtype=aux_dtype)
        target_blocks[target_index].set_submodule(target_name, pathway)
        report.layers += 1
        report.aux_parameters += sum(p.numel() for p in pathway.aux_weights)
        report.scale_parameters += sum(p.numel() for p in pathway.scales)
        added = [*pathway.aux_weights, *pathway.scales]
        report.trainable_parameters_added += sum(p.numel() for p in added if p.requires_grad)
        report.memory_bytes_added += sum(p.numel() * p.element_size() for p in added)
    encoder = _encoder_owning(target, stack_name)
    if encoder is not None:  # record the structure so save_pretrained / from_pretrained round-trip it
        encoder.config = dataclasses.replace(encoder.config, pathway=PathwayConfig(
            layers=tuple((i, name, len(weights)) for (i, name), (_, weights) in sorted(wrapped.items())),
            scale_granularity=scale_granularity, learnable_scale=learnable_scale, trainable_aux=trainable_aux,
            aux_dtype=str(aux_dtype).removeprefix("torch.") if aux_dtype is not None else None))
    _logger.info("%s", report)
    return report


def _encoder_owning(model: nn.Module, stack_name: str) -> nn.Module | None:
    """The module with an :class:`EncoderConfig` whose ``blocks`` is the stack (our SharedEncoder), if any."""
    owner = model.get_submodule(stack_name.rpartition(".")[0]) if "." in stack_name else model
    return owner if isinstance(getattr(owner, "config", None), EncoderConfig) else None


def pathway_layers(model: nn.Module) -> dict[str, PathwayLinear]:
    """Every re-parameterized layer of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PathwayLinear)}
