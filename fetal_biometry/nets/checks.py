"""Checks that speak before Caffe can abort the process.

Caffe answers a bad file or a wrong size with ``CHECK`` / ``LOG(FATAL)``, which kills the
whole Python process (exit 134, a core file where core dumps are on). Everything Caffe will be
handed is checked here first, reading files with ``caffe_pb2`` alone, and each problem raises
:class:`CheckError` naming the file (and the layer) and saying what to do:

- :func:`check_net_file`: a text ``NetParameter`` with layers (not a solver, weights, garbage),
  of layer types the project generates only (:func:`check_layer_types`: no ``Python`` layer,
  whose module Caffe would import and run; no data layer in a deploy net);
- :func:`net` and :func:`solver`: the only doors to ``caffe.Net`` and ``caffe.get_solver``,
  checking every net file first;
- :func:`check_weights`: a ``.caffemodel`` (not truncated, text, HDF5 or a solver state) whose
  layer names and blob shapes fit the net, as ``Net::CopyTrainedLayersFrom`` demands, and which
  leaves none of the net's learnable layers at its random initial values (Caffe would, silently);
- :func:`check_solverstate`: a ``.solverstate`` to resume from, its ``learned_net`` resolved
  beside it only (so a run folder copied or moved elsewhere restores its own weights, and a
  forged state reads nothing elsewhere), the
  iteration of state and weights agreeing, the weights fitting the solver's net and the
  history blobs the solver type's (as ``SGDSolver::RestoreSolverStateFromBinaryProto`` checks);
- :func:`fetal_biometry.nets.sizes.check_input_size`: no blob of a net over Caffe's
  ``INT_MAX`` elements per blob (``Blob::Reshape``), counting the convolutions' im2col buffers.

The expected weight shapes come from Caffe itself: the net is built once in a child process
(:func:`blob_shapes`, about 0.5 s), where a fatal check only ends the child; its glog fatal line
becomes the error message here.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

from google.protobuf import message, text_format

from fetal_biometry import paths
from fetal_biometry.caffe_env import package_dir, proto
from fetal_biometry.nets.solvers import snapshot_iteration

#: Largest element count of one Caffe blob (``Blob::Reshape`` checks count <= INT_MAX).
INT_MAX = 2**31 - 1
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Solver types that keep two history blobs per learnable blob (the rest keep one).
_TWO_HISTORIES = {"Adam", "AdaDelta"}


class CheckError(ValueError):
    """A file or size Caffe would abort on (or silently misuse); the message names it."""


#: Layer types of the nets the project generates (fetal_biometry.nets.spec, the U-Net segmenter),
#: the ones a deploy net may hold. Not ``Python`` (Caffe imports and runs the module it names),
#: nor layers that read or write files of their own (ImageData, WindowData, HDF5Output, ...).
COMPUTE_LAYERS = frozenset({
    "Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "PReLU", "Sigmoid",
    "TanH", "BatchNorm", "Scale", "Bias", "Dropout", "Eltwise", "Concat", "Crop", "Split",
    "Flatten", "Reshape", "Softmax", "ArgMax", "Silence"})
#: Further types a train or test net (one a solver names) may hold: its data and its losses.
TRAINING_LAYERS = frozenset({
    "Input", "Data", "HDF5Data", "Accuracy", "SoftmaxWithLoss", "InfogainLoss",
    "EuclideanLoss", "SigmoidCrossEntropyLoss"})
#: What each kind of net may hold: a deploy net takes its input from the caller only.
ALLOWED_LAYERS = {"deploy": COMPUTE_LAYERS | {"Input"},
                  "train": COMPUTE_LAYERS | TRAINING_LAYERS}


# ----------------------------------------------------------------------------- reading files

def _existing_file(path: str | os.PathLike, what: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckError(f"{path}: no such file (expected {what})")
    if path.is_dir():
        raise CheckError(f"{path}: a folder, not {what}")
    return path


def _as_text(data: bytes) -> str | None:
    """``data`` as text when it reads as text (prototxt, JSON, ...), else None."""
    head = data[:65536]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            return None
        text = head[:err.start].decode("utf-8")
    if not all(c.isprintable() or c in "\n\r\t" for c in text):
        return None
    return data.decode("utf-8", errors="replace")


def _parses_as(text: str, message_type) -> bool:
    try:
        text_format.Parse(text, message_type())
    except text_format.ParseError:
        return False
    return True


def _describe_text(text: str) -> str:
    if _parses_as(text, proto().NetParameter):
        return "a text net prototxt"
    if _parses_as(text, proto().SolverParameter):
        return "a solver prototxt"
    return "a text file"


def _parse_binary(data: bytes, message_type):
    parsed = message_type()
    try:
        parsed.ParseFromString(data)
    except message.DecodeError:
        return None
    return parsed


def _layers(net_param) -> list:
    """Layers of a NetParameter, current (``layer``) or V1 (``layers``) format."""
    return list(net_param.layer) or list(net_param.layers)


def _is_weights(data: bytes) -> bool:
    net = _parse_binary(data, proto().NetParameter)
    return net is not None and any(layer.blobs for layer in _layers(net))


def _as_solverstate(data: bytes):
    """The SolverState in ``data`` when it is one (it names its weights), else None."""
    state = _parse_binary(data, proto().SolverState)
    if state is None or not state.learned_net.endswith((".caffemodel", ".h5")):
        return None
    return state


def _read_binary(path: pathlib.Path, what: str) -> bytes:
    data = path.read_bytes()
    if not data:
        raise CheckError(f"{path}: an empty file (an interrupted write?), not {what}")
    if data.startswith(_HDF5_SIGNATURE):
        raise CheckError(f"{path}: an HDF5 file; this project reads Caffe's binary protobuf "
                         f"format only (snapshot_format: BINARYPROTO), not {what} in HDF5")
    if len(data) > INT_MAX:
        raise CheckError(f"{path}: {len(data):,} bytes; Caffe reads protobuf files up to 2 GiB")
    text = _as_text(data)
    if text is not None:
        raise CheckError(f"{path}: {_describe_text(text)}, not {what}")
    return data


def check_layer_types(net_param, where: str, kind: str = "deploy") -> None:
    """Refuse a net holding a layer type outside :data:`ALLOWED_LAYERS` [``kind``].

    ``kind`` is 'deploy' (input from the caller only) or 'train' (a net a solver names, which
    reads its data and computes a loss). ``where`` names the file in the message.
    """
    if net_param.layers:  # V1 nets: Caffe upgrades them, the project never writes them
        raise CheckError(f"{where}: a net in Caffe's legacy V1 format ('layers'); this project "
                         "reads nets in the current format ('layer') only, as it writes them")
    allowed = ALLOWED_LAYERS[kind]
    for layer in net_param.layer:
        if layer.type not in allowed:
            why = (" (a Python layer would import and run code named by the net)"
                   if layer.type == "Python" else
                   " (a deploy net takes its input from the caller, not from files)"
                   if layer.type in ALLOWED_LAYERS["train"] else "")
            raise CheckError(f"{where}: layer {layer.name!r} has type {layer.type!r}, which "
                             f"a {kind} net of this project never holds{why}; refused before "
                             f"Caffe saw the file. Allowed: {', '.join(sorted(allowed))}")


def check_net_file(path: str | os.PathLike, kind: str = "deploy"):
    """Parse ``path`` as a text net prototxt with layers; returns the ``NetParameter``.

    A solver prototxt, weights, a solver state or anything else is named for what it is; layer
    types are checked by :func:`check_layer_types` for a net of ``kind`` ('deploy' or 'train').
    (Whether Caffe can set the net up is checked by :func:`blob_shapes`.)
    """
    path = _existing_file(path, "a net prototxt")
    data = path.read_bytes()
    text = _as_text(data)
    if text is None:
        kind = ("Caffe weights (.caffemodel)" if _is_weights(data) else
                "a solver state (.solverstate)" if _as_solverstate(data) else "a binary file")
        raise CheckError(f"{path}: {kind}, not a net prototxt")
    net = proto().NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as err:
        if _parses_as(text, proto().SolverParameter):
            raise CheckError(f"{path}: a solver prototxt, not a net; give the net it names "
                             "(train_net, test_net or net)") from None
        raise CheckError(f"{path}: not a Caffe net prototxt (NetParameter): {err}") from None
    if not _layers(net):
        raise CheckError(f"{path}: defines no layers; not a Caffe net")
    check_layer_types(net, str(path), kind)
    return net


def check_solver_file(path: str | os.PathLike):
    """Parse a solver prototxt and check the nets it names; returns the ``SolverParameter``.

    Nets inline in the solver (``net_param``, ...) are refused: every net comes from a file
    that :func:`check_net_file` reads as a 'train' net.
    """
    path = _existing_file(path, "a solver prototxt")
    param = proto().SolverParameter()
    try:
        text_format.Parse(path.read_text(), param)
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise CheckError(f"{path}: not a valid SolverParameter: {err}") from None
    inline = [f for f in ("net_param", "train_net_param") if param.HasField(f)]
    inline += ["test_net_param"] * bool(param.test_net_param)
    if inline:
        raise CheckError(f"{path}: holds a net inline ({', '.join(inline)}); write it to a file "
                         "and name it with train_net / test_net")
    train = param.train_net or param.net
    for net_path in filter(None, [train, *param.test_net]):
        check_net_file(net_path, "train")
    return param


def net(path: str | os.PathLike, weights: str | os.PathLike | None = None,
        phase: str = "test", kind: str = "deploy"):
    """A ``caffe.Net`` of the net file at ``path`` (and ``weights``), checked first.

    The one door to ``caffe.Net`` in this project: :func:`check_net_file` reads the file as a
    net of ``kind`` before Caffe sees it.
    """
    from fetal_biometry.caffe_env import caffe

    check_net_file(path, kind)
    mode = caffe().TRAIN if phase == "train" else caffe().TEST
    if weights is None:
        return caffe().Net(str(path), mode)
    return caffe().Net(str(path), str(weights), mode)


def solver_in_child(path: str | os.PathLike, state: str | os.PathLike | None = None) -> None:
    """Build the solver at ``path`` (restoring ``state`` when given) in a child process, its
    nets checked first, so that Caffe's fatal checks end the child, not the caller."""
    check_solver_file(path)
    code = "solver = caffe.get_solver(sys.argv[1])\nif len(sys.argv) > 2: solver.restore(sys.argv[2])"
    run_caffe_child(code, path, *([state] if state else []))


