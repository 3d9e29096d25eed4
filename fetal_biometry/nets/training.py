"""Train a Caffe solver with pycaffe, the way a careful researcher wants it.

:func:`train` runs a solver prototxt and writes into one output folder::

    OUT/solver.prototxt             the solver as run (validation and snapshots driven from here)
    OUT/metrics.jsonl               one JSON object per iteration, one per validation
    OUT/training.png                loss, learning rate and validation accuracy against iterations
    OUT/snapshots/NAME_iter_N.caffemodel, .solverstate
    OUT/model.json, OUT/deploy.prototxt   when the net reads patch LMDBs: a model folder
                                    (fetal_biometry.nets.model) naming the last good snapshot

The driver (not Caffe's own loop) validates and snapshots, so that validation can report
per-class accuracy and a confusion matrix, and so that snapshots are complete pairs: Caffe
writes both files into a staging folder (``snapshots/.staging-PID``), they are checked, and the
weights then the state are renamed into place; a pair counts (:func:`latest_snapshot`) once its
state is there, so a kill never leaves a half-written snapshot that ``--resume`` would pick up,
and a later run removes a killed run's staging folder (saying so). Before each snapshot the free
space and the file size limit are checked, since Caffe aborts on a failed write: a full disk is
an error naming the folder, and the previous snapshot stays the good one.

Ctrl-C or SIGTERM snapshot and stop cleanly. Divergence stops training (:class:`fetal_biometry.nets.monitor.Divergence`): a
NaN loss, the loss staying far above its running minimum, or validation accuracy at chance
after warm-up; snapshots taken since it began are moved to ``snapshots/diverged/`` and the error
names the last good one. A used OUT is never trained into afresh by accident: that needs
``resume`` (continue) or ``overwrite`` (start again). Resuming from a ``.solverstate``
(checked by :func:`fetal_biometry.nets.checks.check_solverstate`, its weights found beside it)
continues exactly: the data layers are advanced past the records already seen (Caffe does not
store that position), so on CPU ``2N`` straight iterations and ``N`` + resume + ``N`` give the
same weights, for nets whose layers draw no random numbers during training (no dropout, no
random crops or mirrors).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import resource
import shutil
import signal
import sys
import time

from google.protobuf import text_format

from fetal_biometry import atomic
from fetal_biometry.caffe_env import proto, set_device
from fetal_biometry.nets import checks, monitor
from fetal_biometry.nets.solvers import snapshot_iteration

DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "Input", "DummyData"}
METRICS = "metrics.jsonl"  # the run's loss and validation history, one JSON line each
TOOL = "train"  # the output marker of run folders (fetal_biometry.atomic.mark)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why and what to do."""


@dataclasses.dataclass
class Result:
    """What a :func:`train` call ended with."""

    iterations: int
    status: str  # "done", "interrupted"
    snapshot: pathlib.Path | None
    validation: dict | None


# ----------------------------------------------------------------------------- reading prototxt

