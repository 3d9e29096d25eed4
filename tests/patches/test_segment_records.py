"""The segmenter's dense label records: round trip, augmentation consistency, manifest, guards."""
import json

import numpy as np
import pytest
from scipy import ndimage

from fetal_biometry.io import dataset
from fetal_biometry.patches import segment_records
from fetal_biometry.labels import ABDOMEN, BACKGROUND, FLUID, OUTSIDE, SEGMENTER_CLASSES


@pytest.fixture(scope="module")
def coded_data(tmp_path_factory, fetal_data):
    """The simulated scans with each image replaced by its label map coded as gray
    (``20 + 28 * label``): image and labels can then be checked against each other anywhere."""
    source = dataset.open(fetal_data)
    cases = []
    for case in source.iter_cases():
        image = np.where(case.labels == OUTSIDE, 0, 20 + 28 * case.labels.astype(int)).astype(np.uint8)
        cases.append(dataset.Case(case.name, image, case.labels, case.geometry, case.spacing_mm,
                                  case.biometry))
    return dataset.write_dataset(tmp_path_factory.mktemp("coded") / "data", cases)




@pytest.mark.parametrize("encoding", ["none", "channels", "beam"])
def test_records_round_trip(tmp_path, coded_data, encoding):
    out = tmp_path / "records"
    manifest = segment_records.build(dataset.open(coded_data), out, encoding, spacing_mm=2.0, tile=48,
                                     fractions=(0.5, 0.25, 0.25), seed=3)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    total = {name: 0 for name in SEGMENTER_CLASSES}
    records = list(segment_records.read_records(out, "train"))
    assert len(records) == manifest["splits"]["train"]["records"] > 0
    for _, image, labels in records:
        assert image.shape == (manifest["channels"], 48, 48) and labels.shape == (48, 48)
        inside = labels != OUTSIDE
        # Without augmentation every labelled pixel's gray is its class's code, up to
        # the blending of bilinear resampling at class edges.
        exact = image[0][inside] == 20 + 28 * labels[inside].astype(int)
        assert exact.mean() > 0.6
        for value, name in enumerate(SEGMENTER_CLASSES):
            total[name] += int(np.count_nonzero(labels == value))
    assert total == manifest["splits"]["train"]["pixels"]
    weights = manifest["balance"]["weights"]
    assert weights["umbilical_vein"] > weights["amniotic_fluid"]  # rare classes weigh more
    assert (out / "infogain.binaryproto").is_file()


@pytest.mark.parametrize("encoding", ["channels", "beam"])
def test_augmentation_moves_image_labels_and_directions_together(tmp_path, coded_data, encoding):
    out = tmp_path / "records"
    manifest = segment_records.build(dataset.open(coded_data), out, encoding, spacing_mm=2.0, tile=48,
                                     fractions=(0.5, 0.25, 0.25), seed=3, augment=3)
    assert manifest["augment"]["copies"] == 3
    clean = segment_records.build(dataset.open(coded_data), tmp_path / "clean", encoding, spacing_mm=2.0,
                                  tile=48, fractions=(0.5, 0.25, 0.25), seed=3)
    copies = manifest["splits"]["train"]["records"] / clean["splits"]["train"]["records"]
    # Four versions of each scan; a scaled beam grid may need a tile more or less.
    assert copies == 4 if encoding != "beam" else 3 <= copies <= 5
    assert manifest["splits"]["val"]["sha256"] == clean["splits"]["val"]["sha256"]  # val stays clean
    checked = 0
    for _, image, labels in segment_records.read_records(out, "train"):
        # Inside uniform 7x7 neighbourhoods (away from blurred edges) background (coded 20),
        # fluid (48) and abdomen (160) keep their order in every tile: intensity changes are
        # monotone, so gray still follows the labels after every transform.
        uniform = ndimage.minimum_filter(labels, 7) == ndimage.maximum_filter(labels, 7)
        medians = [np.median(image[0][uniform & (labels == value)])
                   for value in (BACKGROUND, FLUID, ABDOMEN)
                   if np.count_nonzero(uniform & (labels == value)) >= 20]
        if len(medians) == 3:
            assert medians == sorted(medians)
            checked += 1
        if encoding == "channels":
            # The direction planes are unit vectors (coded 128 + 127 d) wherever a label is.
            d = (image[1:].astype(float) - 128) / 127
            length = np.hypot(d[0], d[1])[labels != OUTSIDE]
            assert np.abs(length - 1).mean() < 0.05
    assert checked >= 5


def test_same_seed_gives_identical_records(tmp_path, coded_data):
    made = [segment_records.build(dataset.open(coded_data), tmp_path / f"r{i}", "beam", spacing_mm=2.0,
                                  tile=32, fractions=(0.5, 0.25, 0.25), seed=5, augment=1)
            for i in range(2)]
    assert made[0]["splits"] == made[1]["splits"]


