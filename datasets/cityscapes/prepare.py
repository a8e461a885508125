"""Convert the official Cityscapes release into the MTAN ``.npy`` layout at 128×256.

    python -m datasets.cityscapes.prepare --raw <cityscapes dir> --out <data_root>/cityscapes

Input, found recursively under ``--raw`` and matched by frame name
(``<city>_<seq>_<frame>``): ``*_leftImg8bit.png`` (RGB), ``*_gtFine_labelIds.png`` (or the
suffix given by ``--label-suffix``) and ``*_disparity.png`` (uint16). The split of a frame is
the ``train``/``val``/``test`` folder in its path, as in the official tree
``leftImg8bit/<split>/<city>/``. Frames outside such a folder go to ``--split``.

Output: ``<out>/{train,val}/{image,label_7,depth}/<i>.npy`` with i following the sorted
frame names, plus ``prepare_info.json`` (settings and the frame name of every index).

* image: H×W×3 float32 in [0, 1], bilinear resize;
* label_7: H×W float32, the 7 Cityscapes categories flat, construction, object, nature,
  sky, human, vehicle as 0..6 and void as −1, nearest resize. The label images may hold
  labelIds (0..33) or trainIds (0..18, 255 = void); ``--label-format auto`` decides from
  the values of all label files. With labelIds, classes that have no trainId (parking,
  rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer) keep their
  category; with trainIds they are void;
* depth: H×W×1 float32 inverse depth, nearest resize of the disparity PNG. A PNG value
  p > 0 is a disparity of (p − 1) / 256 pixels at the full 2048×1024 resolution. p = 0 is
  invalid and stays 0, and p = 1 (disparity 0, infinitely far) also becomes 0, so it is
  invalid too. Inverse depth = disparity × ``--depth-scale``. The default
  1 / (0.209313 m × 2262.52 px), the baseline and focal length in the Cityscapes camera files
  (they vary slightly by city), gives inverse depth in 1/m.

NOTE: the scale of the depth in the MTAN release (values up to about 0.49) is not
documented; the 1/m default is a plausible match, not a verified one. Relative error does
not depend on this scale, absolute error does.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from datasets.cityscapes.labels import LABEL_FORMATS, detect_label_format, to_seven_classes

log = logging.getLogger(__name__)

IMAGE_SUFFIX = "_leftImg8bit.png"
DISPARITY_SUFFIX = "_disparity.png"
DEFAULT_LABEL_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")
DEFAULT_SIZE = (128, 256)
STEREO_BASELINE_M = 0.209313
FOCAL_LENGTH_PX = 2262.52
DEFAULT_DEPTH_SCALE = 1.0 / (STEREO_BASELINE_M * FOCAL_LENGTH_PX)


@dataclass(frozen=True)
class Frame:
    """The three files of one Cityscapes frame and its split."""

    name: str
    split: str
    image: Path
    label: Path
    disparity: Path


def split_of(path: Path, raw: Path, default: str | None) -> str | None:
    for part in path.relative_to(raw).parts[:-1]:
        if part in SPLITS:
            return part
    return default


def find_frames(raw: Path, label_suffix: str = DEFAULT_LABEL_SUFFIX, default_split: str | None = None) -> list[Frame]:
    """Match image, label and disparity files by frame name; raise when one is missing."""
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"Cityscapes folder {raw} not found; pass the folder that contains leftImg8bit, "
                                "gtFine and disparity with --raw")
    labels = {p.name[: -len(label_suffix)]: p for p in raw.rglob(f"*{label_suffix}")}
    disparities = {p.name[: -len(DISPARITY_SUFFIX)]: p for p in raw.rglob(f"*{DISPARITY_SUFFIX}")}
    frames = []
    unsplit = []
    for image in sorted(raw.rglob(f"*{IMAGE_SUFFIX}")):
        name = image.name[: -len(IMAGE_SUFFIX)]
        split = split_of(image, raw, default_split)
        if split is None:
            unsplit.append(image)
            continue
        missing = [kind for kind, table in (("label", labels), ("disparity", disparities)) if name not in table]
        if missing:
            raise FileNotFoundError(f"frame {name} ({image}) has no {' and no '.join(missing)} file "
                                    f"(expected {name}{label_suffix} and {name}{DISPARITY_SUFFIX} under {raw})")
        frames.append(Frame(name, split, image, labels[name], disparities[name]))
    if unsplit:
        raise ValueError(f"{len(unsplit)} frames (e.g. {unsplit[0]}) are not inside a train/val/test folder; "
                         "pass --split train or --split val to choose their split")
    if not frames:
        raise FileNotFoundError(f"no *{IMAGE_SUFFIX} files under {raw}")
    return sorted(frames, key=lambda f: (f.split, f.name))


def read_label_values(frames: Sequence[Frame]) -> set[int]:
    values: set[int] = set()
    for frame in frames:
        values.update(int(v) for v in np.unique(np.asarray(Image.open(frame.label))))
    return values


def resize(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), resample=resample)
    return np.asarray(image)


def convert_frame(frame: Frame, size: tuple[int, int], label_format: str, depth_scale: float
                  ) -> dict[str, np.ndarray]:
    """Return the image, label_7 and depth arrays of one frame in the MTAN layout."""
    image = resize(Image.open(frame.image).convert("RGB"), size, Image.Resampling.BILINEAR)
    label_image = Image.open(frame.label)
    if label_image.mode not in ("L", "P"):
        raise ValueError(f"{frame.label}: expected an 8-bit label image, got PIL mode {label_image.mode}")
    label = to_seven_classes(resize(label_image, size, Image.Resampling.NEAREST), label_format)

    raw_disparity = resize(Image.open(frame.disparity), size, Image.Resampling.NEAREST).astype(np.float64)
    disparity_px = np.where(raw_disparity > 0, (raw_disparity - 1.0) / 256.0, 0.0)
    depth = disparity_px * depth_scale
    return {
        "image": (image.astype(np.float32) / 255.0),
        "label_7": label.astype(np.float32),
        "depth": depth.astype(np.float32)[:, :, None],
    }


def prepare(raw: Path, out: Path, size: tuple[int, int] = DEFAULT_SIZE, label_format: str = "auto",
            depth_scale: float = DEFAULT_DEPTH_SCALE, label_suffix: str = DEFAULT_LABEL_SUFFIX,
            default_split: str | None = None, progress: bool = True) -> dict[str, int]:
    """Write the MTAN layout for every train and val frame under ``raw``; return frames per split.

    Frames of the official ``test`` split are skipped because their public labels are empty.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label format must be one of {LABEL_FORMATS}, got {label_format!r}")
    frames = find_frames(raw, label_suffix, default_split)
    skipped = [f for f in frames if f.split == "test"]
    frames = [f for f in frames if f.split != "test"]
    if skipped:
        log.info("skipped %d frames of the official test split (no public labels)", len(skipped))
    if not frames:
        raise FileNotFoundError(f"no train or val frames under {raw}")
    if label_format == "auto":
        label_format = detect_label_format(read_label_values(frames))
        log.info("label files hold %s (detected from their values)", label_format)

    out = Path(out)
    counts: dict[str, int] = {}
    names: dict[str, list[str]] = {}
    for frame in tqdm(frames, desc="cityscapes", disable=not progress):
        index = counts.get(frame.split, 0)
        arrays = convert_frame(frame, size, label_format, depth_scale)
        for folder, array in arrays.items():
            target = out / frame.split / folder
            target.mkdir(parents=True, exist_ok=True)
            np.save(target / f"{index}.npy", array)
        counts[frame.split] = index + 1
        names.setdefault(frame.split, []).append(frame.name)

    info = {"size": list(size), "label_format": label_format, "depth_scale": depth_scale,
            "label_suffix": label_suffix, "frames": names}
    (out / "prepare_info.json").write_text(json.dumps(info, indent=1))
    log.info("wrote %s to %s", ", ".join(f"{n} {split}" for split, n in counts.items()), out)
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True,
                        help="folder holding the official leftImg8bit, gtFine and disparity files (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/cityscapes")
    parser.add_argument("--size", type=int, nargs=2, default=DEFAULT_SIZE, metavar=("HEIGHT", "WIDTH"),
                        help="output size in pixels (default: 128 256)")
    parser.add_argument("--label-format", choices=LABEL_FORMATS, default="auto",
                        help="values of the label images: labelIds (0..33), trainIds (0..18, 255 = void), "
                             "or auto = decide from the values (default)")
    parser.add_argument("--label-suffix", default=DEFAULT_LABEL_SUFFIX,
                        help=f"file name ending of the label images (default: {DEFAULT_LABEL_SUFFIX})")
    parser.add_argument("--depth-scale", type=float, default=DEFAULT_DEPTH_SCALE,
                        help="factor from full-resolution disparity in pixels to the stored depth "
                             f"(default: {DEFAULT_DEPTH_SCALE:.6g} = inverse depth in 1/m)")
    parser.add_argument("--split", choices=("train", "val"), default=None,
                        help="split of frames that are not inside a train/val/test folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        prepare(args.raw, args.out, tuple(args.size), args.label_format, args.depth_scale, args.label_suffix,
                args.split)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
