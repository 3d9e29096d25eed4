"""The class tables: what a label value means in a dataset, the patch classifier and the segmenter.

A dataset's label maps use the **dataset classes** (:data:`CLASSES`, fixed by the dataset
format); the patch classifier predicts the first five of them (:data:`CLASSIFIER_CLASSES`):
the four the source colours in its results, plus background for everything else (abdomen
tissue, spine and ribs are background to the classifier). The segmenter predicts all eight
(:data:`SEGMENTER_CLASSES`, values as in the dataset): the abdomen is a class at last; a
segmenter of the head and femur too learns a longer table (:data:`SEGMENTER_TABLES`). Pixels
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

#: The abdomen segmenter's classes, in the order of its outputs: the dataset's own table, values
#: 0-7 (the class table "abdomen", :data:`SEGMENTER_TABLES`).
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
ABDOMEN_REGION = ABDOMEN_REGION + tuple(SWEEP_CLASSES)
COLOURS.update({HEART: (200, 0, 80), LUNG: (150, 200, 255), KIDNEY: (120, 80, 0)})


# --------------------------------------------------------------------------- segmenter class tables

#: The segmenter's class tables by name: ordered tuples of dataset class names
#: (:data:`DATASET_CLASSES` values); output ``i`` of a segmenter is class ``i`` of its table, and
#: its model folder records the table it learnt (``classes`` in model.json). "abdomen" is the
#: abdominal plane's eight classes (:data:`SEGMENTER_CLASSES`); "panel" adds the head's and the
#: femur's: every class the head's plane rules read (thalami, cavum and cerebellum tell a
#: transthalamic from a transcerebellar plane, :mod:`fetal_biometry.measure.head`); "sweep" adds
#: the levels a sweep passes and must not choose (heart, lung, kidney: :data:`SWEEP_CLASSES`).
SEGMENTER_TABLES = {
    "abdomen": SEGMENTER_CLASSES,
    "panel": SEGMENTER_CLASSES + tuple(HEAD_FEMUR_CLASSES[v] for v in sorted(HEAD_FEMUR_CLASSES)),
    "sweep": SEGMENTER_CLASSES + tuple(SWEEP_CLASSES[v] for v in sorted(SWEEP_CLASSES)),
}
#: The class a dataset class is learnt as by a table that lacks it, climbed until the table has
#: one (background, in every table, ends each chain): the head's landmarks are brain, the rest
#: background. Classes not named here are background.
PARENTS = {"midline": "brain", "thalamus": "brain", "cavum_septi_pellucidi": "brain",
           "cerebellum": "brain", "heart": "abdomen", "lung": "abdomen", "kidney": "abdomen"}
#: The class each plane structure (:data:`fetal_biometry.io.dataset.STRUCTURES`) is measured on:
#: a table without it cannot learn that structure's planes.
STRUCTURE_CLASSES = {"abdomen": "abdomen", "head": "skull", "femur": "femur"}


def check_table(classes) -> tuple[str, ...]:
    """A segmenter's class table as a tuple, or ValueError: distinct dataset class names,
    background first."""
    known = set(DATASET_CLASSES.values())
    table = tuple(classes) if isinstance(classes, (list, tuple)) else ()
    if not table or table[0] != "background" or len(set(table)) != len(table) \
            or not all(isinstance(name, str) and name in known for name in table):
        raise ValueError(f"classes {classes!r} are no segmenter class table: distinct dataset class "
                         f"names ({', '.join(DATASET_CLASSES.values())}), background first")
    return table


def table_of(name: str) -> tuple[str, ...]:
    """The named class table (:data:`SEGMENTER_TABLES`), or ValueError naming the known ones."""
    if name not in SEGMENTER_TABLES:
        raise ValueError(f"unknown class table {name!r}; known: {', '.join(SEGMENTER_TABLES)}")
    return SEGMENTER_TABLES[name]


def learnt_as(name: str, classes: tuple[str, ...]) -> str:
    """The class of ``classes`` that dataset class ``name`` is learnt as: itself, else its
    parent's (:data:`PARENTS`), else background."""
    while name not in classes:
        name = PARENTS.get(name, "background")
    return name


def segmenter_lut(classes: tuple[str, ...]) -> np.ndarray:
    """Dataset label value -> output index of the table ``classes`` (int16, 256 entries):
    :data:`OUTSIDE` stays outside, a value no dataset class has is -1."""
    table = check_table(classes)
    lut = np.full(256, -1, np.int16)
    lut[OUTSIDE] = OUTSIDE
    for value, name in DATASET_CLASSES.items():
        lut[value] = table.index(learnt_as(name, table))
    return lut


def segmenter_labels(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """A dataset label map as the output indices of the table ``classes`` (uint8, :data:`OUTSIDE`
    outside); ValueError for a value that is no dataset class."""
    mapped = segmenter_lut(classes)[labels]
    if (mapped < 0).any():
        unknown = sorted(set(np.unique(labels[mapped < 0]).tolist()))
        raise ValueError(f"label values {unknown} are no dataset class ({sorted(DATASET_CLASSES)})")
    return mapped.astype(np.uint8)


def table_values(classes: tuple[str, ...]) -> np.ndarray:
    """Output index -> dataset label value of the table ``classes`` (uint8, 256 entries:
    :data:`OUTSIDE` stays outside): a segmenter's argmax as a dataset map, which the measurements
    read."""
    values = {name: value for value, name in DATASET_CLASSES.items()}
    lut = np.full(256, OUTSIDE, np.uint8)
    lut[:len(classes)] = [values[name] for name in check_table(classes)]
    return lut


def abdomen_labels(labels: np.ndarray) -> np.ndarray:
    """A map with the sweep's levels (:data:`SWEEP_CLASSES`) as the class they are learnt as in
    the abdomen's table (:func:`learnt_as`: abdomen): the map the abdomen's measurement reads;
    other values unchanged."""
    lut = np.arange(256, dtype=np.uint8)
    for value, name in SWEEP_CLASSES.items():
        lut[value] = SEGMENTER_CLASSES.index(learnt_as(name, SEGMENTER_CLASSES))
    return lut[labels]
