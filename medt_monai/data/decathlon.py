"""A Decathlon-style datalist JSON (MONAI's ``load_decathlon_datalist``), with the files it names checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai.data import load_decathlon_datalist

from medt_monai.data.images import INSTANCE_KEY, check_pairs

__all__ = ["decathlon_sections"]


def decathlon_sections(
    path: str | Path, verify: str = "header"
) -> tuple[list[dict], list[dict] | None, list[dict] | None]:
    """The ``training``, ``validation`` and ``test`` sections of a Decathlon-style datalist JSON.

    Paths are relative to the JSON's folder; ``"instance"`` entries are resolved like ``"image"`` and ``"label"``
    (MONAI resolves only those). Test entries may lack labels.

    Args:
        path: the datalist JSON file.
        verify: see :func:`~medt_monai.data.check_pairs` (test entries without label or instance map are not paired).

    Returns:
        (training, validation or None, test or None): a section that is absent or empty is None.

    Raises:
        FileNotFoundError: ``path`` is not a file, or a file it names is missing (the message names both).
        ValueError: not valid JSON, no ``training`` section, unreadable file or size mismatch.
    """
    root = Path(path)
    if not root.is_file():
        raise FileNotFoundError(f"{root}: for 'decathlon', root must be the datalist JSON file.")
    try:
        sections = json.loads(root.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{root}: not valid JSON ({e}).") from e
    if "training" not in sections:
        raise ValueError(f"{root}: no 'training' section; not a Decathlon-style datalist.")
    train = load_decathlon_datalist(str(root), True, "training")
    val = load_decathlon_datalist(str(root), True, "validation") if sections.get("validation") else None
    test = load_decathlon_datalist(str(root), False, "test") if sections.get("test") else None
    for items in (train, val or [], test or []):
        for item in items:
            if INSTANCE_KEY in item:  # resolved like "image" and "label" (MONAI resolves only those)
                item[INSTANCE_KEY] = os.path.normpath(os.path.join(root.parent, item[INSTANCE_KEY]))
            if not Path(item["image"]).is_file():
                raise FileNotFoundError(f"{root}: image {item['image']} not found.")
            for k in ("label", INSTANCE_KEY):
                if k in item and not Path(item[k]).is_file():
                    raise FileNotFoundError(f"{root}: {k} {item[k]} (for {item['image']}) not found.")
    check_pairs(train + (val or []) + [t for t in (test or []) if "label" in t or INSTANCE_KEY in t], verify)
    return train, val, test
