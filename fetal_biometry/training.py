"""Train a Caffe solver with pycaffe, the way a careful researcher wants it.

:func:`train` runs a solver prototxt and writes into one output folder::

    OUT/solver.prototxt             the solver as run (validation and snapshots driven from here)
    OUT/metrics.jsonl               one JSON object per iteration, one per validation
    OUT/training.png                loss, learning rate and validation accuracy against iterations
    OUT/snapshots/NAME_iter_N.caffemodel, .solverstate
    OUT/model.json, OUT/deploy.prototxt   when the net reads patch LMDBs: a model folder
                                    (fetal_biometry.model) naming the last good snapshot

The driver (not Caffe's own loop) validates and snapshots, so that validation can report
per-class accuracy and a confusion matrix, and so that snapshots are written aside and renamed
into place: a kill never leaves a half-written snapshot that ``--resume`` would pick up.
Ctrl-C or SIGTERM snapshot and stop cleanly; a NaN or exploding loss stops training with the
last good snapshot left as it was. Resuming from a ``.solverstate`` continues exactly: the data
layers are advanced past the records already seen (Caffe does not store that position), so on
CPU ``2N`` straight iterations and ``N`` + resume + ``N`` give the same weights, for nets whose
layers draw no random numbers during training (no dropout, no random crops or mirrors).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
from google.protobuf import text_format

from fetal_biometry import atomic
from fetal_biometry.caffe_env import caffe, proto, set_device

DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "Input", "DummyData"}


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
    except text_format.ParseError as err:
        raise TrainingError(f"{path}: not a valid {message_type.__name__}: {err}") from err


def solver_nets(solver_param) -> tuple[str, list[str]]:
    """The train net path and the test net paths a solver names."""
    train = solver_param.train_net or solver_param.net
    if not train:
        raise TrainingError("the solver names no train_net (or net); inline nets are not supported")
    tests = list(solver_param.test_net) or ([solver_param.net] if solver_param.net else [])
    return train, tests


# ----------------------------------------------------------------------------- pre-checks

def precheck(solver_path: str | os.PathLike) -> None:
    """Catch what would make Caffe abort the process (LOG(FATAL)) before handing it the solver.

    Checks, with the file and layer named in the error: that the net files parse, that every
    layer type is built into this Caffe, that Data layers' LMDBs exist, and then builds the solver
    once in a child process, so shape mismatches and other fatal checks surface as an error here
    instead of killing the caller.
    """
    solver_param = read_prototxt(solver_path, proto().SolverParameter)
    train, tests = solver_nets(solver_param)
    known = set(caffe().layer_type_list())
    for net_path in [train, *tests]:
        net = read_prototxt(net_path, proto().NetParameter)
        for layer in net.layer:
            where = f"{net_path}: layer {layer.name!r}"
            if layer.type not in known:
                raise TrainingError(f"{where}: type {layer.type!r} is not built into this Caffe")
            if layer.type == "Data":
                source = pathlib.Path(layer.data_param.source)
                if not (source / "data.mdb").is_file():
                    raise TrainingError(f"{where}: LMDB {source} not found (make it first, e.g. "
                                        "with tools/make_lmdb.py)")
    _build_in_child(solver_path)


def _build_in_child(solver_path: str | os.PathLike) -> None:
    code = "import caffe, sys; caffe.set_mode_cpu(); caffe.get_solver(sys.argv[1])"
    env = {**os.environ, "GLOG_minloglevel": "0", "GLOG_logtostderr": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(solver_path)], env=env,
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return
    raise TrainingError(f"{solver_path}: Caffe rejects this solver or its nets: "
                        + _fatal_summary(proc.stderr))


def _fatal_summary(log: str) -> str:
    """The glog fatal line, with the net file and layer Caffe was setting up when it died."""
    net_file = layer = fatal = None
    for line in log.splitlines():
        message = line.split("] ", 1)[-1]
        if " net from " in message and "file: " in message:
            net_file, layer = message.split("file: ", 1)[1].strip(), None
        elif message.startswith(("Creating Layer ", "Setting up ")):
            layer = message.split(" ", 2)[-1].strip()
        elif message.startswith("Network initialization done"):
            layer = None
        elif line.startswith("F") and fatal is None:
            fatal = message
    if fatal is None:
        lines = log.strip().splitlines()
        fatal = lines[-1] if lines else "the child process died without a message"
    where = ", ".join(filter(None, [net_file, layer and f"layer {layer!r}"]))
    return f"{where}: {fatal}" if where else fatal


# ----------------------------------------------------------------------------- the driver

def _runtime_solver(solver_param, out: pathlib.Path, gpu: int | None, max_iter: int | None):
    """The solver as this driver runs it: Caffe's own testing, display and snapshots off."""
    run = proto().SolverParameter()
    run.CopyFrom(solver_param)
    # Caffe insists on test_interval > 0 when test nets exist; past max_iter it never tests.
    run.test_interval = 2**31 - 1
    run.test_initialization = False
    run.display = 0
    run.snapshot = 0
    name = pathlib.Path(solver_param.snapshot_prefix or "snapshot").name
    run.snapshot_prefix = str((out / "snapshots" / ".staging" / name).resolve())
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


