"""Checks before Caffe: each bad net, weights file, solver state or input size here aborts Caffe (shown in a child
process, so this suite survives it) and gets a clear CheckError here instead."""
import hashlib
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from fetal_biometry.caffe_env import package_dir
from fetal_biometry.nets import checks, model as model_folder, sizes, solvers, spec as nets, training

from conftest import ROOT


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_lmdbs):
    """A 2-iteration tutorial CNN run: its solver, weights, state, and deploy nets."""
    folder = tmp_path_factory.mktemp("checks")
    train = nets.save(nets.tutorial_cnn(str(mnist_lmdbs["train"]), 16), folder / "train.prototxt")
    solver = solvers.save(solvers.adam(str(train), 1e-3, max_iter=2, snapshot_prefix="net"),
                          folder / "solver.prototxt")
    state = training.train(solver, folder / "run", progress=False, plot=False).snapshot
    other = nets.save(nets.patch_classifier(str(mnist_lmdbs["train"]), 16), folder / "other.prototxt")
    return {"folder": folder, "solver": solver, "state": state,
            "weights": state.with_suffix(".caffemodel"),
            "other_solver": solvers.save(solvers.adam(str(other), 1e-3), folder / "other_solver.prototxt"),
            "deploy": nets.save(nets.tutorial_cnn_deploy(), folder / "deploy.prototxt"),
            "fetal_deploy": nets.save(nets.patch_classifier_deploy(3), folder / "fetal_deploy.prototxt")}


def _caffe_aborts(code: str, *args) -> str:
    """Run ``code`` with pycaffe in a child; assert that Caffe kills it (SIGABRT); its log."""
    prelude = f"import sys; sys.path.insert(0, {str(package_dir().parent)!r}); import caffe\n"
    proc = subprocess.run([sys.executable, "-c", prelude + code, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode in (-6, 134), (proc.returncode, proc.stderr[-1000:])
    return proc.stderr


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_weights_of_another_net_abort_caffe_and_are_named_here(run):
    load = "caffe.Net(sys.argv[1], sys.argv[2], caffe.TEST)"
    assert "shape mismatch" in _caffe_aborts(load, run["fetal_deploy"], run["weights"])
    with pytest.raises(checks.CheckError, match=r"layer 'c1' blob 0 is \(32, 1, 5, 5\) in the "
                                                r"weights, \(32, 3, 5, 5\) in the net") as err:
        checks.check_weights(run["fetal_deploy"], run["weights"])
    assert str(run["weights"]) in str(err.value) and "'f5'" in str(err.value)
    checks.check_weights(run["deploy"], run["weights"])  # the right net passes


def test_truncated_text_and_garbage_weights(run, tmp_path):
    data = run["weights"].read_bytes()
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) // 2])
    load = "caffe.Net(sys.argv[1], sys.argv[2], caffe.TEST)"
    assert "Failed to parse NetParameter" in _caffe_aborts(load, run["deploy"], truncated)
    with pytest.raises(checks.CheckError, match="truncated.caffemodel: not Caffe weights"):
        checks.check_weights(run["deploy"], truncated)
    # A prototxt given as weights: Caffe parses it as binary and keeps random weights, silently.
    silent = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(package_dir().parent)!r}); "
                             "import caffe; " + load, str(run["deploy"]), str(run["deploy"])], cwd=ROOT)
    assert silent.returncode == 0
    with pytest.raises(checks.CheckError, match="deploy.prototxt: a text net prototxt, not Caffe weights"):
        checks.check_weights(run["deploy"], run["deploy"])
    with pytest.raises(checks.CheckError, match="a solver state .*its weights are net_iter_2.caffemodel"):
        checks.check_weights(run["deploy"], run["state"])
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(checks.CheckError, match="an empty file"):
        checks.read_weights(empty)


def test_weights_that_would_leave_a_layer_random_are_refused(run, tmp_path):
    # Caffe ignores names it does not know: a renamed layer silently keeps its random values.
    param = nets.tutorial_cnn_deploy()
    next(l for l in param.layer if l.name == "f5").name = "fc5"
    renamed = nets.save(param, tmp_path / "renamed.prototxt")
    with pytest.raises(checks.CheckError, match="no weights for layer.*'fc5'.*random initial"):
        checks.check_weights(renamed, run["weights"])


