"""Download the preprocessed NYUv2 release of MTAN (288×384 ``.npy`` files).

    python -m datasets.nyuv2.download --root data

installs ``data/nyuv2/{train,val}/{image,label,depth,normal}/<i>.npy`` (795 train and
654 test images; ``val`` is the test split). No checksum of the archive is published, so
the SHA-256 of the downloaded file is logged instead of checked.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from datasets.dense.download import DownloadError, download_release

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
    parser = argparse.ArgumentParser(description="Download the MTAN NYUv2 release into <root>/nyuv2.")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root folder (default: data)")
    parser.add_argument("--keep-archive", action="store_true", help="keep nyuv2.zip after unpacking")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        download_release("nyuv2", ARCHIVE_URL, args.root, REQUIRED, ARCHIVE_SHA256, manual_steps(args.root),
                         keep_archive=args.keep_archive)
    except DownloadError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
