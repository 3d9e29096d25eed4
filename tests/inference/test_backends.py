"""OpenCV's dnn runs the project's Caffe nets as Caffe does, and a model folder needs no Caffe."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.inference import backends, dense
from fetal_biometry.nets import checks, model as model_folder
from tests.conftest import ROOT, train_patch_model

TOLERANCE = 1e-4
DEPLOY_NETS = sorted(ROOT.glob("prototxt/*/deploy.prototxt"))


def _random_weights(deploy: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Weights of ``deploy`` drawn at random (xavier fillers are too tame: use wider values)."""
    net = checks.net(deploy)
    rng = np.random.default_rng(7)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.standard_normal(blob.data.shape) * 0.1
    net.save(str(out))
    return out


def _input_shape(deploy: pathlib.Path) -> list[int]:
    param = checks.check_net_file(deploy)
    return [list(layer.input_param.shape[0].dim) for layer in param.layer if layer.type == "Input"][0]


@pytest.mark.parametrize("deploy", DEPLOY_NETS, ids=lambda p: p.parent.name)
def test_every_checked_in_deploy_net_gives_caffes_probabilities(tmp_path, deploy):
    weights = _random_weights(deploy, tmp_path / "w.caffemodel")
    batch = np.random.default_rng(1).random([2, *_input_shape(deploy)[1:]], np.float32)
    want = backends.open_net(deploy, weights, "caffe").run(batch)
    got = backends.open_net(deploy, weights, "opencv").run(batch)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("deploy", [p for p in DEPLOY_NETS if p.parent.name.startswith("fetal_")],
                         ids=lambda p: p.parent.name)
def test_the_dense_twin_gives_caffes_probabilities_on_a_scan_sized_input(tmp_path, deploy):
    weights = _random_weights(deploy, tmp_path / "w.caffemodel")
    twin = dense.make_twin(deploy, weights, tmp_path)
    channels, patch = _input_shape(deploy)[1:3]
    batch = np.random.default_rng(2).random((1, channels, patch + 4 * 37, patch + 4 * 23), np.float32)
    want = backends.open_net(*twin, "caffe").run(batch)
    got = backends.open_net(*twin, "opencv").run(batch)
    assert got.shape == want.shape == (1, want.shape[1], 38, 24)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def patch_models(tmp_path_factory, fetal_data, fetal_model) -> dict[str, pathlib.Path]:
    """Trained model folders of every encoding (tiny: a few iterations)."""
    return {"channels": fetal_model,
            **{e: train_patch_model(tmp_path_factory.mktemp(f"model_{e}"), fetal_data, e)
               for e in ("rotate", "none")}}


@pytest.mark.parametrize("encoding", ["channels", "rotate", "none"])
def test_a_trained_model_folder_classifies_alike_on_both_backends(patch_models, encoding):
    from fetal_biometry.simulator import cases as simulator

    model = model_folder.load(patch_models[encoding])
    assert (model.root / dense.TWIN_DEPLOY).is_file() and (model.root / dense.TWIN_WEIGHTS).is_file()
    case = simulator.simulate_case(0, 0, probe="mixed")
    on = {b: dense.DenseClassifier.from_model(model, b).classify_scan(case.image, case.geometry,
                                                                      case.spacing_mm)
          for b in backends.BACKENDS}
    np.testing.assert_allclose(on["opencv"][0], on["caffe"][0], atol=TOLERANCE, rtol=0)


def test_a_trained_segmenter_folder_classifies_alike_on_both_backends(segmenter_model):
    from fetal_biometry.simulator import cases as simulator

    model = model_folder.load(segmenter_model)
    case = simulator.simulate_case(0, 1, probe="mixed")
    on = {b: dense.engine(model, backend=b).classify_scan(case.image, case.geometry, case.spacing_mm)
          for b in backends.BACKENDS}
    np.testing.assert_allclose(on["opencv"][0], on["caffe"][0], atol=TOLERANCE, rtol=0)
    # The one engine runs it over a sequence too: frames in batches, the maps of single scans.
    segmenter = dense.engine(model)
    frames = [case.image, case.image[::-1].copy(), case.image]
    batched = dense.SequenceClassifier(segmenter, case.geometry, case.image.shape, case.spacing_mm, 2)
    for frame, (probs, _) in zip(frames, batched.classify(iter(frames)), strict=True):
        want = segmenter.classify_scan(frame, case.geometry, case.spacing_mm)[0]
        np.testing.assert_allclose(probs, want, atol=1e-6)


