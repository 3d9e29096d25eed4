"""Simulated sweeps: anatomy along the body axis, per-frame truth, the on-disk layout."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fetal_biometry.geometry import probe as geom
from fetal_biometry.labels import ABDOMEN, OUTSIDE, STOMACH, VEIN
from fetal_biometry.simulator import TISSUE, sweeps as ss

from conftest import ROOT


@pytest.fixture(scope="module")
def sweep():
    return ss.simulate_sweep(0, 2, frames=24, shape=(96, 96))


def test_a_sweep_is_reproducible_frame_for_frame(sweep):
    again = ss.simulate_sweep(0, 2, frames=24, shape=(96, 96))
    assert np.array_equal(again.frames, sweep.frames) and again.truth == sweep.truth
    other = ss.simulate_sweep(0, 3, frames=24, shape=(96, 96))
    assert not np.array_equal(other.frames, sweep.frames)


def test_levels_run_caudo_cranial_with_the_landmarks_at_the_portal_sinus(sweep):
    levels = [f["level_mm"] for f in sweep.truth]
    assert levels[0] < 0 < levels[-1]
    planes = [f["plane"] for f in sweep.truth]
    assert planes.count("optimal") == 2  # this sweep's two frames at the portal sinus
    # Pelvis first, thorax last: both irrelevant; the abdomen in between.
    assert planes[0] == planes[-1] == "irrelevant"
    assert "thorax" in sweep.truth[-1]["reason"] and "pelvis" in sweep.truth[0]["reason"]
    for frame, labels, truth in zip(sweep.frames, sweep.labels, sweep.truth):
        if truth["plane"] == "optimal":
            assert (labels == STOMACH).any() and (labels == VEIN).any()
            assert abs(truth["level_mm"]) < 10 and abs(truth["tilt_deg"]) <= ss.MAX_OPTIMAL_TILT_DEG


def test_organs_at_each_level_follow_the_table():
    rng = np.random.default_rng(4)
    anatomy = ss._anatomy(rng, 40.0, 38.0)
    R = anatomy.radius

    def tissues(z_mm):
        return {t for t, _ in ss.organs_at(anatomy, z_mm)[0]}

    assert TISSUE["kidney"] in tissues(-0.5 * R) and TISSUE["stomach"] not in tissues(-0.5 * R)
    portal = ss.organs_at(anatomy, 0.0)[1]
    assert portal == {"stomach": True, "vein": True, "kidneys": False}
    assert TISSUE["heart"] in tissues(0.7 * R) and TISSUE["lung"] in tissues(0.7 * R)
    assert TISSUE["heart"] not in tissues(0.0)


def test_masks_hold_the_abdomen_of_annotated_frames_only(sweep):
    for mask, labels, truth in zip(sweep.masks, sweep.labels, sweep.truth):
        value = ss.PLANES.index(truth["plane"])
        assert set(np.unique(mask)) <= {0, value}
        if truth["plane"] == "irrelevant":
            assert not mask.any() and truth["ac_mm"] is None
        else:
            assert mask.any() and not (mask.astype(bool) & (labels == OUTSIDE)).any()
            assert (labels[mask > 0] == ABDOMEN).mean() > 0.5  # the body, under the landmarks
            assert 100 < truth["ac_mm"] < 450


def test_the_reference_ac_comes_from_the_best_annotated_frames(sweep):
    planes = [f["plane"] for f in sweep.truth]
    best = "optimal" if "optimal" in planes else "suboptimal"
    acs = [f["ac_mm"] for f in sweep.truth if f["plane"] == best]
    assert sweep.reference_ac_mm == pytest.approx(np.median(acs))


def test_the_layout_on_disk_reads_back(tmp_path, sweep):
    import SimpleITK as sitk

    root = ss.write_sweeps(tmp_path / "sweeps", [sweep], ss.generator_record(0, 24, (96, 96), "convex"))
    assert ss.is_sweeps(root) and ss.open_sweeps(root) == [root / sweep.name]
    index = json.loads((root / "sweeps.json").read_text())
    assert index["format"] == ss.FORMAT and index["plane_values"]["1"] == "optimal"
    image = sitk.ReadImage(str(root / sweep.name / "frames.mha"))
    assert image.GetSize() == (96, 96, 24)
    assert image.GetSpacing()[0] == pytest.approx(sweep.spacing_mm)
    assert np.array_equal(sitk.GetArrayFromImage(image), sweep.frames)
    masks = sitk.GetArrayFromImage(sitk.ReadImage(str(root / sweep.name / "masks.mha")))
    assert np.array_equal(masks, sweep.masks)
    truth = ss.read_truth(root / sweep.name)
    assert truth["frames"] == sweep.truth and truth["ac_mm"] == sweep.reference_ac_mm
    # truth.json doubles as the probe geometry of the loop.
    probe = geom.read_file(root / sweep.name / "truth.json", (96, 96))
    assert geom.to_dict(probe) == geom.to_dict(sweep.geometry)


def test_a_broken_layout_is_reported(tmp_path, sweep):
    root = ss.write_sweeps(tmp_path / "sweeps", [sweep])
    (root / sweep.name / "masks.mha").unlink()
    with pytest.raises(ValueError, match="missing sweep00002/masks.mha"):
        ss.open_sweeps(root)
    (root / "sweeps.json").write_text("{}")
    with pytest.raises(ValueError, match="sweeps.json.*format"):
        ss.open_sweeps(root)


def test_simulate_writes_sweeps(tmp_path):
    out = tmp_path / "sweeps"
    result = subprocess.run([sys.executable, "tools/simulate.py", "--sweeps", "1", "--frames", "4",
                             "--size", "64", "64", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert ss.open_sweeps(out) == [out / "sweep00000"]
    assert len(ss.read_truth(out / "sweep00000")["frames"]) == 4
    for bad in (["--sweeps", "0"], ["--sweeps", "1", "--frames", "1"], ["--sweeps", "1", "--cases", "1"]):
        run = subprocess.run([sys.executable, "tools/simulate.py", *bad, "--out", str(tmp_path / "x")],
                             cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 2, bad