def solver(path: str | os.PathLike):
    """A pycaffe solver of the solver prototxt at ``path``, its nets checked first.

    The one door to ``caffe.get_solver`` in this project (see :func:`check_solver_file`).
    """
    from fetal_biometry.caffe_env import caffe

    check_solver_file(path)
    return caffe().get_solver(str(path))


def read_weights(path: str | os.PathLike):
    """Parse a ``.caffemodel``; returns its ``NetParameter``.

    Refuses, naming the file: a missing, empty, text, HDF5 or truncated file, a solver state,
    and blobs whose values do not fill their shape (Caffe would keep the net's random values
    for a blob without values).
    """
    path = _existing_file(path, "Caffe weights (.caffemodel)")
    data = _read_binary(path, "Caffe weights (.caffemodel)")
    state = _as_solverstate(data)
    if state is not None:
        raise CheckError(f"{path}: a solver state (.solverstate), not weights; its weights are "
                         f"{pathlib.Path(state.learned_net).name}")
    net = _parse_binary(data, proto().NetParameter)
    if net is None:
        raise CheckError(f"{path}: not Caffe weights: it does not parse as a NetParameter "
                         "(truncated, or another kind of file)")
    layers = _layers(net)
    if not any(layer.blobs for layer in layers):
        raise CheckError(f"{path}: holds no weights (no layer has blobs); not a trained .caffemodel")
    problems = [f"layer {layer.name!r} blob {j}: {problem}"
                for layer in layers for j, blob in enumerate(layer.blobs)
                if (problem := _blob_values_problem(blob))]
    if problems:
        raise CheckError(f"{path}: incomplete weights (truncated?): " + "; ".join(problems[:5]))
    return net


