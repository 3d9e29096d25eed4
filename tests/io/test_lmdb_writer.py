"""LMDB records: round trip through Caffe's Data layer, atomic replacement, map growth."""
import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.io import lmdb_writer
from fetal_biometry.nets import spec as nets


def _records(arrays, labels):
    for index, (array, label) in enumerate(zip(arrays, labels)):
        yield f"{index:08d}".encode(), lmdb_writer.to_datum(array, label).SerializeToString()


def test_uint8_and_float_records_read_back_through_caffe_data_layer(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 3, 5, 4), dtype=np.uint8)
    floats = rng.standard_normal((6, 2, 5, 4)).astype(np.float32)
    lmdb_writer.write(tmp_path / "u8", _records(images, range(6)))
    lmdb_writer.write(tmp_path / "f32", _records(floats, range(6)))
    n = caffe().NetSpec()
    L = caffe().layers
    n.u8, n.label = L.Data(source=str(tmp_path / "u8"), backend=1, batch_size=6, ntop=2)
    n.f32, n.label2 = L.Data(source=str(tmp_path / "f32"), backend=1, batch_size=6, ntop=2)
    net = caffe().Net(str(nets.save(n.to_proto(), tmp_path / "net.prototxt")), caffe().TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs["u8"].data, images)
    np.testing.assert_array_equal(net.blobs["f32"].data, floats)
    np.testing.assert_array_equal(net.blobs["label"].data, np.arange(6))


def test_map_grows_past_its_initial_size(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_writer, "_INITIAL_MAP_SIZE", 1 << 16)
    big = np.zeros((1, 100, 100), np.uint8)
    count = lmdb_writer.write(tmp_path / "db", _records([big] * 200, [0] * 200))
    assert count == lmdb_writer.count(tmp_path / "db") == 200


def test_a_failure_midway_leaves_the_previous_lmdb_intact(tmp_path):
    good = np.ones((2, 1, 2, 2), np.uint8)
    lmdb_writer.write(tmp_path / "db", _records(good, [1, 2]))

    def broken():
        yield from _records(good, [3, 4])
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        lmdb_writer.write(tmp_path / "db", broken())
    labels = [lmdb_writer.from_datum(_parse(v))[1] for _, v in lmdb_writer.read(tmp_path / "db")]
    assert labels == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]  # no temporary folder left


def _parse(value):
    from fetal_biometry.caffe_env import proto
    datum = proto().Datum()
    datum.ParseFromString(value)
    return datum

def test_a_killed_writer_leaves_the_previous_lmdb_intact(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    good = np.ones((3, 1, 2, 2), np.uint8)
    lmdb_writer.write(tmp_path / "db", _records(good, [1, 2, 3]))
    before = (tmp_path / "db" / "data.mdb").read_bytes()
    code = ("import sys, time, numpy as np; from fetal_biometry import atomic; from fetal_biometry.io import lmdb_writer\n"
            "def records():\n"
            "    for i in range(10**6):\n"
            "        yield b'%08d' % i, lmdb_writer.to_datum(np.zeros((1, 64, 64), np.uint8), 0).SerializeToString()\n"
            "        if i == 2000: print('writing', flush=True)\n"
            "        if i > 2000: time.sleep(0.001)\n"
            "lmdb_writer.write(sys.argv[1], records())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "db")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "db" / "data.mdb").read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "db"]
    assert all(name.startswith(".db.tmp-") for name in leftovers)  # only the hidden staging folder
