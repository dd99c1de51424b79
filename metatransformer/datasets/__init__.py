"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .registry import ReadError, check_file, read
from .tabular import TableBatch, TableSchema, read_table
from .text import read_document, read_text

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGE_SUFFIXES", "ImageReadError", "ReadError", "TableBatch", "TableSchema",
           "check_file", "image_transform", "read", "read_document", "read_image", "read_table", "read_text"]
