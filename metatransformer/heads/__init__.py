"""Task heads: classification, multi-label, regression, per-token, forecasting and point segmentation, each with
its loss."""
from .forecast import ForecastHead
from .heads import HEADS, ClassificationHead, Head, MultiLabelHead, RegressionHead, TokenHead, create_head
from .pooling import POOL_KINDS, pool_tokens
from .segmentation import IGNORE_INDEX, PointSegmentationHead

__all__ = ["HEADS", "IGNORE_INDEX", "POOL_KINDS", "ClassificationHead", "ForecastHead", "Head", "MultiLabelHead",
           "PointSegmentationHead", "RegressionHead", "TokenHead", "create_head", "pool_tokens"]
