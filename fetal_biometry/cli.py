"""What the command-line tools share: argparse ``type=`` callables and the model folders named."""
from __future__ import annotations

import argparse
import math
import pathlib

from fetal_biometry import paths
from fetal_biometry.io import limits
from fetal_biometry.nets import model as model_folder


def spacing_mm(text: str) -> float:
    """A pixel spacing: a positive, finite number of mm per pixel (0, inf and nan are no spacing)
    within :data:`fetal_biometry.io.limits.SPACING_MM`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a pixel spacing is a positive number of mm, got {text}")
    try:
        limits.check_spacing(value)
    except limits.BudgetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def confidence(text: str) -> float:
    """A fan confidence: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a fan confidence is a number from 0 to 1, got {text}")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number, got {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is at least 0, got {text}")
    return value


def at_least_one(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--threads``, alike for every tool that runs a model
    (:func:`inference_setup` applies them)."""
    from fetal_biometry.inference import backends

    parser.add_argument("--backend", choices=backends.BACKENDS, default="caffe",
                        help="what runs the nets: Caffe, or OpenCV's dnn module (no Caffe build "
                             "needed; the segmenter runs about twice as fast on it, the patch "
                             "classifier no faster: docs/speed.md; default caffe)")
    parser.add_argument("--threads", type=at_least_one, metavar="N",
                        help="CPU cores inference uses, for either backend (default: "
                             "OPENBLAS_NUM_THREADS for Caffe, all cores for OpenCV)")


def inference_setup(args: argparse.Namespace) -> None:
    """Apply :func:`add_inference_options`' ``--threads``: one setting for Caffe's BLAS and OpenCV.
    A ``--gpu`` with the OpenCV backend is refused (it runs on CPUs here)."""
    if getattr(args, "gpu", None) is not None and args.backend != "caffe":
        raise ValueError(f"--gpu runs Caffe on a GPU; the {args.backend} backend runs on CPUs "
                         "(drop --gpu or use --backend caffe)")
    if args.threads is not None:
        from fetal_biometry.inference import backends

        backends.set_threads(args.threads)


def fractions(text: str) -> tuple[float, float, float]:
    """Three shares of cases (train, val, test) that sum to 1, e.g. ``0.7,0.15,0.15``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"three numbers, e.g. 0.7,0.15,0.15; got {text}") from None
    if len(values) != 3 or abs(sum(values) - 1) > 1e-6 or min(values) < 0:
        raise argparse.ArgumentTypeError("three shares that sum to 1, e.g. 0.7,0.15,0.15")
    return values


def models(folders: list[str] | None, root: pathlib.Path) -> list[model_folder.Model]:
    """The model folders named, or those `make demo` trains under ``root`` when there are any."""
    if not folders:
        folders = [p for p in paths.demo_models(root) if (p / model_folder.FILE).is_file()]
        if not folders:
            raise ValueError("no model folder found in runs/fetal_*; run `make demo` or pass --model DIR")
    loaded = [model_folder.load(folder) for folder in folders]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"two models would share a name in the results: {names}; rename a folder")
    return loaded
