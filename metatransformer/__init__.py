"""metatransformer: one shared transformer for twelve modalities."""
__version__ = "0.1.0"

from .data2seq import Data2Seq, TokenSequence, create_tokenizer, list_modalities, register_tokenizer  # noqa: E402
from .encoders import EncoderConfig, SharedEncoder, create_encoder  # noqa: E402
from .model import Embedding, MetaTransformer, create_model  # noqa: E402

__all__ = [
    "Data2Seq", "Embedding", "EncoderConfig", "MetaTransformer", "SharedEncoder", "TokenSequence", "__version__",
    "create_encoder", "create_model", "create_tokenizer", "list_modalities", "register_tokenizer",
]