def _loss(net) -> float:
    weights = net.blob_loss_weights
    return float(sum(weights[name] * net.blobs[name].data.sum()
                     for name in net.outputs if weights.get(name)))


def validate(net, net_param, iterations: int) -> dict:
    """Run a test net ``iterations`` times: mean outputs, accuracy, per-class accuracy, confusion."""
    accuracy = next((l for l in net_param.layer if l.type == "Accuracy"), None)
    sums: dict[str, float] = {}
    confusion = None
    for _ in range(iterations):
        outputs = net.forward()
        for name, value in outputs.items():
            sums[name] = sums.get(name, 0.0) + float(np.mean(value))
        if accuracy is not None:
            scores, labels = (net.blobs[b].data for b in accuracy.bottom[:2])
            predicted = scores.argmax(axis=1).ravel()
            truth = labels.astype(int).ravel()
            classes = scores.shape[1]
            counts = np.bincount(truth * classes + predicted, minlength=classes * classes)
            confusion = counts.reshape(classes, classes) + (0 if confusion is None else confusion)
    result = {name: total / iterations for name, total in sums.items()}
    if confusion is not None:
        seen = confusion.sum(axis=1)
        result["per_class_accuracy"] = [float(c / s) if s else None
                                        for c, s in zip(np.diag(confusion), seen)]
        result["confusion"] = confusion.tolist()
    return result


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


def snapshot(solver, out: pathlib.Path) -> pathlib.Path:
    """Snapshot into a staging folder, then rename into ``OUT/snapshots``; returns the state file.

    The ``.solverstate`` names its ``.caffemodel`` by path (``learned_net``); it is rewritten to
    the final location so that the renamed pair restores.
    """
    staging = out / "snapshots" / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    solver.snapshot()
    final_dir = out / "snapshots"
    state_path = None
    for produced in sorted(staging.iterdir(), key=lambda p: p.suffix != ".caffemodel"):
        target = final_dir / produced.name
        if produced.suffix == ".solverstate":
            state = proto().SolverState()
            state.ParseFromString(produced.read_bytes())
            state.learned_net = str((final_dir / pathlib.Path(state.learned_net).name).resolve())
            atomic.write_bytes(target, state.SerializeToString())
            produced.unlink()
            state_path = target
        else:
            os.replace(produced, target)
    staging.rmdir()
    return state_path


def latest_snapshot(out: str | os.PathLike) -> pathlib.Path | None:
    """The ``.solverstate`` with the highest iteration in ``OUT/snapshots``, if any."""
    states = list(pathlib.Path(out, "snapshots").glob("*_iter_*.solverstate"))
    return max(states, key=lambda p: int(p.stem.rsplit("_iter_", 1)[1]), default=None)


