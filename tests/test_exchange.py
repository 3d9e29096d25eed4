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
    return subprocess.run([sys.executable, f"tools/{tool}.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


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
