"""Importers: each tool's export, written as the tool documents it from simulated cases, round-trips.

The annotation files are built from simulated cases the way an annotator would trace them:
outer contours of each class's regions (at pixel edges, in the tool's coordinates: pixel
centres at +0.5), the abdomen as an ellipse or as a polygon on its skin line. Imported labels
must agree with the simulator's inside the fan (IoU per class >= 0.95) and the AC within
0.5 % for ellipses, 2 % for fitted outlines.
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import importlib.util
import json
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pycocotools.mask
import pytest

from fetal_biometry import importers, simulator
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset
from fetal_biometry.labels import (ABDOMEN, DATASET_CLASSES as CLASSES, FLUID, OUTSIDE, RIB, SHADOW, SPINE, STOMACH,
                                   SWEEP_CLASSES, VEIN)
from fetal_biometry.measure import ellipse as ell

SHAPE = (160, 160)
#: Traced from the label maps (the abdomen is clicked as its skin line); the sweep's organs
#: (kidney, heart, lung: sections inside the body) after it, as the tool's later layers.
DRAWN = (FLUID, SHADOW, SPINE, RIB, STOMACH, VEIN, *SWEEP_CLASSES)
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cases():
    """Two convex and two linear scans, of the first round's appearance (NARROW): the fan
    estimation these tests rely on was checked on its clear fans."""
    return [simulator.simulate_case(5, i, SHAPE, "convex" if i < 2 else "linear", appearance=simulator.NARROW)
            for i in range(4)]


@pytest.fixture(scope="module")
def scans(cases, tmp_path_factory):
    """Images, per-image probe geometry and an HC18-style spacing CSV of the simulated cases."""
    root = tmp_path_factory.mktemp("scans")
    (root / "images").mkdir()
    (root / "geometry").mkdir()
    for case in cases:
        cv2.imwrite(str(root / "images" / f"{case.name}.png"), case.image)
        (root / "geometry" / f"{case.name}.json").write_text(json.dumps(geom.to_dict(case.geometry)))
    with open(root / "spacing.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "pixel size(mm)"])
        for case in cases:
            writer.writerow([f"{case.name}.png", repr(case.spacing_mm)])
    return root


def _options(scans, **fields) -> importers.Options:
    return importers.Options(**{"images": scans / "images", "spacing_csv": scans / "spacing.csv",
                                "geometry": scans / "geometry", **fields})


# --------------------------------------------------------------------------- tracing like an annotator

def outlines(mask: np.ndarray) -> list[np.ndarray]:
    """Outer outlines of a mask's regions in tool coordinates (pixel corners at integers).

    Traced on the mask upsampled twice, so the vertices lie a quarter pixel inside the
    region's pixel edges: every pixel centre of the region is inside, every other outside.
    """
    big = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(c[:, 0, :].astype(float) + 0.5) / 2 for c in contours if len(c) >= 3]


def skin_polygon(case, n: int = 60, jitter_px: float = 0.7) -> np.ndarray:
    """The abdomen's skin line as an annotator clicks it: ``n`` vertices, each off the ellipse
    by a random ``jitter_px`` (standard deviation) along the radius, in tool coordinates."""
    e = case.biometry.ellipse
    points = ell.ellipse_points(e, n)
    radial = points - (e.cx, e.cy)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    noise = np.random.default_rng(int(case.name[3:])).normal(0, jitter_px, (n, 1))
    return points + noise * radial + 0.5


def regions(case):
    """(class value, outline) of every traced region, in the class order."""
    return [(value, ring) for value in DRAWN for ring in outlines(case.labels == value)]


def tag_of(case) -> tuple[str, str]:
    bio = case.biometry
    return ("plane_acceptable" if bio.plane_acceptable else "plane_unacceptable"), bio.plane_reason


def iou_per_class(imported, originals) -> dict[int, float]:
    inter, union = {}, {}
    """IoU inside the simulator's fan per class, over all cases together."""
    for got, case in zip(imported, originals, strict=True):
        fan = case.labels != OUTSIDE
        for value in CLASSES:
            a, b = (got.labels == value) & fan, (case.labels == value) & fan
            inter[value] = inter.get(value, 0) + np.count_nonzero(a & b)
            union[value] = union.get(value, 0) + np.count_nonzero(a | b)
    return {v: inter[v] / union[v] for v in CLASSES if union[v]}


