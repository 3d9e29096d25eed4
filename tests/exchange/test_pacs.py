"""fetal-pacs against a real Orthanc: a study in, SR and SEG back; credentials; a server that
is down, refuses or hangs loses nothing."""
import json
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from conftest import ROOT
from dicom_files import IDENTITY
from exams import dciodvfy_errors, scan_files
from orthanc import PASSWORD, TOKEN, USER, Orthanc
from fetal_biometry.exchange import seg, sr

BASIC = {"FETAL_PACS_USER": USER, "FETAL_PACS_PASSWORD": PASSWORD}


def _pacs(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FETAL_PACS_")}
    return subprocess.run([sys.executable, "tools/pacs.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={**clean, **(env or {})})


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


@pytest.fixture
def study(fetal_data, tmp_path):
    return scan_files(fetal_data, tmp_path / "exam")


def _objects(server: Orthanc, study_uid: str, modality: str) -> list:
    client = DICOMwebClient(server.dicomweb, session=server.session())
    found = []
    for series in client.search_for_series(study_uid, search_filters={"Modality": modality}):
        series_uid = series["0020000E"]["Value"][0]
        for item in client.search_for_instances(study_uid, series_uid):
            found.append(client.retrieve_instance(study_uid, series_uid, item["00080018"]["Value"][0]))
    return found


def _no_secrets_or_identity(result, out) -> None:
    shown = result.stdout + result.stderr
    assert PASSWORD not in shown and TOKEN not in shown
    assert not [v for v in IDENTITY.values() if v in shown]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".png", ".log", ".txt"):
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and TOKEN.encode() not in data
            assert not [v for v in IDENTITY.values() if v.encode() in data], path


def test_a_study_is_measured_and_sr_and_seg_are_stored_back(fetal_model, orthanc, study, tmp_path):
    for name in ("single", "loop"):
        orthanc.upload(study[name])
    out = tmp_path / "out"
    result = _pacs(fetal_model, study["study"], "--url", orthanc.dicomweb, "--out", out, env=BASIC)
    assert result.returncode == 0, result.stderr
    _no_secrets_or_identity(result, out)
    state = json.loads((out / "pacs.json").read_text())
    assert set(state["objects"].values()) == {"stored"} and len(state["objects"]) == 5
    sources = {pydicom.dcmread(out / "exam" / f).SOPInstanceUID: f for f in ("us001.dcm", "us002.dcm")}
    local = {"us001.dcm": json.loads((out / "scans/us001.json").read_text()),
             "us002.dcm": json.loads((out / "loops/us002/us002.json").read_text())}
    reports = _objects(orthanc, study["study"], "SR")
    assert len(reports) == 2
    for report in reports:
        assert report.PatientName == IDENTITY["PatientName"] and report.StudyInstanceUID == study["study"]
        image = next(item for item in report.ContentSequence if item.ValueType == "CONTAINER"
            and item.ConceptNameCodeSequence[0].CodeValue == "111028").ContentSequence[0]
        scan = sources[image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        assert sr.read_measurements(report)["ac_mm"] == local[scan]["ac_mm"]
        if scan == "us002.dcm":  # the loop's chosen frame
            frame = local[scan]["best_frame"] if local[scan]["best_frame"] >= 0 else local[scan]["best_candidate"]
            assert image.ReferencedSOPSequence[0].ReferencedFrameNumber == frame + 1
    frames = {f.SOPInstanceUID: f for f in _objects(orthanc, study["study"], "US")
              if f.get("SeriesDescription") == seg.FRAME_DESCRIPTION}
    assert len(frames) == 1
    masks = {}
    for segmentation in _objects(orthanc, study["study"], "SEG"):
        image = segmentation.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        masks["us002.dcm" if image in frames else sources[image]] = seg.class_map(segmentation)
    labels = cv2.imread(str(out / "scans/us001_labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(masks["us001.dcm"], np.where(labels == 255, 0, labels))
    stored = pydicom.dcmread(out / "loops/us002/dicom/us002_seg.dcm")
    assert np.array_equal(masks["us002.dcm"], seg.class_map(stored))
    for path in out.rglob("dicom/*.dcm"):
        assert dciodvfy_errors(path) == [], path


def test_a_bearer_token_comes_from_a_private_file(fetal_model, study, tmp_path):
    server = Orthanc(tmp_path / "orthanc", auth="bearer")
    try:
        server.upload(study["single"])
        secrets = tmp_path / "token.json"
        secrets.write_text(json.dumps({"token": TOKEN}))
        secrets.chmod(0o644)
        refused = _pacs(fetal_model, study["study"], "--url", server.dicomweb, "--out", tmp_path / "a",
                        "--auth-file", secrets)
        assert refused.returncode == 1 and "chmod 600" in refused.stderr and not (tmp_path / "a").exists()
        secrets.chmod(0o600)
        result = _pacs(fetal_model, study["study"], "--url", server.dicomweb, "--out", tmp_path / "b",
                       "--auth-file", secrets)
        assert result.returncode == 0, result.stderr
        _no_secrets_or_identity(result, tmp_path / "b")
        assert len(_objects(server, study["study"], "SR")) == 1
        unauthorised = _pacs(fetal_model, study["study"], "--url", server.dicomweb, "--out", tmp_path / "c")
        assert unauthorised.returncode == 1 and "refused (HTTP 403)" in unauthorised.stderr
        assert "Traceback" not in unauthorised.stderr
    finally:
        server.stop()


def test_results_a_server_refuses_are_kept_and_resent(fetal_model, study, tmp_path):
    folder = tmp_path / "orthanc"
    writable = Orthanc(folder)  # put the exam in; then the same storage, refusing to store
    writable.upload(study["single"])
    writable.stop()
    server = Orthanc(folder, read_only=True)
    out = tmp_path / "out"
    try:
        result = _pacs(fetal_model, study["study"], "--url", server.dicomweb, "--out", out, env=BASIC)
    finally:
        server.stop()
    assert result.returncode == 1 and "refused (HTTP 403)" in result.stderr
    assert "--resend" in result.stderr and "Traceback" not in result.stderr
    state = json.loads((out / "pacs.json").read_text())
    assert set(state["objects"].values()) == {"pending"}
    assert all((out / path).is_file() for path in state["objects"])
    down = _pacs("--resend", out, "--url", server.dicomweb, env=BASIC)  # nobody listens now
    assert down.returncode == 1 and "cannot connect" in down.stderr and "Traceback" not in down.stderr
    server = Orthanc(folder)
    try:
        resent = _pacs("--resend", out, "--url", server.dicomweb, env=BASIC)
        assert resent.returncode == 0, resent.stderr
        assert set(json.loads((out / "pacs.json").read_text())["objects"].values()) == {"stored"}
        assert len(_objects(server, study["study"], "SR")) == 1
    finally:
        server.stop()


def test_a_server_that_never_answers_times_out_clearly(fetal_model, tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
        result = _pacs(fetal_model, "1.2.3", "--url", url, "--out", tmp_path / "out", "--timeout", "1")
    assert result.returncode == 1 and "no answer within 1 s" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url, env, message", [
    (f"http://{USER}:secret@127.0.0.1:1/dicom-web", {}, "holds credentials"),
    ("http://127.0.0.1:1/dicom-web", {"FETAL_PACS_USER": USER}, "FETAL_PACS_PASSWORD is not"),
    ("ftp://127.0.0.1/dicom-web", {}, "not an http(s) URL")])
def test_credentials_are_never_taken_where_others_could_read_them(fetal_model, tmp_path, url, env, message):
    result = _pacs(fetal_model, "1.2.3", "--url", url, "--out", tmp_path / "out", env=env)
    assert result.returncode == 1 and message in result.stderr and "secret" not in result.stderr


def test_a_wrong_password_is_refused_without_showing_it(fetal_model, orthanc, tmp_path):
    result = _pacs(fetal_model, "1.2.3", "--url", orthanc.dicomweb, "--out", tmp_path / "out",
                   env={"FETAL_PACS_USER": USER, "FETAL_PACS_PASSWORD": "not-the-password"})
    assert result.returncode == 1 and "refused (HTTP 401): authentication failed" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr


def test_an_outbox_that_names_a_file_outside_its_folder_sends_nothing(tmp_path):
    secret = tmp_path / "elsewhere.dcm"
    secret.write_bytes(b"not for the PACS")
    out = tmp_path / "out"
    out.mkdir()
    (out / "pacs.json").write_text(json.dumps({"format": "fetal-pacs", "version": 1, "measured": [],
                                               "objects": {"../elsewhere.dcm": "pending"}}))
    result = _pacs("--resend", out, "--url", "http://127.0.0.1:9/dicom-web", env=BASIC)
    assert result.returncode == 1 and "outside" in result.stderr and "'../elsewhere.dcm'" in result.stderr
    assert "cannot connect" not in result.stderr  # refused before any server was asked