def test_a_solver_or_garbage_as_the_net_file(run, tmp_path):
    assert "Error parsing text-format" in _caffe_aborts("caffe.Net(sys.argv[1], caffe.TEST)", run["solver"])
    with pytest.raises(checks.CheckError, match="solver.prototxt: a solver prototxt, not a net"):
        checks.check_net_file(run["solver"])
    garbage = tmp_path / "deploy.prototxt"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(checks.CheckError, match="deploy.prototxt: a binary file, not a net"):
        checks.check_net_file(garbage)
    with pytest.raises(checks.CheckError, match=r"weights \(.caffemodel\), not a net prototxt"):
        checks.check_net_file(run["weights"])
    with pytest.raises(checks.CheckError, match="nothere.prototxt: no such file"):
        checks.check_net_file(tmp_path / "nothere.prototxt")


def test_resume_files_that_abort_caffe(run, tmp_path):
    restore = "s = caffe.get_solver(sys.argv[1]); s.restore(sys.argv[2])"
    # a .caffemodel given as --resume
    assert "Incorrect length of history" in _caffe_aborts(restore, run["solver"], run["weights"])
    with pytest.raises(checks.CheckError, match="not a solver state; resuming needs the "
                                                r"\.solverstate saved with them: .*net_iter_2"):
        checks.check_solverstate(run["weights"], run["solver"])
    # another net's state
    _caffe_aborts(restore, run["other_solver"], run["state"])
    with pytest.raises(checks.CheckError, match=r"do not fit .*other.prototxt: layer 'out' blob 0 is \(10, 256\)"):
        checks.check_solverstate(run["state"], run["other_solver"])
    # a missing file
    assert "File not found" in _caffe_aborts(restore, run["solver"], tmp_path / "nothere.solverstate")
    with pytest.raises(checks.CheckError, match="nothere.solverstate: no such file"):
        checks.check_solverstate(tmp_path / "nothere.solverstate", run["solver"])


def test_a_copied_or_moved_run_folder_resumes_from_its_own_weights(run, tmp_path):
    from fetal_biometry.caffe_env import proto
    copy = tmp_path / "copy"
    shutil.copytree(run["folder"] / "run", copy)
    state = copy / "snapshots" / run["state"].name
    before = _sha(state)
    resolved = checks.check_solverstate(state, run["solver"])
    assert resolved.learned_net == str((copy / "snapshots" / run["weights"].name).resolve())
    assert resolved.iter == 2 and _sha(state) == before
    # Moved: the recorded absolute path is gone; Caffe aborts on it, the check looks beside.
    recorded = proto().SolverState()
    recorded.ParseFromString(state.read_bytes())
    recorded.learned_net = str(tmp_path / "gone" / run["weights"].name)
    state.write_bytes(recorded.SerializeToString())
    restore = "s = caffe.get_solver(sys.argv[1]); s.restore(sys.argv[2])"
    assert "File not found" in _caffe_aborts(restore, run["solver"], state)
    assert checks.check_solverstate(state, run["solver"]).learned_net == resolved.learned_net
    (copy / "snapshots" / run["weights"].name).unlink()
    with pytest.raises(checks.CheckError, match="its weights net_iter_2.caffemodel are missing: "
                                                "neither beside the state"):
        checks.check_solverstate(state, run["solver"])
    # The recorded path is never read, even where the weights are (a forged state's aim), and
    # a link beside the state leading out is refused.
    recorded.learned_net = str(run["weights"])
    state.write_bytes(recorded.SerializeToString())
    with pytest.raises(checks.CheckError, match="the recorded path .* is not"):
        checks.check_solverstate(state, run["solver"])
    (copy / "snapshots" / run["weights"].name).symlink_to(run["weights"])
    with pytest.raises(checks.CheckError, match=rf"{state}: names 'net_iter_2.caffemodel' .*outside"):
        checks.check_solverstate(state, run["solver"])


