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


def test_the_tool_with_a_segmenter_uses_its_frame_choice(segmenter_model, sweeps_dir, tmp_path):
    folder = sweeps_dir / "sweep00001"
    result = _sweep_tool(segmenter_model, folder / "frames.mha", "--geometry", folder / "truth.json",
                         "--out", tmp_path / "out", "--candidates", "2", "--stride", "3", "--backend", "opencv")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "frames.json").read_text())
    frames = record["frames"]
    assert len(frames) == 10 and all(frames[k]["score"] is not None for k in (0, 3, 6, 9))
    assert all("complete" in frames[k] and "smoothed" in frames[k] for k in record["frames_measured"])
    assert sequences.open_sequence(tmp_path / "out" / "frames_overlay.mp4", spacing=1).count == 10


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


# --------------------------------------------------------------------------- the segmenter's frame choice

def _one_hot(labels: np.ndarray, classes: int = 8) -> np.ndarray:
    """Probabilities (K, H, W) a sure segmenter gives for ``labels`` (0 outside the fan)."""
    probs = (np.arange(classes)[:, None, None] == labels[None]).astype(np.float32)
    return probs


def _drawn(a: float = 30, b: float = 30, vein: bool = True) -> np.ndarray:
    """A 96x96 map at 1 mm per pixel: an abdomen ellipse in fluid, stomach and vein inside."""
    from fetal_biometry.labels import ABDOMEN, FLUID, STOMACH, VEIN

    rows, cols = np.mgrid[:96, :96]
    labels = np.full((96, 96), FLUID, np.uint8)
    labels[((cols - 48) / a) ** 2 + ((rows - 48) / b) ** 2 <= 1] = ABDOMEN
    labels[(cols - 40) ** 2 + (rows - 45) ** 2 <= 25] = STOMACH
    if vein:
        labels[50:54, 50:60] = VEIN
    return labels


def test_the_frame_score_reads_outline_roundness_and_landmarks_from_a_map():
    from fetal_biometry.labels import OUTSIDE

    whole = sweeps.frame_score(_drawn(), _one_hot(_drawn()), 1.0)
    assert whole["complete"] == 1.0 and whole["axis_ratio"] > 0.97 and whole["score"] == pytest.approx(1.0)
    cut = _drawn()
    cut[:, 72:] = OUTSIDE  # the fan's edge cuts the abdomen
    assert sweeps.frame_score(cut, _one_hot(cut), 1.0)["score"] < 0.9
    oblique = _drawn(38, 19)
    assert sweeps.frame_score(oblique, _one_hot(oblique), 1.0)["score"] < 0.8
    no_vein = _drawn(vein=False)
    assert sweeps.frame_score(no_vein, _one_hot(no_vein), 1.0)["score"] == pytest.approx(2 / 3, abs=1e-3)
    assert sweeps.frame_score(np.zeros((96, 96), np.uint8), _one_hot(np.zeros((96, 96))), 1.0)["score"] == 0


def test_a_wrong_level_class_inside_the_abdomen_rules_the_frame_out():
    from fetal_biometry.labels import HEART

    labels = _drawn()
    labels[30:45, 45:65] = HEART  # inside the body: its region includes it
    score = sweeps.frame_score(labels, _one_hot(labels, 9), 1.0)
    assert score["complete"] == 1.0 and score["wrong_level"] > sweeps.WRONG_LEVEL_SHARE and score["score"] == 0
    # Without the rule the same map is a perfect plane: the class alone tells it apart.
    assert sweeps.frame_score(labels, _one_hot(labels, 9), 1.0, wrong_level=())["score"] > 0.99


def test_smoothing_lets_no_single_frame_win_and_skips_frames_not_scored():
    spike_then_plateau = [0, 0, 0, 1.0, 0, 0, 0.8, 0.85, 0.8, 0]
    assert int(np.argmax(spike_then_plateau)) == 3
    window = (0.25, 0.5, 0.25)
    assert int(np.argmax(sweeps.smooth(spike_then_plateau, window))) == 7
    np.testing.assert_allclose(sweeps.smooth([1.0, np.nan, 0.0], window), [1.0, 0.5, 0.0])
    assert sweeps.smooth(spike_then_plateau, (1.0,)).tolist() == spike_then_plateau  # the default: off


