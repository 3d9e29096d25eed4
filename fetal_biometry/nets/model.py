"""A trained model is a folder that describes itself (in the spirit of nnU-Net's ``plans.json``).

Training (:func:`fetal_biometry.nets.training.train`) leaves its run folder usable as a model
when its net read the patch LMDBs of :mod:`fetal_biometry.patches.records` (a **patch
classifier**) or the dense label records of :mod:`fetal_biometry.patches.segment_records` (a
**segmenter**)::

    MODEL/model.json          what the model is (below)
    MODEL/deploy.prototxt     the deploy net: Input (1, channels, patch, patch) -> prob, or the
                              segmenter's Input (1, channels, tile, tile) -> prob (K, tile, tile),
                              reshaped to each scan
    MODEL/net.png             its diagram (caffe.draw)
    MODEL/dense.prototxt      the fully convolutional twin of the deploy net, and its weights
    MODEL/dense.caffemodel    (fetal_biometry.inference.dense.make_twin): what dense inference
                              runs, on Caffe or on OpenCV's dnn without Caffe
    MODEL/snapshots/...       the weights model.json names: the last good snapshot

``model.json``::

    {
      "format": "fetal-biometry-model", "version": 2,
      "kind": "patch_classifier",          or "segmenter"
      "encoding": "channels",              beam encoding (fetal_biometry.patches.encoding, or
                                           fetal_biometry.patches.scan_encoding for a segmenter)
      "channels": 3,                       input planes
      "patch": {"px": 40, "mm": 26.9},     patch side (patch classifier)
      "unet": {"depth": 4, "width": 8, "tile": 128},   the segmenter's net and record tiles
      "spacing_mm": 0.672,                 target spacing: scans are resampled to it
      "classes": ["background", ...],      output order: a patch classifier's classes, or the
                                           segmenter's class table (fetal_biometry.labels.SEGMENTER_TABLES)
      "input": {"scale": 0.00390625, "mean": null},   uint8 planes times scale, no mean
      "deploy": "deploy.prototxt",
      "weights": "snapshots/net_iter_1500.caffemodel",
      "dense": {"deploy": "dense.prototxt", "weights": "dense.caffemodel",
                "made_from_sha256": "..."},   the twin and the weights it was made from
      "data": {"manifest_sha256": "...", "records": {"train": n, ...},
               "per_class": {...}, "sources": {...}},
      "training": {"solver": "...", "iterations": 1500, "trained_at": "2026-...Z",
                   "validation": {"accuracy": ..., "per_class_accuracy": [...]}},
      "versions": {"fetal_biometry": "0.1.0", "caffe": "1.0.0"}
    }

Version 1 folders (no ``kind``) are read as patch classifiers. Paths are relative to the folder, so it can be copied, archived or handed to a colleague.
:func:`load` checks all of it before Caffe sees a file: the deploy net's input against the
encoding and patch, and the weights against the net (:mod:`fetal_biometry.nets.checks`).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import pathlib
import sys

from fetal_biometry import __version__, atomic, figures, paths
from fetal_biometry.labels import CLASSIFIER_CLASSES, check_table
from fetal_biometry.nets import spec as nets
from fetal_biometry.patches import encoding as patches, records as patch_records, scan_encoding, \
    segment_records

FORMAT, VERSION = "fetal-biometry-model", 2  # version 2: "kind" (version 1: patch classifiers)
READABLE = (1, 2)
FILE = "model.json"
PATCH_CLASSIFIER, SEGMENTER = "patch_classifier", "segmenter"
KINDS = (PATCH_CLASSIFIER, SEGMENTER)


class ModelError(ValueError):
    """A model folder that cannot be used; the message names the folder and the problem."""


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model folder: what the net expects and where its files are."""

    root: pathlib.Path
    encoding: str
    channels: int
    patch: int
    spacing_mm: float
    scale: float
    classes: tuple[str, ...]
    deploy: pathlib.Path
    weights: pathlib.Path
    record: dict
    kind: str = PATCH_CLASSIFIER
    unet: dict | None = None  # the segmenter's depth, width and tile

    @property
    def name(self) -> str:
        """A short label for tables: the encoding (``segmenter_<encoding>`` for a segmenter), or
        the folder's name when they differ."""
        if not self.root.name.endswith(self.encoding):
            return self.root.name
        return f"segmenter_{self.encoding}" if self.kind == SEGMENTER else self.encoding