def test_a_state_whose_weights_are_from_another_iteration(run, tmp_path):
    from fetal_biometry.caffe_env import proto
    state = proto().SolverState()
    state.ParseFromString(run["state"].read_bytes())
    state.iter = 7
    path = tmp_path / "net_iter_7.solverstate"
    path.write_bytes(state.SerializeToString())
    shutil.copy(run["weights"], tmp_path)
    with pytest.raises(checks.CheckError, match="at iteration 7 but its weights .* from iteration 2"):
        checks.check_solverstate(path, run["solver"])


def test_an_input_over_int_max_aborts_caffe_and_gets_a_limit_here(tmp_path):
    # 8000x8000 with three channels: the im2col buffer of f5 (9x9 over 64 maps) holds 2e10 values.
    fcn = nets.patch_classifier_dense(3, 8000, 8000)
    with pytest.raises(checks.CheckError, match=r"input 1x3x8000x8000 is too large for Caffe: blob "
                                                r"'f5 \(im2col buffer\)'.*up to 2616x2616"):
        sizes.check_input_size((1, 3, 8000, 8000), fcn)
    # The limit is Caffe's own, to the pixel: 2616 sets up, 2617 aborts.
    sizes.check_input_size((1, 3, 2616, 2616), fcn)
    too_big = nets.save(nets.patch_classifier_dense(3, 2617, 2617), tmp_path / "fcn.prototxt")
    assert "blob size exceeds INT_MAX" in _caffe_aborts("caffe.Net(sys.argv[1], caffe.TEST)", too_big)
    fits = nets.save(nets.patch_classifier_dense(3, 2616, 2616), tmp_path / "fits.prototxt")
    checks.blob_shapes(fits)


def test_blob_counts_agree_with_caffe(tmp_path):
    fcn = nets.save(nets.patch_classifier_dense(3, 203, 257), tmp_path / "fcn.prototxt")
    code = ("import json; net = caffe.Net(sys.argv[1], caffe.TEST);"
            "print(json.dumps({k: v.count for k, v in net.blobs.items()}))")
    import json
    caffe_counts = json.loads(checks.run_caffe_child(code, fcn).strip().splitlines()[-1])
    counts = sizes.blob_counts(fcn, (1, 3, 203, 257))
    assert {k: counts[k] for k in caffe_counts} == caffe_counts


def test_a_net_caffe_cannot_set_up_is_named_with_its_layer(tmp_path):
    param = nets.tutorial_cnn_deploy()
    next(l for l in param.layer if l.name == "c3").bottom[0] = "nowhere"
    broken = nets.save(param, tmp_path / "broken.prototxt")
    with pytest.raises(checks.CheckError, match="broken.prototxt: Caffe cannot set this net up.*"
                                                "Unknown bottom blob 'nowhere'"):
        checks.blob_shapes(broken)


# ----------------------------------------------------------------------------- nets from files run no code

PYTHON_LAYER = """
layer { name: "evil" type: "Python" bottom: "prob" top: "evil"
        python_param { module: "evil_layer" layer: "Evil" } }
"""
EVIL_MODULE = """import pathlib
pathlib.Path({marker!r}).write_text("ran")  # on import: what a hostile module would do
import caffe
class Evil(caffe.Layer):
    def setup(self, bottom, top): pass
    def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top): pass
    def backward(self, top, propagate_down, bottom): pass
"""


