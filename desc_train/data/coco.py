"""The 133 classes of COCO panoptic segmentation, in Detectron2's order: the 80
things (contiguous ids 0-79 of its instance heads) and then the 53 stuff classes
(contiguous ids 1-53 of its semantic head, stored as 79 + id). Real-data splits
label every pixel in this one id space, so that "car" (2) and the stuff class
Detectron2 also numbers 2 ("blanket", stored as 81) never collide; 255 is ignore.
"""
from __future__ import annotations

from typing import Dict, List

# (COCO dataset id, name): things ids 1-90 and stuff ids 92-200, both with gaps.
THINGS = [
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
]
STUFF = [
    (92, "banner"), (93, "blanket"), (95, "bridge"), (100, "cardboard"), (107, "counter"), (109, "curtain"),
    (112, "door-stuff"), (118, "floor-wood"), (119, "flower"), (122, "fruit"), (125, "gravel"), (128, "house"),
    (130, "light"), (133, "mirror-stuff"), (138, "net"), (141, "pillow"), (144, "platform"),
    (145, "playingfield"), (147, "railroad"), (148, "river"), (149, "road"), (151, "roof"), (154, "sand"),
    (155, "sea"), (156, "shelf"), (159, "snow"), (161, "stairs"), (166, "tent"), (168, "towel"),
    (171, "wall-brick"), (175, "wall-stone"), (176, "wall-tile"), (177, "wall-wood"), (178, "water-other"),
    (180, "window-blind"), (181, "window-other"), (184, "tree-merged"), (185, "fence-merged"),
    (186, "ceiling-merged"), (187, "sky-other-merged"), (188, "cabinet-merged"), (189, "table-merged"),
    (190, "floor-other-merged"), (191, "pavement-merged"), (192, "mountain-merged"), (193, "grass-merged"),
    (194, "dirt-merged"), (195, "paper-merged"), (196, "food-other-merged"), (197, "building-other-merged"),
    (198, "rock-merged"), (199, "wall-other-merged"), (200, "rug-merged"),
]
CLASSES: List[str] = [name for _, name in THINGS + STUFF]  # index = the class id in the layout
NUM_THINGS = len(THINGS)  # ids 0-79 are things (instances), 80-132 stuff
IGNORE = 255
# COCO dataset id -> layout class id.
FROM_COCO_ID: Dict[int, int] = {coco: i for i, (coco, _) in enumerate(THINGS + STUFF)}
# DESC's vehicles (Virtual KITTI, the usual source, has no people).
VEHICLES = [CLASSES.index(n) for n in ("bicycle", "car", "motorcycle", "bus", "train", "truck")]


def class_id(name: str) -> int:
    return CLASSES.index(name)


def thing_from_contiguous(t: int) -> int:
    """Detectron2's contiguous thing id (0-79) as a layout class id."""
    return t


def stuff_from_contiguous(s: int) -> int:
    """Detectron2's contiguous stuff id (1-53; 0 is its "things" class) as a layout class id."""
    return NUM_THINGS - 1 + s


assert len(THINGS) == 80 and len(STUFF) == 53 and len(set(CLASSES)) == 133
