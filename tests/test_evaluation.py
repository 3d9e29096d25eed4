"""Held-out evaluation through a model folder, on simulated scans with a real (briefly trained) Caffe net."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fetal_biometry import dataset, evaluation, model as model_folder
from fetal_biometry.labels import classifier_labels

from conftest import ROOT


@pytest.fixture(scope="module")
def scans(fetal_data):
    return fetal_data


@pytest.fixture(scope="module")
def model(fetal_model):
    return model_folder.load(fetal_model)


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
    assert summary["cases"] == 4 and 0 <= summary["pixel_accuracy"] <= 1
    saved = json.loads((tmp_path / f"{model.name}.json").read_text())
    assert len(saved["cases"]) == 4
    assert len(list(tmp_path.glob(f"{model.name}_*.png"))) == 1


def test_evaluate_command_takes_model_folders(scans, fetal_model, tmp_path):
    result = subprocess.run([sys.executable, "tools/evaluate.py", str(scans), "--model", str(fetal_model),
                             "--out", str(tmp_path / "eval")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| run |" in result.stdout  # the model is named by its folder
    result = subprocess.run([sys.executable, "tools/evaluate.py", str(scans), "--model", str(tmp_path),
                             "--out", str(tmp_path / "eval2")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "not a model folder" in result.stderr


def test_make_lmdb_command_reports_a_bad_dataset(tmp_path):
    result = subprocess.run([sys.executable, "tools/make_lmdb.py", str(tmp_path / "none"),
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "not a folder" in result.stderr
    assert not (tmp_path / "out").exists()