def check_round_trip(out, cases, ac_tolerance: dict[str, float], fmt: str, plane: bool = True):
    assert dataset.validate(out) == []
    data = dataset.open(out)
    assert data.source["format"] == fmt and all(len(h) == 64 for h in data.source["sha256"].values())
    assert data.generator["name"] == importers.GENERATOR
    imported = list(data.iter_cases())
    assert [c.name for c in imported] == [c.name for c in cases]
    for got, case in zip(imported, cases):
        np.testing.assert_array_equal(got.labels == OUTSIDE, case.labels == OUTSIDE)
    ious = iou_per_class(imported, cases)
    assert min(ious.values()) >= 0.95, ious
    for got, case in zip(imported, cases):
        assert got.spacing_mm == case.spacing_mm and got.geometry == case.geometry
        np.testing.assert_array_equal(got.image, case.image)
        kind = "exact" if got.biometry.fit_rms_px is None else "fitted"
        error = abs(got.biometry.ac_mm - case.biometry.ac_mm) / case.biometry.ac_mm
        assert error <= ac_tolerance[kind], (got.name, kind, error)
        if plane:
            assert (got.biometry.plane_acceptable, got.biometry.plane_reason) == \
                (case.biometry.plane_acceptable, case.biometry.plane_reason)
    return imported, ious


# --------------------------------------------------------------------------- CVAT

def _points(ring: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in ring)


def cvat_rle(mask: np.ndarray) -> tuple[str, int, int, int, int]:
    """CVAT's mask encoding: run lengths over the mask's box, row by row, zeros first."""
    ys, xs = np.nonzero(mask)
    top, left, bottom, right = ys.min(), xs.min(), ys.max(), xs.max()
    flat = mask[top:bottom + 1, left:right + 1].ravel()
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return ", ".join(map(str, runs)), left, top, right - left + 1, bottom - top + 1


def write_cvat(path, cases, abdomen: str = "ellipse") -> None:
    """annotations.xml as CVAT 'for images 1.1' exports it; shadows as masks, the rest polygons."""
    root = ElementTree.Element("annotations")
    ElementTree.SubElement(root, "version").text = "1.1"
    meta = ElementTree.SubElement(ElementTree.SubElement(root, "meta"), "task")
    labels = ElementTree.SubElement(meta, "labels")
    for name in CLASSES.values():
        ElementTree.SubElement(ElementTree.SubElement(labels, "label"), "name").text = name
    for i, case in enumerate(cases):
        image = ElementTree.SubElement(root, "image", id=str(i), name=f"{case.name}.png",
                                       width=str(case.image.shape[1]), height=str(case.image.shape[0]))
        e = case.biometry.ellipse
        if abdomen == "ellipse":  # CVAT's rx along x before the clockwise rotation
            ElementTree.SubElement(image, "ellipse", label="abdomen", source="manual", occluded="0",
                                   cx=f"{e.cx + 0.5:.3f}", cy=f"{e.cy + 0.5:.3f}",
                                   rx=f"{e.b:.3f}", ry=f"{e.a:.3f}", rotation=f"{(e.angle + 90) % 360:.3f}",
                                   z_order="0")
        else:  # a polygon, or a polyline along the visible 70 % of the skin line
            skin = skin_polygon(case)
            ElementTree.SubElement(image, abdomen, label="abdomen", source="manual", occluded="0",
                                   points=_points(skin if abdomen == "polygon" else skin[:42]), z_order="0")
        shadow = case.labels == SHADOW
        if shadow.any():
            rle, left, top, width, height = cvat_rle(shadow)
            ElementTree.SubElement(image, "mask", label="shadow", source="manual", occluded="0",
                                   rle=rle, left=str(left), top=str(top), width=str(width),
                                   height=str(height), z_order="0")
        for value, ring in regions(case):
            if value != SHADOW:
                ElementTree.SubElement(image, "polygon", label=CLASSES[value].upper(),
                                       source="manual", occluded="0", points=_points(ring), z_order="0")
        label, reason = tag_of(case)
        tag = ElementTree.SubElement(image, "tag", label=label, source="manual")
        ElementTree.SubElement(tag, "attribute", name="reason").text = reason
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


