"""tools/gpu_check_data.py: the small LMDBs that travel with the GPU bundle."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np

from fetal_biometry.io import lmdb_writer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sources(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """MNIST-shaped and patch-shaped train/val LMDBs of 30 records each, keys in order."""
    rng = np.random.default_rng(3)
    for name, shape in (("mnist", (1, 28, 28)), ("fetal", (3, 48, 48))):
        for split in ("train", "val"):
            lmdb_writer.write(folder / name / f"{split}_lmdb",
                              ((b"%08d" % i, lmdb_writer.to_datum(rng.integers(0, 256, shape, np.uint8), i % 5)
                                .SerializeToString()) for i in range(30)))
    return folder / "mnist", folder / "fetal"


def _tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools/gpu_check_data.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_copies_the_first_records(tmp_path):
    mnist, fetal = _sources(tmp_path / "src")
    out = tmp_path / "small"
    counts = ("--mnist-train", 20, "--mnist-val", 10, "--fetal-train", 12, "--fetal-val", 4)
    proc = _tool("--mnist", mnist, "--fetal", fetal, "--out", out, *counts)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {name: entry["records"] for name, entry in manifest.items()} == {
        "mnist/train_lmdb": 20, "mnist/val_lmdb": 10, "fetal_channels/train_lmdb": 12, "fetal_channels/val_lmdb": 4}
    copied = list(lmdb_writer.read(out / "fetal_channels/train_lmdb"))
    assert copied == list(lmdb_writer.read(fetal / "train_lmdb"))[:12]
    again = _tool("--mnist", mnist, "--fetal", fetal, "--out", out, *counts)
    assert again.returncode == 1 and "--overwrite" in again.stderr, again.stderr


def test_short_or_missing_source_is_a_sentence_and_writes_nothing(tmp_path):
    mnist, fetal = _sources(tmp_path / "src")
    out = tmp_path / "small"
    proc = _tool("--mnist", mnist, "--fetal", fetal, "--out", out)  # defaults ask for 4000 digits
    assert proc.returncode == 1 and proc.stderr.startswith("gpu_check_data: error: "), proc.stderr
    assert "30 records, fewer than the 4000 asked for" in proc.stderr and not out.exists()
    proc = _tool("--mnist", tmp_path / "nowhere", "--fetal", fetal, "--out", out)
    assert proc.returncode == 1 and "nowhere/train_lmdb: not an LMDB" in proc.stderr and not out.exists()
