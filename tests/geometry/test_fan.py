"""Probe geometry from the image alone: simulated and drawn scans with clutter, failures, tool."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import screens
from fetal_biometry import simulator
from fetal_biometry.geometry import fan, probe as geom

from conftest import ROOT

SHAPE = (240, 320)
CONVEX = geom.ConvexProbe(apex=(170.0, -40.0), start_depth=60.0, end_depth=270.0, angles=(-33.0, 28.0))
LINEAR = geom.LinearProbe(origin=(70.0, 24.0), width=170.0, start_depth=0.0, end_depth=210.0, angle=-9.0)


def _clutter(image: np.ndarray) -> np.ndarray:
    """What a scanner draws: white text and a depth scale beside the fan, coloured calipers, a
    measurement line and its result over and near the fan, a colour bar."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    cv2.putText(out, "C5-1  4.2 MHz", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    for y in range(30, 200, 10):
        cv2.line(out, (312, y), (318, y), (255, 255, 255), 1)
    for x, y in ((130, 90), (200, 160)):
        cv2.drawMarker(out, (x, y), (255, 255, 0), cv2.MARKER_CROSS, 9, 1)
    for t in np.linspace(0, 1, 12):
        cv2.circle(out, (int(130 + 70 * t), int(90 + 70 * t)), 1, (255, 255, 0), -1)
    cv2.line(out, (20, 120), (110, 60), (0, 255, 0), 1)  # across the fan edge
    cv2.putText(out, "AC 231 mm", (222, 236), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
    bar = cv2.applyColorMap(np.linspace(255, 0, 90).astype(np.uint8)[:, None].repeat(8, 1), cv2.COLORMAP_JET)
    out[20:110, 300:308] = bar[..., ::-1]
    return out


def _speckle(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    speckle = cv2.GaussianBlur(rng.rayleigh(40, SHAPE).astype(np.float32), (0, 0), 0.8)
    return np.clip(speckle * 1.6, 0, 255).astype(np.uint8)


def _drawn(probe, seed=0) -> np.ndarray:
    """A fan of coarse speckle with dark fluid holes, on black."""
    image = _speckle(seed)
    cv2.circle(image, (150, 150), 30, 0, -1)  # fluid inside the fan
    image[~geom.fan_mask(probe, SHAPE)] = 0
    return image


def _assert_close(found, truth, px=2.0, deg=1.0):
    assert type(found) is type(truth)
    if isinstance(truth, geom.ConvexProbe):
        np.testing.assert_allclose(found.apex, truth.apex, atol=px)
        np.testing.assert_allclose(found.angles, truth.angles, atol=deg)
        assert found.start_depth == pytest.approx(truth.start_depth, abs=px)
    else:  # the face is placed at the top of the strip
        np.testing.assert_allclose(found.origin, geom.beam_to_image(truth, truth.start_depth, 0.0), atol=px)
        assert found.width == pytest.approx(truth.width, abs=px)
        assert found.angle == pytest.approx(truth.angle, abs=deg)
    assert found.end_depth - found.start_depth == pytest.approx(truth.end_depth - truth.start_depth, abs=px)


@pytest.mark.parametrize("probe", [CONVEX, LINEAR], ids=["convex", "linear"])
def test_drawn_fan_with_clutter(probe):
    found, confidence = fan.estimate_geometry(_clutter(_drawn(probe)))
    _assert_close(found, probe)
    assert confidence > 0.9


@pytest.mark.parametrize("kind, index", [("convex", 0), ("convex", 4), ("linear", 4), ("linear", 6)])
def test_simulated_scans(kind, index):
    case = simulator.simulate_case(0, index, (256, 256), kind, appearance=simulator.NARROW)
    found, confidence = fan.estimate_geometry(case.image)
    # Black amniotic fluid lies against the fan edges in these scans: often only 20-30 px of
    # an edge is seen, hence the looser angle, and less of the outline backs the confidence.
    # (Cases chosen on the first round's scans, hence its NARROW appearance.)
    _assert_close(found, case.geometry, px=3.0, deg=1.5)
    assert confidence > 0.4


# TRAINING scans (seed 0) where dark amniotic fluid lies against both edges and the bottom:
# the echoes end at the fetus and only a thin posterior wall marks the fan's bottom. Without
# it the best outline scored 0.18-0.25 and no fan was found.
@pytest.mark.parametrize("size, index", [(128, 5), (256, 4), (256, 11), (256, 15)])
def test_simulated_scans_with_fluid_against_the_edges(size, index):
    case = simulator.simulate_case(0, index, (size, size), "convex", appearance=simulator.TRAINING)
    found, confidence = fan.estimate_geometry(case.image)
    _assert_close(found, case.geometry, px=3.0, deg=1.5)
    assert confidence >= fan.MIN_CONFIDENCE


FLUID = geom.ConvexProbe(apex=(165.0, -40.0), start_depth=60.0, end_depth=215.0, angles=(-33.0, 28.0))


def _fluid_filled(band: float) -> np.ndarray:
    """Maternal layers under the probe, a fetus in the middle, black fluid against both edges
    down to a posterior wall ``band`` px thick (thinner than the closing's disk holds twice)."""
    image = _speckle()
    image[~geom.fan_mask(FLUID, SHAPE)] = 0
    depth, lateral = geom.image_to_beam(FLUID, *np.meshgrid(np.arange(SHAPE[1]), np.arange(SHAPE[0])))
    fetus = (depth - 150) ** 2 / 50 ** 2 + (lateral + 3) ** 2 / 14 ** 2 < 1
    image[(depth > FLUID.start_depth + 30) & (depth < FLUID.end_depth - band) & ~fetus] = 0
    return image


@pytest.mark.parametrize("band", [5, 8])
def test_a_thin_posterior_wall_beyond_fluid_gives_the_fan_bottom_and_edges(band):
    found, confidence = fan.estimate_geometry(_fluid_filled(band))
    _assert_close(found, FLUID)
    assert confidence > 0.5


def test_text_below_a_fan_lowers_its_confidence_and_moves_no_edge():
    # The second look takes in all that lies below the fan between its edges: the text makes a
    # worse fan than the one without it: its edges and apex are right, its end depth reaches
    # the text, and its confidence, below the threshold, says it is weak (refused unless the
    # user accepts weak fans; known limit, docs/pipeline.md).
    image = _fluid_filled(5)
    _, clean = fan.estimate_geometry(image.copy())
    cv2.putText(image, "Frame 12/80  AC 231 mm", (95, 232), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1,
                cv2.LINE_AA)
    found, confidence = fan.estimate_geometry(image, min_confidence=0.0)
    assert confidence < 0.5 * clean and confidence < 0.3
    np.testing.assert_allclose(found.apex, FLUID.apex, atol=3)
    np.testing.assert_allclose(found.angles, FLUID.angles, atol=1.5)


def test_a_gray_panel_and_a_gray_bar_around_the_fan_are_background():
    # A viewer's window or a scanner's screen shows the scan on a gray panel, not on black: a
    # flat area is no speckle, so the panel and the bar beside the fan count as background.
    image = _drawn(CONVEX)
    image[~geom.fan_mask(CONVEX, SHAPE)] = 60
    image[20:200, 4:16] = np.linspace(220, 20, 180).astype(np.uint8)[:, None]
    cv2.putText(image, "LV7.5  65 mm", (230, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 230, 1)
    found, confidence = fan.estimate_geometry(image)
    _assert_close(found, CONVEX, px=3.0)
    assert confidence > 0.4


BIG = (600, 800)
LARGE = geom.ConvexProbe(apex=(400.0, -60.0), start_depth=140.0, end_depth=620.0, angles=(-33.0, 28.0))


def test_depth_ticks_along_an_edge_of_a_large_screen_do_not_tilt_it():
    # A scanner's depth scale drawn against the fan's edge joins the echoes: the hull, and the
    # rim refit moved out to the outermost pixels, follow the ticks; the refinement fits the
    # edge to where the echoes end along it, the ticks dropped as outliers.
    rng = np.random.default_rng(3)
    image = np.clip(cv2.GaussianBlur(rng.rayleigh(40, BIG).astype(np.float32), (0, 0), 1.2) * 1.6,
                    0, 255).astype(np.uint8)
    image[~geom.fan_mask(LARGE, BIG)] = 0
    for depth in range(180, 600, 60):  # ticks 12 px long, growing outward, and their labels
        x, y = geom.beam_to_image(LARGE, np.array([depth, depth]), np.array([-33.0, -35.5]))
        cv2.line(image, (int(x[0]), int(y[0])), (int(x[1]), int(y[1])), 255, 3)
        cv2.putText(image, str(depth // 60), (int(x[1]) - 18, int(y[1]) + 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    found, _ = fan.estimate_geometry(image)
    np.testing.assert_allclose(found.angles, LARGE.angles, atol=0.5)
    np.testing.assert_allclose(found.apex, LARGE.apex, atol=4.0)


def test_detected_fan_covers_the_echoes_and_skips_the_clutter():
    hull = fan.detect_fan(_clutter(_drawn(CONVEX)))
    truth = geom.fan_mask(CONVEX, SHAPE)
    assert hull[truth].mean() > 0.99
    assert not hull[:20, :100].any() and not hull[20:200, 299:].any()  # text, bar, ticks


@pytest.mark.parametrize("image", [np.zeros(SHAPE, np.uint8), np.full(SHAPE, 128, np.uint8)],
                         ids=["blank", "uniform"])
def test_no_fan_in_blank_or_uniform_images(image):
    with pytest.raises(fan.FanNotFound, match="no textured region"):
        fan.estimate_geometry(image)


def test_no_fan_in_a_photo():
    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.uniform(40, 220, SHAPE).astype(np.float32), (0, 0), 1.0)
    with pytest.raises(fan.FanNotFound, match="dark background"):
        fan.estimate_geometry(photo.astype(np.uint8))


def _tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools/beam_map.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_tool_estimates_and_writes_the_map(tmp_path):
    cv2.imwrite(str(tmp_path / "scan.png"), _clutter(_drawn(CONVEX))[..., ::-1])
    run = _tool(tmp_path / "scan.png", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["probe"] == "convex" and report["fan"] == "found"
    assert report["geometry_source"].startswith("estimated from the image (confidence 0.9")
    np.testing.assert_allclose(report["apex"], CONVEX.apex, atol=2)
    np.testing.assert_allclose(report["edges_deg"], CONVEX.angles, atol=1)
    assert 0.9 < report["confidence"] <= 1
    directions = np.load(tmp_path / "out/scan_beam.npy")
    found = geom.from_dict(report["geometry"])
    np.testing.assert_array_equal(directions, geom.beam_directions(found, SHAPE))
    assert cv2.imread(str(tmp_path / "out/scan_beam.png")).shape == (*SHAPE, 3)


def test_tool_takes_the_geometry_from_a_case_record(tmp_path):
    case = simulator.simulate_case(0, 1, (96, 128), "linear")
    cv2.imwrite(str(tmp_path / "case.png"), case.image)
    record = {"pixel_spacing_mm": 0.5, "probe": geom.to_dict(case.geometry)}
    (tmp_path / "case.json").write_text(json.dumps(record))
    run = _tool(tmp_path / "case.png", "--geometry", tmp_path / "case.json", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["confidence"] == 1.0 and report["probe"] == "linear" and report["apex"] is None
    assert report["fan"] == "given"
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "case_beam.npy"),
                                  geom.beam_directions(case.geometry, (96, 128)))


def test_tool_uses_a_weak_fan_only_when_accepted(tmp_path):
    """A fan below the threshold is refused with its confidence to 3 digits, and used, marked
    low-confidence, with --accept-fan-below."""
    weak = _drawn(CONVEX)
    weak[:, 90:240] = 0  # only the two sides of the fan left: a weak outline
    _, confidence = fan.estimate_geometry(weak, min_confidence=0.0)
    assert confidence < fan.MIN_CONFIDENCE
    cv2.imwrite(str(tmp_path / "weak.png"), weak)
    run = _tool(tmp_path / "weak.png", "--out", tmp_path / "out")
    assert run.returncode == 1
    assert f"confidence {confidence:.3f}, below {fan.MIN_CONFIDENCE:.3f}" in run.stderr
    run = _tool(tmp_path / "weak.png", "--accept-fan-below", f"{confidence - 0.01:.3f}", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["fan"] == "low confidence" and report["confidence"] == pytest.approx(confidence, abs=1e-4)
    assert f"LOW confidence {confidence:.3f} < {fan.MIN_CONFIDENCE:.3f}" in run.stderr
    assert (tmp_path / "out/weak_beam.npy").exists()


def test_tool_fails_clearly(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    run = _tool(tmp_path / "broken.png", "--out", tmp_path / "out")
    assert run.returncode != 0 and "broken.png: not a readable image" in run.stderr
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros(SHAPE, np.uint8))
    run = _tool(tmp_path / "blank.png", "--out", tmp_path / "out")
    assert run.returncode == 1 and "blank.png: no fan found" in run.stderr
    report = json.loads(run.stdout)  # still reported: spacing, its source, the region
    assert report["fan"].startswith("not found (no textured region")
    assert report["spacing_source"] == "none" and report["region"] is None and "geometry" not in report
    (tmp_path / "probe.json").write_text('{"type": "convex", "apex": [1, 2]}')
    run = _tool(tmp_path / "blank.png", "--geometry", tmp_path / "probe.json", "--out", tmp_path / "out")
    assert run.returncode != 0 and "probe.json: " in run.stderr and "lacks field 'start_depth'" in run.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- screen-like frames

@pytest.mark.parametrize("name", ["SECTOR", "CONVEX", "ZOOMED"])
@pytest.mark.parametrize("doppler", [False, True], ids=["b-mode", "colour-doppler"])
def test_fans_on_screens_are_found_inside_their_region(name, doppler):
    truth = getattr(screens, name)
    frame = screens.screen(truth, seed=2, doppler=doppler)  # text panel, bars, scale around it
    x0, y0, x1, y1 = screens.REGION
    found, confidence = fan.estimate_geometry(frame, region=screens.REGION)
    assert isinstance(found, geom.ConvexProbe) and confidence >= fan.MIN_CONFIDENCE
    np.testing.assert_allclose(found.apex, (truth.apex[0] + x0, truth.apex[1] + y0), atol=20)
    np.testing.assert_allclose(found.angles, truth.angles, atol=3)
    # The fan runs out of the region at its sides or bottom: the clip rectangle says where.
    assert found.clip == (x0, y0, x1 - 1, y1 - 1)
    mask = geom.fan_mask(found, frame.shape[:2])
    assert not mask[:y0].any() and not mask[:, :x0].any() and not mask[:, x1:].any()


def test_a_region_crop_gives_the_same_fan():
    frame = screens.screen(screens.CONVEX)
    x0, y0, x1, y1 = screens.REGION
    crop, _ = fan.estimate_geometry(frame[y0:y1, x0:x1])
    whole, _ = fan.estimate_geometry(frame, region=screens.REGION)
    np.testing.assert_allclose(whole.apex, (crop.apex[0] + x0, crop.apex[1] + y0))
    assert crop.clip == (0, 0, x1 - x0 - 1, y1 - y0 - 1)


@pytest.mark.parametrize("frame", [screens.screen(None), screens.screen(screens.CONVEX, air=True),
                                   np.zeros((*screens.SCREEN, 3), np.uint8)],
                         ids=["text-only", "probe-in-air", "blank"])
def test_screens_without_a_fan(frame):
    for region in (None, screens.REGION):
        with pytest.raises(fan.FanNotFound, match="no textured region"):
            fan.estimate_geometry(frame, region=region)


def test_weak_fans_are_refused_below_the_stated_confidence():
    image = _clutter(_drawn(CONVEX))
    _, confidence = fan.estimate_geometry(image)
    # Three digits: enough to compare with a threshold of three.
    with pytest.raises(fan.FanNotFound, match=f"confidence {confidence:.3f}, below {confidence + 0.01:.3f}") as raised:
        fan.estimate_geometry(image, min_confidence=confidence + 0.01)
    assert raised.value.confidence == pytest.approx(confidence)


def test_huge_images_are_estimated_on_a_subsampled_copy():
    shape = (2100, 1700)
    truth = geom.ConvexProbe((850.0, -420.0), 630.0, 2380.0, (-30.0, 28.0))
    image = screens.speckle(shape, 4)
    image[~geom.fan_mask(truth, shape)] = 0
    found, confidence = fan.estimate_geometry(image)
    factor = max(shape) / fan.MAX_SIDE  # positions are good to a few subsampled pixels
    np.testing.assert_allclose(found.apex, truth.apex, atol=6 * factor)
    np.testing.assert_allclose(found.angles, truth.angles, atol=1)
    assert found.end_depth == pytest.approx(truth.end_depth, abs=6 * factor) and confidence > 0.5