@pytest.mark.parametrize("abdomen", ["ellipse", "polygon", "polyline"])
def test_cvat_round_trip(cases, scans, tmp_path, abdomen):
    write_cvat(tmp_path / "annotations.xml", cases, abdomen)
    out, warnings = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                             _options(scans))
    imported, _ = check_round_trip(out, cases, {"exact": 0.005, "fitted": 0.02}, "cvat")
    assert all((c.biometry.fit_rms_px is None) == (abdomen == "ellipse") for c in imported)
    assert warnings == []  # geometry given: nothing estimated


def test_cvat_rle_decodes_the_documented_example():
    runs = [3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, 5, 3]
    mask = importers.cvat_rle_decode(runs, 13, 15)  # the mask of CVAT's XML format page
    assert mask.shape == (15, 13) and mask[7].all() and not mask[0, :3].any() and mask[0, 3:8].all()
    with pytest.raises(ValueError, match="sum to"):
        importers.cvat_rle_decode(runs[:-1], 13, 15)


def test_cvat_z_order_decides_before_the_class_order(cases, scans, tmp_path):
    case = cases[0]
    write_cvat(tmp_path / "annotations.xml", [case])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    image = tree.getroot().find("image")
    e = case.biometry.ellipse
    box = dict(xtl=f"{e.cx - 3:.1f}", ytl=f"{e.cy - 3:.1f}", xbr=f"{e.cx + 4:.1f}", ybr=f"{e.cy + 4:.1f}")
    ElementTree.SubElement(image, "box", label="amniotic_fluid", occluded="0", z_order="5", **box)
    tree.write(tmp_path / "annotations.xml")
    out, _ = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                      _options(scans))
    labels = dataset.open(out).read(case.name).labels
    x, y = round(e.cx), round(e.cy)
    assert (labels[y - 2:y + 4, x - 2:x + 4] == FLUID).all()  # the box's pixel centres, on top


# --------------------------------------------------------------------------- LabelMe

