"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .audio import AUDIOSET_MEAN, AUDIOSET_STD, fbank, fbank_transform, read_audio
from .hyperspectral import (
    HYPERSPECTRAL_SUFFIXES,
    HyperspectralCube,
    HyperspectralPixels,
    read_hyperspectral,
    read_label_map,
)
from .image import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGE_SUFFIXES,
    MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    ImageReadError,
    image_transform,
    read_image,
)
from .imu import imu_windows, read_imu
from .infrared import INFRARED_SUFFIXES, read_infrared
from .registry import ReadError, check_file, read
from .tabular import TableBatch, TableSchema, read_table
from .text import read_document, read_text
from .video import VIDEO_SUFFIXES, VideoClip, read_video, video_collate, video_transform
from .time_series import (ETT_MONTHS, ETT_STEPS_PER_MONTH, ForecastSplits, ForecastWindows, TsData,
                          check_split_ratios, ett_splits, ratio_splits, read_time_series, read_ts)
from .xray import XRAY_SUFFIXES, read_xray
from .graph import GRAPH_SUFFIXES, read_graph
from .point_cloud import POINT_CLOUD_SUFFIXES, read_point_cloud

__all__ = [
    "AUDIOSET_MEAN", "AUDIOSET_STD", "CLIP_MEAN", "CLIP_STD", "ETT_MONTHS", "ETT_STEPS_PER_MONTH", "ForecastSplits",
    "ForecastWindows", "GRAPH_SUFFIXES", "HYPERSPECTRAL_SUFFIXES", "HyperspectralCube", "HyperspectralPixels",
    "IMAGE_SUFFIXES", "INFRARED_SUFFIXES", "ImageReadError", "MAX_ASPECT_RATIO", "MAX_IMAGE_PIXELS",
    "POINT_CLOUD_SUFFIXES", "ReadError", "TableBatch", "TableSchema", "TsData", "VIDEO_SUFFIXES", "VideoClip",
    "XRAY_SUFFIXES", "check_file", "check_split_ratios", "ett_splits", "fbank", "fbank_transform", "image_transform",
    "imu_windows", "ratio_splits", "read", "read_audio", "read_document", "read_graph", "read_hyperspectral",
    "read_image", "read_imu", "read_infrared", "read_label_map", "read_point_cloud", "read_table", "read_text",
    "read_time_series", "read_ts", "read_video", "read_xray", "video_collate", "video_transform",
]
