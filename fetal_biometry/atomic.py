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

import atexit
import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import pathlib
import re
import shutil
import struct
import tempfile
import zlib
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


#: The file that marks a folder as the output of one of the project's tools (:func:`mark`).
OUTPUT_MARKER = ".fetal-biometry-output.json"
#: Carried by every marker and every single-file output (:func:`signature`): a string that no
#: user's file holds, so an output is recognised by it and never by a common file name.
TOKEN = "fetal-biometry-output-5d0c1b7e3f7a4c2e9a612b8e0f4d9c37"
_SIGNATURE = re.compile(re.escape(TOKEN).encode() + rb" tool=([a-z_]+)")
_LOCKS: dict[pathlib.Path, int] = {}  # output folders this process holds, and their lock files


def signature(tool: str) -> str:
    """The text that marks an output of ``tool`` (in a marker, a JSON field, a PNG text chunk)."""
    return f"{TOKEN} tool={tool}"


def mark(folder: str | os.PathLike, tool: str) -> pathlib.Path:
    """Mark ``folder`` (made if missing) as an output of ``tool``; every folder writer calls
    this on its output (or on the staged folder that will become it) before writing into it."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / OUTPUT_MARKER, json.dumps({"output_of": signature(tool)}) + "\n")


def _owner(head: bytes) -> str | None:
    found = _SIGNATURE.search(head)
    return found.group(1).decode() if found else None


def folder_owner(folder: str | os.PathLike) -> str | None:
    """The tool whose marker ``folder`` holds, or None (no marker: not an output of ours)."""
    try:
        return _owner(pathlib.Path(folder, OUTPUT_MARKER).read_bytes()[:4096])
    except OSError:
        return None


def file_owner(path: str | os.PathLike) -> str | None:
    """The tool whose signature the file carries in its first 64 KiB, or None."""
    try:
        with open(path, "rb") as file:
            return _owner(file.read(65536))
    except OSError:
        return None


def signed_png(data: bytes, tool: str) -> bytes:
    """PNG ``data`` with a text chunk carrying ``tool``'s signature, right after IHDR."""
    text = b"Software\0" + signature(tool).encode()
    chunk = (struct.pack(">I", len(text)) + b"tEXt" + text
             + struct.pack(">I", zlib.crc32(b"tEXt" + text) & 0xFFFFFFFF))
    return data[:33] + chunk + data[33:]  # 8-byte signature + 25-byte IHDR chunk


def _check_inputs(out: pathlib.Path, inputs, option: str) -> None:
    target = out.resolve()
    for item in map(pathlib.Path, inputs):
        source = item.resolve()
        if target == source:
            raise OutputError(f"{out}: {option} is the input {item} itself; choose another path")
        if source in target.parents:
            raise OutputError(f"{out}: {option} lies inside the input {item}; choose a path outside it")
        if target in source.parents:
            raise OutputError(f"{out}: {option} holds the input {item}; writing there would "
                              "replace it; choose another folder")


