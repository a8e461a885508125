"""Generated data in the exact MTAN ``.npy`` layout, for tests and step-time measurements.

The arrays have the shapes, dtypes and invalid markers of the real releases: image
H×W×3 float in [0, 1]; label H×W float with −1 = ignore; depth H×W×1 with 0 = invalid;
normal H×W×3 unit vectors with all-zero = invalid. Pixels of one class share a colour and a
depth range, so a model can learn something, but the values carry no real-world meaning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

# Task folder → kind of array written.
NYUV2_FOLDERS = {"label": "label", "depth": "depth", "normal": "normal"}
CITYSCAPES_FOLDERS = {"label_7": "label", "depth": "depth"}


def synthetic_sample(rng: np.random.Generator, height: int, width: int, num_classes: int,
                     depth_range: tuple[float, float], invalid_fraction: float = 0.05) -> dict[str, np.ndarray]:
    """Return one sample: blocky class map, class-coloured image, depth and normals."""
    block = 8
    coarse = rng.integers(0, num_classes, size=(-(-height // block), -(-width // block)))
    label = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width]
    palette = rng.random((num_classes, 3))
    image = np.clip(palette[label] + rng.normal(0.0, 0.05, size=(height, width, 3)), 0.0, 1.0)

    low, high = depth_range
    class_depth = np.linspace(low, high, num_classes)
    depth = class_depth[label] * (1.0 + 0.1 * rng.standard_normal((height, width)))
    depth = np.clip(depth, low, high)[:, :, None]

    normal = rng.standard_normal((num_classes, 3))[label] + 0.1 * rng.standard_normal((height, width, 3))
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)

    invalid = rng.random((height, width)) < invalid_fraction
    label = np.where(rng.random((height, width)) < invalid_fraction, -1, label)
    depth[invalid] = 0.0
    normal[rng.random((height, width)) < invalid_fraction] = 0.0
    return {"image": image.astype(np.float32), "label": label.astype(np.float32),
            "depth": depth.astype(np.float32), "normal": normal.astype(np.float32)}


def write_synthetic_mtan(root: Path, folders: Mapping[str, str], num_classes: int, height: int, width: int,
                         split_sizes: Mapping[str, int], depth_range: tuple[float, float], seed: int = 0) -> Path:
    """Write ``<root>/<split>/{image,<folders>}/<i>.npy`` for each split; return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, size in split_sizes.items():
        for folder in ["image", *folders]:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index in range(size):
            sample = synthetic_sample(rng, height, width, num_classes, depth_range)
            np.save(root / split / "image" / f"{index}.npy", sample["image"])
            for folder, kind in folders.items():
                np.save(root / split / folder / f"{index}.npy", sample[kind])
    return root


def write_synthetic_nyuv2(root: Path, train: int = 4, test: int = 4, height: int = 288, width: int = 384,
                          seed: int = 0) -> Path:
    """NYUv2 layout: 13 classes, depth in metres (0.5..10), normals."""
    return write_synthetic_mtan(root, NYUV2_FOLDERS, 13, height, width, {"train": train, "val": test},
                                depth_range=(0.5, 10.0), seed=seed)


def write_synthetic_cityscapes(root: Path, train: int = 4, test: int = 4, height: int = 128, width: int = 256,
                               seed: int = 0) -> Path:
    """Cityscapes layout: 7 classes in ``label_7``, inverse depth (0.01..0.45)."""
    return write_synthetic_mtan(root, CITYSCAPES_FOLDERS, 7, height, width, {"train": train, "val": test},
                                depth_range=(0.01, 0.45), seed=seed)


def main(argv: list[str] | None = None) -> None:
    """Write generated data for ``python -m benchmarks.train dataset=<name> data_root=<root>``."""
    import argparse

    parser = argparse.ArgumentParser(description="Write generated arrays in the MTAN .npy layout (no real "
                                                 "images: for trying the pipeline, not for results).")
    parser.add_argument("--dataset", choices=("nyuv2", "cityscapes"), required=True)
    parser.add_argument("--root", type=Path, required=True, help="data root; the arrays go to <root>/<dataset>")
    parser.add_argument("--train", type=int, default=16, help="training samples")
    parser.add_argument("--test", type=int, default=8, help="test samples (the val/ folder of the release)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    target = args.root / args.dataset
    if target.exists() and any(target.iterdir()):
        parser.error(f"{target} is not empty; remove it or choose another --root")
    writer = write_synthetic_nyuv2 if args.dataset == "nyuv2" else write_synthetic_cityscapes
    writer(target, train=args.train, test=args.test, seed=args.seed)
    print(f"wrote {args.train} train and {args.test} test samples to {target}")


if __name__ == "__main__":
    main()
