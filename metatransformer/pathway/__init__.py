"""Multimodal Pathway (M2PT): cross-modal re-parameterization, merge and export."""
from .layer import PathwayLinear, effective_weight
from .merge import check_merge, export_merged, merge_pathway, merged_state_dict
from .optim import pathway_param_groups
from .reparam import (
    DEFAULT_LAYERS,
    PathwayPairingError,
    PathwayReport,
    find_block_stack,
    pair_blocks,
    pathway_layers,
    reparameterize_aux_into_target_model,
)

__all__ = [
    "DEFAULT_LAYERS", "PathwayLinear", "PathwayPairingError", "PathwayReport", "check_merge", "effective_weight",
    "export_merged", "find_block_stack", "merge_pathway", "merged_state_dict", "pair_blocks", "pathway_layers",
    "pathway_param_groups", "reparameterize_aux_into_target_model",
]
