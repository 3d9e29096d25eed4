"""Annotated scans -> patch LMDBs for the classifier, with a manifest.

Output folder layout (what ``python tools/make_lmdb.py`` writes)::

    OUT/train_lmdb, OUT/val_lmdb, OUT/test_lmdb   Caffe Datum records (uint8 patches, label)
    OUT/manifest.json                              sources, parameters, counts per class, hashes

Every scan is first resampled to one **target spacing** (mm per pixel; by default the median
spacing of the training cases, as nnU-Net picks its target from the dataset's fingerprint):
image, labels and probe geometry (:mod:`fetal_biometry.geometry.resample`), the beam directions and the
fan recomputed there. A patch of ``size`` pixels then covers the same ``size * spacing`` mm of
anatomy in every scan; the manifest records both. The net sees uint8 planes times 1/256 and
no mean is subtracted (``nets.patch_classifier``); inference does exactly the same.

Cases are split into train / validation / test **by case, never by patch**, so no scan feeds two
splits. Within a split, record keys are ``%08d`` ranks of a seeded permutation: Caffe reads them
shuffled, and the same dataset and seed give byte-identical LMDBs. The whole folder is written
aside and renamed into place; any bad input is reported (all problems, with the case named)
before anything is written.

With ``augment=K`` each training scan also yields K independently transformed versions
(rotation and scale with the beam directions turned alike, gain, contrast, gamma, blur, noise:
:mod:`fetal_biometry.patches.augment`), each sampled at the same per-class counts; validation and test
stay clean. The manifest records K and the ranges.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np

from fetal_biometry import atomic
from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.io import dataset, limits, lmdb_writer
from fetal_biometry.io.dataset import Scan
from fetal_biometry.labels import CLASSIFIER_CLASSES, LABEL_TO_CLASS, OUTSIDE, classifier_labels
from fetal_biometry.patches import augment as augmentation, encoding as patches

FORMAT, VERSION = "fetal-biometry-patches", 2  # version 2: resampled to a target spacing
TOOL = "make_lmdb"  # the output marker of patch-LMDB folders (fetal_biometry.atomic.mark)
SPLITS = ("train", "val", "test")


def dataset_scans(path: str | os.PathLike) -> Iterable[Scan]:
    """The cases of a dataset (fetal_biometry.io.dataset format), each a scan.

    RecordError for head planes: the classifier's classes are abdominal.
    """
    data = dataset.open(path)
    if data.structures() != {"abdomen"}:
        heads = [n for n, (_, _, bio) in data.records.items() if bio.structure != "abdomen"]
        raise RecordError(f"{path}: {len(heads)} case(s) are head or femur planes (e.g. {heads[0]}); "
                          f"the patch classifier learns abdominal classes: use an abdomen dataset")
    yield from data.iter_cases()

def at_spacing(scan: Scan, target_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, label map and beam directions of ``scan`` resampled to ``target_mm`` per pixel.

    Labels outside the resampled fan are :data:`OUTSIDE`; directions are NaN there.
    """
    scale = resample.scale_factor(scan.spacing_mm, target_mm)
    image = resample.image(scan.image, scale)
    probe = resample.geometry(scan.geometry, scale)
    directions = geom.beam_directions(probe, image.shape)
    labels = resample.labels(scan.labels, scale)
    labels = np.where(np.isnan(directions[..., 0]), OUTSIDE, labels).astype(np.uint8)
    return image, labels, directions


def target_spacing(scans: Sequence[Scan]) -> float:
    """The default target spacing: the median spacing of ``scans`` (the training cases)."""
    return float(np.median([scan.spacing_mm for scan in scans]))


class RecordError(ValueError):
    """Bad input; the message lists every problem found, each with its case."""


def split_cases(names: Sequence[str], fractions: tuple[float, float, float],
                seed: int) -> dict[str, list[str]]:
    """Assign whole cases to train / val / test by a seeded shuffle (at least one train case)."""
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    n_train = max(1, n - n_val - n_test)
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:n_train + n_val + n_test]}