def test_an_older_folder_without_its_twin_gets_one_made_with_caffe(tmp_path, fetal_model):
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(fetal_model, folder)
    for name in (dense.TWIN_DEPLOY, dense.TWIN_WEIGHTS):
        (folder / name).unlink()
    record = json.loads((folder / model_folder.FILE).read_text())
    del record["dense"]  # as written before twins were saved
    (folder / model_folder.FILE).write_text(json.dumps(record))
    model = model_folder.load(folder)
    scan = np.random.default_rng(0).integers(0, 255, (80, 90), np.uint8)
    directions = np.broadcast_to(np.array([0.0, 1.0]), (80, 90, 2)).copy()
    maps = [dense.DenseClassifier.from_model(model, b).probabilities(scan, directions)
            for b in backends.BACKENDS]
    np.testing.assert_allclose(maps[1], maps[0], atol=TOLERANCE, rtol=0)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in fetal_model.iterdir()
                                                              if not p.name.startswith("dense."))


NO_CAFFE = """
import sys
sys.modules["caffe._caffe"] = None  # the compiled Caffe cannot load: `import caffe` fails
import numpy as np
from fetal_biometry.inference import dense
from fetal_biometry.nets import model as model_folder
try:
    import caffe
except ImportError:
    pass
else:
    raise SystemExit("caffe imported")
model = model_folder.load(sys.argv[1])
scan = np.random.default_rng(0).integers(0, 255, (80, 90), np.uint8)
directions = np.broadcast_to(np.array([0.0, 1.0]), (80, 90, 2)).copy()
np.save(sys.argv[2], dense.DenseClassifier.from_model(model, "opencv").probabilities(scan, directions))
assert not any(name == "caffe._caffe" and module for name, module in sys.modules.items())
"""


def test_a_twin_older_than_the_weights_is_not_used(tmp_path, fetal_model):
    import shutil

    folder = shutil.copytree(fetal_model, tmp_path / "m")
    model = model_folder.load(folder)
    assert dense._saved_twin(model) is not None
    retrained = checks.net(model.deploy, model.weights)
    retrained.params["out"][1].data[...] += 1.0
    retrained.save(str(model.weights))
    assert dense._saved_twin(model) is None


def test_a_model_folder_classifies_without_caffe(tmp_path, fetal_model):
    out = tmp_path / "probs.npy"
    done = subprocess.run([sys.executable, "-c", NO_CAFFE, str(fetal_model), str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = model_folder.load(fetal_model)
    scan = np.random.default_rng(0).integers(0, 255, (80, 90), np.uint8)
    directions = np.broadcast_to(np.array([0.0, 1.0]), (80, 90, 2)).copy()
    want = dense.DenseClassifier.from_model(model, "caffe").probabilities(scan, directions)
    np.testing.assert_allclose(np.load(out), want, atol=TOLERANCE, rtol=0)


def test_opencvs_loader_is_guarded_by_the_layer_allow_list(tmp_path):
    deploy = tmp_path / "evil.prototxt"
    deploy.write_text('layer { name: "data" type: "Input" top: "data" '
                      'input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }\n'
                      'layer { name: "py" type: "Python" bottom: "data" top: "prob" '
                      'python_param { module: "evil" layer: "Evil" } }\n')
    (tmp_path / "w.caffemodel").write_bytes(b"")
    with pytest.raises(checks.CheckError, match="'Python'"):
        backends.open_net(deploy, tmp_path / "w.caffemodel", "opencv")


def test_threads_are_set_in_one_place():
    import cv2
    from threadpoolctl import threadpool_info

    caffe()  # Caffe's OpenBLAS loaded
    backends.set_threads(1)
    assert cv2.getNumThreads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
