"""Task heads: classification, multi-label, regression and per-token, each with its loss."""
from .heads import HEADS, ClassificationHead, Head, MultiLabelHead, RegressionHead, TokenHead, create_head
from .pooling import POOL_KINDS, pool_tokens

__all__ = ["HEADS", "POOL_KINDS", "ClassificationHead", "Head", "MultiLabelHead", "RegressionHead", "TokenHead",
           "create_head", "pool_tokens"]
