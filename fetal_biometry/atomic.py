"""Write aside, then rename: outputs appear whole or not at all.

Every file or folder the project produces (prototxt, LMDB, dataset, snapshot, manifest) goes
through here, so a crash, a kill or a bad input in the middle never leaves a half-written
output under the final name, and never destroys a good one that was there before.

Staged names carry the writer's process id (``.NAME.tmp-PID-XXXX``, ``.NAME.old-PID``), so
that a later run can tell the leftovers of a killed writer (pid gone) from the work of one
still running, and remove them (:func:`remove_leftovers`, called by :func:`claim_output`).
:func:`claim_output` is the guard every tool that writes a folder runs first: it never lets a
tool replace one of its inputs, nor a folder it did not make.
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
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=_staged_prefix(dst), dir=dst.parent))
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
    fd, name = tempfile.mkstemp(prefix=_staged_prefix(dst), dir=dst.parent)
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


def _staged_prefix(dst: pathlib.Path) -> str:
    return f".{dst.name}.tmp-{os.getpid()}-"


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


# ----------------------------------------------------------------------------- guarding outputs

class OutputError(ValueError):
    """An output folder that must not be written; the message names it and says what to do."""


def writer_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def leftover_pid(name: str, prefix: str) -> int | None:
    """The writer pid in a staged name ``PREFIX<pid>[-...]``; None for names of older versions."""
    digits = name[len(prefix):].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def remove_leftovers(folder: str | os.PathLike, prefixes: tuple[str, ...]) -> list[pathlib.Path]:
    """Remove entries of ``folder`` named ``PREFIX...`` whose writer is dead; returns them.

    A staged name without a pid (written by an older version) counts as dead too: its writer
    cannot be asked, and no current writer makes such names.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        pid = leftover_pid(entry.name, prefix)
        if pid is not None and writer_alive(pid):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def staged_prefixes(path: str | os.PathLike) -> tuple[str, str]:
    """The name prefixes of what :func:`staged_dir`, :func:`staged_file` and :func:`replace` leave beside ``path``."""
    name = pathlib.Path(path).name
    return f".{name}.tmp-", f".{name}.old-"


def claim_output(out: str | os.PathLike, marker: str, inputs=(), overwrite: bool = False,
                 option: str = "the output folder") -> list[pathlib.Path]:
    """Check that a tool may write the folder ``out``; remove leftovers of killed writers.

    Refused (:class:`OutputError`): ``out`` being one of ``inputs``, inside one, or holding one;
    ``out`` being a file; a non-empty folder without ``marker`` (a file every output of this tool
    holds, e.g. ``manifest.json``): not made by this tool, so never replaced, even with
    ``overwrite``; and a folder with ``marker`` unless ``overwrite``. An empty or missing folder
    is fine. Nothing is deleted here but the hidden staging leftovers of dead writers beside
    ``out``, which are returned so that the caller can say so.

    Parameters
    ----------
    out : path
    marker : str
        File name that marks a folder as made by this tool.
    inputs : iterable of path
        Files and folders the tool reads.
    overwrite : bool
        Whether an earlier output of this tool may be replaced.
    option : str
        How the user named ``out`` (e.g. ``--out``), for the messages.
    """
    out = pathlib.Path(out)
    target = out.resolve()
    for item in map(pathlib.Path, inputs):
        source = item.resolve()
        if target == source:
            raise OutputError(f"{out}: {option} is the input {item} itself; choose another folder")
        if source in target.parents:
            raise OutputError(f"{out}: {option} lies inside the input {item}; choose a folder outside it")
        if target in source.parents:
            raise OutputError(f"{out}: {option} holds the input {item}; writing there would "
                              "replace it; choose another folder")
    removed = remove_leftovers(target.parent, staged_prefixes(target))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: {option} is a file, not a folder; choose another path")
    if not out.is_dir() or not any(out.iterdir()):
        return removed
    if not (out / marker).is_file():
        raise OutputError(f"{out}: {option} is a folder of other files (no {marker}: not made by "
                          "this tool); it is never replaced: choose another folder or empty it yourself")
    if not overwrite:
        raise OutputError(f"{out}: {option} holds an earlier output of this tool; pass --overwrite "
                          "to replace it, or choose another folder")
    return removed