def _file_shape(blob) -> tuple[int, ...]:
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _has_legacy_shape(blob) -> bool:
    return any(blob.HasField(f) for f in ("num", "channels", "height", "width"))


def _blob_values_problem(blob) -> str | None:
    count = math.prod(_file_shape(blob))
    values = len(blob.double_data) or len(blob.data)
    return None if values == count else f"{values:,} values for shape {_file_shape(blob)}"


def _shape_fits(blob, shape: tuple[int, ...]) -> bool:
    """Caffe's ``Blob::ShapeEquals``: legacy 4-d fields compare with the shape padded to 4 axes."""
    if _has_legacy_shape(blob):
        return len(shape) <= 4 and (1,) * (4 - len(shape)) + tuple(shape) == _file_shape(blob)
    return tuple(blob.shape.dim) == tuple(shape)


# ----------------------------------------------------------------------------- Caffe in a child

def fatal_summary(log: str) -> str:
    """The glog fatal line of a Caffe log, with the net file and layer it was setting up."""
    net_file = layer = fatal = None
    for line in log.splitlines():
        text = line.split("] ", 1)[-1]
        if " net from " in text and "file: " in text:
            net_file, layer = text.split("file: ", 1)[1].strip(), None
        elif text.startswith(("Creating Layer ", "Setting up ")):
            layer = text.split(" ", 2)[-1].strip()
        elif text.startswith("Network initialization done"):
            layer = None
        elif line.startswith("F") and fatal is None:
            fatal = text
    if fatal is None:
        lines = log.strip().splitlines()
        fatal = lines[-1] if lines else "the child process died without a message"
    where = ", ".join(filter(None, [net_file, layer and f"layer {layer!r}"]))
    return f"{where}: {fatal}" if where else fatal