def _lock(out: pathlib.Path, option: str) -> None:
    """Hold ``out`` for this process (a lock file beside it), or refuse: another writer has it."""
    target = out.resolve()
    if target in _LOCKS:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputError(f"{out}: {option} is being written by another run right now (pid "
                              f"{holder}); wait for it to end, or choose another folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its holder removed while this one waited for it
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _LOCKS[target] = fd
    atexit.register(release, target)


def release(out: str | os.PathLike) -> None:
    """Let go of the output folder ``out`` claimed by this process (done at exit anyway)."""
    target = pathlib.Path(out).resolve()
    fd = _LOCKS.pop(target, None)
    if fd is not None:
        pathlib.Path(target.parent, f".{target.name}.lock").unlink(missing_ok=True)
        os.close(fd)


def claim_output(out: str | os.PathLike, tool: str, inputs=(), overwrite: bool = False,
                 option: str = "the output folder") -> list[pathlib.Path]:
    """Check that ``tool`` may write the folder ``out``, hold it, and remove leftovers of killed writers.

    Refused (:class:`OutputError`): ``out`` being one of ``inputs``, inside one, or holding one;
    ``out`` being a file; a non-empty folder without the marker of ``tool`` (:func:`mark`): not
    made by this tool, so never replaced, even with ``overwrite`` (a folder of another tool is
    named); a folder with the marker unless ``overwrite``; and a folder another process is
    writing right now (a lock per folder, held by this process until :func:`release` or its
    exit). An empty or missing folder is fine. Nothing is deleted here but the hidden staging
    leftovers of dead writers beside and inside ``out``, which are returned so that the
    caller can say so. The caller then marks the folder it writes (:func:`mark`).

    Parameters
    ----------
    out : path
    tool : str
        The writing tool's name, recorded in the marker (e.g. ``'infer'``).
    inputs : iterable of path
        Files and folders the tool reads.
    overwrite : bool
        Whether an earlier output of this tool may be replaced.
    option : str
        How the user named ``out`` (e.g. ``--out``), for the messages.
    """
    out = pathlib.Path(out)
    _check_inputs(out, inputs, option)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: {option} is a file, not a folder; choose another path")
    held = out.resolve() in _LOCKS
    _lock(out, option)
    try:
        return _claim(out, tool, overwrite, option)
    except OutputError:
        if not held:
            release(out)  # a refused claim holds nothing
        raise


def _claim(out: pathlib.Path, tool: str, overwrite: bool, option: str) -> list[pathlib.Path]:
    target = out.resolve()
    removed = remove_leftovers(target.parent, staged_prefixes(target))
    if not out.is_dir() or not any(out.iterdir()):
        return removed
    owner = folder_owner(out)
    if owner is None:
        raise OutputError(f"{out}: {option} is a folder of other files (not made by this tool: no "
                          "output marker of this project); it is never replaced: choose another "
                          "folder or empty it yourself")
    if owner != tool:
        raise OutputError(f"{out}: {option} holds the output of tools/{owner}.py; {tool} never "
                          "replaces it: choose another folder")
    if not overwrite:
        raise OutputError(f"{out}: {option} holds an earlier output of this tool; pass --overwrite "
                          "to replace it, or choose another folder")
    return removed + _remove_staged_inside(out)


_STAGED = re.compile(r"^\..+\.(?:tmp|old)-(\d+)")  # what staged_file / staged_dir / replace leave


def _remove_staged_inside(folder: pathlib.Path) -> list[pathlib.Path]:
    """Remove the staged files of dead writers inside ``folder``; returns them."""
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _STAGED.match(entry.name)
        if match and not writer_alive(int(match.group(1))):
            _remove(entry)
            removed.append(entry)
    return removed


def claim_file(path: str | os.PathLike, tool: str, inputs=(), option: str = "the output file") -> pathlib.Path:
    """Check that ``tool`` may write the single file ``path`` (a PNG, a JSON, a table).

    Refused (:class:`OutputError`): ``path`` being, inside or holding one of ``inputs``; a
    folder; an existing file that does not carry ``tool``'s signature (:func:`signature`):
    a user's file is never replaced. The writer puts the signature into what it writes
    (:func:`signed_png`, a JSON field ``output_of``, a comment line).
    """
    path = pathlib.Path(path)
    _check_inputs(path, inputs, option)
    if path.is_dir():
        raise OutputError(f"{path}: {option} is a folder; name a file")
    if path.exists() and file_owner(path) != tool:
        owner = file_owner(path)
        raise OutputError(f"{path}: {option} exists and was not written by {tool}"
                          + (f" (it is an output of tools/{owner}.py)" if owner else "")
                          + "; it is never replaced: choose another name")
    remove_leftovers(path.resolve().parent, staged_prefixes(path.resolve()))
    return path
