"""Scan files -> ScanImage: calibration regions, spacing fallbacks, frames, images, and the
DICOM path through tools/beam_map.py (privacy included)."""
import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pydicom
import pytest
from pydicom import uid

import dicom_files
import screens
from conftest import ROOT
from fetal_biometry.io import dataset, scans

RNG = np.random.default_rng(11)
FRAME = RNG.integers(0, 256, (120, 200, 3)).astype(np.uint8)
LEFT = dicom_files.region((0, 10, 99, 109), (0.03, 0.03))
RIGHT = dicom_files.region((100, 10, 199, 109), (0.045, 0.045))
STRIP = dicom_files.region((0, 110, 199, 119), (0.01, 0.2), spatial_format=3, data_type=3, units=(4, 7))


def test_one_tissue_region_is_cropped_and_calibrated(tmp_path):
    path = dicom_files.write(tmp_path / "one.dcm", FRAME, "RGB", regions=[LEFT, STRIP])
    (scan,) = scans.read_scans(path, keep_name=True)  # the Doppler strip is no scan
    assert scan.name == "one" and scan.region == (0, 10, 100, 110)
    np.testing.assert_array_equal(scan.rgb, FRAME[10:110, 0:100])
    np.testing.assert_array_equal(scan.gray, cv2.cvtColor(scan.rgb, cv2.COLOR_RGB2GRAY))
    assert scan.spacing_mm == pytest.approx(0.3, rel=0.01) and scan.spacing_source == "ultrasound region"
    assert scan.warnings == ()


def test_two_tissue_regions_are_two_scans(tmp_path):
    path = dicom_files.write(tmp_path / "dual.dcm", FRAME, "RGB", regions=[STRIP, LEFT, RIGHT])
    left, right = scans.read_scans(path)  # named after the UID, not the file (a patient's name?)
    uid = pydicom.dcmread(path).SOPInstanceUID
    name = "dcm-" + hashlib.sha256(uid.encode()).hexdigest()[:16]
    assert (left.name, right.name) == (f"{name}_r0", f"{name}_r1")
    assert [s.name for s in scans.read_scans(path, keep_name=True)] == ["dual_r0", "dual_r1"]
    assert (left.spacing_mm, right.spacing_mm) == pytest.approx((0.3, 0.45), rel=0.01)
    np.testing.assert_array_equal(right.rgb, FRAME[10:110, 100:200])
    (chosen,) = scans.read_scans(path, region=1, keep_name=True)
    assert chosen.name == "dual_r1" and chosen.region == right.region
    with pytest.raises(scans.ScanError, match=r"dual.dcm: no region 2: the file has 2 .* \(0 to 1\)"):
        scans.read_scans(path, region=2)


def test_only_a_doppler_strip_is_not_a_scan(tmp_path):
    path = dicom_files.write(tmp_path / "pw.dcm", FRAME, "RGB", regions=[STRIP])
    with pytest.raises(scans.ScanError, match="pw.dcm: no 2D tissue region .*spectral, PW Doppler"):
        scans.read_scans(path)


def test_anisotropic_pixels_are_resampled_to_square(tmp_path):
    region = dicom_files.region((0, 0, 99, 59), (0.02, 0.03))
    path = dicom_files.write(tmp_path / "aniso.dcm", FRAME, "RGB", regions=[region])
    (scan,) = scans.read_scans(path)
    assert scan.rgb.shape == (90, 100, 3) and scan.spacing_mm == pytest.approx(0.2)
    assert "not square (0.2 mm wide, 0.3 mm high): resampled from 100x60 to 100x90" in scan.warnings[0]


@pytest.mark.parametrize("attributes, spacing, source, warned", [
    ({}, None, "none", "no calibration"),
    ({"PixelSpacing": [0.25, 0.25]}, 0.25, "PixelSpacing", None),
    ({"ImagerPixelSpacing": [0.4, 0.4]}, 0.4, "ImagerPixelSpacing", "less reliable"),
])
def test_spacing_fallbacks(tmp_path, attributes, spacing, source, warned):
    path = dicom_files.write(tmp_path / "plain.dcm", FRAME, "RGB", **attributes)
    (scan,) = scans.read_scans(path)
    assert scan.region is None and scan.rgb.shape == FRAME.shape
    assert scan.spacing_mm == (pytest.approx(spacing) if spacing else None)
    assert scan.spacing_source == source
    assert (warned is None) == (not scan.warnings) and all(warned in w for w in scan.warnings)