def _png64(mask: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", mask.astype(np.uint8))[1].tobytes()).decode()


def write_labelme(folder, cases, images_relative: str) -> None:
    """One LabelMe JSON per image, shapes in the class order; shadows as LabelMe masks."""
    folder.mkdir()
    for case in cases:
        shapes = []

        def add(label, points, kind, **extra):
            shapes.append({"label": label, "points": np.asarray(points).tolist(), "group_id": None,
                           "description": "", "shape_type": kind, "flags": {}, **extra})

        for value, ring in regions(case):
            if value == FLUID:
                add("Amniotic_Fluid", ring, "polygon")
        add("abdomen", skin_polygon(case), "polygon")
        shadow = case.labels == SHADOW
        if shadow.any():
            ys, xs = np.nonzero(shadow)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
            add("shadow", [[x0, y0], [x1, y1]], "mask", mask=_png64(shadow[y0:y1 + 1, x0:x1 + 1]))
        for value, ring in regions(case):
            if value not in (FLUID, SHADOW):
                add(CLASSES[value], ring, "polygon")
        label, _ = tag_of(case)
        record = {"version": "5.5.0", "flags": {label: True}, "shapes": shapes,
                  "imagePath": f"{images_relative}/{case.name}.png", "imageData": None,
                  "imageHeight": case.image.shape[0], "imageWidth": case.image.shape[1]}
        (folder / f"{case.name}.json").write_text(json.dumps(record, indent=2))


def test_labelme_round_trip(cases, scans, tmp_path):
    write_labelme(scans / "labelme", cases, "../images")  # outside the JSONs' folder: --images names it
    out, _ = importers.import_dataset("labelme", scans / "labelme", tmp_path / "out", _options(scans))
    imported, _ = check_round_trip(out, cases, {"exact": 0.005, "fitted": 0.02}, "labelme", plane=False)
    for got, case in zip(imported, cases):  # LabelMe flags carry the verdict, not its reason
        assert got.biometry.plane_acceptable == case.biometry.plane_acceptable
    assert len(dataset.open(out).source["sha256"]) == len(cases) + 1  # the JSONs and the CSV


# --------------------------------------------------------------------------- COCO

def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: column-major run lengths, zeros first."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return ([0] + runs) if flat[0] else runs


def write_coco(path, cases) -> None:
    """COCO instances: fluid as compressed RLE (pycocotools), shadow as RLE, the rest polygons."""
    categories = [{"id": 10 + v, "name": n, "supercategory": "fetus"} for v, n in CLASSES.items()]
    images, annotations = [], []
    for i, case in enumerate(cases):
        label, reason = tag_of(case)
        images.append({"id": i + 1, "file_name": f"{case.name}.png", "width": case.image.shape[1],
                       "height": case.image.shape[0], "plane_acceptable": label == "plane_acceptable",
                       "plane_reason": reason})

        def add(value, segmentation, crowd=0):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 10 + value,
                                "segmentation": segmentation, "iscrowd": crowd, "area": 0, "bbox": [0, 0, 0, 0]})

        fluid = pycocotools.mask.encode(np.asfortranarray(case.labels == FLUID, dtype=np.uint8))
        add(FLUID, {"size": fluid["size"], "counts": fluid["counts"].decode()}, crowd=1)
        if (case.labels == SHADOW).any():
            add(SHADOW, {"size": list(case.image.shape), "counts": rle_counts(case.labels == SHADOW)}, crowd=1)
        add(ABDOMEN, [skin_polygon(case).ravel().tolist()])
        for value, ring in regions(case):
            if value not in (FLUID, SHADOW):
                add(value, [ring.ravel().tolist()])
    record = {"info": {"description": "simulated"}, "licenses": [], "images": images,
              "annotations": annotations[::-1], "categories": categories}  # any order: COCO has none
    path.write_text(json.dumps(record))


def test_coco_round_trip(cases, scans, tmp_path):
    write_coco(tmp_path / "instances.json", cases)
    out, _ = importers.import_dataset("coco", tmp_path / "instances.json", tmp_path / "out",
                                      _options(scans))
    check_round_trip(out, cases, {"exact": 0.005, "fitted": 0.02}, "coco")


def test_compressed_rle_decoder_agrees_with_pycocotools():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 5), (40, 33)):
        mask = np.asfortranarray(rng.random(shape) < 0.3, dtype=np.uint8)
        mask[0, 0] = 1
        encoded = pycocotools.mask.encode(mask)
        counts = importers.coco_rle_counts(encoded["counts"].decode())
        np.testing.assert_array_equal(importers.coco_rle_decode(counts, *shape), mask.astype(bool))
        assert counts == rle_counts(mask.astype(bool))
    with pytest.raises(ValueError, match="ends inside"):
        importers.coco_rle_counts("5P")


# --------------------------------------------------------------------------- masks, HC18

