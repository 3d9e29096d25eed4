"""The segmenter's inference: one reshaped net, maps back on each scan's own grid."""
import numpy as np
import pytest

from fetal_biometry.geometry import resample
from fetal_biometry.inference import segmentation
from fetal_biometry.io import dataset
from fetal_biometry.nets import model as model_folder
from fetal_biometry.labels import OUTSIDE, SEGMENTER_VALUES


def test_segment_scan_gives_maps_on_the_scans_own_grid(segmenter_model, fetal_data):
    segmenter = segmentation.Segmenter.from_model(model_folder.load(segmenter_model))
    for case in dataset.open(fetal_data).iter_cases():
        probs, labels = segmenter.classify_scan(case.image, case.geometry, case.spacing_mm)
        assert probs.shape == (8, *case.image.shape) and labels.shape == case.image.shape
        assert set(np.unique(labels)) <= set(SEGMENTER_VALUES)
        outside = case.labels == OUTSIDE
        assert (labels[outside] == OUTSIDE).mean() > 0.98  # the fan, up to its resampled edge
        inside = labels != OUTSIDE
        assert np.allclose(probs[:, inside].sum(axis=0), 1, atol=1e-3)


def test_a_scan_at_another_spacing_is_resampled_to_the_models(segmenter_model, fetal_data):
    segmenter = segmentation.Segmenter.from_model(model_folder.load(segmenter_model))
    case = dataset.open(fetal_data).read(dataset.open(fetal_data).cases[0])
    scale = 1.5
    bigger = resample.image(case.image, scale)
    probe = resample.geometry(case.geometry, scale)
    _, small_labels = segmenter.classify_scan(case.image, case.geometry, case.spacing_mm)
    _, big_labels = segmenter.classify_scan(bigger, probe, case.spacing_mm / scale)
    back = resample.back(big_labels, case.image.shape, scale, nearest=True)
    inside = (small_labels != OUTSIDE) & (back != OUTSIDE)
    assert np.mean(back[inside] == small_labels[inside]) > 0.8


@pytest.mark.parametrize("encoding", ["none", "beam"])
def test_a_net_of_other_channels_is_refused(segmenter_model, encoding):
    model = model_folder.load(segmenter_model)
    with pytest.raises(ValueError, match="input channel"):
        segmentation.Segmenter(model.deploy, model.weights, encoding, model.spacing_mm, 2)


def test_what_takes_only_patch_classifiers_says_so_for_a_segmenter(segmenter_model):
    from fetal_biometry.inference import dense as inference

    model = model_folder.load(segmenter_model)
    with pytest.raises(ValueError, match="a segmenter, not a patch classifier"):
        inference.DenseClassifier.from_model(model)
    assert isinstance(inference.engine(model), segmentation.Segmenter)


def test_a_panel_segmenters_map_holds_dataset_values(panel_segmenter_model, mixed_data):
    from fetal_biometry.labels import DATASET_CLASSES, table_values

    model = model_folder.load(panel_segmenter_model)
    segmenter = segmentation.Segmenter.from_model(model)
    assert (segmenter.values[:15] == table_values(model.classes)[:15]).all()
    for case in dataset.open(mixed_data).iter_cases():
        probs, labels = segmenter.classify_scan(case.image, case.geometry, case.spacing_mm)
        assert probs.shape == (15, *case.image.shape)
        assert set(np.unique(labels)) <= {*DATASET_CLASSES, OUTSIDE}
        inside = labels != OUTSIDE
        # The label map is the argmax read through the table: output index -> dataset value.
        assert (labels[inside] == segmenter.values[probs[:, inside].argmax(axis=0)]).all()