def test_the_frame_choice_on_a_tiny_sweep_passes_over_a_noisy_thorax_frame():
    """Truth maps of a simulated sweep (a sure segmenter) through the scoring functions, with
    a thorax frame where heart chambers read as a stomach bubble and a vein (drawn in). Read in
    the abdomen's eight classes (heart and lungs as abdomen) it scores high alone and loses once
    smoothed; with the heart and lung classes it scores 0."""
    from fetal_biometry.labels import ABDOMEN, HEART, STOMACH, VEIN, abdomen_labels

    sweep = sweep_simulator.simulate_sweep(0, 2, frames=24, shape=(96, 96))
    planes = [f["plane"] for f in sweep.truth]
    thorax = max(k for k, f in enumerate(sweep.truth) if f["reason"].startswith(sweep_simulator.THORAX))
    labels = sweep.labels.copy()
    assert HEART in labels[thorax]
    body = np.argwhere(np.isin(labels[thorax], (ABDOMEN, HEART))).mean(axis=0).astype(int)
    labels[thorax][body[0] - 3:body[0] + 3, body[1] - 5:body[1] + 3] = STOMACH
    labels[thorax][body[0] + 4:body[0] + 7, body[1] - 2:body[1] + 6] = VEIN
    eight = abdomen_labels(labels)
    raw = np.array([sweeps.frame_score(m, _one_hot(m), sweep.spacing_mm)["score"] for m in eight])
    chosen = int(np.argmax(sweeps.smooth(raw, (0.25, 0.5, 0.25))))
    assert planes[chosen] == "optimal"
    assert raw[thorax] >= raw[chosen]  # alone, the noisy thorax frame would have won (or tied)
    own = sweeps.frame_score(labels[thorax], _one_hot(labels[thorax], 18), sweep.spacing_mm)
    assert own["wrong_level"] > sweeps.WRONG_LEVEL_SHARE and own["score"] == 0


def test_the_segmenters_two_passes_score_every_frame_they_segment(segmenter_model, small_sweep):
    from fetal_biometry.nets import model as model_folder

    segmenter = inference.engine(model_folder.load(segmenter_model))
    classifier = inference.SequenceClassifier(segmenter, small_sweep.geometry, (96, 96), small_sweep.spacing_mm, 3)
    seen = []
    result = sweeps.analyse_sequence(classifier, lambda: iter(small_sweep.frames), small_sweep.spacing_mm,
                                     on_frame=lambda k, frame, labels, score: seen.append((k, labels is None)),
                                     candidates=2, stride=3)
    assert [k for k, _ in seen] == list(range(10))  # the first pass shows every frame, in order
    assert [k for k, skipped in seen if not skipped] == [0, 3, 6, 9]
    record = result.record
    assert len(record["frames"]) == 10 and len(record["frames_measured"]) == 2
    assert all(record["frames"][k]["score"] is not None for k in (0, 3, 6, 9, *record["frames_measured"]))
    assert all("smoothed" in record["frames"][k] for k in record["frames_measured"])
    assert record["best_frame"] in (-1, *record["frames_measured"])


def test_the_segmenters_memory_does_not_grow_with_the_frames(segmenter_model, small_sweep):
    """Frames alive at once stay bounded whatever the sequence's length (one batch and the
    frames skipped between, the second pass's candidates), and peak traced memory over 300 frames
    against 30 grows by each frame's score record (a few kB), never by a frame or its maps (96x96
    frame and labels 18 kB, probabilities 295 kB)."""
    import tracemalloc
    import weakref

    from fetal_biometry.nets import model as model_folder

    segmenter = inference.engine(model_folder.load(segmenter_model))
    classifier = inference.SequenceClassifier(segmenter, small_sweep.geometry, (96, 96), small_sweep.spacing_mm, 4)
    alive = {"now": 0, "most": 0}

    def gone():
        alive["now"] -= 1

    def frames(count: int):
        for k in range(count):
            frame = small_sweep.frames[k % 10].copy()
            alive["now"] += 1
            alive["most"] = max(alive["most"], alive["now"])
            weakref.finalize(frame, gone)
            yield frame

    def peak(count: int) -> int:
        tracemalloc.start()
        sweeps.analyse_sequence(classifier, lambda: frames(count), small_sweep.spacing_mm, candidates=2, stride=2)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(10)  # warm up
    grown = (peak(300) - peak(30)) / 270
    assert grown < 8_000
    assert alive["most"] <= 4 * 2 + 2 * 3 + 2  # a batch of 4 with the frames skipped between, 2 x 3 candidates