def test_masks_round_trip_with_a_value_map(cases, scans, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    values = {str(10 * v + 10): name for v, name in CLASSES.items()} | {"255": None}
    for case in cases:
        remapped = np.where(case.labels == OUTSIDE, 255, case.labels.astype(int) * 10 + 10)
        cv2.imwrite(str(folder / f"{case.name}.png"), remapped.astype(np.uint8))
    (tmp_path / "values.json").write_text(json.dumps(values))
    out, _ = importers.import_dataset("masks", folder, tmp_path / "out",
                                      _options(scans, values=tmp_path / "values.json"))
    imported, ious = check_round_trip(out, cases, {"exact": 0.005, "fitted": 0.02}, "masks", plane=False)
    assert min(ious.values()) == 1.0  # label maps are taken pixel for pixel
    assert all(c.biometry.fit_rms_px < 1.0 for c in imported)  # fitted to the mask's pixel edges


def write_hc18(root, cases) -> None:
    """HC18's layout: training_set/NNN_HC.png, NNN_HC_Annotation.png (the ellipse as a ring,
    2 px wide) and training_set_pixel_size_and_HC.csv; the abdomen stands in for the head."""
    (root / "training_set").mkdir(parents=True)
    (root / "geometry").mkdir()
    rows = [["filename", "pixel size(mm)", "head circumference (mm)"]]
    for i, case in enumerate(cases):
        name = f"{i:03d}_HC"
        cv2.imwrite(str(root / "training_set" / f"{name}.png"), case.image)
        ring = np.zeros(case.image.shape, np.uint8)
        e = case.biometry.ellipse
        cv2.ellipse(ring, (round(e.cx * 16), round(e.cy * 16)), (round(e.a * 16), round(e.b * 16)),
                    e.angle, 0, 360, 255, thickness=2, shift=4)
        cv2.imwrite(str(root / "training_set" / f"{name}_Annotation.png"), ring)
        (root / "geometry" / f"{name}.json").write_text(json.dumps(geom.to_dict(case.geometry)))
        rows.append([f"{name}.png", f"{case.spacing_mm:.9f}", f"{case.biometry.ac_mm:.2f}"])
    with open(root / "training_set_pixel_size_and_HC.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_hc18_ring_and_csv(cases, tmp_path):
    write_hc18(tmp_path, cases)
    out, warnings = importers.import_dataset(
        "hc18", tmp_path / "training_set", tmp_path / "out",
        importers.Options(spacing_csv=tmp_path / "training_set_pixel_size_and_HC.csv",
                          geometry=tmp_path / "geometry"))
    assert warnings == []  # the fitted HC agrees with the CSV's within 2 %
    data = dataset.open(out)
    assert data.structures() == {"head"} and dataset.validate(out) == []
    for got, case in zip(data.iter_cases(), cases, strict=True):
        assert got.biometry.structure == "head" and got.biometry.ac_mm is None
        assert got.biometry.circumference_mm == pytest.approx(case.biometry.ac_mm, rel=0.01)
        assert 0 < got.biometry.fit_rms_px < 1.5 and got.biometry.plane_acceptable
        assert set(np.unique(got.labels)) == {0, OUTSIDE}
    from fetal_biometry.patches import records as patch_records
    with pytest.raises(patch_records.RecordError, match="head or femur planes"):
        list(patch_records.dataset_scans(out))


# --------------------------------------------------------------------------- errors

def test_every_problem_is_reported_and_nothing_written(cases, scans, tmp_path):
    write_cvat(tmp_path / "annotations.xml", cases[:3])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    first, second, third = tree.getroot().findall("image")
    ElementTree.SubElement(first, "polygon", label="placenta", points="1,1;5,1;5,5")
    ElementTree.SubElement(first, "polygon", label="rib", points="1,1;5,1")
    ElementTree.SubElement(first, "polygon", label="rib", points="10,10;20,20;20,10;10,20")
    ElementTree.SubElement(first, "polygon", label="stomach_bubble", points="150,150;170,150;170,170")
    ElementTree.SubElement(first, "ellipse", label="abdomen", cx="80", cy="80", rx="10", ry="9")
    ElementTree.SubElement(first, "points", label="spine", points="3,3")
    for node in second.findall("ellipse"):
        second.remove(node)
    third.set("width", "200")
    third.find("polygon").set("label", "liver")
    ElementTree.SubElement(tree.getroot(), "image", id="9", name="missing.png", width="160", height="160")
    tree.write(tmp_path / "annotations.xml")
    out = tmp_path / "out"
    with pytest.raises(importers.AnnotationError) as error:
        importers.import_dataset("cvat", tmp_path / "annotations.xml", out, _options(scans))
    message = str(error.value)
    xml = str(tmp_path / "annotations.xml")
    for image, shape, problem in [
            (cases[0].name, "<polygon> #", "unknown label 'placenta'"),
            (cases[0].name, "label 'rib'", "needs at least 3 points, has 2"),
            (cases[0].name, "label 'rib'", "self-intersecting polygon"),
            (cases[0].name, "label 'stomach_bubble'", "reaches outside the 160x160 image"),
            (cases[0].name, "", "two abdomens"),
            (cases[0].name, "<points> #", "not supported"),
            (cases[1].name, "", "no abdomen annotated"),
            (cases[2].name, "", "the image is 160x160 but the annotation says 200x160"),
            (cases[2].name, "label 'liver'", "unknown label 'liver'"),  # still checked
            ("missing.png", "", "not found")]:
        assert any(xml in line and f"image {image}" in line and shape in line and problem in line
                   for line in message.splitlines()), (image, problem, message)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["annotations.xml"]


def test_skip_bad_writes_the_good_images_and_lists_the_others(cases, scans, tmp_path):
    """--skip-bad: the images that import are written; each one left out is listed with its
    problems in dataset.json (source.skipped); the default stays all-or-nothing."""
    write_cvat(tmp_path / "annotations.xml", cases[:3])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    _, second, third = tree.getroot().findall("image")
    for node in second.findall("ellipse"):
        second.remove(node)
    third.find("polygon").set("label", "liver")
    tree.write(tmp_path / "annotations.xml")
    with pytest.raises(importers.AnnotationError, match="2 problem"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "all", _options(scans))
    assert not (tmp_path / "all").exists()
    out, warnings = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "some",
                                             _options(scans, skip_bad=True))
    data = dataset.open(out)
    assert list(data.cases) == [cases[0].name]
    skipped = {pathlib.Path(item["image"]).stem: item["reasons"] for item in data.source["skipped"]}
    assert set(skipped) == {cases[1].name, cases[2].name}
    assert any("no abdomen annotated" in r for r in skipped[cases[1].name])
    assert any("unknown label 'liver'" in r for r in skipped[cases[2].name])
    assert sum(w.startswith("skipped ") for w in warnings) == 2
    write_cvat(tmp_path / "bad.xml", cases[1:2])  # every image left out: an error, nothing written
    tree = ElementTree.parse(tmp_path / "bad.xml")
    for node in tree.getroot().find("image").findall("ellipse"):
        tree.getroot().find("image").remove(node)
    tree.write(tmp_path / "bad.xml")
    with pytest.raises(importers.AnnotationError, match="every image was skipped"):
        importers.import_dataset("cvat", tmp_path / "bad.xml", tmp_path / "none", _options(scans, skip_bad=True))
    assert not (tmp_path / "none").exists()


def test_ignored_labels_and_class_map(cases, scans, tmp_path):
    write_cvat(tmp_path / "annotations.xml", cases[:1])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    image = tree.getroot().find("image")
    for node in image:
        if node.get("label") == "STOMACH_BUBBLE":
            node.set("label", "SB")
    ElementTree.SubElement(image, "points", label="calipers", points="3,3")
    tree.write(tmp_path / "annotations.xml")
    (tmp_path / "classes.json").write_text(json.dumps({"SB": "Stomach_Bubble", "calipers": None}))
    out, _ = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                      _options(scans, classes=tmp_path / "classes.json"))
    got = dataset.open(out).read(cases[0].name)
    np.testing.assert_array_equal(got.labels == STOMACH, cases[0].labels == STOMACH)
    (tmp_path / "classes.json").write_text(json.dumps({"SB": "stomach"}))
    with pytest.raises(importers.AnnotationError, match="'SB' maps to 'stomach', not a class"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                 _options(scans, classes=tmp_path / "classes.json"))


