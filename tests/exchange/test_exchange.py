"""DICOM SR and SEG of measured scans (fetal_biometry.exchange), NRRD masks, and the tools' doors."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import dicom_files
from conftest import ROOT
from exams import dciodvfy_errors, scan_files
from fetal_biometry.exchange import algorithm, seg, source, sr


def _run(tool, *args):
    """infer or sweep, outputs named after the test's own file names (--keep-names)."""
    return subprocess.run([sys.executable, f"tools/{tool}.py", *map(str, args), "--keep-names"],
                          cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def exam(fetal_data, tmp_path_factory):
    return scan_files(fetal_data, tmp_path_factory.mktemp("exam"))


def test_infer_writes_an_sr_and_a_seg_that_say_what_the_json_says(fetal_model, exam, tmp_path):
    out = tmp_path / "out"
    result = _run("infer", fetal_model, exam["single"], "--dicom-out", "--nrrd", "--out", out)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "single.json").read_text())
    print(record.get("ac_mm"))
    assert record["dicom"] == ["dicom/single_seg.dcm", "dicom/single_sr.dcm"]
    for name in record["dicom"]:
        assert dciodvfy_errors(out / name) == []
    report = pydicom.dcmread(out / "dicom/single_sr.dcm")
    assert sr.read_measurements(report) == {"ac_mm": record["ac_mm"]}
    labels = cv2.imread(str(out / "single_labels.png"), cv2.IMREAD_UNCHANGED)
    mask = seg.class_map(pydicom.dcmread(out / "dicom/single_seg.dcm"))
    assert np.array_equal(mask, np.where(labels == 255, 0, labels))


CLASSES = ("background", "amniotic_fluid", "stomach_bubble", "umbilical_vein", "shadow")
PANEL = {"bpd_mm": 84.25, "bpd_ga_weeks": 33.5, "bpd_ga_equation": "BPD, Hadlock 1984",
         "ofd_mm": 104.0, "hc_mm": 305.125, "hc_ga_weeks": 33.9, "hc_ga_equation": "HC, Hadlock 1984",
         "hc_centile": 46.5, "hc_z": -0.09, "ac_mm": 290.0625, "ac_ga_weeks": 32.75,
         "ac_ga_equation": "AC, INTERGROWTH-21st", "plane_acceptable": True, "reasons": [],
         "ellipse": {"center": [40.0, 30.0], "semi_axes": [20.0, 12.0], "angle_deg": 30.0},
         "fl_mm": 63.5, "fl_ga_weeks": 33.0, "fl_ga_equation": "FL, Hadlock 1984",
         "cephalic_index": 0.81, "efw_g": 2108.5, "efw_equation": "EFW by AC, BPD, FL, HC, Hadlock 1985"}


@pytest.fixture
def algorithm_id():
    return algorithm.Algorithm("fetal-biometry run", "0.1.0 weights sha256:0123456789abcdef",
                               ("encoding=channels", "spacing_mm=0.672"), pydicom.uid.generate_uid())


def _single(tmp_path, **attributes):
    image = np.random.default_rng(0).integers(0, 255, (64, 80), np.uint8)
    return dicom_files.write(tmp_path / "scan.dcm", image, regions=[dicom_files.region((0, 0, 79, 63))],
                             **attributes)


def _items(sequence):
    for item in sequence:
        yield item
        yield from _items(item.get("ContentSequence", []))


def test_the_whole_biometry_panel_goes_into_its_tid_5000_sections(tmp_path, algorithm_id):
    """What the biometry panel will measure, in the record keys it will write, reads back equal."""
    header = source.read_source(_single(tmp_path))
    report = sr.biometry_report(header, PANEL, algorithm_id, [sr.Reference(header, None)])
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    back = sr.read_measurements(pydicom.dcmread(tmp_path / "sr.dcm"))
    expected = {k: v for k, v in PANEL.items() if k.endswith(("_mm", "_g", "_index", "_weeks"))}
    assert back.keys() == expected.keys()
    assert all(back[k] == pytest.approx(v, abs=1e-9) for k, v in expected.items())
    sections = [item.ConceptNameCodeSequence[0].CodeValue for item in report.ContentSequence
                if item.ValueType == "CONTAINER"]
    assert sections == ["111028", "121111", "125001", "125002", "125003"]  # library, TID 5002/4/5/6
    text = str(report)
    assert "11732-5" in text and "11932-1" in text and "INTERGROWTH" not in text  # coded equations only
    scoord = [item for item in _items(report.ContentSequence) if item.ValueType == "SCOORD"]
    assert len(scoord) == 1 and scoord[0].GraphicType == "ELLIPSE"  # the AC's, on the image
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))  # major axis end points first, + 0.5:
    assert np.allclose(scoord[0].GraphicData[:4], [40.5 - 20 * c, 30.5 - 20 * s, 40.5 + 20 * c, 30.5 + 20 * s])
    assert report.PatientName == dicom_files.IDENTITY["PatientName"]  # the source's patient
    assert report.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == header.StudyInstanceUID


