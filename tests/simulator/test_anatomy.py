"""The simulator's anatomy ranges: distractors and their labels, unfit planes, echogenicity,
maternal layers, and the first round reproduced by the NARROW ranges."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import cv2
import numpy as np
import pytest

from fetal_biometry import simulator
from fetal_biometry.labels import ABDOMEN, BACKGROUND, KIDNEY, OUTSIDE, SHADOW, VEIN
from fetal_biometry.measure.ellipse import ellipse_perimeter, normalized_radius
from fetal_biometry.simulator import TISSUE, anatomy, physics
from fetal_biometry.simulator.tissues import BONE

SHAPE = (128, 128)
EVERY_DISTRACTOR = dataclasses.replace(simulator.TRAINING.anatomy, cord_loop_share=1.0, portal_vessel_share=1.0,
                                       gallbladder_share=1.0, kidney_share=1.0, limb_share=1.0)
# sha256 (first 20 hex digits) of image + labels of simulate_case(0, i, (96, 96), "mixed"),
# computed with the simulator before the anatomy ranges existed (commit 7d53bba), under OpenCV 5.0
# (the first round's) and under the pinned 4.14, whose bilinear remap (scan conversion) rounds on
# a 1/32-pixel grid: images within 2 grey levels of 5.0's, labels identical.
FIRST_ROUND = {"5": {0: "3eb205268aae0249fa0a", 1: "05512e75811cb7662791", 2: "fb9f16b343c0e3019acb",
                     3: "5fe46061e2e570d6110e"},
               "4": {0: "603e6e3e1852bd60d9ef", 1: "dc4d6de608c8597ea67e", 2: "cb6087070699fdb3fed0",
                     3: "4a90b637e9b278158bad"}}[cv2.__version__.split(".")[0]]


def _scene(seed: int, index: int, ranges, share: float = 0.0) -> simulator.Scene:
    return simulator.draw_scene(np.random.default_rng([seed, index]), SHAPE, "mixed", share, ranges)


def _tissue(scene: simulator.Scene) -> np.ndarray:
    return simulator.tissue_at(scene, *np.indices(SHAPE)[::-1])


def test_narrow_reproduces_the_first_round_byte_for_byte():
    for index, digest in FIRST_ROUND.items():
        case = simulator.simulate_case(0, index, (96, 96), "mixed", appearance=simulator.NARROW)
        assert hashlib.sha256(case.image.tobytes() + case.labels.tobytes()).hexdigest()[:20] == digest, index


def test_each_distractor_appears_labelled_as_documented():
    expected = {"cord_jelly": BACKGROUND, "cord_vessel": BACKGROUND, "limb": BACKGROUND,
                "limb_bone": BACKGROUND, "gallbladder": ABDOMEN, "kidney": KIDNEY, "vessel": ABDOMEN}
    seen = set()
    for index in range(6):
        scene = _scene(2, index, EVERY_DISTRACTOR)
        assert any(t == TISSUE["vessel"] and isinstance(s, anatomy.Tube) for t, s in scene.organs)  # portal
        labels, tissue = simulator.ground_truth(scene, SHAPE, simulator.beam_grid(scene))
        for name, label in expected.items():
            at = (tissue == TISSUE[name]) & (labels != OUTSIDE)
            seen |= {name} if at.any() else set()
            allowed = {label} if BONE[TISSUE[name]] else {label, SHADOW}  # bone is never shadow
            assert set(np.unique(labels[at])) <= allowed, (index, name)
        cord = np.isin(tissue, [TISSUE["cord_jelly"], TISSUE["cord_vessel"]])
        assert not np.any(labels[cord] == VEIN)  # a free loop is not the intrahepatic vein
    assert seen == set(expected)


def test_a_limb_bone_shadows_what_lies_behind_it():
    limbs = dataclasses.replace(simulator.NARROW.anatomy, limb_share=1.0)
    checked = 0
    for index in range(12):
        scene = _scene(3, index, limbs)
        grid = simulator.beam_grid(scene)
        bone = grid.tissue == TISSUE["limb_bone"]
        if bone.sum() < 20:  # the limb lies outside the fan, or only its soft tissue is cut
            continue
        args = (grid.depth_mm, grid.pitch_mm, scene.frequency_mhz)
        with_limb = physics.shadow_mask(grid.tissue, *args)
        without = physics.shadow_mask(simulator.beam_grid(dataclasses.replace(scene, outside=())).tissue, *args)
        # The beams through the middle of the bone (it is a few beam widths wide) are shadowed
        # below it, where nothing else shadowed them, unless the fan ends there.
        chord = bone.sum(axis=0)
        beams = np.nonzero(chord >= 0.8 * chord.max())[0]
        behind = np.where(bone[:, beams], np.arange(bone.shape[0])[:, None], -1).max(axis=0) + 6
        keep = behind < bone.shape[0]
        behind, beams = behind[keep], beams[keep]
        free = ~without[behind, beams]  # not already behind the spine or a rib
        if not free.any():
            continue
        assert np.mean(with_limb[behind[free], beams[free]]) > 0.6, index
        checked += 1
    assert checked >= 4


def _vein_reach(scene: simulator.Scene, tissue: np.ndarray) -> float:
    """How far out the umbilical vein reaches, in normalised radius of the skin ellipse."""
    ys, xs = np.nonzero(tissue == TISSUE["umbilical_vein"])
    return float(normalized_radius(simulator.abdomen_ellipse(scene), xs, ys).max())


IN_PLANE = {  # kind: tissues in plane, tissues not in plane
    "no_stomach": ({"umbilical_vein"}, {"stomach"}),
    "no_vein": ({"stomach"}, {"umbilical_vein"}),
    "renal_level": ({"kidney"}, {"stomach", "umbilical_vein"}),
    "too_high": ({"heart", "lung"}, {"stomach", "umbilical_vein"}),
    "cord_insertion": ({"umbilical_vein", "cord_jelly"}, {"stomach"}),
    "oblique": ({"stomach", "umbilical_vein"}, set()),
    "vein_at_skin": ({"stomach", "umbilical_vein"}, set()),
}


@pytest.mark.parametrize("kind", sorted(anatomy.UNFIT))
def test_each_unfit_kind_is_drawn_with_its_reason(kind):
    ranges = dataclasses.replace(simulator.TRAINING.anatomy, unfit_kinds=(kind,))
    case = simulator.simulate_case(4, 0, (96, 96), "mixed", unacceptable_share=1.0,
                                   appearance=dataclasses.replace(simulator.TRAINING, anatomy=ranges))
    bio = case.biometry
    assert bio.plane_reason == anatomy.UNFIT[kind] and not bio.plane_acceptable
    assert bio.ac_mm == pytest.approx(ellipse_perimeter(bio.ellipse.a, bio.ellipse.b) * case.spacing_mm)
    scene = _scene(4, 1, ranges, share=1.0)
    tissue = _tissue(scene)
    present = {name for name in TISSUE if np.any(tissue == TISSUE[name])}
    wanted, missing = IN_PLANE[kind]
    assert wanted <= present and not missing & present, (kind, present)
    ellipse = simulator.abdomen_ellipse(scene)
    ratio = ellipse.b / ellipse.a
    assert ratio < 0.8 if kind == "oblique" else ratio >= 0.85
    assert 150 <= ellipse_perimeter(*scene.semi_axes) <= 380
    if kind in ("cord_insertion", "vein_at_skin"):
        assert _vein_reach(scene, tissue) > 0.95  # through the body wall to the skin line


def test_acceptable_planes_keep_the_vein_inside_the_liver():
    for index in range(5):
        scene = _scene(4, index, EVERY_DISTRACTOR)
        assert scene.plane_reason == simulator.ACCEPTABLE and _vein_reach(scene, _tissue(scene)) < 0.9


def test_training_draws_every_unfit_kind_at_the_default_share():
    reasons = [_scene(5, i, simulator.TRAINING.anatomy, share=0.3).plane_reason for i in range(300)]
    assert set(reasons) == {simulator.ACCEPTABLE, *simulator.UNACCEPTABLE}
    assert np.mean([r != simulator.ACCEPTABLE for r in reasons]) == pytest.approx(0.3, abs=0.08)
    assert len(set(simulator.UNACCEPTABLE)) == len(simulator.UNACCEPTABLE)  # distinct reasons


def test_without_distractors_removes_them():
    plain = simulator.TRAINING.without("distractors").anatomy
    assert plain.fat_mm == simulator.TRAINING.anatomy.fat_mm  # the other groups stay wide
    names = ("gallbladder", "cord_jelly", "cord_vessel", "limb", "limb_bone", "kidney")
    look_alikes = {TISSUE[n] for n in names}

    def count(ranges) -> int:
        total = 0
        for index in range(30):
            scene = _scene(6, index, ranges)
            total += sum(t in look_alikes or (t == TISSUE["vessel"] and isinstance(s, anatomy.Tube))
                         for t, s in scene.organs + scene.outside)
        return total

    assert count(plain) == 0 < count(simulator.TRAINING.anatomy)


def test_echogenicity_stays_in_its_range_and_reaches_the_image():
    for appearance, (lo, hi) in ((simulator.NARROW, (0, 0)), (simulator.TRAINING, (0, 4)),
                                 (simulator.FOREIGN, (4, 7))):
        db = np.abs(20 * np.log10(_scene(8, 0, appearance.anatomy).echo_scale))
        assert np.all((db[anatomy.JITTERED] >= lo - 1e-4) & (db[anatomy.JITTERED] <= hi + 1e-4))
        assert np.all(np.delete(db, anatomy.JITTERED) == 0)
    assert TISSUE["liver"] in anatomy.JITTERED and TISSUE["body_wall"] in anatomy.JITTERED
    for name in ("amniotic_fluid", "stomach", "umbilical_vein", "spine", "limb_bone"):
        assert TISSUE[name] not in anatomy.JITTERED
    scene = _scene(8, 1, simulator.NARROW.anatomy)
    grid = simulator.beam_grid(scene)
    scale = np.ones(len(simulator.TISSUES), np.float32)
    scale[TISSUE["liver"]] = 2.0  # +6 dB
    images = [simulator.scan_image(s, grid, SHAPE, np.random.default_rng(0))
              for s in (scene, dataclasses.replace(scene, echo_scale=scale))]
    labels, tissue = simulator.ground_truth(scene, SHAPE, grid)
    liver = (tissue == TISSUE["liver"]) & (labels == ABDOMEN)
    # 6 dB are 25-30 gray levels at a 50-60 dB dynamic range.
    assert np.median(images[1][liver]) - np.median(images[0][liver]) > 18


def test_foreign_maternal_wall_is_thicker_than_any_training_one():
    def fat(ranges, index: int) -> float:
        top = _scene(9, index, ranges).boundaries
        return top[1].depth - top[0].depth

    training = [fat(simulator.TRAINING.anatomy, i) for i in range(40)]
    foreign = [fat(simulator.FOREIGN.anatomy, i) for i in range(40)]
    assert simulator.NARROW.anatomy.fat_mm[1] < max(training) <= simulator.TRAINING.anatomy.fat_mm[1]
    assert simulator.TRAINING.anatomy.fat_mm[1] < simulator.FOREIGN.anatomy.fat_mm[0] <= min(foreign)


def test_every_anatomy_range_is_documented_and_recorded():
    fields = dataclasses.fields(simulator.appearance.AnatomyRanges)
    assert {f.metadata["group"] for f in fields} == {"echogenicity", "maternal", "distractors", "unfit"}
    assert all(len(f.metadata["doc"]) > 10 for f in fields)
    for appearance in simulator.PRESETS.values():
        assert set(appearance.anatomy.unfit_kinds) <= set(anatomy.UNFIT)
        assert json.loads(json.dumps(appearance.to_dict()))["anatomy"]["unfit_kinds"] == list(
            appearance.anatomy.unfit_kinds)
    with pytest.raises(ValueError, match="unknown unfit-plane kinds"):
        _scene(0, 0, dataclasses.replace(simulator.TRAINING.anatomy, unfit_kinds=("sideways",)))