@pytest.mark.parametrize("kwargs, message", [
    ({"encoding": "rotate"}, "encoding 'rotate'"),
    ({"tile": 40}, "a multiple of 16"),
    ({"spacing_mm": 0}, "positive number of mm"),
    ({"augment": 99}, "--augment"),
    ({"weighting": "inverse"}, "--weighting"),
])
def test_useless_parameters_are_refused_and_nothing_is_written(tmp_path, coded_data, kwargs, message):
    with pytest.raises(segment_records.RecordError, match=message):
        segment_records.build(dataset.open(coded_data), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_class_weights_lift_the_rare_classes_and_keep_one_weight_for_the_large():
    # Four large classes, a rare one at 1/9 of the median, one at 1/400, one absent.
    pixels = [900, 900, 900, 900, 100, 100, 2, 0]
    soft = np.array(segment_records.class_weights(pixels, weighting="sqrt"))
    full = np.array(segment_records.class_weights(pixels, weighting="full"))
    for weights in (soft, full):
        assert np.allclose(weights[:4], weights[0]) and weights[7] == 1.0
        freq = np.array(pixels[:7]) / sum(pixels)
        assert (freq * weights[:7]).sum() == pytest.approx(1.0)  # a training pixel weighs 1
    assert soft[4] / soft[0] == pytest.approx(3.0) and soft[6] / soft[0] == pytest.approx(np.sqrt(450))
    assert full[4] / full[0] == pytest.approx(9.0) and full[6] / full[0] == pytest.approx(segment_records.FULL_CAP)


def test_tiles_cover_a_long_side_with_overlap_and_a_short_one_padded():
    assert segment_records.tile_origins(100, 128) == [0]
    assert segment_records.tile_origins(200, 128) == [0, 72]
    planes = np.ones((1, 100, 200), np.uint8)
    labels = np.zeros((100, 200), np.uint8)
    pieces = list(segment_records.tiles(planes, labels, 128))
    assert len(pieces) == 2
    image, label = pieces[0]
    assert (label[0, 100:] == OUTSIDE).all() and (image[0, 100:] == 0).all()


def test_the_tool_writes_records_and_never_replaces_other_files(tmp_path, fetal_data, capsys):
    from tools import make_segment_records

    out = tmp_path / "records"
    assert make_segment_records.main([str(fetal_data), str(out), "--encoding", "beam", "--tile", "32",
                                      "--spacing-mm", "2", "--splits", "0.5,0.25,0.25"]) == 0
    manifest = segment_records.read_manifest(out)
    assert manifest["encoding"] == "beam" and manifest["sources"]["dataset"] == str(fetal_data.resolve())
    assert make_segment_records.main([str(fetal_data), str(out)]) == 1  # an earlier output: --overwrite
    assert "--overwrite" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert make_segment_records.main([str(fetal_data), str(other)]) == 1
    assert (other / "notes.txt").read_text() == "keep"
    assert make_segment_records.main([str(fetal_data), str(fetal_data / "records")]) == 1  # inside the input
    assert make_segment_records.main([str(tmp_path / "missing"), str(tmp_path / "x")]) == 1
    assert "missing" in capsys.readouterr().err


def test_panel_records_hold_the_head_and_femur_classes_and_the_abdomen_table_refuses_them(
        tmp_path, mixed_data):
    from fetal_biometry.labels import SEGMENTER_TABLES

    data = dataset.open(mixed_data)
    assert data.structures() == {"abdomen", "head", "femur"}
    with pytest.raises(segment_records.RecordError, match="femur and head planes.*--classes panel"):
        segment_records.build(data, tmp_path / "abdomen", "channels", spacing_mm=2.0, tile=48)
    assert not (tmp_path / "abdomen").exists()
    manifest = segment_records.build(data, tmp_path / "panel", "channels", spacing_mm=2.0, tile=48,
                                     fractions=(0.5, 0.25, 0.25), seed=1, classes="panel")
    table = SEGMENTER_TABLES["panel"]
    assert manifest["classes"] == list(table) and manifest["class_table"] == "panel"
    assert manifest["learnt_as"] == {"heart": "abdomen", "lung": "abdomen", "kidney": "abdomen"}
    pixels = {name: 0 for name in table}
    for split in ("train", "val", "test"):
        for _, _, labels in segment_records.read_records(tmp_path / "panel", split):
            for index, name in enumerate(table):
                pixels[name] += int(np.count_nonzero(labels == index))
            assert set(np.unique(labels)) <= {*range(len(table)), OUTSIDE}
    assert pixels == {name: sum(manifest["splits"][s]["pixels"][name] for s in manifest["splits"])
                      for name in table}
    for name in ("skull", "brain", "femur", "abdomen"):
        assert pixels[name] > 0, name
    assert len(manifest["balance"]["weights"]) == len(table)


def test_an_unknown_class_table_is_refused(tmp_path, coded_data):
    with pytest.raises(segment_records.RecordError, match="--classes"):
        segment_records.build(dataset.open(coded_data), tmp_path / "out", classes="thorax")


def test_rare_added_classes_do_not_lower_the_landmarks_weights():
    # The abdomen's eight as a training split counts them, then heart, lung, kidney (rarer still).
    eight = [1110657, 1960169, 20532, 18957, 309446, 673470, 11749, 11367]
    alone = segment_records.class_weights(eight)
    own = segment_records.class_weights(eight + [4362, 9820, 1526])
    over_eight = segment_records.class_weights(eight + [4362, 9820, 1526], "median", [True] * 8 + [False] * 3)
    assert alone[2] > 2.5 and own[2] < 1.5  # the stomach bubble's weight, by its own table's median
    assert over_eight[2] > 2.5 and min(over_eight[8:]) > over_eight[2]
    assert segment_records.MEDIAN_OVER == {"sweep": "abdomen"}


def test_uniform_balance_lifts_classes_below_one_in_k_where_the_median_would_not():
    # 15 classes, most of them tiny: the median class is tiny too, so a class of 0.5 % stays at
    # the median rule's floor; against 1/K it is lifted.
    pixels = [4000, 8000, 20, 20, 1400, 1000, 15, 15, 90, 900, 10, 80, 26, 3, 4]
    median, uniform = (segment_records.class_weights(pixels, r) for r in ("median", "uniform"))
    femur = 11
    assert median[femur] == pytest.approx(median[0]) and uniform[femur] > 3 * uniform[0]
    freq = np.asarray(pixels) / sum(pixels)
    assert float(np.dot(freq, uniform)) == pytest.approx(1.0)  # the loss keeps its size
    assert segment_records.BALANCES["median"] == segment_records.BALANCE
