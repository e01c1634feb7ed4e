"""Array transforms MONAI lacks for 2D histology / ultrasound segmentation data."""

from __future__ import annotations

from typing import Any

import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import ScaleIntensityRange, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

from medt_monai.utils.objects import label_objects, min_object_size

__all__ = ["ToChannels", "MaskToLabel", "ScaleIntensityFullRange", "RemoveSmallComponents", "source_name"]

#: ITU-R BT.601 luma weights, the ones PIL uses for ``convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def source_name(img: Any, default: str = "<array>") -> str:
    """Return the file an image came from (MetaTensor meta ``filename_or_obj``) for error messages."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return default


def pil_to_rgb_or_gray(img):  # type: ignore[no-untyped-def]
    """PIL converter for images: palette ("P") and CMYK/YCbCr to RGB(A), 1-bit to L; others unchanged.

    Pass as ``PILReader(converter=pil_to_rgb_or_gray)`` so palette images are read as colours
    (MONAI's PILReader would otherwise return palette indices). Not for masks: palette masks
    should stay indices.
    """
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


def _range_max(x: torch.Tensor) -> float:
    """Return the nominal full-scale value of ``x``: 1, 255, 65535, or its own max beyond that."""
    m = float(x.max()) if x.numel() else 0.0
    for full_scale in (1.0, 255.0, 65535.0):
        if m <= full_scale:
            return full_scale
    return m


#: full-scale value of the integer types whose range is known from the type alone.
_TYPE_FULL_SCALES = {torch.bool: 1.0, torch.uint8: 255.0, torch.int8: 127.0, torch.int16: 32767.0}
#: integer types that hold 16-bit data (MONAI converts uint16 arrays to int32 tensors).
_WIDE_INTEGER_TYPES = tuple(
    t
    for t in (torch.int32, torch.int64, getattr(torch, "uint16", None), getattr(torch, "uint32", None))
    if t is not None
)


class ScaleIntensityFullRange(Transform):
    """Scale an image from the full range of its stored type to [0, 1] (float32, clipped).

    Integer images are divided by the largest value of their type: 8-bit (``uint8``) by 255, 16-bit by 65535, ``int16``
    by 32767, ``bool`` by 1. MONAI holds ``uint16`` data (16-bit PNG / TIFF) as ``int32`` tensors, so ``int32`` and
    ``int64`` images count as 16-bit; their values must then fit in 16 bits. Floating-point images have no nominal
    range: they are divided by ``float_max``. The division is MONAI's
    :class:`~monai.transforms.ScaleIntensityRange` (``a_min=0, a_max=<full scale>, b_min=0, b_max=1, clip=True``), so
    an 8-bit image gives exactly the values of ``ScaleIntensityRange(0, 255, 0, 1, clip=True)``.

    Load images with ``LoadImage(dtype=None)`` so the stored type reaches this transform (by default ``LoadImage``
    converts every image to ``float32``, which would make it a floating-point image here).

    Args:
        float_max: full-scale value of floating-point images. Defaults to 255 (8-bit values stored as floats).

    Raises:
        ValueError: ``float_max`` is not positive; an ``int32``/``int64`` image has values above 65535 (the message
            names the source file).
    """

    def __init__(self, float_max: float = 255.0) -> None:
        if not float_max > 0:
            raise ValueError(f"ScaleIntensityFullRange: float_max must be positive, got {float_max}.")
        self.float_max = float(float_max)

    def full_scale(self, img: torch.Tensor) -> float:
        """Return the value that maps to 1 for ``img``: the full scale of its type, or ``float_max`` for floats."""
        if img.is_floating_point():
            return self.float_max
        if img.dtype in _TYPE_FULL_SCALES:
            return _TYPE_FULL_SCALES[img.dtype]
        if img.dtype in _WIDE_INTEGER_TYPES:
            top = int(img.max()) if img.numel() else 0
            if top > 65535:
                raise ValueError(
                    f"{source_name(img)}: integer image with values up to {top}, more than 16 bits, so its full range "
                    "is unknown; store it as 8- or 16-bit, or as floats (scaled by float_max)."
                )
            return 65535.0
        raise ValueError(f"{source_name(img)}: cannot scale an image of type {img.dtype}.")

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        x = convert_to_tensor(img, track_meta=get_track_meta())
        scale = ScaleIntensityRange(a_min=0.0, a_max=self.full_scale(x), b_min=0.0, b_max=1.0, clip=True)
        return scale(x.float())


class ToChannels(Transform):
    """Convert a channel-first 2D image to a float tensor with exactly ``channels`` channels.

    Accepted inputs (any dtype, 8- or 16-bit included; intensities are not rescaled, use
    :class:`ScaleIntensityFullRange` before it for that): 1 channel (gray), 2 (gray + alpha), 3 (RGB), 4 (RGBA).
    Alpha is dropped; gray is repeated to 3 channels when ``channels == 3``; RGB becomes luma
    (BT.601, as PIL's ``convert("L")``) when ``channels == 1``.

    Args:
        channels: number of output channels, 1 or 3.

    Raises:
        ValueError: ``channels`` is not 1 or 3, or the input is not channel-first 2D with 1-4
            channels (the message names the source file).
    """

    def __init__(self, channels: int) -> None:
        if channels not in (1, 3):
            raise ValueError(f"ToChannels: channels must be 1 or 3, got {channels}.")
        self.channels = channels

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        name = source_name(img)
        x = convert_to_tensor(img, track_meta=True)
        if x.ndim != 3:
            raise ValueError(
                f"{name}: expected a channel-first 2D image (C, H, W), got shape {tuple(x.shape)}; "
                "use EnsureChannelFirstd before ToChannelsd."
            )
        c = x.shape[0]
        if c not in (1, 2, 3, 4):
            raise ValueError(
                f"{name}: image has {c} channels; supported are 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA)."
            )
        x = x.float()
        if c in (2, 4):  # drop alpha
            x = x[: c - 1]
        if x.shape[0] == self.channels:
            return x
        if self.channels == 3:  # gray -> RGB
            return x.repeat(3, 1, 1)
        w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(dim=0, keepdim=True)


class MaskToLabel(Transform):
    """Convert a segmentation mask to a one-channel label map.

    With ``binary=True`` the result is {0, 1}: colour (RGB/RGBA/gray+alpha) masks are first
    collapsed to one channel (maximum over colour channels, alpha dropped), then thresholded at
    ``threshold`` times the mask's full-scale value (1 when the data max is <= 1, 255 when <= 255,
    65535 when <= 65535), so 0/1 masks, 0/255 masks and JPEG-noisy 0/255 masks all map to {0, 1}.
    ``threshold=None`` maps every non-zero value to 1 (use it for instance label maps such as
    GlaS ``*_anno.bmp``, whose ids 1..N are small). With ``binary=False`` an integer label map
    (1 channel, e.g. palette indices) is kept as is (rounded).

    Args:
        threshold: fraction of the full-scale value above which a pixel is foreground, in
            (0, 1); None for "non-zero is foreground".
        binary: map to {0, 1} (True) or keep integer class ids (False).
        dtype: output dtype (values are integers either way); float32 composes with MONAI's
            spatial transforms and losses without conversions.

    Raises:
        ValueError: bad ``threshold``; the mask is not channel-first 2D; ``binary=False`` with a
            multi-channel mask whose channels differ (the message names the source file).
    """

    def __init__(self, threshold: float | None = 0.5, binary: bool = True, dtype: torch.dtype = torch.float32) -> None:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"MaskToLabel: threshold must be in (0, 1) or None, got {threshold}.")
        self.threshold = threshold
        self.binary = binary
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        name = source_name(img)
        x = convert_to_tensor(img, track_meta=True)
        if x.ndim != 3:
            raise ValueError(
                f"{name}: expected a channel-first 2D mask (C, H, W), got shape {tuple(x.shape)}; "
                "use EnsureChannelFirstd before MaskToLabeld."
            )
        c = x.shape[0]
        if c > 4:
            raise ValueError(f"{name}: mask has {c} channels; supported are 1, 2 (with alpha), 3 (RGB), 4 (RGBA).")
        x = x.float()
        if c in (2, 4):
            x = x[: c - 1]
        if x.shape[0] > 1:
            if not self.binary and not bool((x == x[:1]).all()):
                raise ValueError(
                    f"{name}: binary=False needs a one-channel integer label map (or palette indices), "
                    f"got a {x.shape[0]}-channel colour mask; convert its colours to class ids first."
                )
            x = x.amax(dim=0, keepdim=True)
        if not self.binary:
            out = torch.round(x)
        elif self.threshold is None:
            out = (x > 0).float()
        else:
            out = (x > self.threshold * _range_max(x.as_tensor() if isinstance(x, MetaTensor) else x)).float()
        return out.to(self.dtype)


class RemoveSmallComponents(Transform):
    """Set the foreground components of a label map with fewer than ``min_size`` pixels to background.

    All foreground classes together form the components (as the object metrics count them), and each remaining pixel
    keeps its class. The components and the size rule are those of :func:`medt_monai.metrics.label_objects` with the
    same ``connectivity``, so a mask cleaned with ``min_size=N`` scores like the object metrics' ``min_size=N``.
    (MONAI's ``RemoveSmallObjects`` passes scikit-image's deprecated ``min_size``, which from scikit-image 0.26 also
    removes components of exactly that size, and it takes no default connectivity.)

    Args:
        min_size: components with fewer pixels than this are removed; 0 or 1 keeps every component.
        connectivity: 1 joins a pixel's 4 edge neighbours, 2 or None (default) all 8.

    Raises:
        ValueError: ``min_size`` not an integer >= 0 or ``connectivity`` not None, 1 or 2 (at construction); an input
            that is not a one-channel 2D label map ``(1, H, W)`` (the message names the source file).
    """

    def __init__(self, min_size: int, connectivity: int | None = None) -> None:
        self.min_size = min_object_size(min_size)
        if connectivity not in (None, 1, 2):
            raise ValueError(f"RemoveSmallComponents: connectivity must be None, 1 or 2, got {connectivity!r}.")
        self.connectivity = connectivity

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim != 3 or img.shape[0] != 1:
            raise ValueError(
                f"{source_name(img)}: expected a one-channel 2D label map (1, H, W), got shape {tuple(img.shape)}; "
                "remove small components after AsDiscreted(argmax=True) and before any one-hot."
            )
        if self.min_size <= 1:
            return img
        kept = label_objects(img[0], self.connectivity, self.min_size)[None] > 0
        return img * convert_to_dst_type(kept, img, dtype=img.dtype)[0]