def test_given_spacing_is_used_checked_or_refused(tmp_path):
    plain = dicom_files.write(tmp_path / "plain.dcm", FRAME, "RGB")
    (scan,) = scans.read_scans(plain, spacing=0.33)
    assert (scan.spacing_mm, scan.spacing_source) == (0.33, "given")
    calibrated = dicom_files.write(tmp_path / "cal.dcm", FRAME, "RGB", regions=[LEFT])
    (scan,) = scans.read_scans(calibrated, spacing=0.302)  # within 1 %: the file's is kept
    assert scan.spacing_source == "ultrasound region"
    with pytest.raises(scans.ScanError, match=r"cal.dcm: --spacing 0.35 mm disagrees .*0.3 mm"):
        scans.read_scans(calibrated, spacing=0.35)
    imager = dicom_files.write(tmp_path / "imager.dcm", FRAME, "RGB", ImagerPixelSpacing=[0.4, 0.4])
    (scan,) = scans.read_scans(imager, spacing=0.3)  # the detector's spacing yields
    assert (scan.spacing_mm, scan.spacing_source) == (0.3, "given") and "0.4 mm" in scan.warnings[0]
    with pytest.raises(scans.ScanError, match="must be a positive number"):
        scans.read_scans(plain, spacing=-1.0)


def test_cine_loops(tmp_path):
    loop = RNG.integers(0, 256, (5, 120, 200)).astype(np.uint8)
    path = dicom_files.write(tmp_path / "loop.dcm", loop, frames=5, syntax=uid.RLELossless,
                             regions=[LEFT, RIGHT])
    assert scans.frame_count(path) == 5
    with pytest.raises(scans.ScanError, match="loop.dcm: 5 frames .*--frame N, 0 to 4"):
        scans.read_scans(path)
    left, right = scans.read_scans(path, frame=3)
    np.testing.assert_array_equal(right.gray, loop[3, 10:110, 100:200])
    with pytest.raises(scans.ScanError, match="2 calibrated 2D tissue regions: choose one"):
        next(scans.iter_frames(path))
    frames = [scan.gray for scan in scans.iter_frames(path, region=0)]
    np.testing.assert_array_equal(np.stack(frames), loop[:, 10:110, :100])


def test_image_files(tmp_path):
    cv2.imwrite(str(tmp_path / "scan.png"), FRAME[..., ::-1])
    (scan,) = scans.read_scans(tmp_path / "scan.png", spacing=0.2)
    np.testing.assert_array_equal(scan.rgb, FRAME)
    assert (scan.name, scan.spacing_mm, scan.spacing_source, scan.region) == ("scan", 0.2, "given", None)
    assert scans.frame_count(tmp_path / "scan.png") == 1 and len(list(scans.iter_frames(tmp_path / "scan.png"))) == 1
    sixteen = (FRAME[..., 0].astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "deep.png"), sixteen)
    np.testing.assert_array_equal(scans.read_scans(tmp_path / "deep.png")[0].gray, FRAME[..., 0])
    with pytest.raises(scans.ScanError, match="scan.png: no region 0: an image file has no calibrated"):
        scans.read_scans(tmp_path / "scan.png", region=0)
    with pytest.raises(scans.ScanError, match="scan.png: no frame 1"):
        scans.read_scans(tmp_path / "scan.png", frame=1)
    with pytest.raises(scans.ScanError, match="nothing.png: no such file"):
        scans.read_scans(tmp_path / "nothing.png")
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.raises(scans.ScanError, match="broken.png: not a readable image"):
        scans.read_scans(tmp_path / "broken.png")


def test_dataset_reads_dicom_through_the_same_decoder(tmp_path):
    path = dicom_files.write(tmp_path / "case.dcm", FRAME, "YBR_FULL", uid.JPEGLosslessSV1)
    np.testing.assert_array_equal(dataset.read_image(path), scans.read_scans(path)[0].gray)


# --------------------------------------------------------------------------- beam_map on DICOM

