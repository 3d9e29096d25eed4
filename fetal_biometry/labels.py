"""The class tables: what a label value means in a dataset, the patch classifier and the segmenter.

A dataset's label maps use the **dataset classes** (:data:`CLASSES`, fixed by the dataset
format); the patch classifier predicts the first five of them (:data:`CLASSIFIER_CLASSES`):
the four the source colours in its results, plus background for everything else (abdomen
tissue, spine and ribs are background to the classifier). The segmenter predicts all eight
(:data:`SEGMENTER_CLASSES`, values as in the dataset): the abdomen is a class at last. Pixels
outside the imaged fan are :data:`OUTSIDE` in all. :data:`COLOURS` is the one colour table of
every overlay.

**The abdomen under shadow.** The dataset layers shadow over everything but bone, so where a
rib or spine shadow crosses the body the abdomen's pixels read *shadow*. The segmenter learns
the truth as it is drawn (one output per pixel, shadow winning): a pixel under shadow shows no
tissue, and an annotator of real scans labels what is seen, so a second "abdomen behind the
shadow" output would need a truth no real dataset has. The abdomen *region* is rebuilt where it
is measured (:mod:`fetal_biometry.abdomen`): the union of :data:`ABDOMEN_REGION`, its holes
(shadow inside the body) filled, and the ellipse fit bridging the stretches of outline that
border shadow, which it never uses as wall.
"""
from __future__ import annotations

import numpy as np

#: Dataset label value -> name (the dataset format's class table).
CLASSES = {0: "background", 1: "amniotic_fluid", 2: "stomach_bubble", 3: "umbilical_vein",
           4: "shadow", 5: "abdomen", 6: "spine", 7: "rib"}
BACKGROUND, FLUID, STOMACH, VEIN, SHADOW, ABDOMEN, SPINE, RIB = range(8)
OUTSIDE = 255  # outside the fan: ignored

#: The patch classifier's classes, in the order of its outputs; values 0-4 as in the dataset.
CLASSIFIER_CLASSES = ("background", "amniotic_fluid", "stomach_bubble", "umbilical_vein", "shadow")
#: Every value a classifier label map holds.
CLASSIFIER_VALUES = (*range(len(CLASSIFIER_CLASSES)), OUTSIDE)

#: Dataset label value -> classifier class: 1-4 are the same; abdomen, spine and rib are
#: background to the classifier.
LABEL_TO_CLASS = {value: value if value < len(CLASSIFIER_CLASSES) else BACKGROUND
                  for value in CLASSES}

#: The segmenter's classes, in the order of its outputs: the dataset's own table, values 0-7.
SEGMENTER_CLASSES = tuple(CLASSES[value] for value in sorted(CLASSES))
#: Every value a segmenter label map holds.
SEGMENTER_VALUES = (*range(len(SEGMENTER_CLASSES)), OUTSIDE)
#: Classes that make up the fetal abdomen as it is measured: its tissue and what lies inside it.
ABDOMEN_REGION = (ABDOMEN, STOMACH, VEIN, SPINE, RIB)

#: Overlay colours (RGB) per label value, shared by dataset and classifier maps.
COLOURS = {1: (40, 120, 255), 2: (255, 220, 0), 3: (255, 40, 40), 4: (150, 60, 200),
           5: (60, 200, 90), 6: (0, 230, 230), 7: (255, 140, 0)}


def classifier_labels(labels: np.ndarray) -> np.ndarray:
    """Map a dataset label map to classifier classes; :data:`OUTSIDE` stays outside."""
    lut = np.full(256, OUTSIDE, np.uint8)
    for label, cls in LABEL_TO_CLASS.items():
        lut[label] = cls
    return lut[labels]


# --------------------------------------------------------------------------- head and femur planes

#: The classes of head and femur planes: the skull's bone, the brain inside it, the
#: midline echo (falx), the femur's ossified diaphysis, and the head's plane landmarks as ISUOG
#: names them (the transthalamic plane shows the thalami and the cavum septi pellucidi, not the
#: cerebellum, which the transcerebellar plane shows). The patch classifier sees them as background.
HEAD_FEMUR_CLASSES = {8: "skull", 9: "brain", 10: "midline", 11: "femur", 12: "thalamus",
                      13: "cavum_septi_pellucidi", 14: "cerebellum"}
SKULL, BRAIN, MIDLINE, FEMUR, THALAMUS, CAVUM, CEREBELLUM = HEAD_FEMUR_CLASSES
#: Everything inside the skull's outer border in a head plane's map.
HEAD_REGION = (SKULL, BRAIN, MIDLINE, THALAMUS, CAVUM, CEREBELLUM)
#: Every value a dataset's label map may hold (besides :data:`OUTSIDE`) -> name: the dataset
#: format's class table, abdominal planes' classes first.
DATASET_CLASSES = {**CLASSES, **HEAD_FEMUR_CLASSES}
LABEL_TO_CLASS.update(dict.fromkeys(HEAD_FEMUR_CLASSES, BACKGROUND))
COLOURS.update({SKULL: (210, 210, 210), BRAIN: (255, 120, 200), MIDLINE: (120, 255, 120),
                FEMUR: (255, 190, 120), THALAMUS: (170, 90, 40), CAVUM: (0, 120, 160),
                CEREBELLUM: (200, 200, 60)})


# --------------------------------------------------------------------------- levels a sweep passes

#: The classes of the levels a sweep passes that must never be chosen for the AC: the thorax
#: (heart, lungs) and the renal level (kidneys, with their sinus). Until they had classes of their
#: own they were drawn as abdomen tissue; in the abdomen's eight classes they still are (the
#: abdomen segmenter's records stay what they were). The heart's chambers are drawn as vessel
#: (abdomen), as the aorta's lumen is.
SWEEP_CLASSES = {15: "heart", 16: "lung", 17: "kidney"}
HEART, LUNG, KIDNEY = SWEEP_CLASSES
DATASET_CLASSES.update(SWEEP_CLASSES)
LABEL_TO_CLASS.update(dict.fromkeys(SWEEP_CLASSES, BACKGROUND))
#: The class these are in a table without them: all lie inside the fetal body.
SWEEP_PARENT = ABDOMEN
ABDOMEN_REGION = ABDOMEN_REGION + tuple(SWEEP_CLASSES)
COLOURS.update({HEART: (200, 0, 80), LUNG: (150, 200, 255), KIDNEY: (120, 80, 0)})


def abdomen_labels(labels: np.ndarray) -> np.ndarray:
    """A map with the sweep's levels (:data:`SWEEP_CLASSES`) as the abdomen they lie in: the
    map the abdomen's measurement reads; other values unchanged."""
    lut = np.arange(256, dtype=np.uint8)
    lut[list(SWEEP_CLASSES)] = SWEEP_PARENT
    return lut[labels]