def test_a_segment_per_class_of_any_label_table(tmp_path, algorithm_id):
    """The segmenter's classes (abdomen, spine, rib) and one no code exists for."""
    classes = (*CLASSES, "abdomen", "spine", "rib", "femur_shaft")
    header = source.read_source(_single(tmp_path))
    labels = np.random.default_rng(1).integers(0, len(classes), (64, 80)).astype(np.uint8)
    segmentation = seg.segmentation(header, labels, classes, algorithm_id)
    segmentation.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    back = pydicom.dcmread(tmp_path / "seg.dcm")
    assert np.array_equal(seg.class_map(back), labels)
    coded = {item.SegmentLabel: (item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
                                 item.SegmentedPropertyTypeCodeSequence[0].CodeValue)
             for item in back.SegmentSequence}
    assert [int(item.SegmentNumber) for item in back.SegmentSequence] == list(range(1, len(classes)))
    assert coded["stomach bubble"] == ("SCT", "69695003") and coded["spine"] == ("SCT", "421060004")
    assert coded["femur shaft"][0] == "99FETALBIOMETRY"


def test_a_source_without_a_study_is_refused_before_anything_is_written(fetal_model, exam, tmp_path):
    path = tmp_path / "scan.dcm"
    ds = pydicom.dcmread(exam["single"])
    del ds.StudyInstanceUID
    ds.save_as(path)
    result = _run("infer", fetal_model, path, "--dicom-out", "--out", tmp_path / "out")
    assert result.returncode == 1 and "no StudyInstanceUID" in result.stderr
    assert not list((tmp_path / "out").glob("scan*"))


def test_dicom_out_of_an_image_that_is_no_dicom_says_so(fetal_model, fetal_data, tmp_path):
    image = next((fetal_data / "images").glob("*.png"))
    result = _run("infer", fetal_model, image, "--dicom-out", "--assume-spacing", "1.9", "--out", tmp_path / "out")
    assert result.returncode == 1 and "not read from a DICOM file" in result.stderr


def test_a_cine_frame_becomes_an_image_the_seg_references(fetal_model, exam, tmp_path):
    out = tmp_path / "out"
    result = _run("infer", fetal_model, exam["loop"], "--frame", "2", "--dicom-out", "--out", out)
    assert result.returncode == 0, result.stderr
    frame = pydicom.dcmread(out / "dicom/loop_frame.dcm")
    loop = pydicom.dcmread(exam["loop"], stop_before_pixels=True)
    assert frame.SourceImageSequence[0].ReferencedSOPInstanceUID == loop.SOPInstanceUID
    assert frame.SourceImageSequence[0].ReferencedFrameNumber == 3
    assert np.array_equal(frame.pixel_array[..., 0], np.roll(exam["image"], 2, axis=1))
    segmentation = pydicom.dcmread(out / "dicom/loop_seg.dcm")
    assert (segmentation.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            == frame.SOPInstanceUID)
    for name in ("frame", "seg", "sr"):
        assert dciodvfy_errors(out / f"dicom/loop_{name}.dcm") == []


def test_nrrd_masks_open_over_the_scan_with_its_spacing(fetal_model, exam, tmp_path):
    out = tmp_path / "out"
    result = _run("infer", fetal_model, exam["single"], "--nrrd", "--out", out)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "single.json").read_text())
    labels = sitk.ReadImage(str(out / "single_labels.nrrd"))
    probs = sitk.ReadImage(str(out / "single_probs.nrrd"))
    scan = sitk.ReadImage(str(out / "single_scan.nrrd"))
    for image in (labels, probs, scan):
        assert image.GetSpacing() == pytest.approx((record["spacing_mm"],) * 2)
        assert image.GetOrigin() == (0.0, 0.0)
    png = cv2.imread(str(out / "single_labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(sitk.GetArrayFromImage(labels), png)
    assert probs.GetNumberOfComponentsPerPixel() == 5 and labels.GetMetaData("class_2") == "stomach_bubble"
    assert np.array_equal(sitk.GetArrayFromImage(scan), exam["image"])


def test_a_region_crop_sits_at_its_place_in_the_frame():
    from fetal_biometry.exchange import nrrd

    assert nrrd.origin_mm((10, 20, 110, 70), (50, 100), 0.3) == pytest.approx((3.0, 6.0))
    # a crop resampled to square pixels (x twice as fine): the file's own x spacing is 0.6 mm
    assert nrrd.origin_mm((10, 20, 110, 70), (50, 200), 0.3) == pytest.approx((6.0, 6.0))


def test_sweep_writes_the_chosen_frame_its_seg_and_its_sr(fetal_model, exam, tmp_path):
    out = tmp_path / "out"
    result = _run("sweep", fetal_model, exam["loop"], "--dicom-out", "--no-video", "--out", out)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "loop.json").read_text())
    shown = record["best_frame"] if record["best_frame"] >= 0 else record["best_candidate"]
    frame = pydicom.dcmread(out / "dicom/loop_frame.dcm")
    assert frame.SourceImageSequence[0].ReferencedFrameNumber == shown + 1
    assert sr.read_measurements(pydicom.dcmread(out / "dicom/loop_sr.dcm"))["ac_mm"] == record["ac_mm"]
    for name in record["dicom"]:
        assert dciodvfy_errors(out / name) == []
    text = (out / "loop.json").read_text() + result.stdout + result.stderr
    assert not [v for v in dicom_files.IDENTITY.values() if v in text]


