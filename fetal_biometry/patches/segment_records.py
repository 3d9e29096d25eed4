"""Annotated scans -> dense label records for the segmenter, with a manifest.

Output folder layout (what ``python tools/make_segment_records.py`` writes)::

    OUT/train_image_lmdb, OUT/train_label_lmdb    Caffe Datum records, the same keys in both:
    OUT/val_image_lmdb,   OUT/val_label_lmdb      (C, T, T) uint8 input tiles and (1, T, T)
    OUT/test_image_lmdb,  OUT/test_label_lmdb     uint8 label tiles (255: outside the fan, padding)
    OUT/infogain.binaryproto                      the class weights as Caffe's InfogainLoss H
    OUT/manifest.json                             sources, parameters, pixels per class, hashes

Every scan is resampled to the model's **spacing** (mm per pixel) with its labels and probe
(:func:`fetal_biometry.patch_records.at_spacing`), encoded (:mod:`fetal_biometry.scan_encoding`:
``none``, ``channels`` or ``beam``) and cut into **tiles** of T x T pixels that cover the
encoded grid: a side up to T is one tile (padded: gray 0, label 255), a longer one ``ceil(side /
T)`` tiles spread evenly, overlapping rather than padding. With T at least the scan's side at the
model's spacing, each record is a whole scan.

**Classes.** The records hold the output indices of a class table (:data:`fetal_biometry.labels.SEGMENTER_TABLES`,
``classes``: "abdomen", the eight abdominal classes whose indices are the dataset values, or
"panel", abdomen, head and femur): a dataset class the table lacks is learnt as its parent
(:func:`fetal_biometry.labels.learnt_as`: the head's classes are background to the abdomen
table), 255 stays 255. A dataset whose planes measure a structure the table has no class for
(:data:`fetal_biometry.labels.STRUCTURE_CLASSES`: a head plane for the abdomen table) is refused.

Cases are split by case (the same draw as the patch records' for the same names, seed and
shares). Keys are ``<16 hex digits of a seeded random number><8-digit count>``: Caffe reads
records in key order, so every split is read shuffled without ever being held whole; image and
label LMDBs are written in one pass under the same keys and read in step by two Data layers of
the same batch size. Memory is flat in the dataset's size: cases are read one at a time.

With ``augment=K`` each training scan also gives K transformed versions
(:mod:`fetal_biometry.augment`: rotation and scale with the direction field turned alike, gain,
contrast, gamma, blur, noise), applied to the image, the labels and the direction field at once
before encoding. For ``beam`` the rotation is left out: the beam grid turns with the probe, so a
rotation of the whole scan is the identity there; the scale is applied to the probe too
(:func:`fetal_biometry.augment.scaled_geometry`).

**Class balance.** The training tiles' pixels per class give frequencies ``f_c``; each class is
weighted ``w_c = min(FULL_CAP, max(1, median(f) / f_c))`` (``weighting="full"``, the default:
median-frequency balancing, Eigen and Fergus 2015, capped at 10 and never below 1), then scaled
so that the average weight of a training pixel is 1 (the loss keeps its size). Rare classes
(stomach, vein, spine, ribs) are lifted about 8-10x; the large ones (background, fluid, shadow,
abdomen) keep one weight between them, because a weight tilts every boundary towards the
heavier class: with unfloored weights (fluid 0.66, abdomen 1.13) the abdomen's outline moved
outwards and the AC of the first segmenter read +1.5 % (median, validation scans).
``weighting="sqrt"`` softens the lift by a square root, ``max(1, sqrt(median(f) / f_c))``
(about 3-4x): the weighting before the choice on validation, where its nets never learnt the
spine and ribs (docs/segmenter.md).
``infogain.binaryproto`` holds ``diag(w)`` for Caffe's InfogainLoss
(:func:`fetal_biometry.nets.segmenter`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np

from fetal_biometry import atomic
from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.io import dataset, lmdb_writer
from fetal_biometry.nets import spec as nets
from fetal_biometry.patches import (augment as augmentation, encoding as patches, records as patch_records,
                                    scan_encoding)
from fetal_biometry import labels as label_tables
from fetal_biometry.labels import OUTSIDE

FORMAT, VERSION = "fetal-biometry-segment-records", 1
TOOL = "make_segment_records"  # the output marker of segmenter-record folders (fetal_biometry.atomic.mark)
MANIFEST = "manifest.json"
INFOGAIN = "infogain.binaryproto"
SPLITS = patch_records.SPLITS
#: Default tile side (px at the model's spacing): 128 mm at 1 mm per pixel.
TILE = 128
#: Default model spacing, mm per pixel: the vein (3-5 mm across) keeps 3-5 pixels and the
#: largest abdomen (120 mm) fits a 128-pixel tile. Chosen against 1.5 mm on validation by the
#: rule in the README (fetal_biometry.experiments).
SPACING_MM = 1.0
MAX_AUGMENT = patch_records.MAX_AUGMENT
RecordError = patch_records.RecordError


def tile_origins(side: int, tile: int) -> list[int]:
    """Start offsets of the tiles covering ``side`` pixels: one (padded) or evenly overlapping."""
    if side <= tile:
        return [0]
    count = math.ceil(side / tile)
    return [int(round(v)) for v in np.linspace(0, side - tile, count)]


def tiles(planes: np.ndarray, labels: np.ndarray, tile: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(C, T, T) input tiles and (1, T, T) label tiles covering an encoded scan (see module doc)."""
    height, width = labels.shape
    for top in tile_origins(height, tile):
        for left in tile_origins(width, tile):
            image = np.zeros((planes.shape[0], tile, tile), np.uint8)
            label = np.full((1, tile, tile), OUTSIDE, np.uint8)
            rows, cols = slice(top, top + tile), slice(left, left + tile)
            piece = labels[rows, cols]
            image[:, :piece.shape[0], :piece.shape[1]] = planes[:, rows, cols]
            label[0, :piece.shape[0], :piece.shape[1]] = piece
            yield image, label