def given_splits(splits: dict[str, list[str]], names: Sequence[str]) -> dict[str, list[str]]:
    """``splits`` checked against the scans' ``names``: known splits, each scan in exactly one,
    training and validation cases given."""
    split = {name: list(splits.get(name, [])) for name in SPLITS}
    listed = [n for cases in split.values() for n in cases]
    problems = [f"unknown split(s) {sorted(set(splits) - set(SPLITS))}"] if set(splits) - set(SPLITS) else []
    problems += [f"{n}: in two splits" for n in sorted({n for n in listed if listed.count(n) > 1})]
    problems += [f"{n}: in a split but not among the scans" for n in sorted(set(listed) - set(names))]
    problems += [f"{n}: a scan in no split" for n in sorted(set(names) - set(listed))]
    problems += [f"the {name} split has no case" for name in ("train", "val") if not split[name]]
    if problems:
        raise RecordError("splits given: " + "; ".join(problems))
    return split


#: Smallest patch side: the classifier's two 5x5 convolutions and 2x2 poolings need 16 px.
MIN_PATCH = 16
#: Most augmented copies per patch: each copy adds the clean training set's size again, and
#: copies of the same scans stop adding variety long before that (more scans do).
MAX_AUGMENT = 20


def check_arguments(size: int, per_class: dict[int, int], fractions: tuple[float, float, float],
                    seed: int, spacing_mm: float | None = None, augment: int = 0) -> None:
    """Refuse sampling parameters that would give empty or useless LMDBs (options named)."""
    problems = []
    if spacing_mm is not None and not limits.SPACING_MM[0] <= spacing_mm <= limits.SPACING_MM[1]:
        problems.append(f"target spacing {spacing_mm} (--spacing-mm): a number of mm per pixel from "
                        f"{limits.SPACING_MM[0]} to {limits.SPACING_MM[1]:g}, or leave it out for "
                        "the training cases' median")
    if size < MIN_PATCH:
        problems.append(f"patch size {size} (--patch): at least {MIN_PATCH} px")
    if any(n < 0 for n in per_class.values()) or not any(per_class.values()):
        problems.append(f"patches per class {list(per_class.values())} (--per-class): counts must "
                        "be >= 0 and at least one > 0")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        problems.append(f"split shares {fractions} (--splits): three shares >= 0 that sum to 1")
    elif fractions[0] <= 0 or fractions[1] <= 0:
        problems.append(f"split shares {fractions} (--splits): training and validation both need "
                        "cases (a share > 0), e.g. 0.7,0.15,0.15")
    if seed < 0:
        problems.append(f"seed {seed} (--seed): a non-negative integer")
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) \
            or not 0 <= augment <= MAX_AUGMENT:
        problems.append(f"augmented copies {augment!r} (--augment): a whole number from 0 (none) "
                        f"to {MAX_AUGMENT}; for more variety give more scans")
    if problems:
        raise RecordError("; ".join(problems))


def _check_scans(scans: list[Scan], size: int, split: dict[str, list[str]],
                 fractions: tuple[float, float, float], target_mm: float) -> None:
    def resampled(scan: Scan) -> tuple[int, int]:
        return resample.shape(scan.image.shape[:2], resample.scale_factor(scan.spacing_mm, target_mm))

    smallest = min(scans, key=lambda scan: min(resampled(scan)))
    height, width = resampled(smallest)
    if size > min(height, width):
        raise RecordError(f"patch size {size} (--patch) is larger than scan {smallest.name} "
                          f"({width}x{height} px at {target_mm:.3g} mm per pixel)")
    empty = [name for name, share in zip(SPLITS, fractions) if share > 0 and not split[name]]
    if empty:
        raise RecordError(f"{len(scans)} case(s) split {fractions} (--splits) leave the {' and '.join(empty)} "
                          "split(s) without a case; give more cases or larger shares")


