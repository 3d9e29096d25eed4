#!/usr/bin/env python3
"""Dense inference (net surgery) against the naive sliding window, on the same simulated scan.

The sliding window classifies the patch around every pixel inside the fan with the patch net
(batches of 256 patches, kinder to it than one forward pass per patch); the dense net does one
forward pass over the scan and interpolates between its stride-4 grid. Prints seconds per scan
of each, their ratio, and how far the two class maps agree (exactly, on the grid).

    python benchmarks/bench_sliding_window.py [--model runs/fetal_channels]

Both run on the scan's own pixels (no resampling), so they time the same work.
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import paths, simulator  # noqa: E402
from fetal_biometry.caffe_env import caffe  # noqa: E402
from fetal_biometry.geometry import probe as geometry  # noqa: E402
from fetal_biometry.inference import dense as inference  # noqa: E402
from fetal_biometry.labels import OUTSIDE  # noqa: E402
from fetal_biometry.nets import model as model_folder, spec as nets  # noqa: E402
from fetal_biometry.patches import encoding as patches  # noqa: E402


def sliding_window(net, planes, directions, batch=256) -> np.ndarray:
    inside = np.argwhere(~np.isnan(directions[..., 0]))
    labels = np.full(directions.shape[:2], OUTSIDE, np.uint8)
    net.blobs["data"].reshape(batch, *net.blobs["data"].data.shape[1:])
    for start in range(0, len(inside), batch):
        centers = [tuple(p) for p in inside[start:start + batch]]
        data = patches.extract(planes, directions, centers, patches.SIZE, "channels") / np.float32(256)
        net.blobs["data"].reshape(*data.shape)
        probs = net.forward(data=data)["prob"]
        labels[tuple(np.array(centers).T)] = probs.argmax(axis=1)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ROOT / paths.run_dir("fetal_channels")
    parser.add_argument("--model", type=pathlib.Path, default=default,
                        help="a channels-encoding model folder (default: make demo's; untrained "
                             "weights when there is none: enough to time it)")
    args = parser.parse_args()
    if (args.model / model_folder.FILE).is_file():
        model = model_folder.load(args.model)
        deploy, weights = model.deploy, model.weights
    else:
        deploy = pathlib.Path(tempfile.mkdtemp()) / "deploy.prototxt"
        nets.save(nets.patch_classifier_deploy(3), deploy)
        weights = deploy.with_suffix(".caffemodel")
        caffe().Net(str(deploy), caffe().TEST).save(str(weights))
    case = simulator.simulate_case(seed=3, index=0)
    directions = geometry.beam_directions(case.geometry, case.image.shape)
    dense = inference.DenseClassifier(deploy, weights, "channels")
    dense.probabilities(case.image, directions)  # warm-up
    start = time.perf_counter()
    dense_labels = dense.probabilities(case.image, directions).argmax(axis=0)
    dense_s = time.perf_counter() - start
    net = caffe().Net(str(deploy), str(weights), caffe().TEST)
    start = time.perf_counter()
    window = sliding_window(net, patches.encode(case.image, directions, "channels"), directions)
    window_s = time.perf_counter() - start
    inside = window != OUTSIDE
    grid = np.zeros_like(inside)
    grid[::inference.STRIDE, ::inference.STRIDE] = True
    print(f"scan {case.image.shape[1]}x{case.image.shape[0]}, {inside.sum()} pixels in the fan")
    print(f"sliding window: {window_s:7.2f} s/scan")
    print(f"dense (FCN)   : {dense_s:7.3f} s/scan")
    print(f"ratio window/dense: {window_s / dense_s:.0f}x")
    print(f"same class on the stride-4 grid: {np.mean(window[grid & inside] == dense_labels[grid & inside]):.4f}; "
          f"everywhere: {np.mean(window[inside] == dense_labels[inside]):.4f}")


if __name__ == "__main__":
    main()
