"""The shared encoder, its configs and checkpoint converters."""
from .checkpoint import (
    CheckpointError,
    ConvertedCheckpoint,
    convert_checkpoint,
    convert_state_dict,
    load_encoder_weights,
    read_state_dict,
    save_encoder,
)
from .config import ENCODER_PRESETS, EncoderConfig, get_encoder_config, list_encoder_presets
from .encoder import SharedEncoder, create_encoder

__all__ = [
    "CheckpointError", "ConvertedCheckpoint", "ENCODER_PRESETS", "EncoderConfig", "SharedEncoder",
    "convert_checkpoint", "convert_state_dict", "create_encoder", "get_encoder_config", "list_encoder_presets",
    "load_encoder_weights", "read_state_dict", "save_encoder",
]
