"""Caffe ``Datum`` records in LMDB, the way Caffe's Data layer reads them.

An LMDB is written into a temporary folder beside its destination and renamed into place only
when complete (:mod:`fetal_biometry.atomic`), so a killed run leaves the previous LMDB intact.
The memory map grows as needed: no ``MDB_MAP_FULL`` failure, whatever the data size.

Record values are serialised ``caffe_pb2.Datum``: uint8 arrays go into ``data`` (bytes, as
``convert_imageset`` writes them), anything else into ``float_data``. Keys are byte strings;
Caffe reads records in key order.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
from typing import Iterable, Iterator, Sequence

import lmdb
import numpy as np

from fetal_biometry import atomic
from fetal_biometry.caffe_env import proto

_INITIAL_MAP_SIZE = 64 << 20
_BATCH = 1000  # records per transaction


def to_datum(array: np.ndarray, label: int = 0):
    """Wrap a (C, H, W) array as a Datum: uint8 as bytes, other dtypes as float_data."""
    if array.ndim != 3:
        raise ValueError(f"a Datum holds a (C, H, W) array, got shape {array.shape}")
    channels, height, width = array.shape
    datum = proto().Datum(channels=channels, height=height, width=width, label=int(label))
    if array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    else:
        datum.float_data.extend(np.asarray(array, np.float32).ravel().tolist())
    return datum


def from_datum(datum) -> tuple[np.ndarray, int]:
    """Inverse of :func:`to_datum`: the (C, H, W) array and the label."""
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        array = np.frombuffer(datum.data, np.uint8).reshape(shape)
    else:
        array = np.asarray(datum.float_data, np.float32).reshape(shape)
    return array, datum.label


def write(path: str | os.PathLike, records: Iterable[tuple[bytes, bytes]]) -> int:
    """Write ``(key, value)`` pairs into a new LMDB at ``path``, atomically.

    Returns the number of records. Whatever was at ``path`` stays untouched until the new LMDB
    is complete; on any error (including a bad record) it stays for good.
    """
    count = 0
    with atomic.staged_dir(path) as tmp:
        env = lmdb.open(str(tmp), map_size=_INITIAL_MAP_SIZE, subdir=True, lock=True)
        try:
            for batch in _batches(records, _BATCH):
                _put_batch(env, batch)
                count += len(batch)
            env.sync()
        finally:
            env.close()
    return count


def write_parallel(paths: Sequence[str | os.PathLike],
                   records: Iterable[tuple[bytes, Sequence[bytes]]]) -> int:
    """Write ``(key, (value_1, .., value_n))`` into n new LMDBs at ``paths`` in one pass, the
    same keys in each (an image LMDB and its label LMDB, read in step by two Data layers).

    Atomic per LMDB, as :func:`write`; returns the number of records.
    """
    count = 0
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic.staged_dir(path)) for path in paths]
        envs = [lmdb.open(str(tmp), map_size=_INITIAL_MAP_SIZE, subdir=True, lock=True) for tmp in tmps]
        try:
            for batch in _batches(records, _BATCH):
                for index, env in enumerate(envs):
                    _put_batch(env, [(key, values[index]) for key, values in batch])
                count += len(batch)
            for env in envs:
                env.sync()
        finally:
            for env in envs:
                env.close()
    return count


def _batches(records: Iterable, size: int) -> Iterator[list]:
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _put_batch(env: lmdb.Environment, batch: list[tuple[bytes, bytes]]) -> None:
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            # The transaction was aborted; a larger map makes the retry fit.
            env.set_mapsize(env.info()["map_size"] * 2)


def read(path: str | os.PathLike) -> Iterator[tuple[bytes, bytes]]:
    """Iterate over ``(key, value)`` pairs of an LMDB in key order."""
    path = pathlib.Path(path)
    if not (path / "data.mdb").is_file():
        raise FileNotFoundError(f"{path}: not an LMDB (no data.mdb)")
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            yield from txn.cursor()
    finally:
        env.close()


def count(path: str | os.PathLike) -> int:
    """Number of records in an LMDB."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()