def _tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools/beam_map.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def _screen_dicom(path, probes, **attributes):
    """A dual-display screen: one screen-like frame per probe side by side, each a region."""
    x0, y0, x1, y1 = screens.REGION
    frames = [screens.screen(probe, seed) for seed, probe in enumerate(probes)]
    regions = [dicom_files.region((x0 + 640 * k, y0, x1 - 1 + 640 * k, y1 - 1), (0.02 + 0.01 * k,) * 2)
               for k in range(len(probes))]
    return dicom_files.write(path, np.concatenate(frames, axis=1), "YBR_FULL_422", uid.JPEGBaseline8Bit,
                             regions=regions, **attributes)


def test_beam_map_maps_each_region_and_leaks_no_identity(tmp_path):
    path = _screen_dicom(tmp_path / "dual.dcm", [screens.CONVEX, screens.SECTOR], BurnedInAnnotation="YES")
    run = _tool(path, "--out", tmp_path / "out", "--keep-names")
    assert run.returncode == 0, run.stderr
    left, right = json.loads(run.stdout)
    assert (left["name"], right["name"]) == ("dual_r0", "dual_r1")
    assert left["pixel_spacing_mm"] == pytest.approx(0.2) and right["pixel_spacing_mm"] == pytest.approx(0.3)
    assert left["spacing_source"] == "ultrasound region" and right["region"] == [790, 40, 1240, 460]
    np.testing.assert_allclose(left["apex"], screens.CONVEX.apex, atol=20)
    np.testing.assert_allclose(right["edges_deg"], screens.SECTOR.angles, atol=3)
    assert "BurnedInAnnotation is YES" in run.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("[!.]*"))
    assert written == ["dual_r0_beam.npy", "dual_r0_beam.png", "dual_r1_beam.npy", "dual_r1_beam.png"]
    everything = run.stdout + run.stderr + "".join(p.read_bytes().decode("latin-1")
                                                   for p in (tmp_path / "out").iterdir())
    for value in dicom_files.IDENTITY.values():
        assert value not in everything and value.split("^")[0] not in run.stdout + run.stderr


