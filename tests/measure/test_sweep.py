"""fetal_biometry.measure.sweeps and tools/sweep.py: streamed sequences, batched classification, metrics."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from fetal_biometry import atomic
from fetal_biometry.caffe_env import caffe
from fetal_biometry.evaluation import metrics
from fetal_biometry.inference import dense as inference
from fetal_biometry.io import sequences
from fetal_biometry.measure import sweeps
from fetal_biometry.nets import spec as nets
from fetal_biometry.simulator import sweeps as sweep_simulator

from conftest import ROOT


@pytest.fixture(scope="module")
def small_sweep():
    """A 10-frame simulated sweep of 96x96 frames, on disk as its layout."""
    return sweep_simulator.simulate_sweep(3, 1, frames=10, shape=(96, 96))


@pytest.fixture(scope="module")
def sweeps_dir(tmp_path_factory, small_sweep):
    out = tmp_path_factory.mktemp("sweeps") / "sweeps"
    return sweep_simulator.write_sweeps(out, [small_sweep])


def _random_classifier(tmp_path, encoding, spacing_mm):
    """A DenseClassifier of a real Caffe net with random (xavier) weights."""
    deploy = nets.save(nets.patch_classifier_deploy(3 if encoding == "channels" else 1),
                       tmp_path / f"{encoding}.prototxt")
    caffe().set_random_seed(5)
    net = caffe().Net(str(deploy), caffe().TEST)
    weights = tmp_path / f"{encoding}.caffemodel"
    net.save(str(weights))
    return inference.DenseClassifier(deploy, weights, encoding, spacing_mm)


@pytest.mark.parametrize("encoding", ["channels", "rotate", "none"])
def test_batched_fan_confined_maps_equal_the_one_frame_path(tmp_path, small_sweep, encoding):
    # Another spacing than the frames': the resampling is part of what must agree.
    dense = _random_classifier(tmp_path, encoding, small_sweep.spacing_mm * 1.3)
    frames = small_sweep.frames[:5]
    batched = inference.SequenceClassifier(dense, small_sweep.geometry, frames.shape[1:],
                                                    small_sweep.spacing_mm, batch=3)  # a partial last batch
    for frame, (probs, labels) in zip(frames, batched.classify(iter(frames)), strict=True):
        want_probs, want_labels = dense.classify_scan(frame, small_sweep.geometry, small_sweep.spacing_mm)
        np.testing.assert_allclose(probs, want_probs, atol=1e-4)
        top2 = np.sort(want_probs, axis=0)[-2:]
        clear = top2[1] - top2[0] > 1e-3  # argmax ties may flip within float error
        assert np.array_equal(labels[clear], want_labels[clear])


def test_a_stack_is_streamed_in_chunks_with_its_header_spacing(sweeps_dir, small_sweep, monkeypatch):
    monkeypatch.setattr(sequences, "CHUNK_BYTES", 3 * 96 * 96)  # 3 frames a read
    sequence = sequences.open_sequence(sweeps_dir / "sweep00001" / "frames.mha")
    assert (sequence.kind, sequence.count, sequence.shape) == ("stack", 10, (96, 96))
    assert sequence.spacing_mm == pytest.approx(small_sweep.spacing_mm)
    assert sequence.spacing_source == "image header"
    assert np.array_equal(np.stack(list(sequence.frames())), small_sweep.frames)
    assert sequence.first_rgb().shape == (96, 96, 3)


def test_a_given_spacing_that_disagrees_with_the_header_is_an_error(sweeps_dir, small_sweep):
    with pytest.raises(sequences.SequenceError, match="frames.mha.*disagrees"):
        sequences.open_sequence(sweeps_dir / "sweep00001" / "frames.mha", spacing=small_sweep.spacing_mm * 2)


def test_bad_stacks_are_refused_naming_the_file(tmp_path):
    import SimpleITK as sitk

    floats = tmp_path / "floats.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.float32)), str(floats))
    with pytest.raises(sequences.SequenceError, match="floats.mha.*8-bit"):
        sequences.open_sequence(floats)
    garbage = tmp_path / "garbage.mha"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(sequences.SequenceError, match="garbage.mha"):
        sequences.open_sequence(garbage)
    with pytest.raises(sequences.SequenceError, match="missing.nrrd: no such file"):
        sequences.open_sequence(tmp_path / "missing.nrrd")


def test_a_truncated_stack_fails_clearly_when_its_frames_are_read(tmp_path, small_sweep):
    path = tmp_path / "cut.mha"
    sweep_simulator.write_stack(path, small_sweep.frames, small_sweep.spacing_mm)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(sequences.SequenceError, match="cut.mha"):
        list(sequences.open_sequence(path).frames())


def test_a_video_is_read_frame_by_frame_with_a_given_spacing(tmp_path, small_sweep):
    writer = sequences.VideoWriter(tmp_path / "loop.mp4", 10, (96, 96))
    for frame in small_sweep.frames:
        writer.write(np.repeat(frame[..., None], 3, axis=2))
    writer.close()
    assert not list(tmp_path.glob(".*"))  # the staged file was renamed
    sequence = sequences.open_sequence(tmp_path / "loop.mp4", spacing=0.5)
    frames = list(sequence.frames())
    assert (sequence.kind, len(frames), sequence.spacing_mm) == ("video", 10, 0.5)
    # mp4v is lossy: the frames come back close, not equal.
    assert np.abs(np.stack(frames).astype(int) - small_sweep.frames).mean() < 12
    assert sequences.open_sequence(tmp_path / "loop.mp4").spacing_mm is None


def test_a_multiframe_dicom_is_streamed_with_its_region_calibration(tmp_path, small_sweep):
    import dicom_files

    path = dicom_files.write(tmp_path / "loop.dcm", small_sweep.frames, frames=10,
                             regions=[dicom_files.region((0, 0, 95, 95), (0.05, 0.05))])
    sequence = sequences.open_sequence(path)
    assert (sequence.kind, sequence.count, sequence.shape) == ("dicom", 10, (96, 96))
    assert sequence.spacing_mm == pytest.approx(0.5) and sequence.spacing_source == "ultrasound region"
    assert np.array_equal(np.stack(list(sequence.frames())), small_sweep.frames)


def test_wfss_follows_the_benchmark():
    planes = ["irrelevant", "suboptimal", "optimal", "suboptimal"]
    assert [metrics.wfss(k, planes) for k in (-1, 0, 1, 2)] == [0.0, 0.0, 0.6, 1.0]
    no_optimal = ["irrelevant", "suboptimal"]
    assert metrics.wfss(1, no_optimal) == 1.0 and metrics.wfss(-1, no_optimal) == 0.0
    assert metrics.wfss(-1, ["irrelevant"] * 3) == 1.0 and metrics.wfss(0, ["irrelevant"] * 3) == 0.0


def test_nae_dice_and_the_combined_score():
    assert metrics.nae(200.0, 180.0) == pytest.approx(0.1)
    assert metrics.nae(180.0, 200.0) == pytest.approx(0.1)
    assert metrics.nae(200.0, None) == 1.0 and metrics.nae(None, None) == 0.0
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    assert metrics.dice(a, b) == pytest.approx(0.5) and metrics.dice(a & False, b & False) == 1.0
    assert metrics.combined(0.1, 0.8, 0.6) == pytest.approx(0.45 + 0.2 + 0.15)


def test_analyse_scores_every_frame_and_measures_the_candidates(fetal_model, small_sweep):
    from fetal_biometry.nets import model as model_folder

    dense = inference.DenseClassifier.from_model(model_folder.load(fetal_model))
    classifier = inference.SequenceClassifier(dense, small_sweep.geometry, (96, 96), small_sweep.spacing_mm, 4)
    seen = []
    result = sweeps.analyse(classifier, iter(small_sweep.frames), small_sweep.spacing_mm, 10,
                            lambda index, *rest: seen.append(index), candidates=3)
    record = result.record
    assert seen == list(range(10)) and len(record["frames"]) == 10
    assert len(record["frames_measured"]) == 3
    assert all(("plane_score" in f) == f.get("measured", False) for f in record["frames"])
    assert -1 <= record["best_frame"] < 10
    if record["best_frame"] >= 0:
        assert record["best_frame"] in record["frames_measured"] and record["ac_mm"] > 0
    else:
        assert record["reasons"][0] == "no frame fit to measure" and record["ac_mm"] is None


def _sweep_tool(*args):
    return subprocess.run([sys.executable, "tools/sweep.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_the_tool_writes_json_plot_video_and_best_frame(fetal_model, sweeps_dir, tmp_path):
    folder = sweeps_dir / "sweep00001"
    result = _sweep_tool(fetal_model, folder / "frames.mha", "--geometry", folder / "truth.json",
                         "--out", tmp_path / "out", "--candidates", "3")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    record = json.loads((out / "frames.json").read_text())
    assert {"best_frame", "ac_mm", "plane_acceptable", "reasons", "frames"} <= set(record)
    assert record["spacing_source"] == "image header" and len(record["frames"]) == 10
    for name in ("frames_scores.png", "frames_overlay.mp4", "frames_best.png"):
        assert (out / name).stat().st_size > 0
    assert sequences.open_sequence(out / "frames_overlay.mp4", spacing=1).count == 10
    assert [p.name for p in out.glob(".*")] == [atomic.OUTPUT_MARKER]  # no draft left behind
    # A second run into the same folder needs --overwrite.
    again = _sweep_tool(fetal_model, folder / "frames.mha", "--geometry", folder / "truth.json",
                        "--out", out)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_the_tool_refuses_a_video_without_spacing_and_leaves_no_folder(fetal_model, tmp_path, small_sweep):
    writer = sequences.VideoWriter(tmp_path / "loop.mp4", 10, (96, 96))
    for frame in small_sweep.frames[:3]:
        writer.write(np.repeat(frame[..., None], 3, axis=2))
    writer.close()
    result = _sweep_tool(fetal_model, tmp_path / "loop.mp4", "--out", tmp_path / "out")
    assert result.returncode == 1 and "loop.mp4" in result.stderr and "--spacing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_tool_measures_a_multiframe_dicom_with_an_estimated_fan(fetal_model, tmp_path, small_sweep):
    import dicom_files

    # Named like a scanner's export may be: after the patient.
    path = dicom_files.write(tmp_path / "DOE_JANE_loop.dcm", small_sweep.frames, frames=10,
                             regions=[dicom_files.region((0, 0, 95, 95), (0.05, 0.05))])
    result = _sweep_tool(fetal_model, path, "--out", tmp_path / "out", "--candidates", "2", "--no-video")
    assert result.returncode == 0, result.stderr
    name = "dcm-" + hashlib.sha256(pydicom.dcmread(path).SOPInstanceUID.encode()).hexdigest()[:16]
    record = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    assert record["kind"] == "dicom" and record["spacing_source"] == "ultrasound region"
    assert record["geometry_source"].startswith("first frame: estimated from the image (confidence ")
    assert len(record["frames"]) == 10 and (tmp_path / "out" / f"{name}_best.png").is_file()
    assert not (tmp_path / "out" / f"{name}_overlay.mp4").exists()
    written = result.stdout + "".join(p.read_text(errors="replace") for p in (tmp_path / "out").glob("*.json"))
    assert "DOE" not in written and not list((tmp_path / "out").glob("DOE*"))
    kept = _sweep_tool(fetal_model, path, "--out", tmp_path / "kept", "--candidates", "2", "--no-video",
                       "--keep-names")
    assert kept.returncode == 0 and (tmp_path / "kept" / "DOE_JANE_loop.json").is_file()


def test_the_tool_without_a_fan_says_how_to_go_on(fetal_model, tmp_path, small_sweep):
    """A loop whose first frame shows no fan: a model that needs beam directions refuses it,
    naming --geometry, --accept-fan-below and the encoding 'none'; nothing is written."""
    import dicom_files

    rng = np.random.default_rng(0)
    frames = np.clip(rng.rayleigh(50, small_sweep.frames.shape), 0, 255).astype(np.uint8)
    path = dicom_files.write(tmp_path / "nofan.dcm", frames, frames=len(frames),
                             regions=[dicom_files.region((0, 0, 95, 95), (0.05, 0.05))])
    result = _sweep_tool(fetal_model, path, "--out", tmp_path / "out", "--no-video")
    assert result.returncode == 1 and "first frame: fan: not found (" in result.stderr
    assert "--geometry FILE, --accept-fan-below C, or use a model of encoding 'none'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_evaluate_reports_the_benchmark_metrics_on_a_sweeps_folder(fetal_model, sweeps_dir, tmp_path):
    result = subprocess.run([sys.executable, "tools/evaluate.py", str(sweeps_dir), "--model", str(fetal_model),
                             "--out", str(tmp_path / "eval")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| WFSS | NAE | Dice | score |" in result.stdout
    summary = json.loads((tmp_path / "eval" / "sweep_summary.json").read_text())
    (name, values), = summary.items()
    assert values["sweeps"] == 1 and 0 <= values["score"] <= 1
    detail = json.loads((tmp_path / "eval" / f"{name}_sweeps.json").read_text())["sweeps_detail"][0]
    assert detail["sweep"] == "sweep00001"
    assert values["score"] == pytest.approx(metrics.combined(detail["nae"], detail["dice"], detail["wfss"]))
