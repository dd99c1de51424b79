"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .registry import ReadError, check_file, read
from .text import read_document, read_text

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGE_SUFFIXES", "ImageReadError", "ReadError",
           "check_file", "image_transform", "read", "read_document", "read_image", "read_text"]
