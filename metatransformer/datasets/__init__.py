"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .hyperspectral import (
    HYPERSPECTRAL_SUFFIXES,
    HyperspectralCube,
    HyperspectralPixels,
    read_hyperspectral,
    read_label_map,
)
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .registry import ReadError, check_file, read
from .video import VIDEO_SUFFIXES, VideoClip, read_video, video_collate, video_transform

__all__ = ["CLIP_MEAN", "CLIP_STD", "HYPERSPECTRAL_SUFFIXES", "HyperspectralCube", "HyperspectralPixels",
           "IMAGE_SUFFIXES", "ImageReadError", "ReadError", "VIDEO_SUFFIXES", "VideoClip", "check_file",
           "image_transform", "read", "read_hyperspectral", "read_image", "read_label_map", "read_video",
           "video_collate", "video_transform"]