def encoded(image: np.ndarray, labels: np.ndarray, directions: np.ndarray, probe: geom.Geometry,
            encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """Input planes and label map of a scan at the model's spacing, on the encoding's grid."""
    return (scan_encoding.encode(image, encoding, probe, directions),
            scan_encoding.encode_labels(labels, encoding, probe))


def augmented(image: np.ndarray, labels: np.ndarray, directions: np.ndarray, probe: geom.Geometry,
              encoding: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented version of a scan at the model's spacing, encoded (see the module doc)."""
    transform = augmentation.draw(rng)
    if encoding == "beam":
        transform = dataclasses.replace(transform, rotation_deg=0.0)
        probe = augmentation.scaled_geometry(probe, transform.scale, augmentation.fan_centre(directions))
    image, labels, directions = augmentation.apply(image, labels, directions, transform, rng)
    return encoded(image, labels, directions, probe, encoding)


def balance_method(balance: str = "median", weighting: str = "sqrt") -> str:
    """How the class weights are made, as the manifest states it (records made otherwise are
    stale): the reference frequency (``balance``) and the lift (``weighting``)."""
    typical = "median frequency" if balance == "median" else "(1 / K)"
    lift = f"sqrt({typical} / frequency)" if weighting == "sqrt" else f"min(10, {typical} / frequency)"
    return f"InfogainLoss, diag H = max(1, {lift}), mean weight of a training pixel 1"


#: The lifts of rare classes: ``sqrt``, max(1, sqrt(typical / f)), or ``full``, max(1, min(10,
#: typical / f)); ``full`` is the abdomen table's, chosen on validation (docs/segmenter.md), the
#: other tables keep ``sqrt`` until chosen for them.
WEIGHTINGS = ("sqrt", "full")
WEIGHTING = "full"
FULL_CAP = 10.0  # the largest weight of ``full`` relative to the large classes'
#: How the class weights are made with the square-root lift (the manifest records it).
BALANCE = balance_method("median", "sqrt")
#: The class weights' reference frequency (``balance``), named -> how the manifest states it:
#: "median" (the abdomen's, :data:`BALANCE`) or "uniform", 1/K of K classes, for a table with
#: many small classes (the panel's 15: there the median class is itself small, and femur and
#: skull, 0.5 % of the pixels each, stayed unweighted and unlearnt at 1500 iterations).
BALANCES = {name: balance_method(name, "sqrt") for name in ("median", "uniform")}


#: The table whose classes' median frequency sets a table's weights, where not its own: the
#: sweep's three rare classes (heart, lung, kidney) would move the median of its eleven down to
#: the stomach bubble's frequency and take the landmarks' weights from about 3.6 to 1 (measured:
#: stomach Dice 0.27, vein 0 after 1500 iterations); over the abdomen's eight they keep them.
MEDIAN_OVER = {"sweep": "abdomen"}


def class_weights(pixels: Sequence[int], reference: str = "median",
                  median_of: Sequence[bool] | None = None, weighting: str = "sqrt") -> list[float]:
    """Median-frequency weights (or ``reference`` "uniform": 1/K instead of the median
    frequency), never below the large classes' (module doc), from training pixels per class,
    lifted by a square root (``sqrt``) or capped at :data:`FULL_CAP` (``full``); a class without
    pixels gets weight 1 (it never contributes). ``median_of`` marks the classes whose median
    frequency is the reference (default: all)."""
    counts = np.asarray(pixels, float)
    seen = counts > 0
    if not seen.any():
        return [1.0] * len(counts)
    freq = counts / counts.sum()
    among = seen if median_of is None else seen & np.asarray(median_of, bool)
    weights = np.ones(len(counts))
    typical = np.median(freq[among]) if reference == "median" else 1.0 / len(counts)
    ratio = typical / freq[seen]
    weights[seen] = np.maximum(1.0, np.sqrt(ratio) if weighting == "sqrt" else np.minimum(FULL_CAP, ratio))
    weights[seen] /= float((freq * weights).sum())
    return [float(w) for w in weights]


def infogain_blob(weights: Sequence[float]) -> bytes:
    """``diag(weights)`` as a serialised Caffe BlobProto of shape (1, 1, K, K)."""
    from fetal_biometry.caffe_env import proto

    k = len(weights)
    blob = proto().BlobProto()
    blob.shape.dim.extend([1, 1, k, k])
    blob.data.extend(np.diag(np.asarray(weights, np.float32)).ravel().tolist())
    return blob.SerializeToString()


def check_arguments(encoding: str, spacing_mm: float, tile: int, fractions, seed: int,
                    augment: int, weighting: str | None = WEIGHTING, depth: int = nets.UNET_DEPTH,
                    classes: str = "abdomen") -> None:
    """Refuse parameters that would give useless records (options named)."""
    problems = []
    if classes not in label_tables.SEGMENTER_TABLES:
        problems.append(f"class table {classes!r} (--classes): one of {tuple(label_tables.SEGMENTER_TABLES)}")
    if encoding not in scan_encoding.ENCODINGS:
        problems.append(f"encoding {encoding!r} (--encoding): one of {scan_encoding.ENCODINGS}")
    if not (isinstance(spacing_mm, (int, float)) and 0 < spacing_mm < math.inf):
        problems.append(f"spacing {spacing_mm!r} (--spacing-mm): a positive number of mm per pixel")
    multiple = nets.unet_multiple(depth)
    if not isinstance(tile, int) or tile < multiple or tile % multiple:
        problems.append(f"tile {tile!r} (--tile): a multiple of {multiple} px (the U-Net's "
                        f"{depth} poolings halve it exactly)")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6 \
            or fractions[0] <= 0 or fractions[1] <= 0:
        problems.append(f"split shares {fractions} (--splits): three shares >= 0 summing to 1, "
                        "training and validation > 0")
    if seed < 0:
        problems.append(f"seed {seed} (--seed): a non-negative integer")
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) \
            or not 0 <= augment <= MAX_AUGMENT:
        problems.append(f"augmented copies {augment!r} (--augment): 0 to {MAX_AUGMENT}")
    if weighting is not None and weighting not in WEIGHTINGS:
        problems.append(f"class weighting {weighting!r} (--weighting): one of {tuple(WEIGHTINGS)}")
    if problems:
        raise RecordError("; ".join(problems))


def scan_tiles(case: dataset.Case, encoding: str, spacing_mm: float, tile: int, augment: int = 0,
               rng: np.random.Generator | None = None,
               classes: tuple[str, ...] = label_tables.SEGMENTER_CLASSES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The tiles of one case: its clean version, then ``augment`` augmented ones (drawn from
    ``rng``); labels as output indices of the class table ``classes``."""
    image, labels, directions = patch_records.at_spacing(case, spacing_mm)  # a case is a scan
    try:
        labels = label_tables.segmenter_labels(labels, classes)
    except ValueError as error:
        raise RecordError(f"{case.name}: {error}") from None
    probe = resample.geometry(case.geometry, resample.scale_factor(case.spacing_mm, spacing_mm))
    yield from tiles(*encoded(image, labels, directions, probe, encoding), tile)
    for _ in range(augment):
        yield from tiles(*augmented(image, labels, directions, probe, encoding, rng), tile)


def _write_split(data: dataset.Dataset, names: Sequence[str], folder: pathlib.Path, split: str,
                 encoding: str, spacing_mm: float, tile: int, augment: int,
                 keys: np.random.Generator, augment_rng: np.random.Generator, progress,
                 classes: tuple[str, ...]) -> dict:
    """Write one split's two LMDBs; returns its manifest entry (pixels per class counted)."""
    pixels = np.zeros(256, np.int64)
    count = 0

    def records():
        nonlocal count
        chosen = progress(names, desc=split) if progress else names
        for name in chosen:
            for image, label in scan_tiles(data.read(name), encoding, spacing_mm, tile, augment, augment_rng,
                                            classes):
                pixels[:] += np.bincount(label.ravel(), minlength=256)
                key = f"{int(keys.integers(2**63)):016x}{count:08d}".encode()
                count += 1
                yield key, (lmdb_writer.to_datum(image).SerializeToString(),
                            lmdb_writer.to_datum(label).SerializeToString())

    image_lmdb, label_lmdb = folder / f"{split}_image_lmdb", folder / f"{split}_label_lmdb"
    lmdb_writer.write_parallel([image_lmdb, label_lmdb], records())
    return {"cases": list(names), "records": count,
            "pixels": {c: int(pixels[i]) for i, c in enumerate(classes)},
            "ignored_pixels": int(pixels[OUTSIDE]),
            "sha256": {"image": _hash(image_lmdb / "data.mdb"), "label": _hash(label_lmdb / "data.mdb")}}


def build(data: dataset.Dataset, out: str | os.PathLike, encoding: str = "channels",
          spacing_mm: float = SPACING_MM, tile: int = TILE,
          fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
          augment: int = 0, splits: dict[str, list[str]] | None = None,
          sources: dict | None = None, progress=None, classes: str = "abdomen",
          balance: str = "median", weighting: str | None = None) -> dict:
    """Write the segmenter's records of the opened dataset ``data`` into ``out``; the manifest.

    ``out`` is written aside and renamed into place when complete (callers claim it first with
    :func:`fetal_biometry.atomic.claim_output`). ``splits`` names each split's cases instead of
    a seeded draw by ``fractions``. ``classes`` names the class table (module doc); planes of a
    structure it has no class for are refused. ``balance`` names the class weights' reference
    (:data:`BALANCES`), ``weighting`` their lift (:data:`WEIGHTINGS`; None: :data:`WEIGHTING`
    for the abdomen table, ``sqrt`` for the others).
    """
    weighting = weighting or (WEIGHTING if classes == "abdomen" else "sqrt")
    check_arguments(encoding, spacing_mm, tile, fractions, seed, augment, weighting, classes=classes)
    if balance not in BALANCES:
        raise RecordError(f"class balance {balance!r}: one of {tuple(BALANCES)}")
    table = label_tables.SEGMENTER_TABLES[classes]
    unlearnt = sorted(s for s in data.structures() if label_tables.STRUCTURE_CLASSES[s] not in table)
    if unlearnt:
        raise RecordError(f"{data.root}: {' and '.join(unlearnt)} planes; the class table {classes!r} "
                          f"has no class for them (--classes panel learns head and femur planes)")
    if not data.cases:
        raise RecordError(f"{data.root}: the dataset lists no cases")
    names = list(data.cases)
    split = patch_records.split_cases(names, fractions, seed) if splits is None \
        else patch_records.given_splits(splits, names)
    augment_rng = np.random.default_rng([seed, 1])
    manifest = {"format": FORMAT, "version": VERSION, "encoding": encoding,
                "channels": scan_encoding.channels(encoding), "spacing_mm": float(spacing_mm),
                "tile": tile, "tile_mm": tile * spacing_mm, "input_scale": patches.INPUT_SCALE,
                "classes": list(table), "class_table": classes,
                "learnt_as": {name: label_tables.learnt_as(name, table)
                              for name in label_tables.DATASET_CLASSES.values() if name not in table},
                "ignore_label": OUTSIDE, "seed": seed,
                "augment": _augment_record(augment, encoding), "sources": sources or {}, "splits": {}}
    with atomic.staged_dir(out) as tmp:
        atomic.mark(tmp, TOOL)
        for index, name in enumerate(SPLITS):
            keys = np.random.default_rng([seed, 2, index])  # a stream per split: val and test
            #                                                 stay the same whatever train holds
            manifest["splits"][name] = _write_split(
                data, split[name], tmp, name, encoding, spacing_mm, tile,
                augment if name == "train" else 0, keys, augment_rng, progress, table)
        train = manifest["splits"]["train"]["pixels"]
        median_table = label_tables.SEGMENTER_TABLES[MEDIAN_OVER.get(classes, classes)]
        weights = class_weights([train[c] for c in table], balance, [c in median_table for c in table],
                                weighting)
        manifest["balance"] = {"method": balance_method(balance, weighting), "weights": dict(zip(table, weights))}
        if classes in MEDIAN_OVER and balance == "median":
            manifest["balance"]["median_over"] = MEDIAN_OVER[classes]
        atomic.write_bytes(tmp / INFOGAIN, infogain_blob(weights))
        atomic.write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a records folder; RecordError naming the file if it is not one."""
    path = pathlib.Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecordError(f"{path}: not a segmenter records manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("version") != VERSION:
        raise RecordError(f"{path}: not a segmenter records manifest of version {VERSION}")
    return manifest


def read_records(folder: str | os.PathLike, split: str) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
    """(key, image (C, T, T), labels (T, T)) of one split, in the order Caffe reads them."""
    from fetal_biometry.caffe_env import proto

    folder = pathlib.Path(folder)
    images = lmdb_writer.read(folder / f"{split}_image_lmdb")
    labels = lmdb_writer.read(folder / f"{split}_label_lmdb")
    for (key, image), (label_key, label) in zip(images, labels):
        if key != label_key:
            raise RecordError(f"{folder}: the {split} image and label LMDBs disagree at key {key!r}")
        datum_image, datum_label = proto().Datum(), proto().Datum()
        datum_image.ParseFromString(image)
        datum_label.ParseFromString(label)
        yield key, lmdb_writer.from_datum(datum_image)[0], lmdb_writer.from_datum(datum_label)[0][0]


def _augment_record(copies: int, encoding: str) -> dict:
    if not copies:
        return {"copies": 0}
    ranges = dataclasses.asdict(augmentation.RANGES)
    if encoding == "beam":
        ranges["rotation_deg"] = [0.0, 0.0]  # the identity on the beam grid
    return {"copies": copies, "splits": ["train"], "applied_to": ["image", "labels", "directions"],
            "ranges": ranges}


def _hash(path: pathlib.Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
