"""Raw-file readers (no parameters) and datasets, per modality."""
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGE_SUFFIXES", "ImageReadError", "image_transform", "read_image"]
