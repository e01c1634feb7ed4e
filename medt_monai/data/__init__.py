"""Datalists, datasets, transform chains and the built-in demo set for 2D medical segmentation."""

from __future__ import annotations

from medt_monai.data.datalists import (
    DATASET_NAMES,
    IMAGE_EXTENSIONS,
    INSTANCE_KEY,
    check_pairs,
    dataset_splits,
    folder_datalist,
    glas_datalist,
    image_size,
    medt_layout_datalist,
    monuseg_datalist,
    split_datalist,
)
from medt_monai.data.demo import default_data_dir, make_demo_dataset
from medt_monai.data.inference import ReadableImages, UniqueOutputNames, image_datalist
from medt_monai.data.monuseg import rasterize_xml, rasterize_xml_instances, read_xml_polygons
from medt_monai.data.pipeline import BUNDLE_DIR, get_dataset, get_transforms, pil_to_rgb_or_gray

__all__ = [
    "BUNDLE_DIR",
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "INSTANCE_KEY",
    "ReadableImages",
    "UniqueOutputNames",
    "check_pairs",
    "dataset_splits",
    "default_data_dir",
    "folder_datalist",
    "get_dataset",
    "get_transforms",
    "glas_datalist",
    "image_datalist",
    "image_size",
    "make_demo_dataset",
    "medt_layout_datalist",
    "monuseg_datalist",
    "pil_to_rgb_or_gray",
    "rasterize_xml",
    "rasterize_xml_instances",
    "read_xml_polygons",
    "split_datalist",
]
