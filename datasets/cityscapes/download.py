"""Download the preprocessed Cityscapes release of MTAN (128×256 ``.npy`` files, 651 MB).

    python -m datasets.cityscapes.download --root data

installs ``data/cityscapes/{train,val}/{image,label_7,depth}/<i>.npy`` (2,975 train and 500
test images; ``val`` is the test split; the release also contains ``label_2`` and
``label_19``). No checksum of the archive is published, so the SHA-256 of the downloaded
file is logged instead of checked. To build the same layout from the official Cityscapes
files instead, use ``python -m datasets.cityscapes.prepare``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from datasets.dense.download import run_download_command

ARCHIVE_URL = "https://www.dropbox.com/s/lg2ktu7o8hzwf99/cityscapes2.zip?dl=0"
FOLDER_URL = "https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=0"
# NOTE: no published checksum; fill in the SHA-256 of a verified download to enforce it.
ARCHIVE_SHA256: str | None = None
REQUIRED = tuple(f"{split}/{folder}" for split in ("train", "val") for folder in ("image", "label_7", "depth"))


def manual_steps(root: Path) -> str:
    return (f"Download it by hand: open {ARCHIVE_URL} (or the folder {FOLDER_URL}) in a browser, save "
            f"cityscapes2.zip as {Path(root) / 'cityscapes.zip'} and run this command again, or unpack it so "
            f"that {Path(root) / 'cityscapes' / 'train' / 'image'} exists. Alternatively convert the "
            "official release: python -m datasets.cityscapes.prepare --raw <dir> --out "
            f"{Path(root) / 'cityscapes'}")


def main(argv: Sequence[str] | None = None) -> None:
    run_download_command("cityscapes", ARCHIVE_URL, REQUIRED, ARCHIVE_SHA256, manual_steps, argv)


if __name__ == "__main__":
    main()