def read_prototxt(path: str | os.PathLike, message_type):
    """Parse a text prototxt into ``message_type``, naming the file on any problem."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such file")
    try:
        return text_format.Parse(path.read_text(), message_type())
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise TrainingError(f"{path}: not a valid {message_type.__name__}: {err}") from err


def solver_nets(solver_param) -> tuple[str, list[str]]:
    """The train net path and the test net paths a solver names."""
    train = solver_param.train_net or solver_param.net
    if not train:
        raise TrainingError("the solver names no train_net (or net); inline nets are not supported")
    tests = list(solver_param.test_net) or ([solver_param.net] if solver_param.net else [])
    return train, tests


# ----------------------------------------------------------------------------- pre-checks

def precheck(solver_path: str | os.PathLike, state: str | os.PathLike | None = None) -> None:
    """Catch what would make Caffe abort the process (LOG(FATAL)) before handing it the solver.

    Checks, with the file and layer named in the error: that the net files parse, that every
    layer type is one the project's train nets use (no Python layer runs code, see
    :func:`fetal_biometry.nets.checks.check_layer_types`), that Data layers' LMDBs exist, and
    then builds the solver once in a child process (restoring ``state`` there when given), so shape mismatches and
    other fatal checks surface as an error here instead of killing the caller.
    """
    try:
        solver_param = checks.check_solver_file(solver_path)  # layer types, before Caffe
    except checks.CheckError as err:
        raise TrainingError(str(err)) from None
    train, tests = solver_nets(solver_param)
    for net_path in [train, *tests]:
        net = read_prototxt(net_path, proto().NetParameter)
        for layer in net.layer:
            where = f"{net_path}: layer {layer.name!r}"
            if layer.type == "Data":
                source = pathlib.Path(layer.data_param.source)
                if not (source / "data.mdb").is_file():
                    raise TrainingError(f"{where}: LMDB {source} not found (make it first, e.g. "
                                        "with tools/make_lmdb.py)")
    try:
        checks.solver_in_child(solver_path, state)
    except checks.CheckError as err:
        raise TrainingError(f"{solver_path}: Caffe rejects this solver or its nets: {err}") from None


# ----------------------------------------------------------------------------- the output folder

def _inputs(solver_path, solver_param) -> list[pathlib.Path]:
    """Files and folders training reads: the solver, its nets and their LMDBs."""
    train, tests = solver_nets(solver_param)
    paths = [pathlib.Path(solver_path), *map(pathlib.Path, [train, *tests])]
    for net_path in [train, *tests]:
        net = read_prototxt(net_path, proto().NetParameter)
        paths += [pathlib.Path(l.data_param.source) for l in net.layer if l.type == "Data"]
    return paths


def _used(out: pathlib.Path) -> bool:
    """Whether ``out`` holds an earlier run's metrics or snapshots."""
    metrics = out / METRICS
    return (metrics.is_file() and metrics.stat().st_size > 0) or \
        any(pathlib.Path(out, "snapshots").glob("*.caffemodel"))


def _claim(out: pathlib.Path, solver_path, solver_param, resume, overwrite: bool) -> list[pathlib.Path]:
    """Refuse an OUT that must not be trained into; clear a killed run's leftovers (returned)."""
    if resume is not None and overwrite:
        raise TrainingError("--resume continues the run in --out, --overwrite deletes it: give one")
    try:
        # A run folder, or a new or empty one; held by this process (a second training is refused).
        removed = atomic.claim_output(out, TOOL, _inputs(solver_path, solver_param),
                                      overwrite=True, option="--out")
    except atomic.OutputError as err:
        raise TrainingError(str(err)) from None
    if _used(out) and resume is None and not overwrite:
        last = latest_snapshot(out)
        raise TrainingError(f"{out}: holds an earlier run" + (f" (snapshot {last.name})" if last else "")
                            + "; continue it with --resume last, start it afresh with --overwrite "
                            "(deletes it), or choose another --out")
    snapshots = out / "snapshots"
    if overwrite and out.is_dir():
        shutil.rmtree(out)  # a run folder: claim_output found this tool's marker in it
        return removed
    files = (METRICS, "solver.prototxt", "training.png")
    removed += atomic.remove_leftovers(out, tuple(p for f in files for p in atomic.staged_prefixes(f)))
    removed += atomic.remove_leftovers(snapshots, (".staging-", ".staging"))
    return removed


# ----------------------------------------------------------------------------- the driver

def _runtime_solver(solver_param, staging: pathlib.Path, gpu: int | None, max_iter: int | None):
    """The solver as this driver runs it: Caffe's own testing, display and snapshots off."""
    run = proto().SolverParameter()
    run.CopyFrom(solver_param)
    # Caffe insists on test_interval > 0 when test nets exist; past max_iter it never tests.
    run.test_interval = 2**31 - 1
    run.test_initialization = False
    run.display = 0
    run.snapshot = 0
    name = pathlib.Path(solver_param.snapshot_prefix or "snapshot").name
    run.snapshot_prefix = str((staging / name).resolve())
    run.solver_mode = proto().SolverParameter.CPU if gpu is None else proto().SolverParameter.GPU
    if max_iter is not None:
        run.max_iter = max_iter
    return run


def _data_layer_end(net_param) -> str | None:
    """Name of the last of the leading data layers, or None when the net reads no records."""
    last = None
    for layer in net_param.layer:
        if layer.type not in DATA_LAYERS:
            break
        last = layer.name
    reads = any(l.type in DATA_LAYERS - {"Input", "DummyData"} for l in net_param.layer)
    return last if reads else None


