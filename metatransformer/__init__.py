"""metatransformer: one shared transformer for twelve modalities."""
from .encoders import EncoderConfig, SharedEncoder, create_encoder

__version__ = "0.1.0"

__all__ = ["EncoderConfig", "SharedEncoder", "create_encoder", "__version__"]
