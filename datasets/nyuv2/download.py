"""Download the preprocessed NYUv2 release of MTAN (288×384 ``.npy`` files).

    python -m datasets.nyuv2.download --root data

installs ``data/nyuv2/{train,val}/{image,label,depth,normal}/<i>.npy`` (795 train and
654 test images; ``val`` is the test split). No checksum of the archive is published, so
the SHA-256 of the downloaded file is logged instead of checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from datasets.dense.download import run_download_command

ARCHIVE_URL = "https://www.dropbox.com/s/p2nn02wijg7peiy/nyuv2.zip?dl=0"
FOLDER_URL = "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=0"
# NOTE: no published checksum; fill in the SHA-256 of a verified download to enforce it.
ARCHIVE_SHA256: str | None = None
REQUIRED = tuple(f"{split}/{folder}" for split in ("train", "val") for folder in ("image", "label", "depth", "normal"))


def manual_steps(root: Path) -> str:
    return (f"Download it by hand: open {ARCHIVE_URL} (or the folder {FOLDER_URL}) in a browser, save "
            f"nyuv2.zip as {Path(root) / 'nyuv2.zip'} and run this command again, or unpack it so that "
            f"{Path(root) / 'nyuv2' / 'train' / 'image'} exists.")


def main(argv: Sequence[str] | None = None) -> None:
    run_download_command("nyuv2", ARCHIVE_URL, REQUIRED, ARCHIVE_SHA256, manual_steps, argv)


if __name__ == "__main__":
    main()
