"""Download CelebA from Google Drive into ``<root>/celeba`` (torchvision's flat layout).

Usage: ``python -m datasets.celeba.download --root data``

Fetches ``img_align_celeba.zip`` (about 1.4 GB), ``list_attr_celeba.txt`` and
``list_eval_partition.txt`` by the Google Drive file ids that torchvision uses, checks each
against its official md5, and extracts the images. Files that are already complete are
skipped. The dataset terms forbid redistribution, so keep the files out of repositories and
packages.

NOTE: the test suite replaces the network fetch with a stub, so the Drive endpoint itself is
never exercised there and may change without a failing test.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from datasets.celeba.files import (ATTRIBUTE_FILE, DRIVE_FILES, FULL_IMAGE_COUNT, IMAGE_ARCHIVE, IMAGE_FOLDER,
                                   PARTITION_FILE, ReleaseFileError, file_md5, raise_if_html_page)

log = logging.getLogger("datasets.celeba.download")

# Google Drive's direct-download endpoint; confirm=t skips the page that warns that a
# large file cannot be scanned for viruses.
DRIVE_URL = "https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
TIMEOUT_S = 60


def fetch_with_urllib(file_id: str, destination: Path) -> None:
    with urllib.request.urlopen(DRIVE_URL.format(file_id=file_id), timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(destination, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True,
                                                     desc=destination.name) as bar:
            while chunk := response.read(1 << 20):
                handle.write(chunk)
                bar.update(len(chunk))


def fetch_with_gdown(file_id: str, destination: Path) -> None:
    import gdown

    gdown.download(id=file_id, output=str(destination), quiet=False)


def download_file(name: str, folder: Path, use_gdown: bool) -> Path:
    """Download the official file ``name`` into ``folder`` unless a copy with the right md5 is there."""
    file_id, md5 = DRIVE_FILES[name]
    target = folder / name
    if target.exists() and file_md5(target) == md5:
        log.info("%s is complete (md5 matches); skipped", target)
        return target

    partial = folder / f"{name}.part"
    log.info("downloading %s (Google Drive id %s) with %s", name, file_id, "gdown" if use_gdown else "urllib")
    (fetch_with_gdown if use_gdown else fetch_with_urllib)(file_id, partial)

    with open(partial, "rb") as handle:
        raise_if_html_page(partial, handle.read(65536))
    found = file_md5(partial)
    if found != md5:
        raise ReleaseFileError(f"downloaded {partial} has md5 {found}, expected {md5}: the transfer was incomplete "
                               "or Drive served another file. Delete it and run the download again.")
    os.replace(partial, target)
    return target


def extract_images(archive: Path, folder: Path) -> None:
    """Extract ``img_align_celeba/`` from the archive unless it contains all 202,599 images."""
    images = folder / IMAGE_FOLDER
    if images.is_dir() and sum(1 for _ in images.glob("*.jpg")) == FULL_IMAGE_COUNT:
        log.info("%s contains all %d images; extraction skipped", images, FULL_IMAGE_COUNT)
        return
    log.info("extracting %s into %s", archive, folder)
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"),
                        help="data folder; the files go to <root>/celeba (default: data)")
    parser.add_argument("--tool", choices=("auto", "gdown", "urllib"), default="auto",
                        help="download client; auto uses gdown when it is installed, else urllib")
    parser.add_argument("--remove-archive", action="store_true",
                        help="delete img_align_celeba.zip after a successful extraction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    use_gdown = args.tool == "gdown" or (args.tool == "auto" and importlib.util.find_spec("gdown") is not None)
    folder = args.root / "celeba"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (ATTRIBUTE_FILE, PARTITION_FILE):
        download_file(name, folder, use_gdown)
    archive = download_file(IMAGE_ARCHIVE, folder, use_gdown)
    extract_images(archive, folder)
    if args.remove_archive:
        archive.unlink()
    log.info("CelebA is ready in %s; train with dataset.root=%s", folder, args.root)


if __name__ == "__main__":
    try:
        main()
    except ReleaseFileError as error:
        raise SystemExit(f"error: {error}") from None
