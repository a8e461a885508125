"""Map the official partition to the image lists of the train, val and test splits."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from datasets.celeba.annotations import (ATTRIBUTE_NAMES, SPLIT_CODES, AnnotationError, AttributeTable,
                                         parse_attribute_file, parse_partition_file, split_codes_for)
from datasets.celeba.files import (ATTRIBUTE_FILE, FULL_IMAGE_COUNT, PARTITION_FILE, ReleaseFiles,
                                   verify_official_md5)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitImages:
    """The images of one split: file names (relative to the image folder) and their 0/1 labels."""

    name: str
    filenames: tuple[str, ...]
    labels: np.ndarray  # (N, 40) uint8


def read_annotations(files: ReleaseFiles, verify_md5: bool = True) -> tuple[AttributeTable, np.ndarray]:
    """Parse both annotation files; return the attribute table and each row's split code.

    The md5 of a file is compared with the official one only when the file lists all
    202,599 images, because samples and subsets are not the official files.
    """
    attributes = parse_attribute_file(files.attributes)
    if attributes.names != ATTRIBUTE_NAMES:
        differing = [(i, found, expected) for i, (found, expected)
                     in enumerate(zip(attributes.names, ATTRIBUTE_NAMES)) if found != expected]
        raise AnnotationError(f"{files.attributes} names {len(attributes.names)} attributes, expected the 40 "
                              f"official ones in release order; first differences (column, found, expected): "
                              f"{differing[:5]}")
    partition = parse_partition_file(files.partition)

    if verify_md5:
        if len(attributes.filenames) == FULL_IMAGE_COUNT:
            verify_official_md5(files.attributes, ATTRIBUTE_FILE)
        if len(partition.filenames) == FULL_IMAGE_COUNT:
            verify_official_md5(files.partition, PARTITION_FILE)

    return attributes, split_codes_for(attributes, partition, files.attributes, files.partition)


def assign_splits(codes: np.ndarray, carve_from_train: Mapping[str, int] | None = None,
                  limits: Mapping[str, int | None] | None = None) -> dict[str, np.ndarray]:
    """Return the attribute-table rows of each split, in file order.

    ``carve_from_train[split]`` (val or test) moves that many images from the end of the
    training split into ``split``, but only when the partition file lists no image for it.
    Small samples need this, because they contain training images only. ``limits[split]``
    then keeps the first ``limits[split]`` images of the split (None keeps all).
    """
    rows = {name: np.flatnonzero(codes == code) for name, code in SPLIT_CODES.items()}

    for name, count in (carve_from_train or {}).items():
        if name not in ("val", "test"):
            raise ValueError(f"dataset.carve_from_train has key {name!r}; only 'val' and 'test' are valid")
        count = int(count or 0)
        if count <= 0 or len(rows[name]):
            continue
        if count >= len(rows["train"]):
            raise ValueError(f"dataset.carve_from_train.{name}={count} would leave no training image out of "
                             f"{len(rows['train'])}; lower it")
        rows[name], rows["train"] = rows["train"][-count:], rows["train"][:-count]
        log.warning("the partition file lists no %s image: moved the last %d training images to %s", name,
                    count, name)

    for name, limit in (limits or {}).items():
        if name not in rows:
            raise ValueError(f"dataset.limit has key {name!r}; valid keys: {', '.join(rows)}")
        if limit is not None:
            rows[name] = rows[name][: int(limit)]

    for name, indices in rows.items():
        if len(indices) == 0:
            raise ValueError(f"the {name} split of CelebA is empty. Use the official partition file, or set "
                             f"dataset.carve_from_train.{name} to move training images there (small samples only).")
    return rows


def load_split_images(files: ReleaseFiles, carve_from_train: Mapping[str, int] | None = None,
                      limits: Mapping[str, int | None] | None = None,
                      verify_md5: bool = True) -> dict[str, SplitImages]:
    """Read the annotations of ``files`` and return the images and labels of every split."""
    attributes, codes = read_annotations(files, verify_md5=verify_md5)
    rows = assign_splits(codes, carve_from_train, limits)
    splits = {name: SplitImages(name, tuple(attributes.filenames[i] for i in indices), attributes.labels[indices])
              for name, indices in rows.items()}
    log.info("CelebA at %s: %s", Path(files.attributes).parent,
             ", ".join(f"{name} {len(split.filenames)}" for name, split in splits.items()))
    return splits