def _skip_records(net, net_param, iterations: int) -> None:
    """Advance the data layers by ``iterations`` batches, as if training had read them."""
    end = _data_layer_end(net_param)
    if end is None:
        return
    for _ in range(iterations):
        net.forward(end=end)


class _Stop:
    """Turns SIGINT/SIGTERM into a flag the loop checks between iterations."""

    def __init__(self):
        self.signal: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for signum, handler in self._old.items():
            signal.signal(signum, handler)


class SnapshotError(TrainingError):
    """A snapshot could not be written whole (disk full, file size limit); the previous stays."""


def _room(folder: pathlib.Path, solver) -> None:
    """Refuse a snapshot that cannot fit: Caffe aborts the process on a failed write."""
    values = sum(b.count for blobs in solver.net.params.values() for b in blobs)
    state_bytes = 2 * 4 * values + (1 << 20)  # up to two history blobs per parameter
    need = 4 * values + 2 * state_bytes  # weights, Caffe's state, its rewritten copy
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SnapshotError(f"{folder}: disk full: {free / 1e6:.1f} MB free, a snapshot needs about "
                            f"{need / 1e6:.1f} MB; free some space, then resume")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < state_bytes:
        raise SnapshotError(f"{folder}: the file size limit (ulimit -f) is {limit:,} bytes, a "
                            f"snapshot file needs up to {state_bytes:,}; raise it, then resume")


def _verify(solver, solver_param, weights_file: pathlib.Path, state_file: pathlib.Path):
    """The staged pair, checked whole; returns the parsed state."""
    weights = checks.read_weights(weights_file)
    written = sum(len(b.data) + len(b.double_data) for l in weights.layer for b in l.blobs)
    values = sum(b.count for blobs in solver.net.params.values() for b in blobs)
    if written != values:
        raise checks.CheckError(f"{weights_file}: {written:,} values written, the net has {values:,}")
    state = checks.read_solverstate(state_file)
    owned = {b.data.__array_interface__["data"][0] for blobs in solver.net.params.values() for b in blobs}
    expected = len(owned) * checks.history_per_parameter(solver_param)
    if len(state.history) != expected or state.iter != solver.iter:
        raise checks.CheckError(f"{state_file}: {len(state.history)} history blobs at iteration "
                                f"{state.iter}, expected {expected} at {solver.iter}")
    return state


def snapshot(solver, solver_param, out: pathlib.Path, staging: pathlib.Path) -> pathlib.Path:
    """Write a complete snapshot pair into ``OUT/snapshots``; returns its ``.solverstate``.

    Caffe writes both files into ``staging`` (the runtime solver's ``snapshot_prefix``); once
    checked, the weights are renamed into place, then the state, its ``learned_net`` rewritten
    to the final weights, is written beside them (atomically): the state's arrival completes
    the pair. Raises :class:`SnapshotError` with nothing new in ``OUT/snapshots`` otherwise.
    """
    final_dir = out / "snapshots"
    staging.mkdir(parents=True, exist_ok=True)
    for old in staging.iterdir():  # what a failed earlier attempt of this run left
        old.unlink()
    _room(final_dir, solver)
    try:
        solver.snapshot()
        weights_file = next(staging.glob("*.caffemodel"))
        state_file = next(staging.glob("*.solverstate"))
        state = _verify(solver, solver_param, weights_file, state_file)
        final_weights = final_dir / weights_file.name
        state.learned_net = str(final_weights.resolve())
        os.replace(weights_file, final_weights)
        final_state = atomic.write_bytes(final_dir / state_file.name, state.SerializeToString())
    except (OSError, StopIteration, checks.CheckError) as err:
        for left in staging.iterdir():
            left.unlink()
        raise SnapshotError(f"{final_dir}: the snapshot at iteration {solver.iter} could not be "
                            f"written whole ({err})") from None
    state_file.unlink()
    return final_state


def latest_snapshot(out: str | os.PathLike) -> pathlib.Path | None:
    """The ``.solverstate`` with the highest iteration in ``OUT/snapshots`` whose weights are there too."""
    states = [p for p in pathlib.Path(out, "snapshots").glob("*_iter_*.solverstate")
              if snapshot_iteration(p) is not None and p.with_suffix(".caffemodel").is_file()]
    return max(states, key=snapshot_iteration, default=None)