def test_beam_map_frames_spacing_and_no_fan(tmp_path):
    loop = np.stack([screens.screen(screens.LINEAR, seed) for seed in range(3)])
    region = dicom_files.region((150, 40, 599, 459), (0.025, 0.025))
    path = dicom_files.write(tmp_path / "IM_0003", loop, "RGB", uid.JPEGLSLossless, frames=3, regions=[region])
    run = _tool(path, "--out", tmp_path / "out")
    assert run.returncode == 2 and "IM_0003: 3 frames (a cine loop): choose one with --frame N" in run.stderr
    run = _tool(path, "--frame", "2", "--spacing", "0.5", "--out", tmp_path / "out")
    assert run.returncode == 2 and "--spacing 0.5 mm disagrees with the file's calibration" in run.stderr
    run = _tool(path, "--frame", "2", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["probe"] == "linear" and report["pixel_spacing_mm"] == pytest.approx(0.25)
    text = dicom_files.write(tmp_path / "text.dcm", screens.screen(None), "RGB", regions=[region])
    run = _tool(text, "--out", tmp_path / "text_out")
    assert run.returncode == 1 and "text.dcm: no fan found" in run.stderr
    assert not (tmp_path / "text_out").exists()
    report = json.loads(run.stdout)  # a calibrated DICOM reports its spacing without a fan
    assert report["fan"].startswith("not found (") and report["pixel_spacing_mm"] == pytest.approx(0.25)
    assert report["spacing_source"] == "ultrasound region" and report["region"] == [150, 40, 600, 460]


def test_beam_map_uses_the_transducer_and_reference_pixel_as_priors(tmp_path):
    """TransducerType and a sector region's ReferencePixelX0/Y0 (relative to the region) are
    priors, named in the geometry's source."""
    x0, y0, x1, y1 = screens.REGION
    apex = screens.SECTOR.apex
    region = dicom_files.region((x0, y0, x1 - 1, y1 - 1), (0.02, 0.02), reference=(round(apex[0]), round(apex[1])))
    path = dicom_files.write(tmp_path / "sector.dcm", screens.screen(screens.SECTOR, 1), "RGB",
                             regions=[region], TransducerType="SECTOR_PHASED")
    run = _tool(path, "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["priors"] == {"kind": "convex", "apex": [round(apex[0]), round(apex[1])]}
    assert "priors from the file" in report["geometry_source"]
    np.testing.assert_allclose(report["apex"], apex, atol=20)
    linear = dicom_files.write(tmp_path / "linear.dcm", screens.screen(screens.SECTOR, 1), "RGB",
                               regions=[region], TransducerType="LINEAR")
    run = _tool(linear, "--out", tmp_path / "out2")  # a sector on a "linear" probe: no such fan
    assert run.returncode == 1 and json.loads(run.stdout)["priors"] == {"kind": "linear"}
    assert json.loads(run.stdout)["pixel_spacing_mm"] == pytest.approx(0.2)


def test_a_dicom_loop_gives_sweep_the_same_priors(tmp_path):
    """A loop's first frame is estimated by the one rule (fan.probe_of) with the priors of its
    file, as a single frame is: sweep and infer agree on a DICOM's fan."""
    from fetal_biometry.geometry import fan
    from fetal_biometry.io import sequences
    x0, y0, x1, y1 = screens.REGION
    apex = screens.SECTOR.apex
    region = dicom_files.region((x0, y0, x1 - 1, y1 - 1), (0.02, 0.02), reference=(round(apex[0]), round(apex[1])))
    loop = np.stack([screens.screen(screens.SECTOR, seed) for seed in (1, 2)])
    path = dicom_files.write(tmp_path / "loop.dcm", loop, "RGB", frames=2, regions=[region],
                             TransducerType="SECTOR_PHASED")
    sequence = sequences.open_sequence(path)
    first = next(iter(scans.iter_frames(path)))
    assert (sequence.transducer, sequence.reference_pixel) == (first.transducer, first.reference_pixel)
    found = fan.probe_of(sequence.first_rgb(), sequence.transducer, sequence.reference_pixel)
    assert found.priors == {"kind": "convex", "apex": first.reference_pixel}
    assert found.source == fan.probe_of(first.rgb, first.transducer, first.reference_pixel).source


# ----------------------------------------------------------------------------- deeper pixels

def _sbit(path, bits: int) -> None:
    """Put an sBIT chunk (``bits`` significant bits, gray) right after a PNG's IHDR."""
    import struct
    import zlib
    data = path.read_bytes()
    chunk = struct.pack(">I", 1) + b"sBIT" + bytes([bits]) + struct.pack(">I", zlib.crc32(b"sBIT" + bytes([bits])))
    path.write_bytes(data[:33] + chunk + data[33:])


@pytest.mark.parametrize("store", ["png with sBIT", "png without sBIT", "dicom BitsStored"])
def test_deep_pixels_are_scaled_by_their_stored_depth_never_their_range(store, tmp_path):
    eight = FRAME[..., 0]
    # A 12-bit loop in 16-bit storage; the second frame is half as bright: a per-frame range
    # would stretch it to look like the first.
    wide = eight.astype(np.uint32) * 4095
    twelve = np.stack([wide // 255, wide // 510]).astype(np.uint16)
    if store == "dicom BitsStored":
        path = dicom_files.write(tmp_path / "deep.dcm", twelve, frames=2, bits=12)
        frames = [s.gray for s in scans.iter_frames(path)]
        warnings = scans.read_scans(path, frame=0)[0].warnings
    else:
        frames, warnings = [], ()
        for k, frame in enumerate(twelve):
            path = tmp_path / f"deep{k}.png"
            cv2.imwrite(str(path), frame)
            if store == "png with sBIT":
                _sbit(path, 12)
            scan, = scans.read_scans(path)
            frames.append(scan.gray)
            warnings = warnings or scan.warnings  # the first frame's
    expected = 16 if store == "png without sBIT" else 1  # without sBIT: scaled from 16 bits
    np.testing.assert_allclose(frames[0], eight / expected, atol=1)
    np.testing.assert_allclose(frames[1], eight / expected / 2, atol=1)  # the same scaling
    text = " ".join(warnings)
    assert "scaled to 8 bits" in text  # a lossy rescale is always said
    if store == "png without sBIT":
        assert "use only 12 of 16 bits" in text and "no PNG sBIT chunk" in text
    else:
        assert "12-bit pixels" in text


def test_png_bytes_round_trip_gray_and_colour():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    colour = np.dstack([gray, gray[::-1], np.zeros_like(gray)])
    assert np.array_equal(scans.imread(scans.encode_png(gray)), gray)
    assert np.array_equal(scans.imread(scans.encode_png(colour))[..., ::-1], colour)
