"""Held-out evaluation through a model folder, on simulated scans with a real (briefly trained) Caffe net."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fetal_biometry.evaluation import metrics, scans as evaluation
from fetal_biometry.io import dataset
from fetal_biometry.labels import SEGMENTER_CLASSES, classifier_labels
from fetal_biometry.measure import biometry
from fetal_biometry.nets import model as model_folder

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
    result, measured = evaluation.case_result(case, np.where(truth == 255, 0, truth))
    summary = evaluation.summarize([result])
    assert summary["pixel_accuracy"] == 1.0
    assert abs(result["ac_error_percent"]) < 3  # the fit recovers the true abdomen from true labels
    assert "| channels | 1.000 |" in evaluation.table({"channels": summary})


def test_evaluate_writes_results_and_overlays(scans, model, tmp_path):
    summary = evaluation.evaluate(model, scans, tmp_path, overlays=1)
    assert summary["cases"] == 4 and 0 <= summary["pixel_accuracy"] <= 1
    saved = json.loads((tmp_path / f"{model.name}.json").read_text())
    assert len(saved["cases"]) == 4 and saved["dataset"]["cases"] == 4
    assert saved["model"]["weights"] == str(model.weights.resolve())
    assert saved["model"]["format"] == "fetal-biometry-model"  # model.json, for the report
    drawn = sorted(p.name for p in tmp_path.glob(f"{model.name}_*.png"))
    assert drawn == sorted(pick["file"] for pick in saved["overlays"]) and drawn
    assert saved["overlays"][0]["why"] in ("largest AC error", "AC not measured")


def test_stored_class_maps_measure_again_without_the_net(scans, model, tmp_path):
    evaluation.evaluate(model, scans, tmp_path, overlays=0)
    record = tmp_path / f"{model.name}.json"
    saved = json.loads(record.read_text())
    assert saved["measured_under"] == biometry.in_force()
    # Under the same limits the stored maps give the same numbers as the net did.
    assert json.loads(json.dumps(evaluation.stored_results(record))) == saved["cases"]
    strict = evaluation.stored_results(record, limits={"coverage": 1.01})
    assert all("ac_mm" in r and r["ac_mm"] is None for r in strict)
    assert all(r["reasons"][0].startswith(biometry.NOT_MEASURED) for r in strict)
    summary = evaluation.remeasure(record)
    assert summary == json.loads(json.dumps(saved["summary"]))
    evaluation.maps_file(record).write_bytes(evaluation.maps_file(record).read_bytes()[:100])
    with pytest.raises(ValueError, match="unreadable or incomplete class maps"):
        evaluation.stored_results(record)  # a truncated file, as a killed copy leaves
    evaluation.maps_file(record).unlink()
    with pytest.raises(ValueError, match="no stored class maps"):
        evaluation.stored_results(record)


def test_stored_maps_of_another_dataset_are_refused(scans, model, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(scans, data)
    evaluation.evaluate(model, data, tmp_path, overlays=0)
    meta = json.loads((data / "dataset.json").read_text())
    meta["generator"] = {"name": "simulated again"}
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no longer the dataset"):
        evaluation.stored_results(tmp_path / f"{model.name}.json")


def _result(name, ac, true=200.0, accepted=True, accepted_true=True, reasons=()):
    result = {"case": name, "ac_mm": ac, "ac_true_mm": true, "accepted": accepted,
              "accepted_true": accepted_true, "reasons": list(reasons)}
    if ac is not None:
        result["ac_error_mm"] = ac - true
        result["ac_error_percent"] = 100 * (ac - true) / true
    return result


def test_agreement_is_bias_and_limits_of_the_differences():
    measured, true = np.array([202.0, 199, 205, 200]), np.full(4, 200.0)
    a = metrics.agreement(measured, true)
    differences = measured - true
    assert a["n"] == 4 and a["bias_mm"] == pytest.approx(1.5)
    assert a["loa_mm"] == pytest.approx([1.5 - 1.96 * differences.std(ddof=1),
                                         1.5 + 1.96 * differences.std(ddof=1)])
    assert a["bias_percent"] == pytest.approx(np.mean(differences / ((measured + true) / 2)) * 100)
    assert metrics.agreement([200.0], [201.0]) is None


def test_worst_cases_wrong_verdicts_and_typical_ones_are_picked():
    results = [_result("a", 201), _result("b", 230), _result("c", None, accepted=False,
                                                                reasons=["no abdomen boundary found (x)"]),
               _result("d", 204, accepted=False, reasons=["stomach bubble not seen"]),
               _result("e", 202), _result("f", 203)]
    picks = {p["case"]: p["why"] for p in evaluation.pick_cases(results, worst=2, typical=1)}
    assert picks == {"c": "AC not measured", "b": "largest AC error", "d": "wrong plane verdict",
                     "e": "typical"}  # typical: |error| nearest the median of a, e, f
    summary = evaluation.summarize([{**r, "confusion": [[1]]} for r in results])
    assert summary["plane_outcomes"] == {"true accept": 4, "false accept": 0, "true reject": 0,
                                         "false reject": 2}
    assert summary["rejection_reasons"] == {"no abdomen boundary found": 1, "stomach bubble not seen": 1}
    assert summary["ac_agreement"]["n"] == 5


def test_summary_counts_unmeasured_acs_and_wrong_numbers():
    not_measured = "AC not measured: the fit takes in amniotic fluid (share of its area 40% > 22%)"
    results = [_result("a", 202), _result("b", 230), _result("c", 179), _result("d", 204),
               _result("e", None, accepted=False, reasons=[not_measured]),
               _result("f", None, accepted=False, reasons=[not_measured, "stomach bubble not seen"])]
    summary = evaluation.summarize([{**r, "confusion": [[1]]} for r in results])
    errors = [1.0, 15.0, 10.5, 2.0]  # |error| of a, b, c, d in percent of 200 mm
    assert summary["ac_measured"] == 4 and summary["cases"] == 6
    assert summary["ac_not_measured"] == {"the fit takes in amniotic fluid": 2}
    assert summary["ac_median_error_percent"] == pytest.approx(6.25)
    assert summary["ac_p90_error_percent"] == pytest.approx(np.percentile(errors, 90))
    assert summary["ac_max_error_percent"] == pytest.approx(15.0)
    assert summary["ac_off_count"] == 2  # b and c are off by more than 10 %
    accuracy = dict.fromkeys(["background", "amniotic_fluid", "stomach_bubble", "umbilical_vein",
                              "shadow"], 1.0)
    line = evaluation.table({"m": {**summary, "per_class_accuracy": accuracy}}).splitlines()[-1]
    assert "| 4/6 | 6.2 % (12.5 mm) | 13.7 % | 15.0 % | 2 |" in line, line


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


def test_a_segmenter_is_evaluated_on_all_eight_classes_with_its_abdomen(segmenter_model, fetal_data, tmp_path):
    model = model_folder.load(segmenter_model)
    summary = evaluation.evaluate(model, fetal_data, tmp_path, overlays=1)
    assert list(summary["per_class_accuracy"]) == list(SEGMENTER_CLASSES)
    assert len(summary["per_class_dice"]) == 8 and 0 <= summary["abdomen_dice"] <= 1
    record = json.loads((tmp_path / f"{model.name}.json").read_text())
    assert record["model"]["kind"] == "segmenter"
    assert all(len(case["abdomen_overlap"]) == 3 for case in record["cases"])
    # Stored maps are measured again by the segmenter's method, without Caffe.
    assert evaluation.remeasure(tmp_path / f"{model.name}.json")["abdomen_dice"] == summary["abdomen_dice"]
    assert "| " + model.name + " |" in evaluation.table({model.name: summary})


def test_one_report_holds_a_patch_classifier_and_a_segmenter_side_by_side(fetal_model, segmenter_model,
                                                                         fetal_data, tmp_path):
    models = [model_folder.load(fetal_model), model_folder.load(segmenter_model)]
    summaries = {m.name: evaluation.evaluate(m, fetal_data, tmp_path, overlays=1) for m in models}
    text = evaluation.write_report(summaries, tmp_path)
    rows = text.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| {models[0].name}", "| segmenter_channels"]
    assert rows[0].split(" | ")[7] == "-" and rows[1].split(" | ")[7] != "-"  # abdomen Dice
    assert (tmp_path / "report.html").is_file()