def last_state(out: str | os.PathLike) -> pathlib.Path:
    """The state ``--resume last`` continues from: the newest snapshot, whole.

    Where the newest iteration's state or weights are missing (a kill while snapshotting, a
    file deleted), that is an error, never a silent resume from an older snapshot; a damaged
    newest state is named when it is checked (:func:`fetal_biometry.nets.checks.check_solverstate`).
    """
    folder = pathlib.Path(out, "snapshots")
    iterations = {snapshot_iteration(p) for p in folder.glob("*_iter_*.*")
                  if p.suffix in (".solverstate", ".caffemodel")} - {None}
    if not iterations:
        raise TrainingError(f"--resume last: no snapshot in {folder}")
    state = latest_snapshot(out)
    if state is None or snapshot_iteration(state) != max(iterations):
        raise TrainingError(f"--resume last: the newest snapshot in {folder} (iteration "
                            f"{max(iterations)}) is incomplete, its .solverstate or .caffemodel "
                            "missing; resume from an earlier one by name (--resume PATH) or start "
                            "afresh (--overwrite)")
    return state


def _set_aside(out: pathlib.Path, after: int) -> list[pathlib.Path]:
    """Move snapshots of iterations after ``after`` into ``OUT/snapshots/diverged``."""
    folder = out / "snapshots"
    moved = []
    for path in sorted(folder.glob("*_iter_*.*")):
        if (iteration := snapshot_iteration(path)) is not None and iteration > after:
            (folder / "diverged").mkdir(exist_ok=True)
            os.replace(path, folder / "diverged" / path.name)
            moved.append(path)
    return moved


def _diverged(out: pathlib.Path, reason: str, onset: int) -> TrainingError:
    moved = _set_aside(out, onset)
    good = latest_snapshot(out)
    return TrainingError(
        f"training diverged: {reason}; lower base_lr. "
        + (f"Last good snapshot: {good}" if good else "No good snapshot was taken.")
        + (f" ({len(moved)} file(s) of later snapshots moved to {out / 'snapshots' / 'diverged'})"
           if moved else ""))


def _checked_state(resume, solver_param):
    """The state to resume from, checked, its weights resolved (nothing is written)."""
    try:
        return checks.check_solverstate(resume, solver_param)
    except checks.CheckError as err:
        raise TrainingError(f"--resume: {err}") from None


def _state_file(resume, state, staging: pathlib.Path) -> pathlib.Path:
    """``resume`` itself, or a copy of it naming the weights found beside it (never rewritten)."""
    if checks.read_solverstate(resume).learned_net == state.learned_net:
        return pathlib.Path(resume)
    return atomic.write_bytes(staging / "resume.solverstate", state.SerializeToString())


