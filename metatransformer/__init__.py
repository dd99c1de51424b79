"""metatransformer: one shared transformer for twelve modalities."""
from ._version import __version__
from .data2seq import Data2Seq, TokenSequence, create_tokenizer, list_modalities
from .datasets import ReadError, read
from .encoders import EncoderConfig, SharedEncoder, create_encoder
from .model import Embedding, MetaTransformer, create_model
from .pretrained import get_pretrained, list_pretrained
from .registry import register_modality

__all__ = [
    "Data2Seq", "Embedding", "EncoderConfig", "MetaTransformer", "ReadError", "SharedEncoder", "TokenSequence",
    "__version__", "create_encoder", "create_model", "create_tokenizer", "get_pretrained", "list_modalities",
    "list_pretrained", "read", "register_modality",
]
