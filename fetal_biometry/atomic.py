"""Write aside, then rename: outputs appear whole or not at all.

Every file or folder the project produces (prototxt, LMDB, dataset, snapshot, manifest) goes
through here, so a crash, a kill or a bad input in the middle never leaves a half-written
output under the final name, and never destroys a good one that was there before.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move ``src`` (file or folder) to ``dst``, replacing whatever ``dst`` was, atomically.

    Folders are swapped in one ``renameat2`` call where the kernel and file system allow it;
    elsewhere the old folder is renamed aside first, which leaves a window of two renames.
    """
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if src.is_file() or not dst.exists():
        os.replace(src, dst)
        return
    if _exchange(src, dst):
        _remove(src)  # src now holds the old dst
        return
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    os.replace(dst, old)
    os.replace(src, dst)
    _remove(old)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(dst: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a fresh temporary folder beside ``dst``; on success it replaces ``dst``.

    On any exception the temporary folder is deleted and ``dst`` is left as it was.
    """
    dst = pathlib.Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700 folders
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace(tmp, dst)


@contextlib.contextmanager
def staged_file(dst: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``dst``; on success it replaces ``dst``."""
    dst = pathlib.Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=dst.parent)
    # mkstemp makes 0600 files; give the result the mode a plain open() would have.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = pathlib.Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` atomically."""
    with staged_file(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically."""
    with staged_file(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)
