"""NYUv2 13-class labels: from the 480×640 class13 PNGs to the MTAN label arrays.

The class13 PNGs (``new_nyu_class13_<k>.png``, one per test image k of the NYUv2 split)
store 0 = unlabeled and 1..13 = the 13 classes. The MTAN label is png − 1, so unlabeled
becomes −1 (ignore) and the classes 0..12.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

NUM_CLASSES = 13
MTAN_SIZE = (288, 384)


def class13_png_to_label(png: np.ndarray, size: tuple[int, int] | None = MTAN_SIZE) -> np.ndarray:
    """Return the MTAN label (H×W float32, −1 = ignore) of a class13 PNG array, nearest-resized to ``size``."""
    png = np.asarray(png)
    if png.ndim != 2 or png.max(initial=0) > NUM_CLASSES:
        raise ValueError(f"expected a 2-D class13 label image with values 0..{NUM_CLASSES}, got shape {png.shape} "
                         f"and maximum {png.max(initial=0)}")
    if size is not None and png.shape != tuple(size):
        png = np.asarray(Image.fromarray(png.astype(np.uint8)).resize((size[1], size[0]), Image.Resampling.NEAREST))
    return png.astype(np.float32) - 1.0


def read_class13_archive(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (file name, PNG array) for each PNG in a ``.tgz`` of class13 labels, in archive order."""
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".png"):
                with archive.extractfile(member) as handle:
                    yield Path(member.name).name, np.asarray(Image.open(handle))
