"""Cityscapes label ids, train ids and the 7 categories of the MTAN Cityscapes benchmark.

The tables restate the label definitions of the official ``cityscapesScripts`` package
(``helpers/labels.py``): each label id (0..33) has a category id (0 = void, 1 = flat,
2 = construction, 3 = object, 4 = nature, 5 = sky, 6 = human, 7 = vehicle), and the 19
evaluated classes have train ids 0..18 (255 = not evaluated).

The 7-class benchmark label is category id − 1 (0..6), with void → −1 (ignore).
"""
from __future__ import annotations

import numpy as np

IGNORE_LABEL = -1
TRAIN_ID_VOID = 255
CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")

# Label id → category id, for label ids 0..33.
LABEL_ID_CATEGORY = (
    0, 0, 0, 0, 0, 0, 0,          # unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground
    1, 1, 1, 1,                   # road, sidewalk, parking, rail track
    2, 2, 2, 2, 2, 2,             # building, wall, fence, guard rail, bridge, tunnel
    3, 3, 3, 3,                   # pole, polegroup, traffic light, traffic sign
    4, 4,                         # vegetation, terrain
    5,                            # sky
    6, 6,                         # person, rider
    7, 7, 7, 7, 7, 7, 7, 7,       # car, truck, bus, caravan, trailer, train, motorcycle, bicycle
)

# Train id → category id, for train ids 0..18.
TRAIN_ID_CATEGORY = (
    1, 1,                         # road, sidewalk
    2, 2, 2,                      # building, wall, fence
    3, 3, 3,                      # pole, traffic light, traffic sign
    4, 4,                         # vegetation, terrain
    5,                            # sky
    6, 6,                         # person, rider
    7, 7, 7, 7, 7, 7,             # car, truck, bus, train, motorcycle, bicycle
)

LABEL_FORMATS = ("auto", "labelIds", "trainIds")


def _lookup_table(categories: tuple[int, ...]) -> np.ndarray:
    """Map every uint8 value to a 7-class label; values outside the table become −1."""
    table = np.full(256, IGNORE_LABEL, dtype=np.int64)
    for value, category in enumerate(categories):
        table[value] = category - 1 if category > 0 else IGNORE_LABEL
    return table


LABEL_ID_TABLE = _lookup_table(LABEL_ID_CATEGORY)
TRAIN_ID_TABLE = _lookup_table(TRAIN_ID_CATEGORY)


def detect_label_format(values: set[int]) -> str:
    """Decide from the set of pixel values of all label files whether they are labelIds or trainIds.

    trainIds use 0..18 and 255; labelIds use 0..33 and never 255. Values 19..33 prove
    labelIds, 255 proves trainIds. Raise when the values prove both or neither, because
    then only the user knows (``--label-format``).
    """
    has_void_train_id = TRAIN_ID_VOID in values
    has_label_only_ids = any(19 <= v <= 33 for v in values)
    unexpected = sorted(v for v in values if v > 33 and v != TRAIN_ID_VOID)
    if unexpected:
        raise ValueError(f"label files contain values {unexpected[:10]} that are neither Cityscapes labelIds (0..33) "
                         "nor trainIds (0..18, 255); check that --raw points at gtFine label images")
    if has_void_train_id and not has_label_only_ids:
        return "trainIds"
    if has_label_only_ids and not has_void_train_id:
        return "labelIds"
    reason = "both 255 and values 19..33" if has_void_train_id else "only values 0..18 and no 255"
    raise ValueError(f"cannot tell labelIds from trainIds: the label files contain {reason}; "
                     "pass --label-format labelIds or --label-format trainIds")


def to_seven_classes(label_image: np.ndarray, label_format: str) -> np.ndarray:
    """Map a labelIds or trainIds image (uint8) to the 7-class label (int64, −1 = void)."""
    if label_format == "labelIds":
        return LABEL_ID_TABLE[label_image]
    if label_format == "trainIds":
        return TRAIN_ID_TABLE[label_image]
    raise ValueError(f"label format must be 'labelIds' or 'trainIds', got {label_format!r}")