@pytest.fixture
def evil(fetal_model, fetal_data, tmp_path, monkeypatch):
    """A model folder whose deploy net has a Python layer, its module beside it and importable
    (folder on sys.path and the working folder), as an attacker would hand it over."""
    model = shutil.copytree(fetal_model, tmp_path / "model")
    deploy = model / "deploy.prototxt"
    deploy.write_text(deploy.read_text() + PYTHON_LAYER)
    marker = tmp_path / "the_module_ran"
    (model / "evil_layer.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(model))
    monkeypatch.chdir(model)
    monkeypatch.setenv("PYTHONPATH", f"{model}:{ROOT}")
    return {"model": model, "deploy": deploy, "marker": marker, "data": fetal_data}


def _python_layer_train_net(evil):
    """A solver whose train net carries the Python layer (a train net may read data, never code)."""
    train = evil["model"] / "train_evil.prototxt"
    train.write_text(evil["deploy"].read_text())
    solver = solvers.save(solvers.adam(str(train), 1e-3, max_iter=1, snapshot_prefix="x"),
                          evil["model"] / "solver_evil.prototxt")
    return solver, train


def _door_infer_tool(evil):
    result = subprocess.run([sys.executable, str(ROOT / "tools/infer.py"), str(evil["model"]),
                             str(evil["data"]), "--out", str(evil["model"].parent / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    raise checks.CheckError(result.stderr)


def _door_train(evil):
    solver, _ = _python_layer_train_net(evil)
    training.train(solver, evil["model"].parent / "run", progress=False, plot=False)


def _door_shapes_of_a_parsed_net(evil):
    from google.protobuf import text_format
    from fetal_biometry.caffe_env import proto
    param = text_format.Parse(evil["deploy"].read_text(), proto().NetParameter())
    checks.blob_shapes(param)


DOORS = {
    "infer tool": _door_infer_tool,
    "model.load": lambda evil: model_folder.load(evil["model"]),
    "check_weights": lambda evil: checks.check_weights(
        evil["deploy"], next((evil["model"] / "snapshots").glob("*.caffemodel"))),
    "checks.net": lambda evil: checks.net(evil["deploy"]),
    "blob_shapes of a NetParameter": _door_shapes_of_a_parsed_net,
    "checks.solver": lambda evil: checks.solver(_python_layer_train_net(evil)[0]),
    "training.train": _door_train,
}


@pytest.mark.parametrize("door", DOORS)
def test_a_python_layer_is_refused_at_every_door_and_its_module_never_runs(evil, door):
    with pytest.raises((checks.CheckError, model_folder.ModelError, training.TrainingError)) as error:
        DOORS[door](evil)
    message = str(error.value)
    assert "layer 'evil' has type 'Python'" in message
    assert ("deploy.prototxt" in message or "train_evil.prototxt" in message
            or "net " in message), message  # the file (or the in-memory net) is named
    assert not evil["marker"].exists(), "the module beside the net ran"


def test_a_deploy_net_reads_no_data_and_a_solver_holds_no_inline_net(run, tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(pathlib.Path(run["deploy"]).read_text() + """
layer { name: "reader" type: "ImageData" top: "img" top: "lbl"
        image_data_param { source: "/etc/passwd" batch_size: 1 } }""")
    with pytest.raises(checks.CheckError, match=rf"{deploy}: layer 'reader' has type 'ImageData'"):
        checks.net(deploy)
    train = pathlib.Path(run["folder"] / "train.prototxt").read_text()
    with_data = tmp_path / "data_in_deploy.prototxt"
    with_data.write_text(train)
    with pytest.raises(checks.CheckError, match="a deploy net takes its input from the caller"):
        checks.check_net_file(with_data)
    checks.check_net_file(with_data, "train")  # the same net as a solver's train net is fine
    inline = tmp_path / "inline_solver.prototxt"
    inline.write_text(f"net_param {{ {pathlib.Path(run['deploy']).read_text()} }}\nbase_lr: 0.1")
    with pytest.raises(checks.CheckError, match=rf"{inline}: holds a net inline \(net_param\)"):
        checks.check_solver_file(inline)


def test_only_checks_hands_files_to_caffe_net_or_its_solver():
    # The one door: a new caller of caffe.Net / get_solver must go through checks.net / .solver.
    pattern = re.compile(r"\.Net\(|get_solver\(")
    callers = [str(path.relative_to(ROOT)) for folder in ("fetal_biometry", "tools")
               for path in sorted((ROOT / folder).rglob("*.py")) + sorted((ROOT / folder).rglob("*.sh"))
               if path.name != "checks.py" and pattern.search(path.read_text())]
    assert callers == []
