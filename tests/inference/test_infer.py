"""tools/infer.py: model folders, any spacing, batches that go on past a bad scan."""
import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fetal_biometry.io import dataset

from conftest import ROOT, train_patch_model


def _infer(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "tools/infer.py", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def _sums(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def case(fetal_data):
    data = dataset.open(fetal_data)
    return data.read(data.cases[0])


def test_a_dataset_folder_is_classified_and_measured(fetal_model, fetal_data, tmp_path):
    result = _infer(fetal_model, fetal_data, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    name = dataset.open(fetal_data).cases[0]
    assert np.load(tmp_path / "out" / f"{name}_probs.npy").shape == (5, 96, 96)
    record = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    assert {"ac_mm", "plane_acceptable", "reasons", "spacing_mm", "spacing_source"} <= set(record)
    assert record["spacing_source"] == "case record" and record["encoding"] == "channels"
    summary = json.loads((tmp_path / "out/infer.json").read_text())
    assert len(summary["scans"]) == 4 and summary["failed"] == []


def test_the_opencv_backend_gives_caffes_maps_and_refuses_a_gpu(fetal_model, fetal_data, tmp_path):
    caffe_run = _infer(fetal_model, fetal_data, "--out", tmp_path / "caffe")
    opencv_run = _infer(fetal_model, fetal_data, "--out", tmp_path / "opencv", "--backend", "opencv",
                        "--threads", "1")
    assert caffe_run.returncode == 0 and opencv_run.returncode == 0, opencv_run.stderr
    for name in dataset.open(fetal_data).cases:
        np.testing.assert_allclose(np.load(tmp_path / "opencv" / f"{name}_probs.npy").astype(np.float32),
                                   np.load(tmp_path / "caffe" / f"{name}_probs.npy").astype(np.float32),
                                   atol=1e-3)  # float16 files
    refused = _infer(fetal_model, fetal_data, "--out", tmp_path / "gpu", "--backend", "opencv", "--gpu", "0")
    assert refused.returncode == 1 and "--gpu runs Caffe" in refused.stderr
    assert not (tmp_path / "gpu").exists()


def test_an_image_without_spacing_is_refused_unless_assumed(fetal_model, fetal_data, case, tmp_path):
    image = fetal_data / "images" / f"{case.name}.png"
    result = _infer(fetal_model, image, "--out", tmp_path / "a")
    assert result.returncode == 1 and f"{image}: no pixel spacing" in result.stderr
    assert "--assume-spacing" in result.stderr
    result = _infer(fetal_model, image, "--out", tmp_path / "b", "--assume-spacing", "1.9")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "b" / f"{case.name}.json").read_text())
    assert "ac_mm" not in record and record["assumed_spacing_mm"] == 1.9 and "AC not measured" in record["ac_note"]
    assert record["geometry_source"].startswith("estimated from the image")


def test_the_same_anatomy_at_twice_the_pixels_measures_the_same_ac(fetal_model, fetal_data, case, tmp_path):
    """Infer at the scan's own spacing: a 2x upsampled scan gives the same AC in mm."""
    probe = json.loads((fetal_data / "cases" / f"{case.name}.json").read_text())["probe"]
    fine_probe = {**probe, "apex": [2 * v + 0.5 for v in probe["apex"]],
                  "start_depth": 2 * probe["start_depth"], "end_depth": 2 * probe["end_depth"]}
    (tmp_path / "coarse.json").write_text(json.dumps(probe))
    (tmp_path / "fine.json").write_text(json.dumps(fine_probe))
    cv2.imwrite(str(tmp_path / "fine.png"), cv2.resize(case.image, None, fx=2, fy=2))
    runs = {}
    for name, image, spacing in (("coarse", fetal_data / "images" / f"{case.name}.png", case.spacing_mm),
                                 ("fine", tmp_path / "fine.png", case.spacing_mm / 2)):
        result = _infer(fetal_model, image, "--out", tmp_path / name, "--geometry", tmp_path / f"{name}.json",
                        "--spacing", spacing)
        assert result.returncode == 0, result.stderr
        runs[name] = json.loads((tmp_path / name / "infer.json").read_text())["scans"][0]
    if runs["coarse"]["ac_mm"] and runs["fine"]["ac_mm"]:
        assert runs["fine"]["ac_mm"] == pytest.approx(runs["coarse"]["ac_mm"], rel=0.03)
    labels = [cv2.imread(str(tmp_path / n / f"{s}_labels.png"), cv2.IMREAD_UNCHANGED)
              for n, s in (("coarse", case.name), ("fine", "fine"))]
    inside = (labels[0] != 255) & (labels[1][::2, ::2] != 255)
    assert np.mean(labels[0][inside] == labels[1][::2, ::2][inside]) > 0.9


def test_a_batch_goes_on_past_bad_scans_and_counts_them(fetal_model, fetal_data, case, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    good = fetal_data / "images" / f"{case.name}.png"
    other = tmp_path / "again"
    other.mkdir()
    twin = other / good.name
    twin.write_bytes(good.read_bytes())  # the same stem from another folder
    result = _infer(fetal_model, good, junk, twin, "--out", tmp_path / "out", "--spacing", case.spacing_mm)
    assert result.returncode == 1
    assert str(junk) in result.stderr and "1 of 3 input(s) failed" in result.stderr
    outputs = sorted(p.name for p in (tmp_path / "out").glob("[!.]*.json"))
    assert outputs == sorted([f"{case.name}.json", f"{case.name}-2.json", "infer.json"])


def test_the_out_folder_of_something_else_is_never_replaced(fetal_model, fetal_data, tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    before = _sums(tmp_path)
    result = _infer(fetal_model, fetal_data, "--out", mine)
    assert result.returncode == 1 and str(mine) in result.stderr
    assert _sums(tmp_path) == before
    result = _infer(fetal_model, fetal_data, "--out", fetal_data)  # the input itself
    assert result.returncode == 1 and _sums(tmp_path) == before


def test_a_geometry_that_beam_map_rejects_is_rejected_naming_the_file(fetal_model, fetal_data, case, tmp_path):
    bad = tmp_path / "probe.json"
    bad.write_text("{not json")
    image = fetal_data / "images" / f"{case.name}.png"
    result = _infer(fetal_model, image, "--out", tmp_path / "o", "--geometry", bad, "--spacing", "1")
    assert result.returncode == 1 and f"{bad}: not a probe geometry" in result.stderr
    bad.write_text(json.dumps({"type": "convex", "apex": [5000, 5000], "start_depth": 1,
                               "end_depth": 2, "angles": [-10, 10]}))
    result = _infer(fetal_model, image, "--out", tmp_path / "p", "--geometry", bad, "--spacing", "1")
    assert result.returncode == 1 and "entirely outside" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_a_spacing_that_is_no_spacing_is_refused(fetal_model, fetal_data, tmp_path, value):
    result = _infer(fetal_model, fetal_data, "--out", tmp_path / "o", "--spacing", value)
    assert result.returncode == 2 and "positive number of mm" in result.stderr


def test_weights_of_another_model_are_refused(fetal_model, tmp_path, fetal_data):
    import shutil

    copy = shutil.copytree(fetal_model, tmp_path / "m")
    record = json.loads((copy / "model.json").read_text())
    (copy / record["weights"]).write_bytes(b"\x08\x01garbage")
    result = _infer(copy, fetal_data, "--out", tmp_path / "o")
    assert result.returncode == 1 and record["weights"].split("/")[-1] in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def none_model(tmp_path_factory, fetal_data):
    """A model folder of encoding 'none' (no beam directions), trained for a few iterations."""
    return train_patch_model(tmp_path_factory.mktemp("none_model"), fetal_data, "none")


def _fanless(tmp_path):
    """A scan with no fan to find: speckle over the whole frame (no dark background)."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.rayleigh(50, (96, 96)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "nofan.png"), image)
    return tmp_path / "nofan.png"


def test_without_a_fan_only_an_encoding_without_directions_classifies(fetal_model, none_model, case, tmp_path):
    image = _fanless(tmp_path)
    spacing = f"{case.spacing_mm:.4g}"  # the training scans' spacing
    result = _infer(fetal_model, image, "--out", tmp_path / "a", "--spacing", spacing)
    assert result.returncode == 1
    assert "fan: not found (" in result.stderr and "encoding 'channels' needs beam directions" in result.stderr
    assert f"pixel spacing {spacing} mm (given)" in result.stderr
    assert "--geometry FILE, --accept-fan-below C" in result.stderr
    result = _infer(none_model, image, "--out", tmp_path / "b", "--spacing", spacing)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "b" / "nofan.json").read_text())
    assert record["geometry"] is None and record["encoding"] == "none"
    assert record["geometry_source"].startswith("fan: not found (")
    assert "classified over the whole image with encoding 'none'" in record["geometry_source"]
    labels = cv2.imread(str(tmp_path / "b" / "nofan_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (96, 96) and (labels != 255).all()  # every pixel classified
def test_names_from_files_forge_no_line_and_reveal_no_patient(fetal_model, fetal_data, case, tmp_path):
    import dicom_files

    image = fetal_data / "images" / f"{case.name}.png"
    forged = tmp_path / "x\nsim00000: AC 999.9 mm, plane acceptable.png"  # a newline in a file name
    forged.write_bytes(image.read_bytes())
    patient = dicom_files.write(tmp_path / "DOE_JANE.dcm", case.image)  # named after the patient
    broken = tmp_path / "DOE_JOHN.dcm"
    broken.write_bytes(patient.read_bytes()[:600])  # cut short: it fails, and is listed as failed
    result = _infer(fetal_model, forged, patient, broken, "--out", tmp_path / "out", "--spacing", case.spacing_mm)
    assert result.returncode == 1 and str(broken) in result.stderr, result.stderr
    assert not any(line.startswith("sim00000: AC 999.9") for line in result.stdout.splitlines())
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert all("\n" not in n and " " not in n for n in names)
    index = (tmp_path / "out" / "infer.json").read_text()
    assert "DOE" not in index and not any("DOE" in n for n in names)
    assert json.loads(index)["scans"][1]["scan"].startswith("dcm-")


def test_a_scan_named_like_the_index_keeps_its_result(fetal_model, fetal_data, case, tmp_path):
    named = tmp_path / "infer.png"
    named.write_bytes((fetal_data / "images" / f"{case.name}.png").read_bytes())
    result = _infer(fetal_model, named, "--out", tmp_path / "out", "--spacing", case.spacing_mm)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "out" / "infer.json").read_text())
    assert [s["scan"] for s in index["scans"]] == ["infer-2"]
    assert json.loads((tmp_path / "out" / "infer-2.json").read_text())["source"] == str(named)


def test_the_exam_panel_states_centiles_only_at_a_given_age(fetal_model, fetal_data, tmp_path):
    result = _infer(fetal_model, fetal_data, "--out", tmp_path / "dated", "--ga", "30")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "dated/infer.json").read_text())
    panel = summary["panel"]
    assert panel["ga_weeks"] == 30 and "exam:" in result.stdout + result.stderr
    accepted = [s["ac_mm"] for s in summary["scans"] if s.get("plane_acceptable") and s.get("ac_mm")]
    if accepted:  # the few-iteration net may accept none
        ac = panel["measurements"]["AC"]
        assert ac["mm"] == pytest.approx(np.mean(accepted)) and ac["scans"] == len(accepted)
        assert ac["centile"] is not None and ac["ga_estimate"]["formula"] == "Hadlock AC"
    else:
        assert panel["measurements"] == {} and panel["efw"] is None
    assert (tmp_path / "dated/centiles.png").exists() == bool(accepted)


def test_a_bad_age_is_refused_before_any_output(fetal_model, fetal_data, tmp_path):
    for args, message in ((["--ga", "45"], "outside the INTERGROWTH-21st"),
                          (["--lmp", "2026-01-05"], "go together"),
                          (["--ga", "30", "--lmp", "2026-01-05", "--exam-date", "2026-06-01"], "not both")):
        result = _infer(fetal_model, fetal_data, "--out", tmp_path / "never", *args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "never").exists()


def test_infer_runs_a_segmenter_model_folder(segmenter_model, fetal_data, tmp_path):
    from tools import infer

    assert infer.main([str(segmenter_model), str(fetal_data), "--out", str(tmp_path / "out")]) == 0
    record = json.loads(next((tmp_path / "out").glob("sim*.json")).read_text())
    assert "plane_acceptable" in record
    probs = np.load(next((tmp_path / "out").glob("*_probs.npy")))
    assert probs.shape[0] == 8


def test_a_panel_segmenter_reports_each_scans_plane_type_and_what_it_allows(panel_segmenter_model,
                                                                            mixed_data, tmp_path):
    result = _infer(panel_segmenter_model, mixed_data, "--out", tmp_path / "out", "--ga", "30")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out/infer.json").read_text())
    allowed = {"abdomen": {"AC"}, "head": {"HC", "OFD", "BPD_OO", "BPD_OI"}, "femur": {"FL"}, "none": set()}
    for record in summary["scans"]:
        assert record["plane_type"] in allowed and set(record["measurements"]) <= allowed[record["plane_type"]]
        assert f"{record['plane_type']} plane" in result.stdout
    assert np.load(next((tmp_path / "out").glob("*_probs.npy"))).shape[0] == 15


def test_the_exam_panel_gathers_head_femur_and_abdomen_scans():
    from tools import infer

    records = [{"plane_type": "head", "plane_acceptable": True,
                "measurements": {"HC": 280.0, "OFD": 100.0, "BPD_OO": 78.0, "BPD_OI": 76.0}},
               {"plane_type": "femur", "plane_acceptable": True, "measurements": {"FL": 57.0}},
               {"plane_type": "femur", "plane_acceptable": False, "measurements": {"FL": 40.0}},
               {"plane_type": "abdomen", "plane_acceptable": True, "ac_mm": 260.0,
                "measurements": {"AC": 260.0}},
               {"ac_mm": 250.0, "plane_acceptable": True}]  # a patch classifier's record
    panel = infer.exam_panel(records, 30.0)
    assert panel["measurements"]["FL"]["mm"] == 57.0  # the rejected femur is left out
    assert panel["measurements"]["AC"]["mm"] == 255.0 and panel["measurements"]["AC"]["scans"] == 2
    assert panel["cephalic_index"] == pytest.approx(0.78)
    assert panel["measurements"]["HC"]["centile"] is not None and panel["efw"]["grams"] > 1000
    line = infer._summary_line("s", {**records[0], "reasons": [], "cephalic_index": 0.78})
    assert line == "s: head plane, HC 280.0 mm, OFD 100.0 mm, BPD_OO 78.0 mm, BPD_OI 76.0 mm, CI 0.78, plane acceptable"