def test_annotation_outside_the_fan_is_reported(cases, scans, tmp_path):
    case = next(c for c in cases if isinstance(c.geometry, geom.ConvexProbe))
    write_cvat(tmp_path / "annotations.xml", [case])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    fan = geom.fan_mask(case.geometry, SHAPE)
    ys, xs = np.nonzero(~fan[:20])
    x, y = xs[0], ys[0]  # a corner pixel far outside the convex fan
    ElementTree.SubElement(tree.getroot().find("image"), "polygon", label="amniotic_fluid",
                           points=f"{x},{y};{x + 3},{y};{x + 3},{y + 3}", z_order="0")
    tree.write(tmp_path / "annotations.xml")
    with pytest.raises(importers.AnnotationError, match=r"label 'amniotic_fluid': reaches .* px outside"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out", _options(scans))


def test_spacing_and_plane_derivation(cases, scans, tmp_path):
    case = cases[0]
    write_cvat(tmp_path / "annotations.xml", [case])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    image = tree.getroot().find("image")
    for node in image.findall("tag") + [n for n in image if n.get("label") == "UMBILICAL_VEIN"]:
        image.remove(node)
    tree.write(tmp_path / "annotations.xml")
    with pytest.raises(importers.AnnotationError, match=f"image {case.name}.png: no pixel spacing"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                 _options(scans, spacing_csv=None))
    out, _ = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out",
                                      _options(scans, spacing_csv=None, spacing_mm=0.5))
    got = dataset.open(out).read(case.name)
    assert got.spacing_mm == 0.5
    assert got.biometry.ac_mm == pytest.approx(case.biometry.ac_mm / case.spacing_mm * 0.5, rel=1e-4)
    stomach = (case.labels == STOMACH).any()
    assert not got.biometry.plane_acceptable
    assert got.biometry.plane_reason == ("no umbilical vein annotated inside the abdomen" if stomach else
                                         "no stomach bubble and umbilical vein annotated inside the abdomen")


