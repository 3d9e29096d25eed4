"""One rule for every path a file names (fetal_biometry.paths.inside): resolved, symlinks
followed, and inside the folder the user named for it; else an error naming the file, the
path and the folder, and nothing read or written.

Each format is tried with its escapes ('..', an absolute path, a symlink inside the folder
pointing out) and, as a control, with the same file inside the folder, which must work: the
refusals are the rule's, not some other problem's.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from fetal_biometry import importers, paths, simulator
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset, sequences as sweep
from fetal_biometry.nets import model as model_folder

SHAPE = (160, 160)


@pytest.fixture(scope="module")
def case():
    return simulator.simulate_case(5, 0, SHAPE, "convex", appearance=simulator.NARROW)


@pytest.fixture
def secret(tmp_path, case):
    """A folder the user never named, holding a scan an import would happily read."""
    folder = tmp_path / "secret"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), case.image)
    return folder


def test_inside_resolves_and_names_file_path_and_folder(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.png").write_bytes(b"")
    assert paths.inside(folder, "sub/a.png", "ann.xml") == (folder / "sub/a.png").resolve()
    assert paths.inside(folder, "sub/../sub/a.png", "ann.xml") == (folder / "sub/a.png").resolve()
    (folder / "out").symlink_to(tmp_path)
    for name in ("../x.png", "/etc/hostname", "out/x.png", "sub/../../images2/x.png"):
        with pytest.raises(paths.OutsideFolder) as error:
            paths.inside(folder, name, "ann.xml", "the images")
        assert str(error.value).startswith(f"ann.xml: names {name!r}")
        assert f"outside {folder}, the folder given for the images" in str(error.value)


# --------------------------------------------------------------------------- annotation formats

def _abdomen_outline(case) -> list[list[float]]:
    e = case.biometry.ellipse
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    turn = np.radians(e.angle)
    x = e.cx + 0.5 + e.a * np.cos(t) * np.cos(turn) - e.b * np.sin(t) * np.sin(turn)
    y = e.cy + 0.5 + e.a * np.cos(t) * np.sin(turn) + e.b * np.sin(t) * np.cos(turn)
    return np.stack([x, y], 1).tolist()


def _cvat(root, case, name):
    xml = ElementTree.Element("annotations")
    image = ElementTree.SubElement(xml, "image", id="0", name=name, width=str(SHAPE[1]), height=str(SHAPE[0]))
    ElementTree.SubElement(image, "polygon", label="abdomen",
                           points=";".join(f"{x:.2f},{y:.2f}" for x, y in _abdomen_outline(case)))
    ElementTree.ElementTree(xml).write(root / "annotations.xml")
    return root / "annotations.xml"


def _coco(root, case, name):
    record = {"images": [{"id": 1, "file_name": name, "width": SHAPE[1], "height": SHAPE[0]}],
              "categories": [{"id": 1, "name": "abdomen"}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                               "segmentation": [np.ravel(_abdomen_outline(case)).tolist()]}]}
    (root / "instances.json").write_text(json.dumps(record))
    return root / "instances.json"


def _labelme(root, case, name):
    folder = root / "labelme"
    record = {"shapes": [{"label": "abdomen", "shape_type": "polygon",
                          "points": (np.array(_abdomen_outline(case))).tolist()}],
              "imagePath": name, "imageHeight": SHAPE[0], "imageWidth": SHAPE[1], "flags": {}}
    (folder / "scan.json").write_text(json.dumps(record))
    return folder


def _masks(root, case, name):
    folder = root / "maps"
    folder.mkdir()
    cv2.imwrite(str(folder / "scan.png"), case.labels)
    return folder


def _hc18(root, case, name):
    ring = np.zeros(SHAPE, np.uint8)
    e = case.biometry.ellipse
    cv2.ellipse(ring, (round(e.cx), round(e.cy)), (round(e.a), round(e.b)), e.angle, 0, 360, 255, 2)
    cv2.imwrite(str(root / "images" / "001_HC_Annotation.png"), ring)
    return root / "images"


WRITERS = {"cvat": _cvat, "coco": _coco, "labelme": _labelme, "masks": _masks, "hc18": _hc18}
# (format, how the image escapes its folder)
ESCAPES = [("cvat", "dotdot"), ("cvat", "symlink"), ("cvat", "geometry symlink"),
           ("coco", "absolute"), ("coco", "symlink"), ("labelme", "absolute"),
           ("labelme", "dotdot"), ("labelme", "symlink"), ("masks", "symlink"), ("hc18", "symlink"),
           ("labelme", "annotation symlink"), ("masks", "annotation symlink"), ("hc18", "annotation symlink")]


def _folders(fmt, root):
    """The images folder (LabelMe without --images: the JSONs' own) and the geometry folder."""
    return root / ("labelme" if fmt == "labelme" else "images"), root / "geometry"


def _import(fmt, root, case, secret, escape):
    """Import one scan of ``case`` from files in ``root``, its image (or geometry) escaping
    its folder as ``escape`` says ('inside': it does not)."""
    images, geometry = _folders(fmt, root)
    images.mkdir()
    geometry.mkdir()
    stem = "001_HC" if fmt == "hc18" else "scan"
    (secret / "geometry.json").write_text(json.dumps(geom.to_dict(case.geometry)))
    if escape == "geometry symlink":
        (geometry / f"{stem}.json").symlink_to(secret / "geometry.json")
    else:
        shutil.copy(secret / "geometry.json", geometry / f"{stem}.json")
    if escape == "symlink":
        (images / f"{stem}.png").symlink_to(secret / "x.png")
    else:
        cv2.imwrite(str(images / f"{stem}.png"), case.image)
    name = {"dotdot": "../../secret/x.png", "absolute": str(secret / "x.png")}.get(escape, f"{stem}.png")
    annotations = WRITERS[fmt](root, case, name)
    if escape == "annotation symlink":  # the annotation file itself, found in its folder, links out
        file = next(f for f in sorted(annotations.iterdir()) if f.suffix in (".json", ".png")
                    and (fmt != "hc18" or "_Annotation" in f.name))
        shutil.move(file, secret / file.name)
        file.symlink_to(secret / file.name)
    options = importers.Options(images=None if fmt == "labelme" else images,
                                spacing_mm=case.spacing_mm, geometry=geometry)
    return importers.import_dataset(fmt, annotations, root / "out", options)


@pytest.mark.parametrize("fmt", WRITERS)
def test_an_image_inside_its_folder_imports(fmt, case, secret, tmp_path):
    out, _ = _import(fmt, tmp_path, case, secret, "inside")
    assert dataset.validate(out) == [] and len(dataset.open(out).cases) == 1


@pytest.mark.parametrize("fmt, escape", ESCAPES)
def test_an_image_outside_its_folder_is_refused(fmt, escape, case, secret, tmp_path):
    with pytest.raises(importers.AnnotationError) as error:
        _import(fmt, tmp_path, case, secret, escape)
    images, geometry = _folders(fmt, tmp_path)
    folder = {"geometry symlink": geometry, "annotation symlink": tmp_path / {
        "labelme": "labelme", "masks": "maps", "hc18": "images"}.get(fmt, "")}.get(escape, images)
    line = next(l for l in str(error.value).splitlines() if "outside" in l)
    assert f"outside {folder}, the folder given for" in line, line
    assert str(tmp_path) in line.split(": names ")[0]  # the file that names the path
    assert "secret" in line or escape == "symlink" or "geometry.json" in line or "scan" in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- stack headers

@pytest.fixture
def stack(tmp_path, secret):
    """A detached MetaImage and NRRD stack (header + raw data) in ``sweeps/``, and a copy of
    their data in the secret folder."""
    folder = tmp_path / "sweeps"
    folder.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 64), np.uint8)
    image = sitk.GetImageFromArray(frames)
    image.SetSpacing((0.3, 0.3, 1.0))
    for name in ("loop.mhd", "loop.nhdr"):
        sitk.WriteImage(image, str(folder / name))
    shutil.copy(folder / "loop.raw", secret / "blob.raw")
    return folder