def check(scan: Scan, per_class: dict[int, int], require_all: bool) -> list[str]:
    """Problems with one scan (empty when it is usable)."""
    problems = []
    if scan.image.ndim != 2 or scan.image.dtype != np.uint8:
        problems.append(f"{scan.name}: image must be 8-bit gray, got {scan.image.dtype} {scan.image.shape}")
    if scan.labels.shape != scan.image.shape:
        problems.append(f"{scan.name}: label map {scan.labels.shape} does not match image {scan.image.shape}")
    if not (isinstance(scan.spacing_mm, (int, float)) and 0 < scan.spacing_mm < float("inf")):
        problems.append(f"{scan.name}: pixel spacing must be a positive number of mm, got {scan.spacing_mm!r}")
    if problems:
        return problems
    unknown = sorted(set(np.unique(scan.labels).tolist()) - set(LABEL_TO_CLASS) - {OUTSIDE})
    if unknown:
        problems.append(f"{scan.name}: unknown label values {unknown}")
    if require_all:
        present = set(np.unique(classifier_labels(scan.labels)).tolist())
        missing = [CLASSIFIER_CLASSES[c] for c in per_class if c not in present]
        if missing:
            problems.append(f"{scan.name}: no pixels of {', '.join(missing)}")
    return problems


def scan_records(scan: Scan, encoding: str, size: int, per_class: dict[int, int],
                 rng: np.random.Generator, target_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Patches (N, C, s, s) uint8 and their classes (N,) sampled from one scan at ``target_mm``."""
    return _sample(*at_spacing(scan, target_mm), encoding, size, per_class, rng)


def augmented_records(scan: Scan, encoding: str, size: int, per_class: dict[int, int],
                      rng: np.random.Generator, target_mm: float,
                      copies: int) -> tuple[np.ndarray, np.ndarray]:
    """Patches and classes of ``copies`` independently augmented versions of one scan.

    Each version is the scan at ``target_mm`` transformed as a whole (:mod:`fetal_biometry.patches.augment`,
    :data:`~fetal_biometry.patches.augment.RANGES`),
    and its patches are sampled anew on it at the same per-class counts as the clean scan: the
    classes are read from the transformed label map, so each patch's label is right by
    construction, none falls outside the turned fan, and the counts stay balanced (mapping the
    clean centres through the transform would lose those near the fan's edge). One version is
    held at a time.
    """
    image, labels, directions = at_spacing(scan, target_mm)
    results = [_sample(*augmentation.apply(image, labels, directions, augmentation.draw(rng), rng),
                       encoding, size, per_class, rng) for _ in range(copies)]
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def _sample(image: np.ndarray, labels: np.ndarray, directions: np.ndarray, encoding: str, size: int,
            per_class: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    classes = classifier_labels(labels)
    centers = patches.sample_centers(classes, per_class, rng)
    planes = patches.encode(image, directions, encoding)
    data = patches.extract(planes, directions, centers, size, encoding)
    return data, np.array([c for *_, c in centers], np.int64)


def build(scans: Iterable[Scan], out: str | os.PathLike, encoding: str = "channels",
          size: int = patches.SIZE, per_class: dict[int, int] | None = None,
          fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
          require_all: bool = False, sources: dict | None = None, progress=None,
          spacing_mm: float | None = None, augment: int = 0,
          splits: dict[str, list[str]] | None = None) -> dict:
    """Sample patches from ``scans`` and write the LMDBs and manifest into ``out``.

    Parameters
    ----------
    scans : iterable of Scan
    out : path
        Output folder; replaced atomically when everything succeeded.
    encoding : {'rotate', 'channels', 'none'}
        How the beam direction reaches the net (see :mod:`fetal_biometry.patches.encoding`).
    size : int
        Patch side in pixels.
    per_class : dict, optional
        Patches per scan for each classifier class (default 40 each: with ~100 scans about the
        4000 patches the source used per class set).
    fractions : (train, val, test)
        Share of cases in each split.
    require_all : bool
        Treat a scan lacking pixels of a requested class as an error.
    sources : dict, optional
        Provenance for the manifest (dataset path, its hash, ...).
    progress : callable, optional
        Wraps the scan iterable (e.g. tqdm).
    spacing_mm : float, optional
        Target spacing (mm per pixel) every scan is resampled to; default the median spacing
        of the training cases.
    augment : int
        Augmented copies per training patch (:func:`augmented_records`), drawn from a stream
        of their own: validation and test stay clean and the same as without augmentation, and
        0 writes exactly what it did before.
    splits : dict, optional
        The cases of each split by name (``{"train": [...], "val": [...]}``; a split left out is
        empty) instead of a seeded draw by ``fractions``; every scan must be in one split.
    """
    per_class = per_class or {c: 40 for c in range(len(CLASSIFIER_CLASSES))}
    check_arguments(size, per_class, fractions, seed, spacing_mm, augment)
    scans = list(scans)
    problems = [p for scan in scans for p in check(scan, per_class, require_all)]
    if problems:
        raise RecordError(f"{len(problems)} problem(s), nothing written:\n  " + "\n  ".join(problems))
    if not scans:
        raise RecordError("no scans: the dataset lists no cases")
    by_name = {scan.name: scan for scan in scans}
    if splits is None:
        split = split_cases(list(by_name), fractions, seed)
    else:
        split = given_splits(splits, list(by_name))
        fractions = tuple(float(bool(split[name])) for name in SPLITS)
    target = spacing_mm if spacing_mm is not None else \
        target_spacing([by_name[n] for n in split["train"]])
    _check_scans(scans, size, split, fractions, target)
    rng = np.random.default_rng(seed)
    augment_rng = np.random.default_rng([seed, 1])  # not default_rng(seed): another stream
    manifest = {"format": FORMAT, "version": VERSION, "encoding": encoding,
                "patch": size, "spacing_mm": target, "patch_mm": size * target,
                "spacing_source": "given" if spacing_mm else "median of the training cases",
                "channels": patches.channels(encoding), "seed": seed,
                "input_scale": patches.INPUT_SCALE,
                "per_class_per_scan": {CLASSIFIER_CLASSES[c]: n for c, n in per_class.items()},
                "classes": list(CLASSIFIER_CLASSES), "sources": sources or {},
                "augment": _augment_record(augment), "splits": {}}
    with atomic.staged_dir(out) as tmp:
        atomic.mark(tmp, TOOL)
        for name in SPLITS:
            chosen = [by_name[n] for n in split[name]]
            iterator = progress(chosen, desc=name) if progress else chosen
            results = [scan_records(scan, encoding, size, per_class, rng, target) for scan in iterator]
            labels = np.concatenate([r[1] for r in results]) if results else np.zeros(0, np.int64)
            if split[name] and not len(labels):
                raise RecordError(f"the {name} split's cases ({', '.join(split[name])}) have no "
                                  "pixels of the classes asked for (--per-class); nothing written")
            order = rng.permutation(len(labels))
            if name == "train" and augment:
                iterator = progress(chosen, desc=f"train x{augment} augmented") if progress else chosen
                results += [augmented_records(scan, encoding, size, per_class, augment_rng, target, augment)
                            for scan in iterator]
                labels = np.concatenate([r[1] for r in results])
                # The clean records keep their draw above (so val and test, drawn after, are
                # the same with and without augmentation); the whole set is then shuffled.
                order = np.concatenate([order, np.arange(len(order), len(labels))])
                order = order[augment_rng.permutation(len(labels))]
            lmdb_writer.write(tmp / f"{name}_lmdb", _records([r[0] for r in results], labels, order))
            manifest["splits"][name] = {
                "cases": split[name], "records": int(len(labels)),
                "per_class": {CLASSIFIER_CLASSES[c]: int((labels == c).sum()) for c in range(len(CLASSIFIER_CLASSES))},
                "sha256": _hash(tmp / f"{name}_lmdb" / "data.mdb")}
        atomic.write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _records(pieces: list[np.ndarray], labels: np.ndarray, order: np.ndarray):
    """Records in ``order`` of the patches in ``pieces`` (one array per scan, in turn): taken
    one at a time, so a split's patches are never copied whole (concatenated or shuffled)."""
    starts = np.cumsum([0, *map(len, pieces)])
    for rank, index in enumerate(order):
        piece = int(np.searchsorted(starts, index, side="right")) - 1
        patch = pieces[piece][index - starts[piece]]
        yield f"{rank:08d}".encode(), lmdb_writer.to_datum(patch, int(labels[index])).SerializeToString()


def _augment_record(copies: int) -> dict:
    """The manifest's account of augmentation: copies per training patch, and the ranges."""
    if not copies:
        return {"copies": 0}
    return {"copies": copies, "splits": ["train"], "sampling": "anew on each transformed scan",
            "ranges": dataclasses.asdict(augmentation.RANGES)}


def _hash(path: pathlib.Path) -> str:
    with open(path, "rb") as file:  # in blocks: an augmented LMDB can be large
        return hashlib.file_digest(file, "sha256").hexdigest()