def run_caffe_child(code: str, *args) -> str:
    """Run ``code`` (Python with ``caffe`` imported) in a child process; returns its stdout.

    Raises :class:`CheckError` with Caffe's fatal message when the child dies.
    """
    prelude = (f"import sys; sys.path.insert(0, {str(package_dir().parent)!r}); import caffe; "
               "caffe.set_mode_cpu()\n")
    env = {**os.environ, "GLOG_minloglevel": "0", "GLOG_logtostderr": "1"}
    proc = subprocess.run([sys.executable, "-c", prelude + code, *map(str, args)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise CheckError(fatal_summary(proc.stderr))
    return proc.stdout


@dataclasses.dataclass(frozen=True)
class LayerBlobs:
    """One layer of a net as Caffe set it up: its type and its parameter blobs' shapes."""

    type: str
    shapes: tuple[tuple[int, ...], ...]
    owned: tuple[bool, ...]  # False for a blob shared with an earlier layer (ParamSpec name)


_SHAPES_CODE = """
import json
net = caffe.Net(sys.argv[1], caffe.TRAIN if sys.argv[2] == "train" else caffe.TEST)
seen, layers = set(), []
for name, layer in zip(net._layer_names, net.layers):
    pointers = [b.data.__array_interface__["data"][0] for b in layer.blobs]
    layers.append([name, layer.type, [list(b.shape) for b in layer.blobs],
                   [p not in seen for p in pointers]])
    seen.update(pointers)
print(json.dumps(layers))
"""


def _net_text(net, kind: str) -> tuple[str, str]:
    """(prototxt text, how to name it) of a NetParameter or a prototxt path, checked."""
    if isinstance(net, (str, os.PathLike)):
        check_net_file(net, kind)
        return pathlib.Path(net).read_text(), str(net)
    where = f"net {net.name or '(unnamed)'}"
    check_layer_types(net, where, kind)
    return text_format.MessageToString(net), where


def blob_shapes(net, phase: str = "test") -> dict[str, LayerBlobs]:
    """Every layer of ``net`` (NetParameter or prototxt path) with its parameter blob shapes.

    Caffe builds the net in a child process (``phase`` 'test' or 'train'), so these are exactly
    the shapes ``CopyTrainedLayersFrom`` compares with; a net Caffe cannot set up raises
    :class:`CheckError` with its fatal message.
    """
    text, where = _net_text(net, "train" if phase == "train" else "deploy")
    return _blob_shapes(text, where, phase, os.getcwd())


@functools.lru_cache(maxsize=16)
def _blob_shapes(text: str, where: str, phase: str, cwd: str) -> dict[str, LayerBlobs]:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp, "net.prototxt")
        path.write_text(text)
        try:
            out = run_caffe_child(_SHAPES_CODE, path, phase)
        except CheckError as err:
            raise CheckError(f"{where}: Caffe cannot set this net up: {err}".replace(str(path), where)) from None
    return {name: LayerBlobs(kind, tuple(map(tuple, shapes)), tuple(owned))
            for name, kind, shapes, owned in json.loads(out.strip().splitlines()[-1])}


# ----------------------------------------------------------------------------- weights

def check_weights(net, weights_path: str | os.PathLike, phase: str = "test") -> None:
    """Check that the ``.caffemodel`` at ``weights_path`` loads into ``net`` without an abort.

    ``net`` is a NetParameter or a prototxt path. As in Caffe, a layer of the file is matched to
    the net's layer of the same name (file layers the net lacks are ignored), and then needs as
    many blobs, each of the same shape. Beyond Caffe, every learnable layer of the net must get
    weights: one left at its random initial values would give silently wrong answers.
    """
    weights = read_weights(weights_path)
    expected = blob_shapes(net, phase)
    where = net if isinstance(net, (str, os.PathLike)) else f"the net {net.name or '(unnamed)'}"
    problems = []
    loaded = set()
    for layer in _layers(weights):
        target = expected.get(layer.name)
        if target is None:
            continue
        loaded.add(layer.name)
        if len(layer.blobs) != len(target.shapes):
            problems.append(f"layer {layer.name!r} has {len(layer.blobs)} blob(s) in the weights, "
                            f"{len(target.shapes)} in the net ({target.type})")
            continue
        for j, (blob, shape) in enumerate(zip(layer.blobs, target.shapes)):
            if not _shape_fits(blob, shape):
                problems.append(f"layer {layer.name!r} blob {j} is {_file_shape(blob)} in the "
                                f"weights, {shape} in the net")
    missing = [name for name, target in expected.items() if target.shapes and name not in loaded]
    if missing:
        problems.append(f"no weights for layer(s) {', '.join(map(repr, missing))} (they would "
                        "keep random initial values)")
    if problems:
        raise CheckError(f"{weights_path}: these weights do not fit {where}: "
                         + "; ".join(problems)
                         + ". Weights of another net (another encoding, patch size or class count?)")


# ----------------------------------------------------------------------------- solver states

def _solver_type(solver_param) -> str:
    if solver_param.HasField("solver_type"):  # deprecated enum, upgraded by Caffe
        names = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                 "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}
        return names[proto().SolverParameter.SolverType.Name(solver_param.solver_type)]
    return solver_param.type


def _train_net(solver_param) -> str:
    train = solver_param.train_net or solver_param.net
    if not train:
        raise CheckError("the solver names no train_net (or net); inline nets are not supported")
    return train


def read_solverstate(path: str | os.PathLike):
    """Parse a ``.solverstate``; returns the ``SolverState`` (``learned_net`` as recorded).

    Refuses, naming the file: a missing, empty, text, HDF5 or unparsable file, a ``.caffemodel``
    (saying which state belongs to it), a state naming no weights, and history blobs whose
    values do not fill their shape.
    """
    path = _existing_file(path, "a solver state (.solverstate)")
    data = _read_binary(path, "a solver state (.solverstate)")
    state = _parse_binary(data, proto().SolverState)
    if state is None or not state.learned_net:
        if _is_weights(data):
            sibling = path.with_suffix(".solverstate")
            raise CheckError(f"{path}: Caffe weights (.caffemodel), not a solver state; resuming "
                             "needs the .solverstate saved with them"
                             + (f": {sibling}" if sibling.is_file() else ""))
        raise CheckError(f"{path}: not a Caffe solver state (it does not parse, or names no "
                         "weights file)")
    problems = [f"history blob {j}: {problem}" for j, blob in enumerate(state.history)
                if (problem := _blob_values_problem(blob))]
    if problems:
        raise CheckError(f"{path}: incomplete solver state (truncated?): " + "; ".join(problems[:5]))
    return state


def check_solverstate(state_path: str | os.PathLike, solver_param):
    """Check a ``.solverstate`` to resume ``solver_param`` from; returns it, weights resolved.

    ``solver_param`` is a SolverParameter or a solver prototxt path. The state's weights
    (``learned_net``) are looked for beside the state only (Caffe records an absolute path,
    which points into the old folder once a run is copied or moved, or anywhere in a forged
    state; it is never read). The returned ``SolverState`` names the weights found, by absolute path: write it
    to a file and restore from that when it differs from the original.
    """
    if isinstance(solver_param, (str, os.PathLike)):
        solver_param = text_format.Parse(pathlib.Path(solver_param).read_text(),
                                         proto().SolverParameter())
    path = pathlib.Path(state_path)
    state = read_solverstate(path)
    weights = _resolve_learned_net(path, state)
    iteration = snapshot_iteration(weights) if weights.suffix == ".caffemodel" else None
    if iteration is not None and iteration != state.iter:
        raise CheckError(f"{path}: the state is at iteration {state.iter} but its weights "
                         f"{weights} are from iteration {iteration}")
    train = _train_net(solver_param)
    check_weights(train, weights, phase="train")
    _check_history(path, state, solver_param, blob_shapes(train, "train"))
    resolved = proto().SolverState()
    resolved.CopyFrom(state)
    resolved.learned_net = str(weights.resolve())
    return resolved


def _resolve_learned_net(path: pathlib.Path, state) -> pathlib.Path:
    """The state's weights, beside it only: a state file never makes the project read a file
    elsewhere (the absolute path Caffe recorded points anywhere once a run is moved or forged)."""
    recorded = pathlib.Path(state.learned_net)
    try:
        beside = paths.inside(path.parent, recorded.name, path, "its weights")
    except paths.OutsideFolder as error:  # a symlink beside it leading out
        raise CheckError(str(error)) from None
    if beside.is_file():
        return beside
    raise CheckError(f"{path}: its weights {recorded.name} are missing: neither beside the state "
                     f"({path.parent / recorded.name}) nor anywhere else read (the recorded path "
                     f"{recorded} is not)")


def history_per_parameter(solver_param) -> int:
    """History blobs a solver keeps per learnable parameter blob: two for Adam and AdaDelta."""
    return 2 if _solver_type(solver_param) in _TWO_HISTORIES else 1


def _check_history(path: pathlib.Path, state, solver_param, layers: dict[str, LayerBlobs]) -> None:
    learnable = [shape for layer in layers.values()
                 for shape, owned in zip(layer.shapes, layer.owned) if owned]
    kind = _solver_type(solver_param)
    expected = learnable * history_per_parameter(solver_param)
    if len(state.history) != len(expected):
        raise CheckError(f"{path}: the state holds {len(state.history)} history blob(s); a {kind} "
                         f"solver of this net keeps {len(expected)} (saved by another solver type "
                         "or another net?)")
    for index, (blob, shape) in enumerate(zip(state.history, expected)):
        if not _shape_fits(blob, shape):
            raise CheckError(f"{path}: history blob {index} is {_file_shape(blob)}, the net's "
                             f"parameter is {shape} (the state of another net?)")
