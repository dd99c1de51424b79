"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
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
from .infrared import INFRARED_SUFFIXES, read_infrared
from .registry import ReadError, check_file, read
from .tabular import TableBatch, TableSchema, read_table
from .text import read_document, read_text
from .xray import XRAY_SUFFIXES, read_xray

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGE_SUFFIXES", "INFRARED_SUFFIXES", "ImageReadError", "MAX_ASPECT_RATIO",
           "MAX_IMAGE_PIXELS", "ReadError", "TableBatch", "TableSchema", "XRAY_SUFFIXES", "check_file",
           "image_transform", "read", "read_document", "read_image", "read_infrared", "read_table", "read_text",
           "read_xray"]
