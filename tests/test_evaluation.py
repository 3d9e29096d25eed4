"""Held-out evaluation and the inference command, on simulated scans with a real (untrained) Caffe net."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fetal_biometry import dataset, evaluation, nets, patches, simulator
from fetal_biometry.caffe_env import caffe
from fetal_biometry.labels import classifier_labels

from conftest import ROOT


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sim"
    dataset.write_dataset(path, simulator.simulate(2, seed=7, shape=(96, 96)),
                          generator=simulator.generator_record(7, (96, 96), "convex", 0.3))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fetal_channels")
    deploy = nets.save(nets.patch_classifier_deploy(3), folder / "deploy.prototxt")
    net = caffe().Net(str(deploy), caffe().TEST)
    net.save(str(folder / "net.caffemodel"))
    return evaluation.Model("channels", deploy, folder / "net.caffemodel")


def test_perfect_class_map_scores_perfectly(scans):
    data = dataset.open(scans)
    case = data.read(data.cases[0])
    truth = classifier_labels(case.labels)
    probs = np.zeros((5, *truth.shape), np.float32)
    result, measured = evaluation.case_result(case, probs, np.where(truth == 255, 0, truth))
    summary = evaluation.summarize([result])
    assert summary["pixel_accuracy"] == 1.0
    assert abs(result["ac_error_percent"]) < 3  # the fit recovers the true abdomen from true labels
    assert "| channels | 1.000 |" in evaluation.table({"channels": summary})


def test_evaluate_writes_results_and_overlays(scans, model, tmp_path):
    summary = evaluation.evaluate(model, scans, tmp_path, overlays=1)
    assert summary["cases"] == 2 and 0 <= summary["pixel_accuracy"] <= 1
    saved = json.loads((tmp_path / "channels.json").read_text())
    assert len(saved["cases"]) == 2
    assert len(list(tmp_path.glob("channels_*.png"))) == 1


def test_infer_command_on_a_dataset_folder(scans, model, tmp_path):
    result = subprocess.run([sys.executable, "tools/infer.py", str(model.weights), str(model.deploy),
                             str(scans), "--out", str(tmp_path), "--encoding", "channels"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    name = dataset.open(scans).cases[0]
    probs = np.load(tmp_path / f"{name}_probs.npy")
    assert probs.shape == (5, 96, 96)
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert {"ac_mm", "plane_acceptable", "reasons"} <= set(record)
    assert (tmp_path / f"{name}_overlay.png").stat().st_size > 0


def test_infer_command_estimates_the_fan_or_says_why_not(model, tmp_path, scans):
    image = sorted((scans / "images").iterdir())[0]
    result = subprocess.run([sys.executable, "tools/infer.py", str(model.weights), str(model.deploy),
                             str(image), "--out", str(tmp_path), "--spacing", "0.6", "--encoding", "channels"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "estimated from the image" in result.stdout + result.stderr
    blank = tmp_path / "blank.png"
    blank.write_bytes(cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes())
    result = subprocess.run([sys.executable, "tools/infer.py", str(model.weights), str(model.deploy),
                             str(blank), "--out", str(tmp_path), "--encoding", "channels"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{blank}: " in result.stderr and "--geometry" in result.stderr


def test_make_lmdb_command_reports_a_bad_dataset(tmp_path):
    result = subprocess.run([sys.executable, "tools/make_lmdb.py", str(tmp_path / "none"),
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "not a folder" in result.stderr
    assert not (tmp_path / "out").exists()
