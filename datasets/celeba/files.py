"""Location and integrity checks of the CelebA release files.

Two layouts are accepted below a root folder (also below ``<root>/celeba`` and
``<root>/CelebA``):

* the official release: ``Anno/list_attr_celeba.txt``, ``Eval/list_eval_partition.txt``,
  ``Img/img_align_celeba/*.jpg``;
* torchvision's layout: the same files flat in one folder, ``list_attr_celeba.txt``,
  ``list_eval_partition.txt``, ``img_align_celeba/*.jpg``.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_FOLDER = "img_align_celeba"
IMAGE_ARCHIVE = "img_align_celeba.zip"

# Google Drive file id and md5 of each official file, as listed by torchvision 0.29
# (torchvision/datasets/celeba.py, CelebA.file_list).
DRIVE_FILES: dict[str, tuple[str, str]] = {
    IMAGE_ARCHIVE: ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    ATTRIBUTE_FILE: ("0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c"),
    PARTITION_FILE: ("0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
}

# Number of images in the full release, and per split of the official partition.
FULL_IMAGE_COUNT = 202_599
OFFICIAL_SPLIT_SIZES: dict[str, int] = {"train": 162_770, "val": 19_867, "test": 19_962}

DOWNLOAD_HINT = "python -m datasets.celeba.download --root <data folder>"


class ReleaseFileError(ValueError):
    """A CelebA release file is missing, damaged, or a saved web page in place of the file."""


@dataclass(frozen=True)
class ReleaseFiles:
    """Paths of the two annotation files and the image folder of one CelebA copy."""

    attributes: Path
    partition: Path
    images: Path
    layout: str  # "official" or "flat"


def _layouts_below(base: Path) -> list[ReleaseFiles]:
    return [
        ReleaseFiles(base / "Anno" / ATTRIBUTE_FILE, base / "Eval" / PARTITION_FILE, base / "Img" / IMAGE_FOLDER,
                     "official"),
        ReleaseFiles(base / ATTRIBUTE_FILE, base / PARTITION_FILE, base / IMAGE_FOLDER, "flat"),
    ]


def locate_release(root: Path) -> ReleaseFiles:
    """Find a CelebA copy in ``root``, ``root/celeba`` or ``root/CelebA``, in either layout.

    The first layout whose attribute file exists is used; its partition file and image
    folder must exist too.
    """
    root = Path(root)
    searched: list[Path] = []
    for base in (root, root / "celeba", root / "CelebA"):
        for files in _layouts_below(base):
            searched.append(files.attributes)
            if not files.attributes.is_file():
                continue
            missing = [str(p) for p in (files.partition, files.images) if not p.exists()]
            if missing:
                raise ReleaseFileError(f"found {files.attributes} ({files.layout} layout) but not "
                                       f"{' or '.join(missing)}; complete the copy or run {DOWNLOAD_HINT}")
            log.debug("CelebA %s layout in %s", files.layout, base)
            return files
    raise FileNotFoundError(f"no CelebA copy under {root}: none of {', '.join(map(str, searched))} exists. "
                            f"Set dataset.root to the folder that holds it, or run {DOWNLOAD_HINT}")


def raise_if_html_page(path: Path, data: bytes) -> None:
    """Raise :class:`ReleaseFileError` when ``data`` (the start of ``path``) is an HTML page.

    Google Drive returns an HTML page instead of the file when the file's download quota
    is exceeded, and download tools save that page under the file's name.
    """
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not (head.startswith(b"<!doctype html") or head.startswith(b"<html")):
        return
    quota = b"quota" in data[:65536].lower() or b"too many users" in data[:65536].lower()
    reason = ("It reports that the Google Drive download quota of the file is exceeded. " if quota else
              "Google Drive saves such a page in place of the file when the file's download quota is exceeded. ")
    raise ReleaseFileError(f"{path} is an HTML page, not a CelebA file. {reason}Delete it and run {DOWNLOAD_HINT} "
                           "again later (the quota resets after some hours), or download the file by hand from "
                           "the CelebA website.")


def file_md5(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_official_md5(path: Path, name: str) -> None:
    """Compare the md5 of ``path`` with the official file ``name``; raise on a mismatch."""
    expected = DRIVE_FILES[name][1]
    found = file_md5(path)
    if found != expected:
        raise ReleaseFileError(f"{path} has md5 {found} but the official {name} has md5 {expected}: the file is "
                               f"damaged or edited. Download it again ({DOWNLOAD_HINT}), or set "
                               "dataset.verify_md5=false to use it as it is.")
    log.info("md5 of %s matches the official %s", path, name)