def test_output_guard(cases, scans, tmp_path):
    write_cvat(tmp_path / "annotations.xml", cases[:1])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    simulated = dataset.write_dataset(tmp_path / "simulated", cases[:1], {"name": "fetal_biometry.simulator"},
                                      tool=simulator.TOOL)
    for out, problem in [(foreign, "not made by this tool"), (scans / "images", "is the input"),
                         (tmp_path, "holds the input"),
                         (simulated, "holds the output of tools/simulate.py; import_dataset never replaces it")]:
        with pytest.raises(importers.AnnotationError, match=problem):
            importers.import_dataset("cvat", tmp_path / "annotations.xml", out,
                                     _options(scans, overwrite=True))
    assert (foreign / "notes.txt").read_text() == "keep me" and dataset.validate(simulated) == []
    out, _ = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "new", _options(scans))
    with pytest.raises(importers.AnnotationError, match="pass --overwrite"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", out, _options(scans))
    importers.import_dataset("cvat", tmp_path / "annotations.xml", out, _options(scans, overwrite=True))
    assert dataset.validate(out) == []


def test_dicom_cine_frame_and_calibrated_region(cases, tmp_path):
    """A cine loop whose ultrasound region holds the scan: --frame picks the annotated frame,
    the region's calibration gives the spacing, the annotations move with the crop."""
    sys.path.insert(0, str(ROOT / "tests"))
    import dicom_files

    case, (dx, dy) = cases[0], (24, 10)
    loop = np.zeros((3, SHAPE[0] + 30, SHAPE[1] + 40), np.uint8)
    loop[1, dy:dy + SHAPE[0], dx:dx + SHAPE[1]] = case.image
    loop[:, -8:, :20] = 200  # a burned-in label outside the region
    region = dicom_files.region((dx, dy, dx + SHAPE[1] - 1, dy + SHAPE[0] - 1),
                                delta_cm=(case.spacing_mm / 10, case.spacing_mm / 10))
    (tmp_path / "images").mkdir()
    dicom_files.write(tmp_path / "images" / f"{case.name}.dcm", loop, frames=3, regions=[region])
    write_cvat(tmp_path / "annotations.xml", [case])
    tree = ElementTree.parse(tmp_path / "annotations.xml")
    image = tree.getroot().find("image")
    image.set("name", f"{case.name}.dcm")
    image.set("width", str(loop.shape[2]))
    image.set("height", str(loop.shape[1]))
    for node in image:  # the tool shows the whole frame: shapes sit (dx, dy) further
        if "points" in node.attrib:
            points = np.array([p.split(",") for p in node.get("points").split(";")], float) + (dx, dy)
            node.set("points", _points(points))
        for key, shift in (("cx", dx), ("cy", dy), ("left", dx), ("top", dy)):
            if key in node.attrib:
                node.set(key, str(float(node.get(key)) + shift if key[0] == "c" else int(node.get(key)) + shift))
    tree.write(tmp_path / "annotations.xml")
    geometry = tmp_path / "probe.json"
    geometry.write_text(json.dumps(geom.to_dict(case.geometry)))  # of the scan, as cropped
    options = importers.Options(images=tmp_path / "images", geometry=geometry, frame=1)
    out, _ = importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out", options)
    got = dataset.open(out).read(case.name)
    np.testing.assert_array_equal(got.image, case.image)
    assert got.spacing_mm == pytest.approx(case.spacing_mm, rel=1e-6)
    assert min(iou_per_class([got], [case]).values()) >= 0.95
    assert got.biometry.ac_mm == pytest.approx(case.biometry.ac_mm, rel=0.005)
    with pytest.raises(importers.AnnotationError, match="disagrees with the file's calibration"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out2",
                                 dataclasses.replace(options, spacing_mm=2 * case.spacing_mm))
    with pytest.raises(importers.AnnotationError, match=f"image {case.name}.dcm: .*frame"):
        importers.import_dataset("cvat", tmp_path / "annotations.xml", tmp_path / "out2",
                                 dataclasses.replace(options, frame=None))


def test_tool_estimates_the_fan_and_reports_errors(cases, scans, tmp_path):
    convex = [c for c in cases if isinstance(c.geometry, geom.ConvexProbe)]
    write_cvat(tmp_path / "annotations.xml", convex)

    def run(*args):
        return subprocess.run([sys.executable, "tools/import_dataset.py", "cvat",
                               str(tmp_path / "annotations.xml"), "--images", str(scans / "images"),
                               "--spacing-csv", str(scans / "spacing.csv"), *args],
                              cwd=ROOT, capture_output=True, text=True)

    result = run("--out", str(tmp_path / "out"), "--fan-tolerance", "6")
    assert result.returncode == 0, result.stderr
    assert "probe geometry estimated from the image" in result.stdout + result.stderr
    assert f"wrote {len(convex)} cases" in result.stdout and "images/s" in result.stdout
    data = dataset.open(tmp_path / "out")
    for got, case in zip(data.iter_cases(), convex):
        fan = geom.fan_mask(case.geometry, SHAPE)
        assert np.count_nonzero(fan != (got.labels != OUTSIDE)) < 0.03 * fan.sum()

def test_tool_help_and_bad_arguments(capsys):
    spec = importlib.util.spec_from_file_location("import_dataset", ROOT / "tools" / "import_dataset.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as done:
        tool.main(["--help"])
    assert done.value.code == 0 and "hc18" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        tool.main(["cvat", "a.xml", "--out", "x", "--spacing", "-1"])
    assert done.value.code == 2 and "argument --spacing: a pixel spacing is a positive" in capsys.readouterr().err


def test_every_dataset_class_has_a_painting_layer():
    # A class added to the dataset's table (head, femur, the sweep's organs) is importable.
    from fetal_biometry.importers.annotation import LAYERS
    assert sorted(LAYERS) == sorted(CLASSES)
