"""Measure the CelebA preprocessing cache: build time, and images per second when reading from it.

Usage: ``python -m benchmarks.celeba_cache --root <CelebA folder> [--cache-dir DIR] [--passes 200]``

Caches every image listed in the attribute file (all splits together) at 64×64. Then it
times decoding and resizing the JPEGs, which is the work the cache saves per epoch. Last it
times reading shuffled batches from the memory-mapped cache and scaling them to float32 in
[0, 1], which is the work an epoch does with the cache. The cache goes to a temporary folder that is
deleted afterwards unless ``--cache-dir`` is given. On a small sample every rate comes
from many passes over the same few images, which stay in the page cache. The read rate is
then an upper bound for a full copy whose cache does not fit in memory.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from datasets.celeba.annotations import parse_attribute_file
from datasets.celeba.cache import build_cache, cache_path, decode_image, open_cache
from datasets.celeba.files import locate_release
from datasets.celeba.loader import ArrayBatches, SplitArrays

log = logging.getLogger("benchmarks.celeba_cache")


def measure(root: Path, cache_dir: Path, image_size: int, batch_size: int, passes: int,
            decode_passes: int, workers: int) -> dict[str, float]:
    """Return the build time and the decode and cache-read rates (images per second)."""
    files = locate_release(root)
    table = parse_attribute_file(files.attributes)
    filenames = table.filenames
    path = cache_path(cache_dir, "all", filenames, image_size)
    if path.exists():
        path.unlink()

    started = time.perf_counter()
    build_cache(path, files.images, filenames, image_size, workers)
    build_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for _ in range(decode_passes):
        for name in filenames:
            decode_image(files.images / name, image_size)
    decode_rate = decode_passes * len(filenames) / (time.perf_counter() - started)

    arrays = SplitArrays(open_cache(path, len(filenames), image_size), table.labels)
    generator = torch.Generator().manual_seed(0)
    images_read = 0
    started = time.perf_counter()
    for _ in range(passes):
        for images, _labels in ArrayBatches(arrays, batch_size, shuffle=True, generator=generator):
            images.float().div_(255.0)
            images_read += len(images)
    read_rate = images_read / (time.perf_counter() - started)

    return {"images": len(filenames), "image_size": image_size, "cache_bytes": path.stat().st_size,
            "build_seconds": build_seconds, "build_images_per_s": len(filenames) / build_seconds,
            "decode_images_per_s": decode_rate, "cache_read_images_per_s": read_rate,
            "read_speedup": read_rate / decode_rate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding a CelebA copy (either layout)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the measured cache file goes (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--image-size", type=int, default=64, help="side of the resized images in pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch when reading the cache")
    parser.add_argument("--passes", type=int, default=200, help="passes over the cache when timing reads")
    parser.add_argument("--decode-passes", type=int, default=5, help="passes over the JPEGs when timing decoding")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes while the cache is built")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="celeba_cache_") as temporary:
        cache_dir = args.cache_dir or Path(temporary)
        result = measure(args.root, cache_dir, args.image_size, args.batch_size, args.passes, args.decode_passes,
                         args.workers)

    print(f"CelebA cache measured on {result['images']} images at {args.image_size}x{args.image_size} "
          f"(torch threads: {torch.get_num_threads()})")
    print(f"  cache build:        {result['build_seconds']:.3f} s ({result['build_images_per_s']:.0f} images/s), "
          f"{result['cache_bytes'] / 1e6:.2f} MB")
    print(f"  JPEG decode+resize: {result['decode_images_per_s']:.0f} images/s")
    print(f"  cache read+scale:   {result['cache_read_images_per_s']:.0f} images/s "
          f"(batch {min(args.batch_size, result['images'])}, {result['read_speedup']:.0f}x the decode rate)")


if __name__ == "__main__":
    main()
