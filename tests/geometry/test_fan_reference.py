"""The real set of the fan estimator: its manifest, the scoring against hand-checked edges, no
fan on text panels and blank frames, and the real fans it finds (fetched ones where present)."""
import json
import math

import pytest

from fetal_biometry.geometry import fan, fan_reference as fr, probe as geom

from conftest import ROOT

MANIFEST = ROOT / "tests" / "data" / "real" / "manifest.json"
HELD_OUT = ("pydicom", "deid-data", "itk-pocus", "octave-dicom", "usaugment",
            "ultrasound-processing-package-minimal", "sonosk")
REFERENCES = fr.read_manifest(MANIFEST)
SCANS = [r for r in REFERENCES if r.kind != "negative"]


def test_the_manifest_names_source_licence_and_reference_of_every_image():
    data = json.loads(MANIFEST.read_text())
    for key, package in data["packages"].items():
        assert package["registry"] == "PyPI" and len(package["sha256"]) == 64 and package["licence"]
        assert key == f"{package['name']}-{package['version']}"
        assert not any(package["name"].startswith(name) for name in HELD_OUT)
    assert len({r.group for r in SCANS}) >= 10  # distinct scans (variants share a group)
    assert {r.kind for r in SCANS} == set(fr.KINDS)
    assert {r.split for r in SCANS} == {"choose", "report"}
    for reference in SCANS:
        assert reference.kind in fr.KINDS and reference.source in data["packages"]
        assert len(reference.left_edge) == len(reference.right_edge) == 2
        left, right = reference.angles()
        assert left < 0 < right if reference.kind != "linear" else left == right == 0
    committed = [item for item in data["images"] + data["negatives"] if "file" in item]
    assert committed and all((MANIFEST.parent / item["file"]).is_file() for item in committed)


def _probe_of(reference: fr.Reference, shift=(0.0, 0.0)) -> geom.Geometry:
    """The geometry the reference describes (moved by ``shift``)."""
    dx, dy = shift
    if reference.kind == "linear":
        (x0, y0), (_, y1) = reference.left_edge
        x1 = reference.right_edge[0][0]
        return geom.LinearProbe((x0 + dx, y0 + dy), x1 - x0, 0.0, y1 - y0)
    apex = reference.apex()
    top = math.dist(apex, reference.left_edge[0])
    return geom.ConvexProbe((apex[0] + dx, apex[1] + dy), top, top + 200, reference.angles())


@pytest.mark.parametrize("kind", ["sector", "linear", "trapezoid"])
def test_scoring_accepts_the_reference_and_refuses_a_displaced_fan(kind):
    reference = next(r for r in SCANS if r.kind == kind)
    width = 700
    exact = fr.score(_probe_of(reference), reference, width)
    assert exact["ok"] and exact["edge_deg"] < 1e-6
    moved = fr.score(_probe_of(reference, (30.0, 0.0)), reference, width)
    assert not moved["ok"]
    assert fr.score(None, reference, width) == {"found": False, "ok": False}


def test_a_convex_reference_refuses_a_linear_estimate():
    reference = next(r for r in SCANS if r.kind == "convex")
    linear = geom.LinearProbe((100.0, 100.0), 300.0, 0.0, 300.0)
    result = fr.score(linear, reference, 700)
    assert result["found"] and not result["ok"] and result["apex_px"] == math.inf


def _negatives():
    found = [(r.name, fr.read_image(r)) for r in REFERENCES if r.kind == "negative"]
    return found + fr.negatives()


@pytest.mark.parametrize("name, image", _negatives(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_fan_on_text_panels_and_blank_frames(name, image):
    with pytest.raises(fan.FanNotFound):
        fan.estimate_geometry(image)


def _available(references):
    """The references whose images are here (committed, or fetched into the cache)."""
    return [r for r in references if r.path.is_file()]


@pytest.mark.parametrize("reference", _available([r for r in SCANS if r.split == "choose"]),
                         ids=lambda r: r.name)
def test_real_fans_of_the_choosing_split(reference):
    """The real scans the settings were chosen on that the estimator reads within the
    tolerances (benchmarks/fan_validation.py --real reports the split held out from choosing)."""
    image = fr.read_image(reference)
    found = fan.estimate_scan(image)
    result = fr.score(found.geometry, reference, image.shape[1])
    assert result["ok"], (result, found.source)


def test_fetched_images_are_skipped_when_absent(tmp_path):
    references = fr.read_manifest(MANIFEST, cache=tmp_path)
    fetched = [r for r in references if r.path.parent == tmp_path]
    assert fetched and not _available(fetched)
    with pytest.raises(FileNotFoundError, match="fetch_real_fans.py"):
        fr.read_image(fetched[0])
