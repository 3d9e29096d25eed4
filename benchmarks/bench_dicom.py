#!/usr/bin/env python3
"""Reading a DICOM cine loop frame by frame: time and peak memory against decoding it whole.

Writes a loop of N screen-sized frames (default 120 frames of 800x600, speckle in a calibrated
2D tissue region) in two encodings scanners use: JPEG baseline YBR_FULL_422 (lossy, the usual
for cine) and native RGB (explicit VR little endian). Then, each in a fresh process:
  frames  scans.iter_frames: every frame decoded, cropped to the region and made gray, one at
          a time (what the tools do)
  whole   pydicom.pixels.pixel_array on the file: every frame decoded into one array at once
          (the reference: what reading a loop without frames would cost)
Prints seconds per frame, total wall and CPU seconds (CPU time is steadier on a shared
machine) and the peak resident memory added by the reading
(the process's VmHWM after minus before: Linux's ru_maxrss would carry the parent's peak
over exec), with the ratios frames / whole.

example:
  python benchmarks/bench_dicom.py --frames 120
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' DICOM writer

import numpy as np  # noqa: E402
from pydicom import uid  # noqa: E402

SHAPE = (600, 800)
REGION = (100, 60, 699, 559)  # inclusive, as DICOM writes it
ENCODINGS = {"jpeg-baseline": (uid.JPEGBaseline8Bit, "YBR_FULL_422"),
             "native-rgb": (uid.ExplicitVRLittleEndian, "RGB")}


def _write_loop(path: pathlib.Path, frames: int, syntax: str, photometric: str) -> None:
    import dicom_files
    import screens

    rng = np.random.default_rng(0)
    loop = np.zeros((frames, *SHAPE, 3), np.uint8)
    base = screens.speckle((REGION[3] - REGION[1] + 1, REGION[2] - REGION[0] + 1), 0)
    for k in range(frames):  # the probe moves: each frame its own shift and noise
        frame = np.roll(base, 3 * k, axis=1) // 2 + rng.integers(0, 60, base.shape).astype(np.uint8)
        loop[k, REGION[1]:REGION[3] + 1, REGION[0]:REGION[2] + 1] = frame[..., None]
    dicom_files.write(path, loop, photometric, syntax, frames=frames,
                      regions=[dicom_files.region(REGION, (0.02, 0.02))])


def _peak_mb() -> float:
    """This process's peak resident memory so far (VmHWM), MB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def _child(mode: str, path: str) -> None:
    """Read the loop once in ``mode``; print seconds, frames and peak memory added (MB)."""
    from fetal_biometry.io import scans
    from pydicom.pixels import pixel_array

    before = _peak_mb()
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "frames":
        count = 0
        for scan in scans.iter_frames(path):
            count += int(scan.gray[0, 0] >= 0)
    else:
        count = len(pixel_array(path))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "frames": count, "peak_mb": _peak_mb() - before}))


def _measure(mode: str, path: pathlib.Path) -> dict:
    run = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120, help="frames in the loop (default 120)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as work:
        for name, (syntax, photometric) in ENCODINGS.items():
            path = pathlib.Path(work) / f"{name}.dcm"
            _write_loop(path, args.frames, syntax, photometric)
            size = path.stat().st_size / 2 ** 20
            ours, whole = _measure("frames", path), _measure("whole", path)
            assert ours["frames"] == whole["frames"] == args.frames
            print(f"{name}: {args.frames} frames of {SHAPE[1]}x{SHAPE[0]} RGB, file {size:.0f} MB")
            for label, result in (("frame by frame (scans.iter_frames)", ours),
                                  ("whole loop (pixel_array)", whole)):
                print(f"  {label:36s} {result['seconds']:6.2f} s wall {result['cpu']:6.2f} s CPU  "
                      f"{1000 * result['cpu'] / args.frames:6.1f} ms CPU/frame  "
                      f"peak +{result['peak_mb']:7.1f} MB")
            print(f"  ratio frame by frame / whole: CPU time {ours['cpu'] / whole['cpu']:.2f}, "
                  f"peak memory {ours['peak_mb'] / max(whole['peak_mb'], 1e-9):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