def train(solver_path: str | os.PathLike, out: str | os.PathLike, *, gpu: int | None = None,
          max_iter: int | None = None, validate_every: int | None = None,
          snapshot_every: int | None = None, resume: str | os.PathLike | None = None,
          explode_factor: float = 1e3, progress: bool = True, plot: bool = True) -> Result:
    """Train the solver at ``solver_path``, writing everything under ``out``.

    Parameters
    ----------
    solver_path : path
        A solver prototxt (e.g. from :mod:`fetal_biometry.solvers`).
    out : path
        Output folder (metrics, plots, snapshots).
    gpu : int, optional
        GPU device id; CPU when None.
    max_iter : int, optional
        Overrides the solver's ``max_iter``.
    validate_every, snapshot_every : int, optional
        Override the solver's ``test_interval`` and ``snapshot``; 0 turns either off. A final
        validation and snapshot always happen at the end.
    resume : path, optional
        A ``.solverstate`` to continue from.
    explode_factor : float
        Stop when the loss exceeds this multiple of the first iteration's loss.
    progress, plot : bool
        Show a progress bar; write ``training.png``.
    """
    from tqdm import tqdm

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    original = read_prototxt(solver_path, proto().SolverParameter)
    run = _runtime_solver(original, out, gpu, max_iter)
    (out / "snapshots" / ".staging").mkdir(parents=True, exist_ok=True)
    run_path = atomic.write_text(out / "solver.prototxt", text_format.MessageToString(run))
    precheck(run_path)
    validate_every = original.test_interval if validate_every is None else validate_every
    snapshot_every = original.snapshot if snapshot_every is None else snapshot_every
    train_path, test_paths = solver_nets(original)
    train_param = read_prototxt(train_path, proto().NetParameter)
    test_params = [read_prototxt(p, proto().NetParameter) for p in test_paths]
    test_iters = list(original.test_iter) or [1] * len(test_params)

    set_device(gpu)
    solver = caffe().get_solver(str(run_path))
    if resume is not None:
        solver.restore(str(resume))
        _skip_records(solver.net, train_param, solver.iter)
    metrics_path = out / "metrics.jsonl"
    history = _read_history(metrics_path, solver.iter)
    last_good = latest_snapshot(out)
    validation = None
    first_loss = None
    status = "done"
    last_plot = time.monotonic()
    # In a log file (CI, nohup) a redraw every 30 s instead of several per second.
    bar = tqdm(total=run.max_iter, initial=solver.iter, disable=not progress, unit="it",
               dynamic_ncols=True, desc="train", mininterval=0.5 if sys.stderr.isatty() else 30)
    with _Stop() as stop, open(metrics_path, "a") as metrics:
        while solver.iter < run.max_iter:
            start = time.perf_counter()
            solver.step(1)
            loss = _loss(solver.net)
            record = {"iter": solver.iter, "loss": loss, "lr": _learning_rate(solver, run),
                      "seconds": time.perf_counter() - start}
            history.append(record)
            metrics.write(json.dumps(record) + "\n")
            first_loss = first_loss if first_loss is not None else abs(loss) or 1.0
            if not math.isfinite(loss) or abs(loss) > explode_factor * first_loss:
                bar.close()
                raise TrainingError(
                    f"loss is {loss} at iteration {solver.iter} (started at {first_loss:.4g}): "
                    "training diverged; lower base_lr. "
                    + (f"Last good snapshot: {last_good}" if last_good else "No snapshot was taken."))
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
                # Redraw during long runs, but at most once a minute: a plot costs ~0.5 s.
                if plot and time.monotonic() - last_plot > 60:
                    _write_plot(history, out / "training.png")
                    last_plot = time.monotonic()
            if done or stop.signal or (snapshot_every and solver.iter % snapshot_every == 0):
                last_good = snapshot(solver, out)
            if stop.signal:
                status = "interrupted"
                bar.write(f"stopped by signal {stop.signal} at iteration {solver.iter}; "
                          f"resume with --resume {last_good}")
                break
    bar.close()
    if plot:
        _write_plot(history, out / "training.png")
    _write_model(out, solver_path, train_param, solver.iter, last_good, validation)
    return Result(solver.iter, status, last_good, validation)


def _write_model(out: pathlib.Path, solver_path, train_param, iterations: int,
                 state: pathlib.Path | None, validation: dict | None) -> None:
    """Make the run folder a model folder when the net learnt from patch LMDBs."""
    from fetal_biometry import model

    found = model.patch_manifest(train_param)
    if found is None or state is None:
        return
    summary = {k: v for k, v in (validation or {}).items() if k != "confusion"}
    model.write(out, found[0], state.with_suffix(".caffemodel"),
                {"solver": str(solver_path), "iterations": iterations, "validation": summary})


def _validate_all(solver, test_params, test_iters) -> dict:
    # Test nets share the train net's weights (Caffe's ShareTrainedLayersWith), as in Solver::Test.
    results = {}
    for index, (net, param, iters) in enumerate(zip(solver.test_nets, test_params, test_iters)):
        net.share_with(solver.net)
        result = validate(net, param, iters)
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
        if path.exists():
            path.unlink()
        return []
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    history = [h for h in history if h["iter"] <= upto]
    atomic.write_text(path, "".join(json.dumps(h) + "\n" for h in history))
    return history


def _write_plot(history: list[dict], path: pathlib.Path) -> pathlib.Path:
    """Write :func:`fetal_biometry.figures.training_plot` of ``history`` to the PNG ``path``."""
    from fetal_biometry import figures

    return atomic.write_bytes(path, figures.figure_png(figures.training_plot(history), dpi=100))
