"""The shared encoder, its configs and checkpoint converters."""
from ..serialization import CheckpointError
from .checkpoint import ConvertedCheckpoint, convert_state_dict, load_encoder_weights, read_state_dict
from .config import ENCODER_PRESETS, EncoderConfig, get_encoder_config, list_encoder_presets
from .encoder import SharedEncoder
from .factory import CheckpointSource, convert_checkpoint, create_encoder, read_checkpoint_source, read_encoder_dir, save_encoder

__all__ = [
    "CheckpointError", "CheckpointSource", "ConvertedCheckpoint", "ENCODER_PRESETS", "EncoderConfig", "SharedEncoder",
    "convert_checkpoint", "convert_state_dict", "create_encoder", "get_encoder_config", "list_encoder_presets",
    "load_encoder_weights", "read_checkpoint_source", "read_encoder_dir", "read_state_dict", "save_encoder",
]
