"""Training windows cut from montages of the training images, as a slide's sliding windows are cut.

A network trained on random crops of one zoomed image at a time sees, past the image's edge, its reflection; on a
slide the same window holds glass and the neighbouring tissue, so the same gland comes out differently in a tile and
on its slide. :class:`MontageDataset` lays each training image with three others in a 2 x 2 montage on glass and cuts
the window from it (docs/research/recipes.md, twenty-sixth round: the "tight montage").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import CacheDataset
from monai.transforms import Compose, Randomizable, RandomizableTrait, Transform

from medt_monai.inferers import GLASS_INTENSITY

__all__ = ["MontageDataset"]


class MontageDataset(CacheDataset, Randomizable):
    """A ``CacheDataset`` whose item ``i`` is an ``img_size`` window of a montage that holds image ``i``.

    The montage is 2 x 2 cells of the size of the largest of its images: image ``i`` in a random cell, three other
    random images of the data set in the others, each at its cell's top-left corner, ``0..max_gap`` pixels of glass
    (:data:`~medt_monai.inferers.GLASS_INTENSITY`, label 0) between the cells and none around them. With probability
    ``p_alone`` image ``i`` is instead alone on glass, ``margin_alone`` pixels of it on every side, so windows with
    one image and glass are seen as well. The window is drawn uniformly among those inside the montage that hold at
    least one pixel of image ``i`` (a montage smaller than a window gets glass below and right of it).

    ``transform``'s deterministic part (up to its first random transform) is cached per image, as ``CacheDataset``
    does; the window is cut from the cached images and the random part runs on it. The cached ``"image"`` and
    ``"label"`` are channel-first arrays of one spatial size each, e.g. the zoomed images and the three-class labels
    of :func:`medt_monai.data.get_transforms` ``("train", training_crops="montage")``.

    Args:
        data: the training datalist (at least 4 items).
        transform: the training chain, without crops.
        img_size: the window's height and width (the network's input size).
        max_gap: the most glass between two cells, in pixels.
        p_alone: probability that an item is its image alone on glass.
        margin_alone: the glass around an image alone, in pixels.
        seed: the montages' random seed (MONAI's ``DataLoader`` reseeds each worker's copy).
        num_workers: ``CacheDataset``'s caching threads.

    Raises:
        ValueError: fewer than 4 items, or a negative ``max_gap`` / ``margin_alone``, or ``p_alone`` outside [0, 1].
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Compose,
        img_size: int = 128,
        max_gap: int = 16,
        p_alone: float = 0.1,
        margin_alone: int = 64,
        seed: int = 0,
        num_workers: int | None = 0,
    ) -> None:
        if len(data) < 4:
            raise ValueError(f"a montage of 2 x 2 training images needs at least 4 training items, got {len(data)}.")
        if max_gap < 0 or margin_alone < 0 or not 0.0 <= p_alone <= 1.0:
            raise ValueError(
                f"max_gap and margin_alone must be >= 0 and p_alone in [0, 1], got {max_gap}, {margin_alone}, {p_alone}."
            )
        super().__init__(list(data), transform, cache_rate=1.0, num_workers=num_workers, progress=False)
        self.img_size, self.max_gap, self.p_alone, self.margin_alone = img_size, max_gap, p_alone, margin_alone
        # where CacheDataset stops caching
        self.first_random = transform.get_index_of_first(
            lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform)
        )
        self.set_random_state(seed)

    def randomize(self, data: None = None) -> None:
        """The montage's draws happen in :meth:`_transform`, in the order its docstring gives."""

    def _cached(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._cache[index]  # every item is cached when the dataset is built (cache_rate 1)
        return torch.as_tensor(item["image"]), torch.as_tensor(item["label"])

    def _transform(self, index: int) -> dict:
        rng = self.R
        if rng.rand() < self.p_alone:
            grid, own, margin = [[index]], (0, 0), self.margin_alone
        else:
            others = rng.choice([i for i in range(len(self.data)) if i != index], 3, replace=False).tolist()
            cell = int(rng.randint(4))
            others.insert(cell, index)
            grid, own, margin = [others[:2], others[2:]], divmod(cell, 2), 0
        gap = int(rng.randint(self.max_gap + 1))
        tiles = [[self._cached(i) for i in row] for row in grid]
        image = tiles[own[0]][own[1]][0]
        cell_h = max(t[0].shape[1] for row in tiles for t in row)
        cell_w = max(t[0].shape[2] for row in tiles for t in row)
        size = self.img_size
        # glass below and right of a montage smaller than a window
        height = max(2 * margin + len(grid) * cell_h + (len(grid) - 1) * gap, size)
        width = max(2 * margin + len(grid[0]) * cell_w + (len(grid[0]) - 1) * gap, size)
        montage = torch.full((image.shape[0], height, width), GLASS_INTENSITY, dtype=image.dtype)
        labels = torch.zeros((1, height, width), dtype=image.dtype)
        for r, row in enumerate(tiles):
            for c, (tile, label) in enumerate(row):
                y, x = margin + r * (cell_h + gap), margin + c * (cell_w + gap)
                montage[:, y : y + tile.shape[1], x : x + tile.shape[2]] = tile
                labels[:, y : y + label.shape[1], x : x + label.shape[2]] = label
                if (r, c) == own:
                    own_box = (y, x, tile.shape[1], tile.shape[2])
        y, x, h, w = own_box
        y0 = int(rng.randint(max(0, y - size + 1), min(height - size, y + h - 1) + 1))
        x0 = int(rng.randint(max(0, x - size + 1), min(width - size, x + w - 1) + 1))
        window = {
            "image": montage[:, y0 : y0 + size, x0 : x0 + size].clone(),
            "label": labels[:, y0 : y0 + size, x0 : x0 + size].clone(),
        }
        if self.first_random is None:
            return window
        return self.transform(window, start=self.first_random)
