"""Raw-file readers (file → item, no parameters), one per modality, behind one ``read`` and one ``ReadError``."""
from .image import CLIP_MEAN, CLIP_STD, IMAGE_SUFFIXES, ImageReadError, image_transform, read_image
from .graph import GRAPH_SUFFIXES, read_graph
from .point_cloud import POINT_CLOUD_SUFFIXES, read_point_cloud
from .registry import ReadError, check_file, read

__all__ = ["CLIP_MEAN", "CLIP_STD", "GRAPH_SUFFIXES", "IMAGE_SUFFIXES", "POINT_CLOUD_SUFFIXES", "ImageReadError",
           "ReadError", "check_file", "image_transform", "read", "read_graph", "read_image", "read_point_cloud"]
