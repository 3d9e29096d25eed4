#!/usr/bin/env python3
"""The segmenter against the patch classifier: dense inference and training, one core, one run.

Inference: the same simulated scans (held-out recipe, 256 px) classified by each model's engine
at its own spacing, as evaluate and infer run them (resampling, encoding and maps back
included); seconds per scan and their ratio. Training: seconds per solver iteration of each
net's checked-in train net on the records make demo writes (the segmenter's 4 tiles of 128 x 128
per iteration, the patch classifier's 64 patches), and the ratio of whole trainings
(iterations times seconds). Untrained weights serve where a model folder is missing: speed does
not depend on them.

    python benchmarks/bench_segmenter.py [--patch-encoding rotate] [--segmenter-encoding beam]
        [--patch runs/fetal_rotate] [--segmenter runs/segmenter_beam]

(the defaults: make demo's two nets, their model folders and records.)

Run with OPENBLAS_NUM_THREADS=1 on an otherwise idle core; the ratio is what to compare.
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import paths, simulator  # noqa: E402
from fetal_biometry.inference import dense as inference, segmentation  # noqa: E402
from fetal_biometry.nets import catalog, model as model_folder, spec as nets  # noqa: E402
from fetal_biometry.patches import encoding as patches, scan_encoding, segment_records  # noqa: E402
from fetal_biometry.caffe_env import caffe  # noqa: E402


def _untrained(net_param, folder: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    deploy = nets.save(net_param, folder / f"{name}.prototxt")
    weights = deploy.with_suffix(".caffemodel")
    caffe().Net(str(deploy), caffe().TEST).save(str(weights))
    return deploy, weights


def engines(patch_model: pathlib.Path, segmenter_model: pathlib.Path, patch_encoding: str,
            segmenter_encoding: str):
    folder = pathlib.Path(tempfile.mkdtemp())
    if (patch_model / model_folder.FILE).is_file():
        patch = inference.engine(model_folder.load(patch_model))
    else:
        deploy = nets.patch_classifier_deploy(patches.channels(patch_encoding))
        patch = inference.DenseClassifier(*_untrained(deploy, folder, "patch"), patch_encoding, 0.67)
    if (segmenter_model / model_folder.FILE).is_file():
        segmenter = inference.engine(model_folder.load(segmenter_model))
    else:
        tile = segment_records.TILE
        deploy = nets.segmenter_deploy(scan_encoding.channels(segmenter_encoding), tile, tile)
        segmenter = segmentation.Segmenter(*_untrained(deploy, folder, "seg"), segmenter_encoding,
                                           segment_records.SPACING_MM)
    return patch, segmenter


def per_scan(engine, cases) -> float:
    engine.classify_scan(cases[0].image, cases[0].geometry, cases[0].spacing_mm)  # warm-up
    start = time.perf_counter()
    for case in cases:
        engine.classify_scan(case.image, case.geometry, case.spacing_mm)
    return (time.perf_counter() - start) / len(cases)


def per_iteration(solver_path: pathlib.Path, iterations: int = 20) -> float | None:
    """Seconds per training iteration of a checked-in solver (run from a copy that snapshots
    into a temporary folder), None when its records are missing."""
    from google.protobuf import text_format

    from fetal_biometry.nets import checks, training
    from fetal_biometry.caffe_env import proto

    param = training.read_prototxt(solver_path, proto().SolverParameter)
    train, _ = training.solver_nets(param)
    net = training.read_prototxt(train, proto().NetParameter)
    if any(layer.type == "Data" and not pathlib.Path(layer.data_param.source, "data.mdb").is_file()
           for layer in net.layer):
        return None
    folder = pathlib.Path(tempfile.mkdtemp())
    param.snapshot_prefix, param.snapshot = str(folder / "net"), 0
    copy = folder / "solver.prototxt"
    copy.write_text(text_format.MessageToString(param))
    solver = checks.solver(copy)
    solver.step(2)
    start = time.perf_counter()
    solver.step(iterations)
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch-encoding", choices=patches.ENCODINGS, default="rotate",
                        help="the patch classifier's encoding (default rotate, make demo's)")
    parser.add_argument("--segmenter-encoding", choices=scan_encoding.ENCODINGS, default="beam",
                        help="the segmenter's encoding (default beam, make demo's)")
    parser.add_argument("--patch", type=pathlib.Path, help="patch classifier model folder "
                        "(default runs/fetal_ENCODING; untrained weights where missing)")
    parser.add_argument("--segmenter", type=pathlib.Path, help="segmenter model folder "
                        "(default runs/segmenter_ENCODING)")
    parser.add_argument("--scans", type=int, default=5)
    args = parser.parse_args()
    os.chdir(ROOT)
    patch_name, segmenter_name = paths.fetal_name(args.patch_encoding), paths.segmenter_name(args.segmenter_encoding)
    cases = [simulator.simulate_case(seed=1, index=i) for i in range(args.scans)]
    patch, segmenter = engines(args.patch or ROOT / paths.run_dir(patch_name),
                               args.segmenter or ROOT / paths.run_dir(segmenter_name),
                               args.patch_encoding, args.segmenter_encoding)
    p, s = per_scan(patch, cases), per_scan(segmenter, cases)
    print(f"inference, {args.scans} scans of 256 px: patch classifier {p:.3f} s/scan, "
          f"segmenter {s:.3f} s/scan: {p / s:.1f}x faster")
    pi = per_iteration(paths.prototxt_dir(patch_name) / "solver.prototxt")
    si = per_iteration(paths.prototxt_dir(segmenter_name) / "solver.prototxt")
    if pi is None or si is None:
        print("training: records missing (run make demo, or tools/make_lmdb.py and "
              "tools/make_segment_records.py); not timed")
        return
    whole = (si * catalog.SEGMENTER_ITERATIONS) / (pi * catalog.FETAL_ITERATIONS)
    print(f"training: patch classifier {pi:.3f} s/iteration x {catalog.FETAL_ITERATIONS}, segmenter "
          f"{si:.3f} s/iteration x {catalog.SEGMENTER_ITERATIONS}: the segmenter takes {whole:.2f}x "
          "the patch classifier's time")


if __name__ == "__main__":
    main()
