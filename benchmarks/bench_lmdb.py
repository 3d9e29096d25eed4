#!/usr/bin/env python3
"""Patch LMDB writing: our patch_records.build vs Caffe's convert_imageset, and the read rate.

The same 32x32 patches are written twice:
  ours              patch_records.build from simulated scans, timed end to end: sampling,
                    patch extraction (and the direction planes for `channels`), Datum
                    serialisation, LMDB, mean file, manifest with hashes; encodings `none`
                    and `channels`
  convert_imageset  Caffe's tool on the `none` patches, saved as PNG files with a list file
                    (`path label`), --gray --backend lmdb; only its process is timed: writing
                    the PNGs and the list is its input preparation
and the `none` training LMDB is read through Caffe's Data layer (a net holding only that layer,
forward N batches). Prints records per second of each and the ratio ours / convert_imageset.

example:
  python benchmarks/bench_lmdb.py --cases 16 --per-class 200
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from fetal_biometry import simulator  # noqa: E402
from fetal_biometry.caffe_env import binary, caffe, proto  # noqa: E402
from fetal_biometry.io import dataset, lmdb_writer  # noqa: E402
from fetal_biometry.labels import CLASSIFIER_CLASSES  # noqa: E402
from fetal_biometry.nets import spec as nets  # noqa: E402
from fetal_biometry.patches import encoding as patches, records as patch_records  # noqa: E402

SIZE = 32


def _scans(count: int, seed: int) -> list[dataset.Scan]:
    return list(simulator.simulate(count, seed, (256, 256), "convex"))  # each case is a scan


def _ours(scans, out: pathlib.Path, encoding: str, per_class: int) -> tuple[int, float]:
    start = time.perf_counter()
    counts = {c: per_class for c in range(len(CLASSIFIER_CLASSES))}
    manifest = patch_records.build(scans, out, encoding, SIZE, counts)
    seconds = time.perf_counter() - start
    return sum(split["records"] for split in manifest["splits"].values()), seconds


def _convert_imageset(lmdbs: pathlib.Path, work: pathlib.Path) -> tuple[int, float]:
    """Same records as PNGs + list file (untimed), then the timed convert_imageset run."""
    images, lines = work / "png", []
    images.mkdir()
    datum = proto().Datum()
    for split in patch_records.SPLITS:
        for key, value in lmdb_writer.read(lmdbs / f"{split}_lmdb"):
            datum.ParseFromString(value)
            array, label = lmdb_writer.from_datum(datum)
            name = f"{split}_{key.decode()}.png"
            cv2.imwrite(str(images / name), array[0])
            lines.append(f"{name} {label}\n")
    (work / "list.txt").write_text("".join(lines))
    command = [binary("convert_imageset"), "--gray", "--backend=lmdb",
               f"{images}/", str(work / "list.txt"), str(work / "caffe_lmdb")]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return len(lines), time.perf_counter() - start


def _data_layer_rate(source: pathlib.Path, work: pathlib.Path, batch: int, batches: int) -> float:
    n = caffe().NetSpec()
    n.data, n.label = caffe().layers.Data(source=str(source), backend=caffe().params.Data.LMDB,
                                          batch_size=batch, ntop=2)
    net = caffe().Net(str(nets.save(n.to_proto(), work / "data_only.prototxt")), caffe().TEST)
    net.forward()  # start the prefetch thread and fill its queue
    start = time.perf_counter()
    for _ in range(batches):
        net.forward()
    return batch * batches / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16, help="simulated 256x256 scans (default 16)")
    parser.add_argument("--per-class", type=int, default=200,
                        help="patches per class per scan, 5 classes (default 200)")
    parser.add_argument("--batches", type=int, default=200, help="Data-layer batches to read (default 200)")
    parser.add_argument("--batch", type=int, default=256, help="Data-layer batch size (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    scans = _scans(args.cases, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-lmdb-") as tmp:
        work = pathlib.Path(tmp)
        ours = {encoding: _ours(scans, work / encoding, encoding, args.per_class)
                for encoding in ("none", "channels")}
        records, caffe_s = _convert_imageset(work / "none", work)
        read_rate = _data_layer_rate(work / "none/train_lmdb", work, args.batch, args.batches)
    caffe_rate = records / caffe_s
    print(f"{records} patches of {SIZE}x{SIZE} from {args.cases} simulated 256x256 scans, single-threaded:")
    for encoding, (count, seconds) in ours.items():
        print(f"  {'patch_records.build ' + encoding:<30}{count / seconds:9.0f} records/s  ({seconds:.2f} s, "
              f"{patches.channels(encoding)} channel(s); sampling, extraction, LMDB, mean, manifest)")
    print(f"  {'convert_imageset --gray':<30}{caffe_rate:9.0f} records/s  ({caffe_s:.2f} s, the process "
          f"alone; writing its PNG files and list is untimed preparation)")
    print(f"  ratio ours / convert_imageset: none {ours['none'][0] / ours['none'][1] / caffe_rate:.2f}, "
          f"channels {ours['channels'][0] / ours['channels'][1] / caffe_rate:.2f} (higher is faster)")
    print(f"  {'Caffe Data layer, read':<30}{read_rate:9.0f} records/s  (LMDB, batch {args.batch}, "
          f"{args.batches} batches, `none` training LMDB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
