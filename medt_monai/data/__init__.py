"""Datalists, datasets, transform chains and the built-in demo set for 2D medical segmentation.

One module per idea: :mod:`~medt_monai.data.images` (image files: extensions, sizes, image/mask pair checks, folder
listing), one per data format (:mod:`~medt_monai.data.folder`: images/masks folders and the MedT layout;
:mod:`~medt_monai.data.glas`; :mod:`~medt_monai.data.monuseg`; :mod:`~medt_monai.data.decathlon`),
:mod:`~medt_monai.data.splits` (seeded and k-fold splits, :func:`dataset_splits` by layout name),
:mod:`~medt_monai.data.cache` (where derived masks go), :mod:`~medt_monai.data.demo`,
:mod:`~medt_monai.data.inference` (the inputs and output names of inference on a folder),
:mod:`~medt_monai.data.slides` (whole-slide images read in blocks at the model's scale),
:mod:`~medt_monai.data.montage` (training windows cut from montages of images on glass) and
:mod:`~medt_monai.data.pipeline` (transform chains and datasets).
"""

from __future__ import annotations

from medt_monai.data.demo import DEMO_SLIDE_MPP, default_data_dir, make_demo_dataset, make_demo_slide
from medt_monai.data.folder import folder_datalist, medt_layout_datalist
from medt_monai.data.glas import GLAS_MPP, glas_datalist
from medt_monai.data.images import IMAGE_EXTENSIONS, INSTANCE_KEY, check_pairs, image_size
from medt_monai.data.inference import ReadableImages, UniqueOutputNames, image_datalist
from medt_monai.data.montage import MontageDataset
from medt_monai.data.monuseg import monuseg_datalist, rasterize_xml, rasterize_xml_instances, read_xml_polygons
from medt_monai.data.pipeline import get_dataset, get_transforms, training_dataset
from medt_monai.data.slides import (
    SLIDE_EXTENSIONS,
    LoadSlideBlockd,
    TissueMask,
    open_slide,
    refine_piece,
    slide_blocks,
    slide_datalist,
    slide_geometry,
    slide_mpp,
    tissue_mask,
    tissue_pieces,
    write_pyramidal_tiff,
)
from medt_monai.data.splits import (
    DATASET_NAMES,
    RECIPE_DEFAULTS,
    dataset_splits,
    recipe_default,
    split_datalist,
)

__all__ = [
    "DATASET_NAMES",
    "GLAS_MPP",
    "RECIPE_DEFAULTS",
    "recipe_default",
    "DEMO_SLIDE_MPP",
    "LoadSlideBlockd",
    "SLIDE_EXTENSIONS",
    "make_demo_slide",
    "open_slide",
    "slide_blocks",
    "slide_geometry",
    "slide_datalist",
    "slide_mpp",
    "TissueMask",
    "refine_piece",
    "tissue_mask",
    "tissue_pieces",
    "write_pyramidal_tiff",
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
    "training_dataset",
    "MontageDataset",
    "glas_datalist",
    "image_datalist",
    "image_size",
    "make_demo_dataset",
    "medt_layout_datalist",
    "monuseg_datalist",
    "rasterize_xml",
    "rasterize_xml_instances",
    "read_xml_polygons",
    "split_datalist",
]
