"""Task heads: classification, multi-label, regression, per-token and forecasting, each with its loss."""
from .forecast import ForecastHead
from .heads import HEADS, ClassificationHead, Head, MultiLabelHead, RegressionHead, TokenHead, create_head
from .pooling import POOL_KINDS, pool_tokens

__all__ = ["HEADS", "POOL_KINDS", "ClassificationHead", "ForecastHead", "Head", "MultiLabelHead", "RegressionHead", "TokenHead",
           "create_head", "pool_tokens"]