def _point_data_at(header, target: str) -> None:
    """Rewrite a header's data-file field to name ``target``."""
    field = "ElementDataFile = " if header.suffix == ".mhd" else "data file: "
    lines = [f"{field}{target}" if line.startswith(field) else line
             for line in header.read_text().splitlines()]
    header.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
@pytest.mark.parametrize("escape", ["inside", "dotdot", "absolute", "symlink", "list"])
def test_a_stack_reads_data_only_from_its_own_folder(stack, secret, suffix, escape):
    header = stack / f"loop{suffix}"
    if escape == "dotdot":
        _point_data_at(header, "../secret/blob.raw")
    elif escape == "absolute":
        _point_data_at(header, str(secret / "blob.raw"))
    elif escape == "symlink":
        (stack / "loop.raw").unlink()
        (stack / "loop.raw").symlink_to(secret / "blob.raw")
    elif escape == "list":  # one data file per frame, the last one elsewhere
        frames = np.fromfile(stack / "loop.raw", np.uint8).reshape(3, -1)
        for i, frame in enumerate(frames[:2]):
            frame.tofile(stack / f"f{i}.raw")
        frames[2].tofile(secret / "f2.raw")
        _point_data_at(header, "LIST 2" if suffix == ".mhd" else "LIST")
        header.write_text(header.read_text() + "f0.raw\nf1.raw\n../secret/f2.raw\n")
    if escape == "inside":
        sequence = sweep.open_sequence(header)
        assert sequence.count == 3 and len(list(sequence.frames())) == 3
        return
    with pytest.raises(sweep.SequenceError) as error:
        sweep.open_sequence(header)
    message = str(error.value)
    assert message.startswith(f"{header} (") and f"outside {stack}, the folder given for a stack's data" in message
    assert "secret" in message  # the path, resolved