def records_manifest(net_param) -> tuple[pathlib.Path, dict] | None:
    """The manifest of the patch LMDBs or segmenter records behind a train net's first Data
    layer, or None if it reads neither."""
    for layer in net_param.layer:
        if layer.type == "Data":
            path = pathlib.Path(layer.data_param.source).parent / "manifest.json"
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            if isinstance(manifest, dict) and manifest.get("format") in (patch_records.FORMAT,
                                                                         segment_records.FORMAT):
                return path, manifest
            return None
    return None


def unet_shape(net_param) -> tuple[int, int]:
    """(depth, width) of a U-Net (:func:`fetal_biometry.nets.segmenter`): its poolings and the
    channels of its first convolution."""
    depth = sum(1 for layer in net_param.layer if layer.type == "Pooling")
    first = next(layer for layer in net_param.layer if layer.type == "Convolution")
    return depth, int(first.convolution_param.num_output)


def write(out: str | os.PathLike, manifest_path: pathlib.Path, weights: pathlib.Path,
          training: dict, train_param=None) -> pathlib.Path:
    """Make the run folder ``out`` a model folder: ``deploy.prototxt`` and ``model.json``.

    ``weights`` (inside ``out``) is the snapshot the model uses; ``training`` records how it
    was made (solver, iterations, validation). A segmenter's net (``train_param``, the train
    net) gives its depth and width.
    """
    out = pathlib.Path(out)
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") == segment_records.FORMAT:
        return _write_segmenter(out, manifest_path, manifest, weights, training, train_param)
    if manifest.get("version") != patch_records.VERSION:
        raise ModelError(f"{manifest_path}: patch LMDBs of version {manifest.get('version')}; "
                         f"remake them with tools/make_lmdb.py (version {patch_records.VERSION} "
                         "records the target spacing)")
    encoding, patch, classes = manifest["encoding"], manifest["patch"], manifest["classes"]
    deploy = nets.save(nets.patch_classifier_deploy(patches.channels(encoding), patch, len(classes)),
                       out / "deploy.prototxt")
    try:
        figures.net_diagram(deploy, out / "net.png")
    except RuntimeError as error:  # no graphviz or pydot: the model works without its picture
        print(f"model: {out / 'net.png'} not drawn: {error}", file=sys.stderr)
    from fetal_biometry.inference import dense

    twin = dense.make_twin(deploy, weights, out)
    record = {
        "format": FORMAT, "version": VERSION, "kind": PATCH_CLASSIFIER, "encoding": encoding,
        "channels": patches.channels(encoding),
        "patch": {"px": patch, "mm": manifest["patch_mm"]}, "spacing_mm": manifest["spacing_mm"],
        "classes": classes, "input": {"scale": manifest["input_scale"], "mean": None},
        "deploy": "deploy.prototxt",
        "weights": weights.resolve().relative_to(out.resolve()).as_posix(),
        "dense": {"deploy": twin[0].name, "weights": twin[1].name,
                  "made_from_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
        "data": {"manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
                 "records": {s: v["records"] for s, v in manifest["splits"].items()},
                 "per_class": {s: v["per_class"] for s, v in manifest["splits"].items()},
                 "spacing_source": manifest["spacing_source"], "sources": manifest["sources"],
                 "augment": manifest.get("augment", {"copies": 0})},
        "training": {**training, "trained_at": datetime.datetime.now(datetime.timezone.utc)
                     .isoformat(timespec="seconds").replace("+00:00", "Z")},
        "versions": {"fetal_biometry": __version__, "caffe": _caffe_version()},
    }
    return atomic.write_text(out / FILE, json.dumps(record, indent=2) + "\n")


def _write_segmenter(out: pathlib.Path, manifest_path: pathlib.Path, manifest: dict,
                     weights: pathlib.Path, training: dict, train_param) -> pathlib.Path:
    depth, width = unet_shape(train_param)
    tile, classes = manifest["tile"], manifest["classes"]
    deploy = nets.save(nets.segmenter_deploy(manifest["channels"], tile, tile, len(classes), depth, width),
                       out / "deploy.prototxt")
    try:
        figures.net_diagram(deploy, out / "net.png")
    except RuntimeError as error:
        print(f"model: {out / 'net.png'} not drawn: {error}", file=sys.stderr)
    record = {
        "format": FORMAT, "version": VERSION, "kind": SEGMENTER, "encoding": manifest["encoding"],
        "channels": manifest["channels"], "unet": {"depth": depth, "width": width, "tile": tile},
        "spacing_mm": manifest["spacing_mm"], "classes": classes,
        "input": {"scale": manifest["input_scale"], "mean": None},
        "deploy": "deploy.prototxt",
        "weights": weights.resolve().relative_to(out.resolve()).as_posix(),
        "data": {"manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
                 "records": {s: v["records"] for s, v in manifest["splits"].items()},
                 "pixels": {s: v["pixels"] for s, v in manifest["splits"].items()},
                 "balance": manifest.get("balance"), "sources": manifest["sources"],
                 "augment": manifest.get("augment", {"copies": 0})},
        "training": {**training, "trained_at": datetime.datetime.now(datetime.timezone.utc)
                     .isoformat(timespec="seconds").replace("+00:00", "Z")},
        "versions": {"fetal_biometry": __version__, "caffe": _caffe_version()},
    }
    return atomic.write_text(out / FILE, json.dumps(record, indent=2) + "\n")


def _caffe_version() -> str:
    from fetal_biometry.caffe_env import caffe
    return str(getattr(caffe(), "__version__", "unknown"))


def _positive(record: dict, *keys: str) -> float:
    value = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{'.'.join(keys)} must be a positive number, got {value!r}")
    return float(value)


def load(path: str | os.PathLike) -> Model:
    """Read and check the model folder at ``path``; :class:`ModelError` says what is wrong."""
    root = pathlib.Path(path)
    where = root / FILE
    if not where.is_file():
        hint = (" (a .caffemodel: give the run folder that holds model.json)"
                if root.suffix == ".caffemodel" else "")
        raise ModelError(f"{root}: not a model folder, no {FILE}{hint}; train with "
                         "tools/train.py on LMDBs from tools/make_lmdb.py to make one")
    try:
        record = json.loads(where.read_text())
        if not isinstance(record, dict) or record.get("format") != FORMAT \
                or record.get("version") not in READABLE:
            raise ValueError(f"format {record.get('format')!r} version {record.get('version')!r}; "
                             f"this reader knows {FORMAT!r} versions {list(READABLE)}")
        kind = record.get("kind", PATCH_CLASSIFIER) if record["version"] >= 2 else PATCH_CLASSIFIER
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; this reader knows {KINDS}")
        if kind == SEGMENTER:
            return _load_segmenter(root, where, record)
        encoding = record.get("encoding")
        if encoding not in patches.ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        patch, channels = int(_positive(record, "patch", "px")), int(_positive(record, "channels"))
        if channels != patches.channels(encoding):
            raise ValueError(f"channels {channels} do not fit the {encoding!r} encoding")
        if tuple(record.get("classes", ())) != CLASSIFIER_CLASSES:
            raise ValueError(f"classes {record.get('classes')} are not this version's {CLASSIFIER_CLASSES}")
        spacing, scale = _positive(record, "spacing_mm"), _positive(record, "input", "scale")
        names = _file_names(record)
    except ModelError:
        raise
    except (ValueError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise ModelError(f"{where}: {error}") from None
    deploy, weights = _files(root, where, names)
    _check_files(where, deploy, weights, channels, patch, len(CLASSIFIER_CLASSES))
    return Model(root, encoding, channels, patch, spacing, scale, CLASSIFIER_CLASSES,
                 deploy, weights, record)


def _file_names(record: dict) -> dict[str, str]:
    """model.json's ``deploy`` and ``weights`` names; ValueError unless both are non-empty strings."""
    names = {key: record.get(key) for key in ("deploy", "weights")}
    if not all(isinstance(name, str) and name for name in names.values()):
        raise ValueError(f"'deploy' and 'weights' must name files in the folder, got {names}")
    return names


def _files(root: pathlib.Path, where: pathlib.Path, names: dict[str, str]) -> tuple[pathlib.Path, pathlib.Path]:
    """The deploy net and weights a model.json names, inside its folder and present."""
    try:  # the model's files lie in its folder: no '..', absolute path or symlink out
        deploy, weights = (paths.inside(root, name, where, "the model's files") for name in names.values())
    except paths.OutsideFolder as error:
        raise ModelError(str(error)) from None
    for name, file in zip(names.values(), (deploy, weights)):
        if not file.is_file():
            raise ModelError(f"{where} names {name}, which is missing")
    return deploy, weights


def _load_segmenter(root: pathlib.Path, where: pathlib.Path, record: dict) -> Model:
    """The segmenter of a model.json (``kind`` segmenter); ValueError for a bad field."""
    encoding = record.get("encoding")
    if encoding not in scan_encoding.ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r} for a segmenter; known: {scan_encoding.ENCODINGS}")
    channels = int(_positive(record, "channels"))
    if channels != scan_encoding.channels(encoding):
        raise ValueError(f"channels {channels} do not fit the {encoding!r} encoding")
    classes = check_table(record.get("classes"))  # output i is class i of the table it learnt
    unet = {key: int(_positive(record, "unet", key)) for key in ("depth", "width", "tile")}
    spacing, scale = _positive(record, "spacing_mm"), _positive(record, "input", "scale")
    deploy, weights = _files(root, where, _file_names(record))
    _check_files(where, deploy, weights, channels, unet["tile"], len(classes))
    return Model(root, encoding, channels, 0, spacing, scale, classes, deploy, weights,
                 record, SEGMENTER, unet)


def _outputs(param) -> int | None:
    """The outputs of the layer under a net's last Softmax (its classes), None if not found."""
    softmax = [layer for layer in param.layer if layer.type == "Softmax"]
    for layer in param.layer:
        if softmax and layer.top and layer.top[0] == softmax[-1].bottom[0] \
                and layer.type in ("Convolution", "InnerProduct"):
            inner = layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param
            return int(inner.num_output)
    return None


def _check_files(where: pathlib.Path, deploy: pathlib.Path, weights: pathlib.Path,
                 channels: int, patch: int, classes: int) -> None:
    """The deploy net takes (1, channels, patch, patch), gives ``classes`` outputs, and the
    weights fit it."""
    from fetal_biometry.nets import checks

    try:
        param = checks.check_net_file(deploy, "deploy")  # layer types before Caffe sees it
    except checks.CheckError as error:
        raise ModelError(str(error)) from None
    dims = [list(layer.input_param.shape[0].dim) for layer in param.layer
            if layer.type == "Input" and layer.input_param.shape]
    if dims != [[1, channels, patch, patch]]:
        raise ModelError(f"{deploy}: input {dims} does not match {where}'s "
                         f"(1, {channels}, {patch}, {patch})")
    outputs = _outputs(param)
    if outputs is not None and outputs != classes:
        raise ModelError(f"{deploy}: the net gives {outputs} classes, but {where} lists {classes}")