def train(solver_path: str | os.PathLike, out: str | os.PathLike, *, gpu: int | None = None,
          max_iter: int | None = None, validate_every: int | None = None,
          snapshot_every: int | None = None, resume: str | os.PathLike | None = None,
          overwrite: bool = False, divergence_ratio: float = 3.0, progress: bool = True,
          plot: bool = True, label: str = "train", position: int | None = None) -> Result:
    """Train the solver at ``solver_path``, writing everything under ``out``.

    Parameters
    ----------
    solver_path : path
        A solver prototxt (e.g. from :mod:`fetal_biometry.nets.solvers`).
    out : path
        Output folder (metrics, plots, snapshots). One that holds an earlier run needs
        ``resume`` or ``overwrite``; a folder of other files, or one holding the solver, its nets
        or its LMDBs, is refused.
    gpu : int, optional
        GPU device id; CPU when None.
    max_iter : int, optional
        Overrides the solver's ``max_iter``.
    validate_every, snapshot_every : int, optional
        Override the solver's ``test_interval`` and ``snapshot``; 0 turns either off. A final
        validation and snapshot always happen at the end.
    resume : path, optional
        A ``.solverstate`` to continue from (its weights are looked for beside it).
    overwrite : bool
        Delete the earlier run in ``out`` and start afresh.
    divergence_ratio : float
        Stop when the windowed mean loss stays above this multiple of its lowest value
        (:class:`~fetal_biometry.nets.monitor.Divergence`).
    progress, plot : bool
        Show a progress bar; write ``training.png``.
    label, position : str, int, optional
        The progress bar's label and line (several trainings side by side, one line each).
    """
    from tqdm import tqdm

    out = pathlib.Path(out)
    original = read_prototxt(solver_path, proto().SolverParameter)
    removed = _claim(out, solver_path, original, resume, overwrite)
    try:  # the folder is held until this run ends (a second writer is refused meanwhile)
        state = None if resume is None else _checked_state(resume, original)
        for path in removed:
            print(f"train: removed {path}, left by an interrupted run", file=sys.stderr)
        staging = out / "snapshots" / f".staging-{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        atomic.mark(out, TOOL)
        metrics_path = out / METRICS
        if not metrics_path.is_file():
            atomic.write_text(metrics_path, "")
        run = _runtime_solver(original, staging, gpu, max_iter)
        run_path = atomic.write_text(out / "solver.prototxt", text_format.MessageToString(run))
        state_path = None if state is None else _state_file(resume, state, staging)
        precheck(run_path, state_path)
        validate_every = original.test_interval if validate_every is None else validate_every
        snapshot_every = original.snapshot if snapshot_every is None else snapshot_every
        train_path, test_paths = solver_nets(original)
        train_param = read_prototxt(train_path, proto().NetParameter)
        test_params = [read_prototxt(p, proto().NetParameter) for p in test_paths]
        test_iters = list(original.test_iter) or [1] * len(test_params)

        set_device(gpu)
        solver = checks.solver(run_path)
        if state_path is not None:
            solver.restore(str(state_path))
            _skip_records(solver.net, train_param, solver.iter)
        history = _read_history(metrics_path, solver.iter)
        watch = monitor.Divergence.for_run(run.max_iter, divergence_ratio, start=solver.iter)
        for earlier in history:  # a resumed run carries on with its own loss history
            if earlier.get("phase") != "val":
                watch.loss(earlier["iter"], earlier["loss"])
        last_good = latest_snapshot(out)
        validation = None
        status = "done"
        last_plot = time.monotonic()
        # In a log file (CI, nohup) a redraw every 30 s instead of several per second.
        bar = tqdm(total=run.max_iter, initial=solver.iter, disable=not progress, unit="it",
                   dynamic_ncols=True, desc=label, position=position,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        try:
            with _Stop() as stop, open(metrics_path, "a") as metrics:
                while solver.iter < run.max_iter:
                    start = time.perf_counter()
                    solver.step(1)
                    loss = monitor.loss(solver.net)
                    record = {"iter": solver.iter, "loss": loss, "lr": _learning_rate(solver, run),
                              "seconds": time.perf_counter() - start}
                    history.append(record)
                    metrics.write(json.dumps(record) + "\n")
                    reason = watch.loss(solver.iter, loss)
                    if reason:
                        raise _diverged(out, reason, watch.onset)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", lr=f"{record['lr']:.3g}", refresh=False)
                    done = solver.iter >= run.max_iter
                    if test_params and (done or (validate_every and solver.iter % validate_every == 0)):
                        validation = _validate_all(solver, test_params, test_iters)
                        entry = {"iter": solver.iter, "phase": "val", **validation}
                        history.append(entry)
                        metrics.write(json.dumps(entry) + "\n")
                        metrics.flush()
                        bar.write(_describe(entry))
                        reason = watch.validation(solver.iter, validation)
                        if reason:
                            raise _diverged(out, reason, watch.onset)
                        # Redraw during long runs, but at most once a minute: a plot costs ~0.5 s.
                        if plot and time.monotonic() - last_plot > 60:
                            _write_plot(history, out / "training.png")
                            last_plot = time.monotonic()
                    if done or stop.signal or (snapshot_every and solver.iter % snapshot_every == 0):
                        metrics.flush()
                        last_good = snapshot(solver, run, out, staging)
                    if stop.signal:
                        status = "interrupted"
                        bar.write(f"stopped by signal {stop.signal} at iteration {solver.iter}; "
                                  f"resume with --resume {last_good}")
                        break
        except SnapshotError as err:
            raise TrainingError(f"{err}. " + _last_good(last_good)) from None
        except OSError as err:
            if err.errno not in _DISK_FULL:
                raise
            raise TrainingError(f"{out}: cannot write ({err.strerror}): the disk is full or a file size "
                                "limit was reached. " + _last_good(last_good)) from None
        finally:
            bar.close()
            shutil.rmtree(staging, ignore_errors=True)
            if plot and history:
                _plot_if_room(history, out / "training.png")
        _write_model(out, solver_path, train_param, solver.iter, last_good, validation)
        return Result(solver.iter, status, last_good, validation)
    finally:
        atomic.release(out)


def trained(solver_path: str | os.PathLike, out: str | os.PathLike, retrain: bool = False,
            **kwargs) -> pathlib.Path:
    """Final weights of ``solver_path`` in ``out``: reused when an earlier run finished, its last
    snapshot resumed when one was interrupted, trained afresh otherwise or with ``retrain``.
    Raises :class:`TrainingError` when a signal stops the training first: weights of an
    unfinished run are not final weights.

    ``kwargs`` go to :func:`train` (``max_iter`` overrides the solver's, as there).
    """
    max_iter = kwargs.get("max_iter") or read_prototxt(solver_path, proto().SolverParameter).max_iter
    state = latest_snapshot(out)
    done = None if state is None else snapshot_iteration(state)
    if done == max_iter and not retrain:
        print(f"reusing {state.with_suffix('.caffemodel')} (retrain to train again)")
    elif done is not None and not retrain and done < max_iter:
        print(f"resuming {state} (interrupted at iteration {done} of {max_iter})")
        state = train(solver_path, out, resume=state, **kwargs).snapshot
    else:
        state = train(solver_path, out, overwrite=True, **kwargs).snapshot
    if (done := snapshot_iteration(state)) < max_iter:
        raise TrainingError(f"{out}: training stopped by a signal at iteration {done} "
                            f"of {max_iter}; run the same command again to resume from {state}")
    return state.with_suffix(".caffemodel")


def _last_good(state: pathlib.Path | None) -> str:
    return f"The last good snapshot is {state}." if state else "No snapshot was taken."


def _plot_if_room(history: list[dict], path: pathlib.Path) -> None:
    try:
        _write_plot(history, path)
    except OSError as err:
        if err.errno not in _DISK_FULL:
            raise
        print(f"train: {path} not drawn: {err.strerror}", file=sys.stderr)


def _write_model(out: pathlib.Path, solver_path, train_param, iterations: int,
                 state: pathlib.Path | None, validation: dict | None) -> None:
    """Make the run folder a model folder when the net learnt from patch LMDBs or segmenter records."""
    from fetal_biometry.nets import model

    found = model.records_manifest(train_param)
    if found is None or state is None:
        return
    summary = {k: v for k, v in (validation or {}).items() if k != "confusion"}
    model.write(out, found[0], state.with_suffix(".caffemodel"),
                {"solver": str(solver_path), "iterations": iterations, "validation": summary},
                train_param)


def _validate_all(solver, test_params, test_iters) -> dict:
    # Test nets share the train net's weights (Caffe's ShareTrainedLayersWith), as in Solver::Test.
    results = {}
    for index, (net, param, iters) in enumerate(zip(solver.test_nets, test_params, test_iters)):
        net.share_with(solver.net)
        result = monitor.validate(net, param, iters)
        results.update(result if index == 0 else {f"test{index}/{k}": v for k, v in result.items()})
    return results


def _describe(entry: dict) -> str:
    scalars = {k: v for k, v in entry.items() if isinstance(v, float)}
    return f"validation @ {entry['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())


def _learning_rate(solver, run) -> float:
    # SGD-family solvers expose Caffe's own GetLearningRate(); others fall back to base_lr.
    return float(getattr(solver, "lr", run.base_lr))


def _read_history(path: pathlib.Path, upto: int) -> list[dict]:
    """Earlier metrics of a resumed run, cut at the iteration it resumes from."""
    if upto == 0 or not path.is_file():
        atomic.write_text(path, "")
        return []
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    history = [h for h in history if h["iter"] <= upto]
    atomic.write_text(path, "".join(json.dumps(h) + "\n" for h in history))
    return history


def _write_plot(history: list[dict], path: pathlib.Path) -> pathlib.Path:
    """Write :func:`fetal_biometry.figures.training_plot` of ``history`` to the PNG ``path``."""
    from fetal_biometry import figures

    return atomic.write_bytes(path, figures.figure_png(figures.training_plot(history), dpi=100))