# --------------------------------------------------------------------------- model folders and datasets

@pytest.mark.parametrize("key", ["weights", "deploy"])
@pytest.mark.parametrize("escape", ["dotdot", "absolute", "symlink"])
def test_a_model_folder_names_files_only_inside_itself(fetal_model, tmp_path, key, escape):
    model = shutil.copytree(fetal_model, tmp_path / "model")
    record = json.loads((model / "model.json").read_text())
    outside = tmp_path / "elsewhere" / pathlib_name(record[key])
    outside.parent.mkdir()
    shutil.copy(model / record[key], outside)
    if escape == "symlink":
        (model / record[key]).unlink()
        (model / record[key]).symlink_to(outside)
    else:
        record[key] = f"../elsewhere/{outside.name}" if escape == "dotdot" else str(outside)
        (model / "model.json").write_text(json.dumps(record))
    with pytest.raises(model_folder.ModelError) as error:
        model_folder.load(model)
    message = str(error.value)
    assert message.startswith(f"{model / 'model.json'}: names ")
    assert f"outside {model}, the folder given for the model's files" in message


def pathlib_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def test_a_dataset_reads_no_file_through_a_symlink_out(fetal_data, tmp_path, secret):
    data = shutil.copytree(fetal_data, tmp_path / "data", symlinks=True)
    name = dataset.open(data).cases[0]
    for part, file in (("images", f"{name}.png"), ("labels", f"{name}.png"), ("cases", f"{name}.json")):
        copy = shutil.copytree(data, tmp_path / f"with_{part}_link")
        shutil.copy(copy / part / file, secret / file)
        (copy / part / file).unlink()
        (copy / part / file).symlink_to(secret / file)
        problems = dataset.validate(copy)
        assert any(f"names '{part}/{file}'" in p and f"outside {copy}" in p for p in problems), problems
