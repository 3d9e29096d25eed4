"""Model folders: training writes one, and load() refuses every folder that would mislead."""
import json
import shutil

import pytest

from fetal_biometry.nets import model as model_folder, spec as nets
from fetal_biometry.patches import encoding as patches


def test_training_writes_a_model_folder_that_loads(fetal_model):
    model = model_folder.load(fetal_model)
    record = json.loads((fetal_model / "model.json").read_text())
    assert model.encoding == "channels" and model.channels == 3 and model.patch == patches.SIZE
    assert model.spacing_mm == pytest.approx(record["patch"]["mm"] / patches.SIZE)
    assert model.weights.is_file() and model.weights.parent.name == "snapshots"
    assert record["data"]["records"]["train"] > 0 and len(record["data"]["manifest_sha256"]) == 64
    assert record["training"]["iterations"] == 4 and record["versions"]["caffe"]
    assert record["input"] == {"scale": patches.INPUT_SCALE, "mean": None}
    assert (fetal_model / "net.png").read_bytes()[:4] == b"\x89PNG"  # the deploy net's diagram


def test_a_copied_model_folder_still_loads(fetal_model, tmp_path):
    copy = shutil.copytree(fetal_model, tmp_path / "colleague")
    assert model_folder.load(copy).weights == copy / model_folder.load(fetal_model).weights.relative_to(fetal_model)


def _edited(fetal_model, tmp_path, **changes):
    copy = shutil.copytree(fetal_model, tmp_path / "m")
    record = json.loads((copy / "model.json").read_text())
    record.update(changes)
    (copy / "model.json").write_text(json.dumps(record))
    return copy


@pytest.mark.parametrize("changes, message", [
    ({"encoding": "rotate"}, "channels 3 do not fit the 'rotate' encoding"),
    ({"encoding": "sideways"}, "unknown encoding 'sideways'"),
    ({"spacing_mm": 0}, "spacing_mm must be a positive number"),
    ({"weights": "snapshots/gone.caffemodel"}, "gone.caffemodel, which is missing"),
    ({"format": "something-else"}, "format 'something-else'"),
])
def test_load_refuses_a_record_that_does_not_fit(fetal_model, tmp_path, changes, message):
    with pytest.raises(model_folder.ModelError, match=message):
        model_folder.load(_edited(fetal_model, tmp_path, **changes))


def test_load_names_a_weights_file_given_instead_of_a_folder(fetal_model):
    weights = model_folder.load(fetal_model).weights
    with pytest.raises(model_folder.ModelError, match="not a model folder.*give the run folder"):
        model_folder.load(weights)


def test_a_deploy_net_of_another_patch_size_is_refused(fetal_model, tmp_path):
    copy = _edited(fetal_model, tmp_path)
    nets.save(nets.patch_classifier_deploy(3, 32), copy / "deploy.prototxt")
    with pytest.raises(model_folder.ModelError, match=r"input \[\[1, 3, 32, 32\]\] does not match"):
        model_folder.load(copy)


def test_a_trained_segmenter_is_a_model_folder_of_its_kind(segmenter_model):
    model = model_folder.load(segmenter_model)
    assert model.kind == model_folder.SEGMENTER and model.encoding == "channels"
    assert model.unet == {"depth": 2, "width": 4, "tile": 32} and model.spacing_mm == 2.0
    assert len(model.classes) == 8 and model.classes[5] == "abdomen"
    validation = model.record["training"]["validation"]
    assert len(validation["per_class_dice"]) == 8 and len(validation["per_class_accuracy"]) == 8


def test_a_version_1_model_folder_reads_as_a_patch_classifier(fetal_model, tmp_path):
    record = json.loads((fetal_model / "model.json").read_text())
    del record["kind"]
    copy = _edited(fetal_model, tmp_path, **{**record, "version": 1})
    assert model_folder.load(copy).kind == model_folder.PATCH_CLASSIFIER


def test_an_unknown_kind_is_refused(fetal_model, tmp_path):
    with pytest.raises(model_folder.ModelError, match="unknown kind 'detector'"):
        model_folder.load(_edited(fetal_model, tmp_path, kind="detector"))


def test_a_segmenter_of_the_panel_table_loads_with_its_table(panel_segmenter_model, tmp_path):
    from fetal_biometry.labels import SEGMENTER_TABLES

    model = model_folder.load(panel_segmenter_model)
    assert model.classes == SEGMENTER_TABLES["panel"] and len(model.classes) == 15
    assert len(model.record["training"]["validation"]["per_class_dice"]) == 15
    # A table of another length than the net's outputs is refused before Caffe runs it.
    copy = _edited(panel_segmenter_model, tmp_path, classes=list(SEGMENTER_TABLES["abdomen"]))
    with pytest.raises(model_folder.ModelError, match="the net gives 15 classes, but .*model.json lists 8"):
        model_folder.load(copy)
    with pytest.raises(model_folder.ModelError, match="no segmenter class table"):
        model_folder.load(_edited(panel_segmenter_model, tmp_path / "b", classes=["skull", "background"]))
