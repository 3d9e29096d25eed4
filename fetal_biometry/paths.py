"""Where things live: the project's run, data and prototxt conventions, in one place; and the
one rule for a path that a file names (:func:`inside`).

All paths are relative to :func:`root`, Caffe's own convention for its examples: the
checked-in prototxt name LMDBs and snapshot prefixes this way, so the tools that use these
paths (demo, experiments, evaluate and choose-thresholds without --model) and ``caffe train``
run there. Pass ``root`` to get absolute paths.
"""
from __future__ import annotations

import os
import pathlib
import re

MNIST = pathlib.Path("data/mnist")  # MNIST LMDBs of the tutorial CNN
FETAL = pathlib.Path("data/fetal")  # simulated datasets and patch LMDBs
SIM_TRAIN = FETAL / "sim"  # the demo's training scans (seed 0)
SIM_HELDOUT = FETAL / "heldout"  # the demo's held-out scans (seed 1), never trained on
SIM_FOREIGN = FETAL / "foreign"  # the demo's foreign check set (seed 3, outside the training ranges)
EXPERIMENT_DATA = pathlib.Path("data/experiments")  # the experiments' datasets (fetal_biometry.experiments)
RUNS = pathlib.Path("runs")
EVALUATION = RUNS / "evaluation"
EVALUATION_FOREIGN = EVALUATION / "foreign"
EXPERIMENTS = RUNS / "experiments"  # the experiments' jobs and result tables
PROTOTXT = pathlib.Path("prototxt")


def root() -> pathlib.Path:
    """The folder the paths above are relative to: the checkout this package sits in (a
    development install), else the working directory (a package installed with pip, whose
    user's project folder it is; never the installed package's own folder)."""
    checkout = pathlib.Path(__file__).resolve().parents[1]
    if (checkout / "setup.py").is_file() and (checkout / PROTOTXT).is_dir():
        return checkout
    return pathlib.Path.cwd()


def safe_name(text: str, prefix: str = "scan") -> str:
    """``text`` as the name of output files: characters other than [A-Za-z0-9._-] (control
    characters, path separators, spaces) as '_', starting with a letter or digit (else
    ``prefix`` comes first), so that no name can be a path, forge a line of output, or start
    like a tool's own files ('_', '.')."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    return name if re.match(r"^[A-Za-z0-9]", name) else f"{prefix}{name}"


def printable(text: str) -> str:
    """``text`` with control characters (newlines, escapes, ...) written as escapes, for one
    line of terminal output that a file name cannot break or forge."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class OutsideFolder(ValueError):
    """A file names a path outside the folder the user named for it; the message says which."""


def inside(folder: str | os.PathLike, name: str | os.PathLike, named_by: str | os.PathLike,
           what: str = "the files it names") -> pathlib.Path:
    """The path ``name`` that a file (``named_by``) gives, resolved and required inside ``folder``.

    The one rule for every path a file names (an annotation's image, a stack header's data
    file, a model folder's weights, a geometry file, a file found in a folder the user named):
    relative names are taken from ``folder``; the path is resolved with symlinks followed
    (``..``, absolute paths and links pointing elsewhere included) and must lie inside
    ``folder``, itself resolved, so nothing outside the folders the user named is ever read.
    Returns the resolved path, to be opened as it is; :class:`OutsideFolder` names the file,
    the path and the folder otherwise.
    """
    root = pathlib.Path(folder).resolve()
    resolved = (root / name).resolve()
    if resolved != root and root not in resolved.parents:
        text, prefix = os.fspath(name), os.path.join(folder, "")
        shown = text[len(prefix):] if text.startswith(prefix) else text  # as the file wrote it
        via = "" if pathlib.Path(folder, name) == resolved else f" (resolved: {resolved})"
        raise OutsideFolder(f"{named_by}: names {shown!r}{via}, outside {folder}, the "
                            f"folder given for {what}; only files inside it are read")
    return resolved


def prototxt_dir(name: str) -> pathlib.Path:
    """Folder of one checked-in net family (``tutorial_cnn``, ``fetal_channels``, ...)."""
    return PROTOTXT / name


def fetal_name(encoding: str) -> str:
    """Name of the fetal patch classifier's prototxt folder and run folder for an encoding."""
    return f"fetal_{encoding}"


def segmenter_name(encoding: str) -> str:
    """Name of the segmenter's prototxt folder and run folder for an encoding."""
    return f"segmenter_{encoding}"


def segment_records(encoding: str) -> pathlib.Path:
    """Folder of the segmenter's records (image and label LMDBs, manifest.json, class weights)."""
    return FETAL / f"segment_{encoding}"


def patch_lmdbs(encoding: str) -> pathlib.Path:
    """Folder of the patch LMDBs (train/val/test_lmdb, manifest.json) the fetal nets read."""
    return FETAL / encoding


def run_dir(name: str) -> pathlib.Path:
    """Run folder of a training (metrics, snapshots; a model folder for the fetal nets)."""
    return RUNS / name


def snapshot_prefix(name: str) -> str:
    """Caffe's ``snapshot_prefix`` for the run ``name``."""
    return str(run_dir(name) / "snapshots" / "net")


def demo_models(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The model folders ``make demo`` may train: a patch classifier per beam encoding, a
    segmenter per encoding."""
    from fetal_biometry.patches.encoding import ENCODINGS
    from fetal_biometry.patches.scan_encoding import ENCODINGS as SEGMENTER_ENCODINGS

    base = root or pathlib.Path()
    return [base / run_dir(fetal_name(e)) for e in ENCODINGS] + \
        [base / run_dir(segmenter_name(e)) for e in SEGMENTER_ENCODINGS]
