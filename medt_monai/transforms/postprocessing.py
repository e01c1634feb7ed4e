"""From the network's logits to the label mask (and, for a network trained for instances, the instance map) at the
image's own size: the one post-processing chain of the bundle's ``evaluate.json`` and ``inference.json`` (so of MONAI
Label too), with the ``--fill_holes`` and ``--object_min_size`` options."""

from __future__ import annotations

from monai.config import KeysCollection
from monai.transforms import Activationsd, AsDiscreted, Compose, FillHolesd, Invertd, InvertibleTransform, Zoomd
from monai.utils import str2bool

from medt_monai.transforms.chains import OUTPUTS
from medt_monai.transforms.dictionary import RemoveSmallComponentsd
from medt_monai.transforms.instances import InstancesFromProbabilitiesd

__all__ = ["mask_postprocessing"]


def mask_postprocessing(
    preprocessing: InvertibleTransform | None,
    fill_holes: bool | str = False,
    min_size: int = 0,
    connectivity: int | None = None,
    keys: KeysCollection = "pred",
    orig_keys: KeysCollection = "image",
    output: str = "semantic",
    instance_key: str = "pred_instances",
    min_seed_size: int = 0,
    zoom: float | None = None,
) -> Compose:
    """Softmax, back to the image's size, argmax, optionally holes filled, small components removed; or, for
    ``output="instances"``, the objects of the three-class probabilities at the image's size
    (:class:`~medt_monai.transforms.InstancesFromProbabilitiesd`: holes filled and small objects removed per object)
    into ``instance_key``, and their foreground as the mask.

    The softmax probabilities (not the logits, not the mask) are inverted through ``preprocessing`` with bilinear
    interpolation, so the mask's outlines are drawn at the image's own resolution.

    Args:
        preprocessing: the chain that brought ``orig_keys`` to the network (its resize or zoom is undone); None keeps
            the outputs at the network's scale (the blocks of a slide, placed by their writer).
        fill_holes: fill background enclosed by a predicted object (MONAI's ``FillHolesd``, background joined through
            edge neighbours only); GlaS glands are annotated solid, lumen included. A command-line string such as
            ``"true"`` is read with :func:`monai.utils.str2bool`.
        min_size: foreground components with fewer pixels become background (:class:`RemoveSmallComponentsd`,
            after the holes are filled); 0 keeps every component.
        connectivity: the components' connectivity, 1 (edge neighbours) or 2 / None (all 8 neighbours).
        keys: the prediction keys, ``(C, H, W)`` logits in, ``(1, H0, W0)`` class indices out.
        orig_keys: the keys ``preprocessing`` transformed, whose recorded operations are inverted.
        output: ``"semantic"`` or ``"instances"`` (see :data:`medt_monai.transforms.OUTPUTS`).
        instance_key: ``"instances"``: where the ``(1, H0, W0)`` int32 instance map is written.
        min_seed_size: ``"instances"``: seeds of fewer pixels are dropped before the watershed.
        zoom: with ``preprocessing`` None, the probabilities are zoomed by this factor (bilinear) before the objects
            are found: a slide's blocks are taken to the resolution of the tiles the tile workflow finds its objects
            at, so that both draw the same outlines and ``min_size`` means the same. For ``"instances"`` the objects
            step zooms one channel at a time (see :class:`~medt_monai.transforms.InstancesFromProbabilities`).

    Raises:
        ValueError: an unknown ``output``; both ``preprocessing`` and a ``zoom`` other than 1.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}.")
    zoom = None if zoom is None or float(zoom) == 1.0 else float(zoom)
    if zoom is not None and preprocessing is not None:
        raise ValueError("zoom is for outputs kept at the network's scale (preprocessing None), not both.")
    transforms = [Activationsd(keys, softmax=True)]
    if zoom is not None and output != "instances":  # the objects step zooms one channel at a time itself
        transforms.append(Zoomd(keys, zoom=zoom, mode="bilinear", keep_size=False))
    if preprocessing is not None:
        transforms.append(
            Invertd(keys, transform=preprocessing, orig_keys=orig_keys, nearest_interp=False, to_tensor=True)
        )
    if output == "instances":
        objects = InstancesFromProbabilitiesd(keys, instance_key, min_size, min_seed_size, str2bool(fill_holes), zoom)
        return Compose(transforms + [objects])
    transforms.append(AsDiscreted(keys, argmax=True))
    if str2bool(fill_holes):
        transforms.append(FillHolesd(keys, connectivity=1))
    transforms.append(RemoveSmallComponentsd(keys, min_size=min_size, connectivity=connectivity))
    return Compose(transforms)
