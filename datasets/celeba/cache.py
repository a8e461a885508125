"""One-time preprocessing cache: the images of one split, decoded and resized, as a uint8 .npy file.

Decoding 178×218 JPEGs costs far more than a training step's data needs, so each split is
decoded once into an (N, 3, S, S) uint8 array and later memory-mapped. The file name
carries a hash of the image list and of the preprocessing, so a different split, subset or
image size gets its own file and never reads a stale one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from datasets.celeba.files import ReleaseFileError

log = logging.getLogger(__name__)

# Bump when the preprocessing changes, so that old cache files are no longer matched.
CACHE_FORMAT_VERSION = 1
RESAMPLING = Image.Resampling.BILINEAR
CHUNK_IMAGES = 512


class CacheError(RuntimeError):
    """A cache file exists but is not a complete, matching image array."""


def decode_image(path: Path, image_size: int) -> np.ndarray:
    """Return the image at ``path`` as RGB, resized to ``image_size``², as a (3, S, S) uint8 array.

    Both sides are resized to ``image_size``, so the 178×218 aspect ratio is not kept.
    PIL's bilinear filter is what ``torchvision.transforms.Resize`` applies to PIL images.
    """
    try:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((image_size, image_size), RESAMPLING)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} is missing; extract img_align_celeba.zip again") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ReleaseFileError(f"image {path} cannot be decoded ({error}); extract img_align_celeba.zip again") \
            from error
    return np.ascontiguousarray(np.array(resized, dtype=np.uint8).transpose(2, 0, 1))


def _decode_chunk(paths: Sequence[Path], image_size: int) -> np.ndarray:
    return np.stack([decode_image(path, image_size) for path in paths])


def cache_path(cache_dir: Path, split: str, filenames: Sequence[str], image_size: int) -> Path:
    """Return the cache file of ``split`` for exactly these images and this preprocessing."""
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}|{image_size}|{RESAMPLING.name}|".encode())
    digest.update("\n".join(filenames).encode())
    return Path(cache_dir) / f"celeba_{split}_{len(filenames)}x{image_size}px_{digest.hexdigest()[:16]}.npy"


def build_cache(path: Path, image_folder: Path, filenames: Sequence[str], image_size: int,
                workers: int = 0) -> None:
    """Decode every image into a new cache file at ``path``, written atomically.

    The array is filled in a temporary file in the same folder and renamed to ``path``
    only when complete, so an interrupted build leaves no file that looks valid.
    ``workers`` > 0 decodes in that many processes.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise CacheError(f"cannot create a cache file in {path.parent} ({error}); set dataset.cache_dir to a "
                         "writable folder") from error
    os.close(descriptor)
    paths = [Path(image_folder) / name for name in filenames]
    chunks = [paths[start : start + CHUNK_IMAGES] for start in range(0, len(paths), CHUNK_IMAGES)]
    try:
        array = open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(paths), 3, image_size, image_size))
        with tqdm(total=len(paths), desc=f"caching {path.name}", unit="img", leave=False, disable=None) as bar:
            if workers > 0:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    decoded = pool.map(_decode_chunk, chunks, [image_size] * len(chunks))
                    _write_chunks(array, decoded, bar)
            else:
                _write_chunks(array, (_decode_chunk(chunk, image_size) for chunk in chunks), bar)
        array.flush()
        del array
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_chunks(array: np.ndarray, chunks, bar) -> None:
    offset = 0
    for chunk in chunks:
        array[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
        bar.update(len(chunk))


def open_cache(path: Path, num_images: int, image_size: int) -> np.memmap:
    """Memory-map a cache file and check that it is complete and has the expected shape.

    NOTE: the pixel bytes carry no checksum, so a file damaged in place without a change of
    size passes these checks.
    """
    fix = "Delete it; the next run rebuilds it from the JPEG images."
    expected_shape = (num_images, 3, image_size, image_size)
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise CacheError(f"cache file {path} is invalid or truncated ({error}). {fix}") from error
    if not isinstance(array, np.memmap) or array.dtype != np.uint8 or array.shape != expected_shape:
        raise CacheError(f"cache file {path} contains {getattr(array, 'dtype', '?')} {getattr(array, 'shape', '?')}, "
                         f"expected uint8 {expected_shape}. {fix}")
    expected_bytes = array.offset + array.nbytes
    actual_bytes = os.path.getsize(path)
    if actual_bytes != expected_bytes:
        raise CacheError(f"cache file {path} has {actual_bytes} bytes, expected {expected_bytes}. {fix}")
    return array


def load_or_build_cache(cache_dir: Path, split: str, image_folder: Path, filenames: Sequence[str],
                        image_size: int, workers: int = 0) -> np.memmap:
    """Return the memory-mapped images of ``split``, building the cache file on first use."""
    path = cache_path(cache_dir, split, filenames, image_size)
    if not path.exists():
        log.info("building the %s image cache %s from %d JPEGs in %s", split, path, len(filenames), image_folder)
        build_cache(path, image_folder, filenames, image_size, workers)
    return open_cache(path, len(filenames), image_size)
