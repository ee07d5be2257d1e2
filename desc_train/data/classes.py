"""The semantic classes of the embedded street-scene benchmark (a Cityscapes-like
subset) and their colours."""
import numpy as np

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "terrain")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, TERRAIN = range(len(CLASSES))
INSTANCE_CLASSES = (CAR, PERSON)

# Colours of the label picture (Cityscapes' where the class exists there).
LABEL_COLORS = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [107, 142, 35],
    [70, 130, 180], [0, 0, 142], [220, 20, 60], [152, 251, 152],
], dtype=np.uint8)
