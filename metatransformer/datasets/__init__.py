"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .audio import AUDIOSET_MEAN, AUDIOSET_STD, fbank, fbank_transform, read_audio
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .imu import imu_windows, read_imu
from .registry import ReadError, check_file, read
from .time_series import ForecastSplits, ForecastWindows, TsData, ett_splits, read_time_series, read_ts

__all__ = [
    "AUDIOSET_MEAN", "AUDIOSET_STD", "CLIP_MEAN", "CLIP_STD", "ForecastSplits", "ForecastWindows", "IMAGE_SUFFIXES",
    "ImageReadError", "ReadError", "TsData", "check_file", "ett_splits", "fbank", "fbank_transform", "image_transform",
    "imu_windows", "read", "read_audio", "read_image", "read_imu", "read_time_series", "read_ts",
]
