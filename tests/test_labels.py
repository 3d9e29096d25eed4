"""The class tables: the abdomen table as before, the panel and sweep tables, parents of missing classes."""
import numpy as np
import pytest

from fetal_biometry import labels
from fetal_biometry.labels import (ABDOMEN, BACKGROUND, BRAIN, CAVUM, FEMUR, HEART, KIDNEY, LUNG, OUTSIDE,
                                   RIB, SKULL, SEGMENTER_TABLES, THALAMUS)


def test_the_abdomen_table_is_the_eight_dataset_classes_and_maps_them_to_themselves():
    assert SEGMENTER_TABLES["abdomen"] == labels.SEGMENTER_CLASSES == (
        "background", "amniotic_fluid", "stomach_bubble", "umbilical_vein", "shadow", "abdomen",
        "spine", "rib")
    values = np.array([*range(8), OUTSIDE], np.uint8)
    assert (labels.segmenter_labels(values, SEGMENTER_TABLES["abdomen"]) == values).all()
    # The head's and femur's classes are background to the abdomen table.
    head = np.array([SKULL, BRAIN, THALAMUS, FEMUR], np.uint8)
    assert (labels.segmenter_labels(head, SEGMENTER_TABLES["abdomen"]) == BACKGROUND).all()


def test_the_panel_table_keeps_every_class_the_head_and_femur_are_measured_on():
    table = SEGMENTER_TABLES["panel"]
    assert table[:8] == SEGMENTER_TABLES["abdomen"]
    values = np.array([v for v in sorted(labels.DATASET_CLASSES) if v not in labels.SWEEP_CLASSES] + [OUTSIDE],
                      np.uint8)
    mapped = labels.segmenter_labels(values, table)
    assert [table[i] for i in mapped[:-1]] == [labels.DATASET_CLASSES[v] for v in values[:-1]]
    assert mapped[-1] == OUTSIDE
    # Output index -> dataset value: what a segmenter's argmax becomes for the measurements.
    assert (labels.table_values(table)[mapped] == values).all()


def test_the_sweep_table_learns_heart_lung_and_kidney_and_the_abdomen_table_reads_them_as_abdomen():
    table = SEGMENTER_TABLES["sweep"]
    assert table == SEGMENTER_TABLES["abdomen"] + ("heart", "lung", "kidney")
    levels = np.array([HEART, LUNG, KIDNEY, OUTSIDE], np.uint8)
    assert labels.segmenter_labels(levels, table).tolist() == [8, 9, 10, OUTSIDE]
    assert (labels.table_values(table)[labels.segmenter_labels(levels, table)] == levels).all()
    assert labels.segmenter_labels(levels, SEGMENTER_TABLES["abdomen"]).tolist() == [ABDOMEN] * 3 + [OUTSIDE]
    assert labels.abdomen_labels(levels).tolist() == [ABDOMEN] * 3 + [OUTSIDE]


def test_a_class_a_table_lacks_is_learnt_as_its_parent():
    table = ("background", "skull", "brain", "femur")
    assert labels.learnt_as("thalamus", table) == "brain"
    assert labels.learnt_as("cavum_septi_pellucidi", table) == "brain"
    assert labels.learnt_as("rib", table) == "background"
    mapped = labels.segmenter_labels(np.array([[THALAMUS, CAVUM, RIB, FEMUR, OUTSIDE]], np.uint8), table)
    assert mapped.tolist() == [[2, 2, 0, 3, OUTSIDE]]
    values = labels.table_values(table)
    assert values[:4].tolist() == [BACKGROUND, SKULL, BRAIN, FEMUR] and values[OUTSIDE] == OUTSIDE


@pytest.mark.parametrize("classes", [(), ("amniotic_fluid", "background"), ("background", "heart_of_gold"),
                                     ("background", "skull", "skull"), "background", None])
def test_no_table_but_distinct_dataset_classes_background_first(classes):
    with pytest.raises(ValueError, match="no segmenter class table"):
        labels.check_table(classes)


def test_a_value_no_dataset_class_has_is_refused():
    with pytest.raises(ValueError, match=r"label values \[200\]"):
        labels.segmenter_labels(np.array([0, 200, ABDOMEN], np.uint8), SEGMENTER_TABLES["abdomen"])
    with pytest.raises(ValueError, match="unknown class table 'thorax'"):
        labels.table_of("thorax")
