"""Download and unpack an MTAN ``.npy`` release (NYUv2, Cityscapes) from Dropbox.

Dropbox serves the file itself only with ``dl=1``. With ``dl=0``, with an expired link or
when a quota is exceeded, it returns an HTML page with status 200. Every download is
therefore checked by content (HTML text or ZIP signature) before it is unpacked. A failure
raises :class:`DownloadError` with the manual steps.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or returned something other than the expected archive."""


def direct_download_url(url: str) -> str:
    """Return the Dropbox link with ``dl=1`` (file content) in place of ``dl=0`` (preview page)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["dl"] = "1"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def looks_like_html(path: Path) -> bool:
    """Return True when the file starts (after whitespace or a BOM) like an HTML or XML page."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    head = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(HTML_MARKERS)


def check_archive(path: Path, manual_steps: str) -> None:
    """Raise :class:`DownloadError` unless ``path`` is a ZIP archive."""
    if looks_like_html(path):
        raise DownloadError(f"{path} is an HTML page, not the archive: the link returned a web page "
                            f"(expired link, quota or login page). {manual_steps}")
    with open(path, "rb") as handle:
        signature = handle.read(4)
    if signature not in ZIP_SIGNATURES:
        raise DownloadError(f"{path} is not a ZIP archive (starts with {signature!r}). {manual_steps}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, sha256: str | None, manual_steps: str) -> str:
    """Compare the SHA-256 with the known one, or log it when none is known; return it."""
    actual = sha256_of(path)
    if sha256 is None:
        log.warning("no checksum is known for %s; its SHA-256 is %s", path.name, actual)
    elif actual != sha256:
        raise DownloadError(f"{path} has SHA-256 {actual}, expected {sha256}: the download is damaged or the "
                            f"file changed upstream. Delete it and retry. {manual_steps}")
    return actual


def fetch(url: str, destination: Path, manual_steps: str) -> Path:
    """Download ``url`` to ``destination`` through a ``.part`` file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "cost-mtl-bench"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(partial, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        raise DownloadError(f"downloading {url} failed ({error}). {manual_steps}") from error
    partial.replace(destination)
    return destination


def find_release_root(folder: Path, required: Sequence[str]) -> Path:
    """Return the folder below ``folder`` that contains every path in ``required``."""
    candidates = [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]
    for candidate in candidates:
        if all((candidate / item).is_dir() for item in required):
            return candidate
    raise DownloadError(f"the archive unpacked into {folder} contains no folder with {', '.join(required)}; "
                        "check that the URL points at the MTAN release")


def install_release(archive: Path, target: Path, required: Sequence[str], manual_steps: str) -> Path:
    """Unpack ``archive`` and move the folder that contains ``required`` to ``target``."""
    staging = target.with_name(target.name + ".unpack")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(staging)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive} is a damaged ZIP archive ({error}). {manual_steps}") from error
    root = find_release_root(staging, required)
    if target.exists():
        raise DownloadError(f"{target} already exists; delete it to install the download again")
    root.replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download_release(name: str, url: str, root: Path, required: Sequence[str], sha256: str | None,
                     manual_steps: str, keep_archive: bool = False) -> Path:
    """Download the ZIP at ``url`` and install it as ``<root>/<name>``; return that folder.

    An existing complete folder is kept and nothing is downloaded.
    """
    target = Path(root) / name
    if all((target / item).is_dir() for item in required):
        log.info("%s is already installed in %s", name, target)
        return target
    archive = Path(root) / f"{name}.zip"
    if not archive.exists():
        fetch(direct_download_url(url), archive, manual_steps)
    try:
        check_archive(archive, manual_steps)
    except DownloadError as error:
        # Move the page aside so that the next attempt downloads again.
        rejected = archive.with_name(archive.name + ".rejected")
        archive.replace(rejected)
        raise DownloadError(f"{error} The rejected file was moved to {rejected}.") from None
    verify_checksum(archive, sha256, manual_steps)
    install_release(archive, target, required, manual_steps)
    if not keep_archive:
        archive.unlink()
    log.info("installed %s in %s", name, target)
    return target


def run_download_command(name: str, url: str, required: Sequence[str], sha256: str | None,
                         manual_steps: Callable[[Path], str], argv: Sequence[str] | None = None) -> None:
    """Parse ``--root`` and ``--keep-archive`` and install the release; exit with the error on failure."""
    parser = argparse.ArgumentParser(description=f"Download the MTAN release of {name} into <root>/{name}.")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root folder (default: data)")
    parser.add_argument("--keep-archive", action="store_true", help=f"keep {name}.zip after unpacking")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        download_release(name, url, args.root, required, sha256, manual_steps(args.root),
                         keep_archive=args.keep_archive)
    except DownloadError as error:
        raise SystemExit(f"error: {error}") from None
