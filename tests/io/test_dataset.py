"""The dataset format: writing, validating (every problem, with its case), reading, v1, DICOM."""
from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest

import dicom_files
from fetal_biometry import simulator
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset
from fetal_biometry.labels import BACKGROUND, DATASET_CLASSES, OUTSIDE

SHAPE = (128, 128)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated dataset on disk, and the cases it was written from."""
    cases = list(simulator.simulate(4, seed=11, shape=SHAPE, probe="mixed"))
    root = dataset.write_dataset(tmp_path_factory.mktemp("data") / "sim", cases, {"name": "test"})
    return root, cases


@pytest.fixture
def copy(simulated, tmp_path):
    """A private copy of the simulated dataset, free to break."""
    return shutil.copytree(simulated[0], tmp_path / "copy")


def test_written_dataset_validates_and_loads_back_unchanged(simulated):
    root, cases = simulated
    assert dataset.validate(root) == []
    data = dataset.open(root)
    assert data.cases == tuple(c.name for c in cases) and data.generator == {"name": "test"}
    index = json.loads((root / "dataset.json").read_text())
    assert index["format"] == dataset.FORMAT and index["version"] == 2 == data.version
    assert index["classes"] == {str(k): v for k, v in DATASET_CLASSES.items()}
    assert data.structures() == {"abdomen"} and "source" not in index
    for case, loaded in zip(cases, data.iter_cases(), strict=True):
        np.testing.assert_array_equal(loaded.image, case.image)
        np.testing.assert_array_equal(loaded.labels, case.labels)
        assert (loaded.geometry, loaded.spacing_mm, loaded.biometry) == \
            (case.geometry, case.spacing_mm, case.biometry)


def _edit_record(root, name, edit):
    path = root / "cases" / f"{name}.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_validate_reports_every_problem_with_its_case(copy):
    (copy / "images" / "sim00000.png").unlink()
    (copy / "cases" / "sim00000.json").write_text("{not json")
    labels = cv2.imread(str(copy / "labels" / "sim00001.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(copy / "labels" / "sim00001.png"), labels[:64, :64])
    labels = cv2.imread(str(copy / "labels" / "sim00002.png"), cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero(labels != OUTSIDE)
    labels[ys[0], xs[0]] = 99
    cv2.imwrite(str(copy / "labels" / "sim00002.png"), labels)

    def off_image(record):
        record["probe"]["origin" if record["probe"]["type"] == "linear" else "apex"][1] = 5000.0

    _edit_record(copy, "sim00002", off_image)
    _edit_record(copy, "sim00003", lambda r: r["biometry"].update(circumference_mm=2 * r["biometry"]["circumference_mm"]))
    shutil.copy(copy / "images" / "sim00003.png", copy / "images" / "stray.png")

    problems = dataset.validate(copy)
    expected = [("sim00000", "missing images/sim00000.png"), ("sim00000", "not valid JSON"),
                ("sim00001", "label map is 64x64 but the image is 128x128"),
                ("sim00002", "unknown label values [99]"), ("sim00002", "entirely outside"),
                ("sim00003", "disagrees with the ellipse"), ("stray.png", "not listed")]
    for case, message in expected:
        assert any(case in p and message in p for p in problems), (case, message, problems)
    assert len(problems) == len(expected), problems
    with pytest.raises(dataset.DatasetError) as error:
        dataset.open(copy)  # finds every problem that needs no pixels
    cheap = [p for p in problems if "sim00000" in p or "stray" in p]
    assert len(cheap) == 3 and str(error.value).endswith("\n  ".join(cheap))


def test_labels_must_match_the_fan(copy):
    labels = cv2.imread(str(copy / "labels" / "sim00001.png"), cv2.IMREAD_UNCHANGED)
    labels[labels == OUTSIDE] = BACKGROUND
    cv2.imwrite(str(copy / "labels" / "sim00001.png"), labels)
    problems = dataset.validate(copy)
    assert len(problems) == 1
    assert problems[0].startswith("sim00001: labels disagree with the probe's fan")
    data = dataset.open(copy)  # the fan needs the pixels: only reading the case finds it
    with pytest.raises(dataset.DatasetError, match="sim00001"):
        data.read("sim00001")
    names = []
    with pytest.raises(dataset.DatasetError, match=r"1 problem\(s\):\n  sim00001: labels disagree"):
        names.extend(case.name for case in data.iter_cases())
    assert names == ["sim00000", "sim00002", "sim00003"]  # the good cases first, then the report



@pytest.mark.parametrize("edit, message", [
    (lambda i: i.update(version=3), "version 3"),
    (lambda i: i["classes"].update({"8": "heart"}), "class table differs"),
    (lambda i: i.update(cases="sim00000"), "must be a list of case names"),
    (lambda i: i["cases"].append("../escape"), "plain file names"),
    (lambda i: i["cases"].append("sim00000"), "listed twice"),
])
def test_validate_checks_dataset_json(copy, edit, message):
    index = json.loads((copy / "dataset.json").read_text())
    edit(index)
    (copy / "dataset.json").write_text(json.dumps(index))
    assert any(message in p for p in dataset.validate(copy))


def test_missing_dataset_json_and_missing_folder(copy, tmp_path):
    (copy / "dataset.json").unlink()
    assert "dataset.json: missing" in dataset.validate(copy)[0]
    assert "not a folder" in dataset.validate(tmp_path / "nowhere")[0]


def test_case_record_fields_are_checked(copy):
    _edit_record(copy, "sim00000", lambda r: r.pop("pixel_spacing_mm"))
    _edit_record(copy, "sim00001", lambda r: r["biometry"].update(plane_acceptable="yes"))
    _edit_record(copy, "sim00002", lambda r: r["biometry"]["ellipse"].update(semi_axes=[1, 2]))
    _edit_record(copy, "sim00003", lambda r: r["probe"].update(type="phased"))
    problems = dataset.validate(copy)
    assert "lacks 'pixel_spacing_mm'" in problems[0] and "sim00000" in problems[0]
    assert "plane_acceptable has the wrong type" in problems[1]
    assert "a >= b > 0" in problems[2]
    assert "probe: probe must be an object with type" in problems[3]


def test_write_dataset_is_atomic(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def killed():
        yield from simulator.simulate(1, seed=0, shape=(96, 96))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.write_dataset(out, killed())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
    assert (out / "keep.txt").read_text() == "old"


def test_write_dataset_refuses_invalid_cases(tmp_path):
    case = simulator.simulate_case(0, 0, shape=(96, 96))
    labels = case.labels.copy()
    labels[0, 0] = 42
    bad = dataset.Case(case.name, case.image, labels, case.geometry, case.spacing_mm, case.biometry)
    with pytest.raises(dataset.DatasetError, match="unknown label values"):
        dataset.write_dataset(tmp_path / "out", [bad])
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- DICOM

GRAY = np.random.default_rng(3).integers(0, 256, (24, 32)).astype(np.uint8)


def test_dicom_gray_16_bit_monochrome1_rgb_and_palette(tmp_path):
    dicom_files.write(tmp_path / "m2.dcm", GRAY, "MONOCHROME2")
    np.testing.assert_array_equal(dataset.read_image(tmp_path / "m2.dcm"), GRAY)

    twelve = (GRAY.astype(np.uint16) * 16)  # 12 bits stored
    dicom_files.write(tmp_path / "m1.dcm", twelve, "MONOCHROME1", bits=12)
    expected = 255 - np.rint(twelve.astype(float) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(dataset.read_image(tmp_path / "m1.dcm"), expected)

    rgb = np.stack([GRAY, 255 - GRAY, np.full_like(GRAY, 100)], axis=-1)
    dicom_files.write(tmp_path / "rgb.dcm", rgb, "RGB")
    luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(dataset.read_image(tmp_path / "rgb.dcm"), luma, atol=1)

    index = np.arange(256)
    lut = (np.stack([index, 255 - index, np.full(256, 100)], axis=1) * 257).astype(np.uint16)
    dicom_files.write(tmp_path / "pal.dcm", GRAY, "PALETTE COLOR", lut=lut)
    np.testing.assert_allclose(dataset.read_image(tmp_path / "pal.dcm"), luma, atol=1)


def test_unreadable_and_multiframe_dicom_are_reported(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(ValueError, match="unreadable DICOM"):
        dataset.read_image(tmp_path / "junk.dcm")
    dicom_files.write(tmp_path / "cine.dcm", np.stack([GRAY, GRAY]), frames=2)
    with pytest.raises(ValueError, match="2 frames"):
        dataset.read_image(tmp_path / "cine.dcm")


def test_a_case_may_hold_a_dicom_image(copy):
    image = cv2.imread(str(copy / "images" / "sim00002.png"), cv2.IMREAD_UNCHANGED)
    (copy / "images" / "sim00002.png").unlink()
    dicom_files.write(copy / "images" / "sim00002.dcm", image)
    assert dataset.validate(copy) == []
    np.testing.assert_array_equal(dataset.open(copy).read("sim00002").image, image)
    cv2.imwrite(str(copy / "images" / "sim00002.png"), image)
    assert "both images/sim00002.png and images/sim00002.dcm" in dataset.validate(copy)[0]


def test_fan_of_every_case_agrees_with_labels(simulated):
    for case in simulated[1]:
        fan = geom.fan_mask(case.geometry, case.labels.shape)
        np.testing.assert_array_equal(case.labels == OUTSIDE, ~fan)


# --------------------------------------------------------------------------- versions, reading

def _to_version_1(root) -> None:
    """Rewrite a version 2 dataset in place as version 1 wrote it."""
    index = json.loads((root / "dataset.json").read_text())
    index["version"] = 1
    (root / "dataset.json").write_text(json.dumps(index))
    for path in (root / "cases").glob("*.json"):
        record = json.loads(path.read_text())
        bio = record["biometry"]
        assert bio.pop("structure") == "abdomen" and bio.pop("fit_rms_px") is None
        bio["abdomen_ellipse"], bio["ac_mm"] = bio.pop("ellipse"), bio.pop("circumference_mm")
        path.write_text(json.dumps(record))


def test_version_1_datasets_are_still_read(simulated, copy):
    _to_version_1(copy)
    assert dataset.validate(copy) == []
    data = dataset.open(copy)
    assert data.version == 1 and data.structures() == {"abdomen"}
    for case, loaded in zip(simulated[1], data.iter_cases(), strict=True):
        assert loaded.biometry == case.biometry and loaded.biometry.ac_mm == case.biometry.ac_mm
    _edit_record(copy, "sim00000", lambda r: r["biometry"].pop("ac_mm"))
    assert "lacks 'ac_mm'" in dataset.validate(copy)[0]


def test_head_planes_carry_their_structure(simulated, tmp_path):
    case = simulated[1][0]
    bio = dataclasses.replace(case.biometry, structure="head", fit_rms_px=0.4,
                              plane_reason="HC18 plane", gestational_age_weeks=None)
    labels = np.where(case.labels == OUTSIDE, OUTSIDE, BACKGROUND).astype(np.uint8)
    head = dataset.Case(case.name, case.image, labels, case.geometry, case.spacing_mm, bio)
    root = dataset.write_dataset(tmp_path / "heads", [head], source={"format": "hc18"})
    data = dataset.open(root)
    assert data.structures() == {"head"} and data.source == {"format": "hc18"}
    loaded = data.read(case.name)
    assert loaded.biometry == bio and loaded.biometry.ac_mm is None
    _edit_record(root, case.name, lambda r: r["biometry"].update(structure="knee"))
    assert "structure must be one of" in dataset.validate(root)[0]


def test_open_reads_no_pixels_and_each_case_is_decoded_once(copy, monkeypatch):
    (copy / "labels" / "sim00003.png").write_bytes(b"garbage")  # present, so open() accepts it
    decoded = []
    monkeypatch.setattr(dataset, "read_image", lambda path: decoded.append(path.stem) or
                        cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    data = dataset.open(copy)
    assert decoded == []
    with pytest.raises(dataset.DatasetError, match="sim00003: labels/sim00003.png: not a readable"):
        list(data.iter_cases())
    assert decoded == ["sim00000", "sim00001", "sim00002", "sim00003"]
    with pytest.raises(dataset.DatasetError, match="nowhere: not a case"):
        data.read("nowhere")


def test_patch_lmdbs_do_not_change_with_the_format_version(simulated, copy, tmp_path):
    from fetal_biometry.patches import records as patch_records

    _to_version_1(copy)
    per_class = {c: 5 for c in range(5)}
    hashes = [{split: m["sha256"] for split, m in patch_records.build(
                  patch_records.dataset_scans(root), tmp_path / name, per_class=per_class)["splits"].items()}
              for root, name in ((simulated[0], "v2"), (copy, "v1"))]
    assert hashes[0] == hashes[1]


def test_a_dataset_written_before_the_head_and_femur_classes_still_opens(simulated, tmp_path):
    root = dataset.write_dataset(tmp_path / "old", simulated[1][:1])
    index = json.loads((root / "dataset.json").read_text())
    index["classes"] = {k: v for k, v in index["classes"].items() if int(k) < 8}
    (root / "dataset.json").write_text(json.dumps(index))
    assert dataset.validate(root) == []
    index["classes"]["3"] = "vein"
    (root / "dataset.json").write_text(json.dumps(index))
    assert "class table differs" in dataset.validate(root)[0]