def test_a_region_of_a_dual_display_is_placed_where_it_was(tmp_path, algorithm_id):
    """The scan of one calibrated region, its pixels resampled to square (twice as many columns):
    the SEG holds its class map at the region's place in the full frame, at the file's pixels,
    and the AC's ellipse lands there too."""
    from fetal_biometry.exchange import scan

    path = _single(tmp_path)  # 80 x 64 px
    labels = np.zeros((40, 60), np.uint8)  # the region (10, 20)-(40, 60): 30 x 40 px, x resampled 2x
    labels[10:20, 20:40] = 2
    labels[:2] = 255
    record = {"ac_mm": 100.0, "ellipse": {"center": [29.5, 14.5], "semi_axes": [10.0, 5.0], "angle_deg": 0.0}}
    objects = scan.scan_objects(path, None, (10, 20, 40, 60), labels, record, CLASSES, algorithm_id)
    mask = seg.class_map(objects["seg"])
    expected = np.zeros((64, 80), np.uint8)
    expected[30:40, 20:30] = 2
    assert np.array_equal(mask, expected)
    points = next(item for item in _items(objects["sr"].ContentSequence) if item.ValueType == "SCOORD").GraphicData
    assert np.allclose(points[:4], [10 + 10, 20 + 15, 10 + 20, 20 + 15])  # (29.5 +- 10 + 0.5) / 2 + 10


def test_an_exams_panel_becomes_one_sr_over_its_scans(tmp_path, algorithm_id):
    """infer.json's panel (fetal_biometry.measure.growth) as the biometry panel writes it: means
    of several scans, the ages they suggest, centiles at a stated age, Hadlock's weight."""
    from fetal_biometry.exchange import codes, scan
    from fetal_biometry.measure import growth

    panel = growth.panel({"AC": 290.0, "HC": 305.0, "BPD_OO": 86.0, "BPD_OI": 84.0, "OFD": 104.0,
                          "FL": 63.0}, 33.0, {"AC": 2, "HC": 1, "BPD_OO": 1, "BPD_OI": 1, "OFD": 1, "FL": 1})
    study = pydicom.uid.generate_uid()
    first = dicom_files.write(tmp_path / "a.dcm", np.zeros((64, 80), np.uint8), StudyInstanceUID=study)
    loop = dicom_files.write(tmp_path / "b.dcm", np.zeros((3, 64, 80), np.uint8), frames=3, StudyInstanceUID=study)
    report = scan.exam_objects([(first, None), (loop, 1)], panel, algorithm_id)["sr"]
    report.save_as(tmp_path / "exam_sr.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "exam_sr.dcm") == []
    back = sr.read_measurements(pydicom.dcmread(tmp_path / "exam_sr.dcm"))
    m = panel["measurements"]
    expected = {"ac_mm": m["AC"]["mm"], "hc_mm": m["HC"]["mm"], "bpd_mm": m["BPD_OO"]["mm"],
                "ofd_mm": m["OFD"]["mm"], "fl_mm": m["FL"]["mm"], "efw_g": panel["efw"]["grams"],
                "cephalic_index": panel["cephalic_index"],
                **{f"{k}_ga_weeks": m[key]["ga_estimate"]["weeks"]
                   for k, key in (("ac", "AC"), ("hc", "HC"), ("fl", "FL"))}}
    assert back.keys() == expected.keys()
    assert all(back[k] == pytest.approx(v, abs=1e-6) for k, v in expected.items())
    text = str(report)
    assert "11892-7" in text and "11746-5" in text  # AC, Hadlock 1984; EFW by AC, FL, HC, Hadlock 1985
    assert "373098007" in text  # the AC is the mean of two scans
    library = next(i for i in report.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028")
    assert [i.ReferencedSOPSequence[0].get("ReferencedFrameNumber") for i in library.ContentSequence] == [None, 2]
    other = dicom_files.write(tmp_path / "c.dcm", np.zeros((64, 80), np.uint8))  # another study
    with pytest.raises(ValueError, match="2 studies"):
        scan.exam_objects([(first, None), (other, None)], panel, algorithm_id)
    assert scan.exam_objects([(first, None)], growth.panel({}), algorithm_id) == {}
    assert codes.record_from_panel(panel)["hc_ga_equation"] == "INTERGROWTH-21st HC"  # uncoded
